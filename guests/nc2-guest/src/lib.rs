//! nc2-guest: the hardware- and Xen-independent half of the nc2 guest task.
//!
//! The task (`main.rs` and its modules) connects to nc2dd's netback as a netchannel2 or netif
//! frontend; everything it does with frames once it has them lives here, `no_std` and tested on
//! the host:
//! - [`net`]: Ethernet, ARP, IPv4, ICMP echo, UDP echo and a minimal TCP sender;
//! - [`sha256`]: the checksum printed for a sent file (compared with `sha256sum` on the peer);
//! - [`args`]: the task's arguments, parsed and checked.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod args;
pub mod net;
pub mod sha256;
