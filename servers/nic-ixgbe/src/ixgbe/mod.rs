//! The 82599 side of the driver core: init in datasheet order, link, statistics, VMDq pools,
//! queue programming and MSI-X. Pool p owns RX queue 2p and TX queue 2p (64 pools x 2 queues;
//! the second queue of each pool stays unused because RSS is off).

pub mod init;
pub mod link;
pub mod msix;
pub mod stats;
pub mod vmdq;

/// VMDq pools in 64-pool mode.
pub const MAX_POOLS: u8 = 64;
/// Receive-address (RAR) entries.
pub const RAR_ENTRIES: u32 = 128;
/// MSI-X vectors.
pub const MSIX_VECTORS: u32 = 64;

pub const fn pool_rx_queue(p: u8) -> u32 {
    2 * p as u32
}
pub const fn pool_tx_queue(p: u8) -> u32 {
    2 * p as u32
}
