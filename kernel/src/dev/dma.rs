//! DMA memory for driver tasks: a per-task budget of physically contiguous, pinned, zeroed
//! memory, each piece returned with the address the device must use.
//!
//! Owns the accounting and the rules; the frames come from the kernel's frame allocator through
//! [`ContiguousFrames`] (implemented here for [`FrameAllocator`]) and are zeroed through the
//! caller's mapping. Pinned means the kernel never moves or reclaims a region while its task
//! lives; [`DmaBudget::release_all`] returns them when the task stops, which must happen only
//! after the task's devices stopped mastering the bus (`dev::claim::disable_function`).
//!
//! Bus addresses: this kernel runs either on bare QEMU (no IOMMU) or as a Xen HVM driver domain
//! whose passed-through device sits behind the IOMMU that Xen programs with the domain's own
//! guest-physical to machine mapping. In both cases the address a device must be given is the
//! guest-physical address, so `bus == phys` here. That is an assumption about the platform, not
//! something this code can check: a PV driver domain (machine addresses) or an IOMMU with its own
//! translation for the domain would need a translation step at exactly this point.
//!
//! Invariants: `used` is the sum of the live regions' lengths and never exceeds `limit`; every
//! region is page-aligned, a whole number of pages, and zeroed before it is handed out; a task
//! holds at most [`MAX_REGIONS`] regions.

use alloc::vec::Vec;
use core::fmt;

use crate::mem::frame::{FRAME_SIZE, FrameAllocator};

/// Regions one task may hold at once (rings and buffer pools; keeps the bookkeeping bounded).
pub const MAX_REGIONS: usize = 64;
/// Largest alignment a task may ask for (2 MiB, a large page).
pub const MAX_ALIGN: u64 = 2 << 20;

/// Physically contiguous frames.
pub trait ContiguousFrames {
    /// `count` contiguous frames starting at a multiple of `align` bytes, or `None`.
    fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64>;
    /// Returns one frame.
    fn free_frame(&mut self, paddr: u64);
}

impl ContiguousFrames for FrameAllocator<'_> {
    fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        FrameAllocator::alloc_contiguous(self, count, align)
    }
    fn free_frame(&mut self, paddr: u64) {
        // A region's frames were all allocated together and are freed once: an error here would
        // be a kernel bug, and the frame is unusable either way.
        if let Err(e) = self.free(paddr) {
            log::error!("dma: freeing {paddr:#x}: {e}");
        }
    }
}

/// A piece of DMA memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRegion {
    pub phys: u64,
    /// What the device is given (see the module header: equal to `phys` on this platform).
    pub bus: u64,
    pub len: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    ZeroLength,
    /// Alignment is not a power of two, or above [`MAX_ALIGN`].
    BadAlignment(u64),
    /// The request does not fit what is left of the budget.
    OverBudget {
        asked: u64,
        left: u64,
    },
    TooManyRegions,
    /// The frame allocator has no contiguous run that large.
    OutOfMemory {
        len: u64,
    },
    /// Not a region this task holds.
    NotAllocated(u64),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaError::ZeroLength => write!(f, "DMA length is zero"),
            DmaError::BadAlignment(a) => write!(
                f,
                "DMA alignment {a:#x} is not a power of two up to {MAX_ALIGN:#x}"
            ),
            DmaError::OverBudget { asked, left } => write!(
                f,
                "DMA request of {asked} bytes exceeds the {left} bytes left in the task's budget"
            ),
            DmaError::TooManyRegions => {
                write!(f, "task already holds {MAX_REGIONS} DMA regions")
            }
            DmaError::OutOfMemory { len } => {
                write!(f, "no {len} bytes of contiguous physical memory are free")
            }
            DmaError::NotAllocated(a) => write!(f, "{a:#x} is not a DMA region of this task"),
        }
    }
}

/// One task's DMA memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaBudget {
    limit: u64,
    used: u64,
    regions: Vec<DmaRegion>,
}

impl DmaBudget {
    /// A budget of `limit` bytes (the system table's per-task `dma`).
    pub fn new(limit: u64) -> Self {
        DmaBudget {
            limit,
            used: 0,
            regions: Vec::new(),
        }
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn left(&self) -> u64 {
        self.limit - self.used
    }

    pub fn regions(&self) -> &[DmaRegion] {
        &self.regions
    }

    /// `len` bytes (rounded up to pages) of contiguous memory aligned to `align` (at least a
    /// page), zeroed with `zero(phys, len)` before it is returned.
    pub fn allocate<F: ContiguousFrames + ?Sized>(
        &mut self,
        frames: &mut F,
        len: u64,
        align: u64,
        zero: impl FnOnce(u64, u64),
    ) -> Result<DmaRegion, DmaError> {
        if len == 0 {
            return Err(DmaError::ZeroLength);
        }
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(DmaError::BadAlignment(align));
        }
        let rounded = len
            .checked_next_multiple_of(FRAME_SIZE)
            .filter(|&r| r <= self.left())
            .ok_or(DmaError::OverBudget {
                asked: len,
                left: self.left(),
            })?;
        if self.regions.len() >= MAX_REGIONS {
            return Err(DmaError::TooManyRegions);
        }
        let phys = frames
            .alloc_contiguous(rounded / FRAME_SIZE, align.max(FRAME_SIZE))
            .ok_or(DmaError::OutOfMemory { len: rounded })?;
        zero(phys, rounded);
        // Bus address = guest-physical address: see the module header for why and when not.
        let region = DmaRegion {
            phys,
            bus: phys,
            len: rounded,
        };
        self.used += rounded;
        self.regions.push(region);
        Ok(region)
    }

    /// Returns the region starting at `phys`.
    pub fn free<F: ContiguousFrames + ?Sized>(
        &mut self,
        frames: &mut F,
        phys: u64,
    ) -> Result<(), DmaError> {
        let i = self
            .regions
            .iter()
            .position(|r| r.phys == phys)
            .ok_or(DmaError::NotAllocated(phys))?;
        let r = self.regions.swap_remove(i);
        release(frames, r);
        self.used -= r.len;
        Ok(())
    }

    /// Returns every region (the task stopped and its devices no longer master the bus).
    pub fn release_all<F: ContiguousFrames + ?Sized>(&mut self, frames: &mut F) {
        for r in self.regions.drain(..) {
            release(frames, r);
        }
        self.used = 0;
    }
}

fn release<F: ContiguousFrames + ?Sized>(frames: &mut F, r: DmaRegion) {
    let mut at = r.phys;
    while at < r.phys + r.len {
        frames.free_frame(at);
        at += FRAME_SIZE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::frame::bitmap_words;
    use std::vec;

    fn allocator(bits: &mut [u64]) -> FrameAllocator<'_> {
        let mut fa = FrameAllocator::new(bits);
        fa.add_free_range(0x10_0000, 0x100_0000);
        fa
    }

    #[test]
    fn allocations_are_contiguous_aligned_zeroed_and_counted() {
        let mut bits = vec![0; bitmap_words(0x100_0000)];
        let mut fa = allocator(&mut bits);
        let free_before = fa.free_frames();
        let mut budget = DmaBudget::new(256 << 10);
        let mut zeroed = vec![];
        let r = budget
            .allocate(&mut fa, 5000, 4096, |p, l| zeroed.push((p, l)))
            .unwrap();
        assert_eq!(r.len, 8192);
        assert_eq!(r.bus, r.phys);
        assert_eq!(zeroed, vec![(r.phys, 8192)]);
        let big = budget
            .allocate(&mut fa, 64 << 10, 64 << 10, |_, _| {})
            .unwrap();
        assert_eq!(big.phys % (64 << 10), 0);
        assert_eq!(budget.used(), 8192 + (64 << 10));
        assert_eq!(fa.free_frames(), free_before - 2 - 16);
        budget.free(&mut fa, r.phys).unwrap();
        assert_eq!(budget.used(), 64 << 10);
        assert_eq!(
            budget.free(&mut fa, r.phys),
            Err(DmaError::NotAllocated(r.phys))
        );
        budget.release_all(&mut fa);
        assert_eq!(budget.used(), 0);
        assert!(budget.regions().is_empty());
        assert_eq!(fa.free_frames(), free_before);
    }

    #[test]
    fn budget_alignment_and_memory_limits_are_errors() {
        let mut bits = vec![0; bitmap_words(0x100_0000)];
        let mut fa = allocator(&mut bits);
        let mut budget = DmaBudget::new(16 << 10);
        let never = |_: u64, _: u64| panic!("refused requests are not zeroed");
        assert_eq!(
            budget.allocate(&mut fa, 0, 4096, never),
            Err(DmaError::ZeroLength)
        );
        assert_eq!(
            budget.allocate(&mut fa, 4096, 3000, never),
            Err(DmaError::BadAlignment(3000))
        );
        assert_eq!(
            budget.allocate(&mut fa, 4096, 4 << 20, never),
            Err(DmaError::BadAlignment(4 << 20))
        );
        assert_eq!(
            budget.allocate(&mut fa, (16 << 10) + 1, 4096, never),
            Err(DmaError::OverBudget {
                asked: (16 << 10) + 1,
                left: 16 << 10
            })
        );
        assert_eq!(
            budget.allocate(&mut fa, u64::MAX, 4096, never),
            Err(DmaError::OverBudget {
                asked: u64::MAX,
                left: 16 << 10
            })
        );
        budget.allocate(&mut fa, 16 << 10, 4096, |_, _| {}).unwrap();
        assert!(matches!(
            budget.allocate(&mut fa, 1, 4096, never),
            Err(DmaError::OverBudget { left: 0, .. })
        ));

        let mut huge = DmaBudget::new(1 << 30);
        assert_eq!(
            huge.allocate(&mut fa, 512 << 20, 4096, never),
            Err(DmaError::OutOfMemory { len: 512 << 20 })
        );
        assert_eq!(huge.used(), 0);

        let mut many = DmaBudget::new(1 << 30);
        for _ in 0..MAX_REGIONS {
            many.allocate(&mut fa, 4096, 4096, |_, _| {}).unwrap();
        }
        assert_eq!(
            many.allocate(&mut fa, 4096, 4096, never),
            Err(DmaError::TooManyRegions)
        );
    }
}
