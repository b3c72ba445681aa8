//! The shared ring page of `xen/include/public/io/ring.h`, byte for byte:
//!
//! | offset | field       |
//! |--------|-------------|
//! | 0      | `req_prod`  |
//! | 4      | `req_event` |
//! | 8      | `rsp_prod`  |
//! | 12     | `rsp_event` |
//! | 16     | `pvt` (4 bytes) then 44 bytes of padding |
//! | 64     | `ring[]`: slots of `max(sizeof req, sizeof rsp)` bytes |
//!
//! The slot count is the largest power of two that fits in the page.

use crate::error::SetupError;
use crate::shm::SharedMem;
use core::sync::atomic::Ordering;

/// Offset of `req_prod`.
pub const REQ_PROD: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT: usize = 12;
/// Offset of the private/feature word (`pvt`).
pub const PVT: usize = 16;
/// Offset of the first slot.
pub const RING_OFFSET: usize = 64;

/// Number of slots of `slot_size` bytes that a shared ring of `len` bytes
/// holds (`__RING_SIZE`): rounded down to a power of two; 0 if none fit.
pub const fn nr_entries(len: usize, slot_size: usize) -> u32 {
    if len <= RING_OFFSET || slot_size == 0 {
        return 0;
    }
    let n = (len - RING_OFFSET) / slot_size;
    if n == 0 {
        return 0;
    }
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `SHARED_RING_INIT`: producers 0, events 1, the rest zero. Done by the
/// frontend before it grants the page.
pub fn init(mem: &SharedMem<'_>) -> Result<(), SetupError> {
    if mem.len() < RING_OFFSET + 8 {
        return Err(SetupError(
            "shared ring smaller than its header plus one slot",
        ));
    }
    mem.zero(0, mem.len());
    mem.store_u32(REQ_EVENT, 1, Ordering::Relaxed);
    mem.store_u32(RSP_EVENT, 1, Ordering::Relaxed);
    Ok(())
}
