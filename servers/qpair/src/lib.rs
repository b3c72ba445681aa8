//! qpair: the queue-pair channel protocol between netback and nic-ixgbe.
//!
//! One channel is a shared-memory region carved into six single-producer single-consumer rings
//! (see [`channel::Layout`]): control requests and replies, RX buffer posts and RX completions,
//! TX frame posts and TX completions. Bulk data never crosses the channel: buffers travel by bus
//! address, so the NIC DMAs straight into (and out of) memory netback owns.
//!
//! Trust: each end treats everything the peer wrote as hostile. Peer indices are read once and
//! range-checked ([`ring`]); every entry is decoded into a typed message or a [`msg::MsgError`]
//! ([`msg`]); malformed entries are counted and dropped, never acted upon.
//!
//! Protocol rules (the NIC server enforces them and answers a breach with a `Refused`
//! completion carrying the request's id):
//! - A pool is used only after `PoolAllocated` and only by the channel that allocated it;
//!   after `ReleasePool` nothing more is posted for it. Every buffer of a released pool comes
//!   back (`RxStatus::Unused` / `TxStatus::Discarded` or a normal completion) before
//!   `PoolReleased`.
//! - Buffers are named by bus address and must lie inside the bus windows the system
//!   description gives netback; RX buffers are at least the NIC's configured buffer size;
//!   TX frames are 14..=1522 bytes, one buffer each.
//! - At most `ring size - 1` RX buffers and `ring size - 1` TX frames per pool are
//!   outstanding (the NIC's descriptor rings; the size comes from the system description).
//! - Completions of one pool and direction come back in posting order.
//! - Notifications follow Xen's event-index rule ([`ring`]): arm, then re-check.
#![cfg_attr(not(test), no_std)]

pub mod channel;
pub mod msg;
pub mod ring;

pub use channel::{ChannelError, ChannelStats, Layout, NetbackEnd, NicEnd, Pushed};
pub use msg::{
    Ctrl, CtrlReply, MacAddr, MsgError, PoolFlags, RefuseReason, RxDone, RxPost, RxStatus, TxDone,
    TxPost, TxStatus,
};
pub use ring::{Consumer, Producer, RingError};
