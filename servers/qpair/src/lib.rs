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
