//! nic-ixgbe driver core: hardware-independent logic, generic over register access, DMA and
//! time ([`hw`]), so the same code drives the real 82599 in the image and the software model
//! on the host.
//!
//! Map: [`regs`] register maps per chip; [`desc`] descriptor layouts; [`queue`] RX/TX rings;
//! [`ixgbe`] and [`igb`] chip-specific init, link, VMDq pools, queues, MSI-X, statistics;
//! [`nic`] the facade the server calls; [`service`] the NIC end of the queue-pair channel.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod desc;
pub mod error;
pub mod hw;
pub mod igb;
pub mod ixgbe;
pub mod nic;
mod poll;
pub mod pool;
pub mod queue;
pub mod regs;
pub mod service;
pub mod stats;

pub use error::Error;
pub use hw::{Delay, Dma, DmaError, DmaRegion, Mmio, RegisterAccess};
pub use ixgbe::link::Link;
pub use nic::{Chip, Config, Nic, Released};
pub use pool::{PoolFlags, PoolStats};
pub use queue::{RxBuf, RxCompletion, TxBuf};
pub use stats::HwStats;
