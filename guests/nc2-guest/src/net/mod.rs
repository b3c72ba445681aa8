//! The guest's network application, independent of how frames move: `frame` encodes and
//! decodes Ethernet, ARP, IPv4, ICMP, UDP and TCP; `stack` answers ARP and echo requests, runs
//! the UDP echo and keeps the neighbour table; `tcp` is the minimal TCP sender of a file.
//!
//! Everything received is parsed from a private copy of the frame, with every length checked;
//! a malformed frame is dropped (counted), never trusted.

pub mod frame;
pub mod stack;
pub mod tcp;

pub use frame::{Ip, Mac};
