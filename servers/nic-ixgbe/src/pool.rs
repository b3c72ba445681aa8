//! Per-pool options and counters.

/// Receive filter options of a pool beyond its own unicast MAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolFlags {
    pub broadcast: bool,
    pub multicast: bool,
}

/// Counters of one pool since it was allocated. Frames and bytes are counted by the driver
/// from descriptors; `rx_dropped` comes from the NIC's per-queue drop counter where the chip
/// has one for this pool (82599: pools 0..16; 82576: all pools).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: Option<u64>,
    pub tx_frames: u64,
    pub tx_bytes: u64,
}
