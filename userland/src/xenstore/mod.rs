//! The xenstore client: the protocol that netback (and anything else that talks to the
//! toolstack) uses to read and write keys, watch them and run transactions.
//!
//! Layers, each in its own file:
//! - [`ring`]: the shared page (`xenstore_domain_interface`: request and response rings of 1024
//!   bytes with free-running indices), reached through the [`ring::RingPage`] trait; the peer is
//!   untrusted, so an index that jumps beyond the ring size is an error, never a wild read;
//! - [`wire`]: the message header, message types, and xenstore's errno names;
//! - [`path`]: what a valid path, value and watch token are (lengths and characters);
//! - [`client`]: requests with ids, replies matched to them, `WATCH_EVENT`s that arrive between
//!   replies queued for the caller, transactions with an `EAGAIN` retry helper.
//!
//! The memory and the notification are behind [`client::Transport`], so host tests run the client
//! against an in-memory xenstored (see `tests.rs`).

// The runtime's heap (see `rt.rs`) backs replies, directory listings and the watch queue.
extern crate alloc;

pub mod client;
pub mod path;
pub mod ring;
pub mod wire;
pub mod xenbus;

#[cfg(test)]
mod tests;

pub use client::{Client, Transport, TxId, WatchEvent};
pub use wire::{Error, XsErrno};
pub use xenbus::XenbusState;
