//! libnc2: the netchannel2 and netif ring protocols, both ends of each.
//!
//! `no_std` + `alloc`, no OS dependency. Everything the peer writes is read
//! once through [`shm::SharedMem`], validated, and reported as a
//! [`PeerError`] when wrong; nothing here panics on peer input.
//!
//! - [`nc2`]: netchannel2, a pair of one-way byte rings carrying
//!   variable-size messages (wire format: `docs/nc2-wire.md`).
//! - [`netif`]: the standard Xen `io/netif.h` + `io/ring.h` rings, byte
//!   compatible, tx/rx/control, front and back ends.
//! - [`notify`]: the event-suppression rule both use.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod error;
pub mod grant;
pub mod idset;
pub mod nc2;
pub mod netif;
pub mod notify;
pub mod shm;

pub use error::{PeerError, SendError};
pub use grant::GrantBound;
