//! The model's bus memory: every region the driver (or a test playing netback) allocates,
//! each at a bus address distinct from its CPU address, with an unmapped guard gap between
//! regions. The model only ever reaches memory through bus addresses, as a device would, so a
//! driver that hands the NIC a CPU pointer or a wrong offset gets a violation, not a silent hit.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

const PAGE: usize = 4096;
/// First bus address handed out: above 4 GiB so the high address registers matter.
const BUS_BASE: u64 = 0x1_0000_0000;

struct Region {
    bus: u64,
    ptr: NonNull<u8>,
    layout: Layout,
}

pub struct BusMemory {
    regions: Vec<Region>,
    next_bus: u64,
}

impl BusMemory {
    pub fn new() -> Self {
        Self {
            regions: Vec::new(),
            next_bus: BUS_BASE,
        }
    }

    /// Zeroed, page-aligned memory of at least `len` bytes; returns (CPU pointer, bus address).
    pub fn alloc(&mut self, len: usize) -> (NonNull<u8>, u64) {
        let size = len.max(1).div_ceil(PAGE) * PAGE;
        let layout = Layout::from_size_align(size, PAGE).expect("DMA size overflows");
        // SAFETY: the layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).expect("out of memory");
        let bus = self.next_bus;
        self.next_bus += (size + PAGE) as u64;
        self.regions.push(Region { bus, ptr, layout });
        (ptr, bus)
    }

    /// CPU pointer for `[bus, bus + len)` if that range lies inside one region.
    fn translate(&self, bus: u64, len: usize) -> Option<*mut u8> {
        let i = self
            .regions
            .partition_point(|r| r.bus <= bus)
            .checked_sub(1)?;
        let r = &self.regions[i];
        let off = usize::try_from(bus - r.bus).ok()?;
        if off.checked_add(len)? > r.layout.size() {
            return None;
        }
        // SAFETY: off + len is within the region's allocation, checked above.
        Some(unsafe { r.ptr.as_ptr().add(off) })
    }

    pub fn read(&self, bus: u64, out: &mut [u8]) -> bool {
        let Some(p) = self.translate(bus, out.len()) else {
            return false;
        };
        // SAFETY: `translate` guarantees out.len() bytes at p inside a live region; the model
        // runs on the driver's thread, so no one writes the region concurrently.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
        true
    }

    pub fn write(&self, bus: u64, data: &[u8]) -> bool {
        let Some(p) = self.translate(bus, data.len()) else {
            return false;
        };
        // SAFETY: as in `read`; the destination is inside a live region we own.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        true
    }

    pub fn read_u64(&self, bus: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(bus, &mut b).then(|| u64::from_le_bytes(b))
    }

    pub fn read_u32(&self, bus: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(bus, &mut b).then(|| u32::from_le_bytes(b))
    }
}

impl Drop for BusMemory {
    fn drop(&mut self) {
        for r in &self.regions {
            // SAFETY: each region was allocated with exactly this layout and is freed once.
            unsafe { dealloc(r.ptr.as_ptr(), r.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_reached_by_bus_address_only_within_bounds() {
        let mut m = BusMemory::new();
        let (_, a) = m.alloc(100);
        let (_, b) = m.alloc(5000);
        assert!(m.write(a, &[1, 2, 3]));
        let mut out = [0u8; 3];
        assert!(m.read(a, &mut out));
        assert_eq!(out, [1, 2, 3]);
        assert!(m.write(b + 8000, &[9; 192]));
        assert!(!m.write(b + 8190, &[9; 4]), "crosses the end of the region");
        assert!(!m.read(a + PAGE as u64, &mut out), "guard gap is unmapped");
        assert!(!m.read(0, &mut out));
    }
}
