//! The 82576 side of the driver core, for QEMU's "igb" model: same queues and descriptors as
//! the 82599, different register map, 8 pools with pool p on RX/TX queue p. QEMU quirks kept
//! in mind (reference §5): EECD.AUTO_RD is never set (not waited on), queue 0 is enabled at
//! reset (disabled first), PSRTYPE is not emulated (not written), EIAC/EIAM are written once.

pub mod init;
pub mod msix;
pub mod vmdq;

pub const MAX_POOLS: u8 = 8;
/// RA (16) + RA2 (8) entries.
pub const RAR_ENTRIES: u32 = 24;
/// MSI-X vectors QEMU gives the PF.
pub const MSIX_VECTORS: u32 = 10;

pub const fn pool_rx_queue(p: u8) -> u32 {
    p as u32
}
pub const fn pool_tx_queue(p: u8) -> u32 {
    p as u32
}
