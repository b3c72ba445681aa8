//! Chip-wide statistics, accumulated in software from the clear-on-read hardware counters.

/// Totals since the driver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwStats {
    /// Good frames received (delivered to a queue).
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Good frames transmitted.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames lost because the receive packet buffer was full.
    pub rx_missed: u64,
    /// Frames the NIC dropped because their source MAC was not the pool's (82599 only).
    pub tx_spoofed: u64,
}
