//! Reading physical memory during boot, through the identity map.
//!
//! Owns: the boot-time `PhysRead` implementation. The trampoline identity-maps 0..4 GiB and the
//! kernel's own tables identity-map all RAM, so a physical address below 4 GiB that lies in RAM
//! (or in a region the loader handed us) is readable at the same virtual address. Anything above
//! 4 GiB is refused rather than read through a missing mapping.

use kernel::boot::start_info::PhysRead;

pub struct IdentityMap;

const LIMIT: u64 = 1 << 32;

impl PhysRead for IdentityMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = paddr.checked_add(buf.len() as u64) else {
            return false;
        };
        if paddr == 0 || end > LIMIT {
            return false;
        }
        // SAFETY: [paddr, end) lies inside the identity-mapped first 4 GiB and is only read.
        unsafe {
            core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        true
    }
}

/// A byte slice over loader-provided memory (the boot module).
///
/// # Safety
/// `[paddr, paddr + len)` must be identity-mapped, below 4 GiB, and not written while the slice
/// lives (the frame allocator must reserve it).
pub unsafe fn slice(paddr: u64, len: usize) -> &'static [u8] {
    // SAFETY: forwarded from the caller.
    unsafe { core::slice::from_raw_parts(paddr as *const u8, len) }
}
