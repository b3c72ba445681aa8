//! The edges of the driver core: register access, DMA memory and time.
//!
//! In the image these are backed by the mapped BAR, the kernel's `dma_alloc` and the timer;
//! on the host by the software model. Everything else in the crate is plain logic over them.
//! [`DmaRegion`] is the one place that touches device-shared memory through a raw pointer; it
//! bounds-checks every access, so the rest of the crate needs no `unsafe`.

use core::ptr::NonNull;

/// 32-bit access to the NIC's register BAR.
pub trait RegisterAccess {
    fn read32(&self, off: u32) -> u32;
    fn write32(&self, off: u32, v: u32);

    fn set32(&self, off: u32, bits: u32) {
        self.write32(off, self.read32(off) | bits);
    }
    fn clear32(&self, off: u32, bits: u32) {
        self.write32(off, self.read32(off) & !bits);
    }
}

/// Register access through a mapped BAR: volatile 32-bit loads and stores, bounds-checked
/// against the mapping so a wrong offset panics instead of touching other memory.
pub struct Mmio {
    base: NonNull<u32>,
    len: usize,
}

impl Mmio {
    /// # Safety
    /// `base` must be the start of a mapping of the device's register BAR, 4-byte aligned,
    /// `len` bytes long, mapped uncached, and valid for the life of this value.
    pub unsafe fn new(base: NonNull<u32>, len: usize) -> Self {
        Self { base, len }
    }

    fn reg(&self, off: u32) -> *mut u32 {
        let off = off as usize;
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "register offset outside the BAR"
        );
        // SAFETY: checked just above that the register lies inside the mapping.
        unsafe { self.base.as_ptr().add(off / 4) }
    }
}

impl RegisterAccess for Mmio {
    fn read32(&self, off: u32) -> u32 {
        // SAFETY: `reg` bounds-checks; the mapping is valid per `new`'s contract, and device
        // registers must be read with exactly one volatile access.
        unsafe { self.reg(off).read_volatile() }
    }

    fn write32(&self, off: u32, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { self.reg(off).write_volatile(v) }
    }
}

/// Why DMA memory could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// The task's DMA budget is spent.
    Exhausted,
}

/// Source of device-visible memory.
pub trait Dma {
    /// Zeroed memory of `len` bytes, at least 128-byte aligned (descriptor rings need it).
    fn alloc(&mut self, len: usize) -> Result<DmaRegion, DmaError>;
}

/// Busy-wait time source for the register handshakes the datasheet asks to poll.
pub trait Delay {
    fn delay_us(&mut self, us: u32);
}

/// Memory the CPU and the device share: a CPU pointer and the bus address the device uses.
pub struct DmaRegion {
    ptr: NonNull<u8>,
    bus: u64,
    len: usize,
}

impl DmaRegion {
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, 128-byte aligned, and stay valid
    /// for as long as the region (or anything it is moved into) exists; only the device may
    /// access it besides this region, and `bus` must be where the device sees it.
    pub unsafe fn new(ptr: NonNull<u8>, bus: u64, len: usize) -> Self {
        Self { ptr, bus, len }
    }

    pub fn bus(&self) -> u64 {
        self.bus
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at<T>(&self, off: usize) -> *mut T {
        let size = core::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(size) && off.checked_add(size).is_some_and(|end| end <= self.len),
            "DMA access out of bounds or misaligned"
        );
        // SAFETY: checked just above that [off, off + size) lies inside the region, so the
        // offset pointer stays within the allocation the constructor vouched for.
        unsafe { self.ptr.as_ptr().add(off).cast::<T>() }
    }

    /// Volatile: the device may change it at any time.
    pub fn read_u64(&self, off: usize) -> u64 {
        // SAFETY: `at` bounds- and alignment-checks; the region is valid per `new`'s contract.
        unsafe { self.at::<u64>(off).read_volatile() }
    }

    pub fn write_u64(&self, off: usize, v: u64) {
        // SAFETY: as in `read_u64`.
        unsafe { self.at::<u64>(off).write_volatile(v) }
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        // SAFETY: as in `read_u64`.
        unsafe { self.at::<u32>(off).read_volatile() }
    }

    pub fn write_u32(&self, off: usize, v: u32) {
        // SAFETY: as in `read_u64`.
        unsafe { self.at::<u32>(off).write_volatile(v) }
    }

    pub fn read_u16(&self, off: usize) -> u16 {
        // SAFETY: as in `read_u64`.
        unsafe { self.at::<u16>(off).read_volatile() }
    }

    /// Fills the region with `byte` (ixy fills fresh rings with 0xFF so a stray early DMA
    /// stands out instead of looking like a completed descriptor).
    pub fn fill(&self, byte: u8) {
        let word = u64::from_ne_bytes([byte; 8]);
        for off in (0..self.len & !7).step_by(8) {
            self.write_u64(off, word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_reads_and_writes_whole_registers_inside_the_bar() {
        let mut bar = vec![0u32; 16];
        let base = NonNull::new(bar.as_mut_ptr()).unwrap();
        // SAFETY: `bar` outlives `m` and is only accessed through it below.
        let m = unsafe { Mmio::new(base, 64) };
        m.write32(0x3C, 0xDEAD_BEEF);
        m.set32(0x3C, 1);
        assert_eq!(m.read32(0x3C), 0xDEAD_BEEF);
        m.clear32(0x3C, 0xF);
        assert_eq!(m.read32(0x3C), 0xDEAD_BEE0);
        let r = std::panic::catch_unwind(|| m.read32(0x40));
        assert!(r.is_err(), "offset past the BAR is refused");
        assert_eq!(bar[15], 0xDEAD_BEE0);
    }

    #[test]
    fn dma_region_refuses_out_of_bounds_access() {
        let mut mem = vec![0u64; 4];
        let ptr = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `mem` outlives `r`; 32 bytes, 8-byte aligned (enough for this test).
        let r = unsafe { DmaRegion::new(ptr, 0x1000, 32) };
        r.write_u64(24, 7);
        assert_eq!(r.read_u32(24), 7);
        r.fill(0xFF);
        assert_eq!(r.read_u16(30), 0xFFFF);
        assert!(std::panic::catch_unwind(|| r.read_u64(32)).is_err());
        assert!(
            std::panic::catch_unwind(|| r.read_u32(2)).is_err(),
            "misaligned"
        );
        assert_eq!(mem[0], u64::MAX);
    }
}
