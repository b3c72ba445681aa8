//! Shared memory layout of a netchannel2 channel (wire format v1).
//!
//! A channel is a control area plus two payload rings. The control area holds
//! two 128-byte blocks, one per endpoint; each endpoint writes only its own
//! block (so the two never share a cache line) and only reads the peer's.
//! Indices and event thresholds sit in separate cache lines: indices change
//! on every publish, thresholds only before sleeping, so checking the peer's
//! threshold after a publish does not pull in a line the peer just dirtied.
//!
//! | offset in block | field            | meaning                                              |
//! |-----------------|------------------|------------------------------------------------------|
//! | 0               | `out_prod`       | producer index of the ring this endpoint writes      |
//! | 4               | `in_cons`        | consumer index of the ring this endpoint reads       |
//! | 8..64           | reserved, zero   |                                                      |
//! | 64              | `in_prod_event`  | wake me when the peer's `out_prod` passes this       |
//! | 68              | `out_cons_event` | wake me when the peer's `in_cons` passes this        |
//! | 72..128         | reserved, zero   |                                                      |
//!
//! The frontend's block is at offset 0 and the backend's at 128. The
//! frontend-to-backend ring and the backend-to-frontend ring are separate
//! regions whose size is a power of two between [`MIN_RING`] and
//! [`MAX_RING`] bytes.

use crate::error::SetupError;
use crate::shm::SharedMem;

/// Size of the control area.
pub const CONTROL_SIZE: usize = 256;
/// Offset of the frontend's control block.
pub const FRONTEND_BLOCK: usize = 0;
/// Offset of the backend's control block.
pub const BACKEND_BLOCK: usize = 128;
/// Size of one control block.
pub const BLOCK_SIZE: usize = 128;

/// Producer index of the ring the block's owner writes.
pub const OUT_PROD: usize = 0;
/// Consumer index of the ring the block's owner reads.
pub const IN_CONS: usize = 4;
/// Event threshold on the peer's producer index.
pub const IN_PROD_EVENT: usize = 64;
/// Event threshold on the peer's consumer index.
pub const OUT_CONS_EVENT: usize = 68;

/// Smallest ring payload size.
pub const MIN_RING: usize = 64;
/// Largest ring payload size (a PAD message's u16 size must reach the end).
pub const MAX_RING: usize = 65536;

/// The three regions of one channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelMem<'a> {
    /// The control area (at least [`CONTROL_SIZE`] bytes).
    pub control: SharedMem<'a>,
    /// Payload of the ring the frontend produces.
    pub front_to_back: SharedMem<'a>,
    /// Payload of the ring the backend produces.
    pub back_to_front: SharedMem<'a>,
}

impl ChannelMem<'_> {
    /// Checks sizes.
    pub fn validate(&self) -> Result<(), SetupError> {
        if self.control.len() < CONTROL_SIZE {
            return Err(SetupError("control area smaller than 256 bytes"));
        }
        for r in [self.front_to_back, self.back_to_front] {
            let n = r.len();
            if !n.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&n) {
                return Err(SetupError("ring size must be a power of two in 64..=65536"));
            }
        }
        Ok(())
    }

    /// Initialises the control area as the frontend must before granting it:
    /// indices zero, event thresholds one (the first message wakes the peer).
    pub fn init(&self) -> Result<(), SetupError> {
        self.validate()?;
        self.control.zero(0, CONTROL_SIZE);
        for b in [FRONTEND_BLOCK, BACKEND_BLOCK] {
            init_block(&self.control, b);
        }
        Ok(())
    }
}

pub(crate) fn init_block(control: &SharedMem<'_>, block: usize) {
    use core::sync::atomic::Ordering::Relaxed;
    control.zero(block, BLOCK_SIZE);
    control.store_u32(block + IN_PROD_EVENT, 1, Relaxed);
    control.store_u32(block + OUT_CONS_EVENT, 1, Relaxed);
}
