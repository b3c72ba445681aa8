//! The driver core's edges backed by the kernel: registers through the BAR window the kernel
//! mapped, DMA memory from `dma_alloc`, delays from the kernel clock, and the claimed device as
//! the task-info page describes it.
//!
//! Invariants: every `unsafe` here rests on the kernel's promises in `nc2dd_abi::layout` (a BAR
//! stays mapped uncached for the task's life; DMA memory is page-aligned, contiguous, zeroed,
//! pinned and mapped for the task's life) and on bounds checked in this file.

use core::ptr::NonNull;

use nic_ixgbe::{Delay, Dma, DmaError, DmaRegion, Mmio};
use userland::syscall;

/// Why the claimed device cannot be driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// No claim of this task was bound to a function at boot.
    NotPresent,
    /// BAR 0 is not mapped, or too small for the register map.
    NoRegisterBar,
    /// The config space does not name the device the task info says.
    IdMismatch { config: u32 },
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceError::NotPresent => {
                f.write_str("no device: the kernel bound none of this task's claims")
            }
            DeviceError::NoRegisterBar => f.write_str("BAR 0 is not mapped or too small"),
            DeviceError::IdMismatch { config } => write!(
                f,
                "config space reads {:04x}:{:04x}, not the claimed device",
                config & 0xFFFF,
                config >> 16
            ),
        }
    }
}

/// Register map size the driver needs (the 82576's BAR 0 is 128 KiB).
pub const MIN_BAR0: u64 = 128 << 10;

/// Vectors a claim can route (`nc2dd_abi::layout::MAX_DEVICE_VECTORS`).
pub const MAX_VECTORS: usize = 16;

/// The claimed device as the task-info page describes it, copied once at start.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// Index of the claim in the task info: the `irq_ack` device argument.
    pub index: usize,
    pub bdf: u64,
    pub vendor: u16,
    pub device: u16,
    /// Notification bit of each routed MSI-X vector (`None` when the vector has none).
    pub vector_bits: [Option<u8>; MAX_VECTORS],
    pub vectors: usize,
    pub bar0: (u64, u64),
}

impl Claim {
    /// The first claim the kernel bound to a function.
    pub fn find() -> Result<Self, DeviceError> {
        let (index, d) = userland::info()
            .devices()
            .iter()
            .enumerate()
            .find(|(_, d)| d.present == 1)
            .ok_or(DeviceError::NotPresent)?;
        let vectors = (d.vectors as usize).min(MAX_VECTORS);
        let mut vector_bits = [None; MAX_VECTORS];
        for (slot, &bit) in vector_bits.iter_mut().zip(&d.vector_bits[..vectors]) {
            // Bits are 0..63; anything else (the table's "no bit" marker) routes nowhere.
            *slot = (bit < 64).then_some(bit);
        }
        Ok(Self {
            index,
            bdf: d.bdf,
            vendor: d.vendor,
            device: d.device,
            vector_bits,
            vectors,
            bar0: (d.bars[0].vaddr, d.bars[0].size),
        })
    }

    /// The notification bits of all routed vectors.
    pub fn vector_mask(&self) -> u64 {
        self.vector_bits[..self.vectors]
            .iter()
            .flatten()
            .fold(0, |m, &b| m | (1u64 << b))
    }

    /// Checks the function's config space against the claim (the kernel wrote both; a mismatch
    /// means the wrong function is mapped and nothing may be touched).
    pub fn check_config(&self) -> Result<(), DeviceError> {
        let id = syscall::dev_config_read(self.bdf, 0, 4);
        let want = u32::from(self.vendor) | (u32::from(self.device) << 16);
        if id != want {
            return Err(DeviceError::IdMismatch { config: id });
        }
        Ok(())
    }

    /// Register access over BAR 0.
    pub fn registers(&self) -> Result<Mmio, DeviceError> {
        let (vaddr, size) = self.bar0;
        if vaddr == 0 || size < MIN_BAR0 || !vaddr.is_multiple_of(4096) {
            return Err(DeviceError::NoRegisterBar);
        }
        let base = NonNull::new(vaddr as *mut u32).ok_or(DeviceError::NoRegisterBar)?;
        let len = usize::try_from(size).map_err(|_| DeviceError::NoRegisterBar)?;
        // SAFETY: the kernel maps BAR 0 of this claim at `vaddr`, page-aligned (checked),
        // `size` bytes, uncached, for as long as the task lives (nc2dd_abi::layout).
        Ok(unsafe { Mmio::new(base, len) })
    }
}

/// PCI address as `ssss:bb:dd.f`, from `pack_bdf`'s layout.
pub struct Bdf(pub u64);

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            (b >> 16) & 0xFFFF,
            (b >> 8) & 0xFF,
            (b >> 3) & 0x1F,
            b & 7
        )
    }
}

/// Device memory from the task's DMA budget.
pub struct KernelDma;

impl KernelDma {
    /// `len` bytes rounded up to whole pages, as a raw (pointer, bus address, length).
    fn raw(len: usize) -> Result<(NonNull<u8>, u64, usize), DmaError> {
        let len = len.max(1).div_ceil(4096) * 4096;
        let (ptr, bus) = syscall::dma_alloc(len).ok_or(DmaError::Exhausted)?;
        let ptr = NonNull::new(ptr).ok_or(DmaError::Exhausted)?;
        Ok((ptr, bus, len))
    }
}

impl Dma for KernelDma {
    fn alloc(&mut self, len: usize) -> Result<DmaRegion, DmaError> {
        let (ptr, bus, len) = Self::raw(len)?;
        // SAFETY: the kernel hands out page-aligned (so 128-byte aligned), zeroed memory of
        // `len` bytes mapped into this task for its whole life, at bus address `bus`; this is
        // the only CPU-side handle to it.
        Ok(unsafe { DmaRegion::new(ptr, bus, len) })
    }
}

/// Fixed-size packet buffers in one DMA region: buffer `i` is at `bus + i * size` for the NIC
/// and copied in and out through volatile accesses for the CPU (the NIC writes them
/// concurrently, so no reference into them is ever formed).
pub struct Buffers {
    ptr: NonNull<u8>,
    bus: u64,
    size: usize,
    count: usize,
}

impl Buffers {
    pub fn new(count: usize, size: usize) -> Result<Self, DmaError> {
        let total = count.checked_mul(size).ok_or(DmaError::Exhausted)?;
        let (ptr, bus, _) = KernelDma::raw(total)?;
        Ok(Self {
            ptr,
            bus,
            size,
            count,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Bus address of buffer `i`.
    pub fn bus(&self, i: usize) -> Option<u64> {
        (i < self.count).then(|| self.bus + (i * self.size) as u64)
    }

    fn span(&self, i: usize, len: usize) -> Option<*mut u8> {
        if i >= self.count || len > self.size {
            return None;
        }
        // SAFETY: i < count and the region is count * size bytes, so the offset stays inside.
        Some(unsafe { self.ptr.as_ptr().add(i * self.size) })
    }

    /// Copies the first `out.len()` bytes of buffer `i` out; false if that is out of range.
    pub fn read(&self, i: usize, out: &mut [u8]) -> bool {
        let Some(p) = self.span(i, out.len()) else {
            return false;
        };
        for (k, b) in out.iter_mut().enumerate() {
            // SAFETY: `span` checked that [p, p + out.len()) lies inside buffer i.
            *b = unsafe { p.add(k).read_volatile() };
        }
        true
    }

    /// Copies `data` into the start of buffer `i`; false if it does not fit.
    pub fn write(&self, i: usize, data: &[u8]) -> bool {
        let Some(p) = self.span(i, data.len()) else {
            return false;
        };
        for (k, b) in data.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { p.add(k).write_volatile(*b) };
        }
        true
    }
}

/// Delays measured on the kernel's monotonic nanosecond clock, yielding while waiting, so the
/// datasheet's 10 us handshake polls stay short. When the kernel has no calibrated clock
/// (`now_ns` reads 0) the millisecond uptime serves instead: a delay then waits for
/// `ceil(us / 1000) + 1` ticks, because the clock may tick just after it is first read.
pub struct KernelDelay;

impl Delay for KernelDelay {
    fn delay_us(&mut self, us: u32) {
        let start = syscall::now_ns();
        if start != 0 {
            let until = start.saturating_add(u64::from(us) * 1000);
            while syscall::now_ns() < until {
                syscall::yield_now();
            }
            return;
        }
        let until = syscall::uptime_ms() + u64::from(us.div_ceil(1000)) + 1;
        while syscall::uptime_ms() < until {
            syscall::yield_now();
        }
    }
}
