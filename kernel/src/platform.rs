//! What the kernel learns about the machine at boot: ACPI (APICs, ECAM, HPET), the PCI
//! configuration mechanism, and the monotonic clock.
//!
//! Owns: the kernel's `AcpiHandler` (tables are mapped read-only in kernel space as they are
//! named: firmware puts them in reserved memory the RAM map leaves out), the choice of ECAM (MCFG
//! present) or the 0xCF8/0xCFC ports, and the TSC clock calibrated against the HPET, or taken from
//! Xen's CPUID leaf where a PVH domain has neither HPET nor PIT, or from the PIT-calibrated APIC
//! timer as the last resort.

extern crate alloc;

use alloc::boxed::Box;
use core::ptr::NonNull;
use log::{info, warn};

use kernel::dev::acpi::{self, Platform};
use kernel::dev::mmio::Mmio;
use kernel::dev::pci::ConfigAccess;
use kernel::dev::pci_access::{EcamAccess, EcamMmio, PortAccess};
use kernel::dev::time::{self, Clock, Hpet, HpetCalibration};

use crate::boot_sequence::map_kernel_mmio;
use crate::devices::{PhysMmio, Ports};

/// Maps ACPI tables through the kernel's identity map, mapping their pages on first use.
#[derive(Clone, Copy)]
struct Handler;

impl ::acpi::AcpiHandler for Handler {
    unsafe fn map_physical_region<T>(
        &self,
        phys: usize,
        size: usize,
    ) -> ::acpi::PhysicalMapping<Self, T> {
        map_kernel_mmio(phys as u64, size as u64);
        // SAFETY: the range is identity-mapped now; the acpi crate reads at most `size` bytes.
        unsafe {
            ::acpi::PhysicalMapping::new(
                phys,
                NonNull::new_unchecked(phys as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &::acpi::PhysicalMapping<Self, T>) {
        // The identity mapping stays: tables are read again later (MCFG, HPET) and mapping is
        // idempotent.
    }
}

/// Reads ACPI from the RSDP the start info gave (0 when there is none).
pub fn discover(rsdp: u64) -> Platform {
    // SAFETY: `rsdp` comes from the loader's start info; the handler maps whatever the tables
    // name.
    let p = unsafe { acpi::discover(Handler, rsdp) };
    // `acpi::discover` logs what it found and every default it used.
    p
}

impl EcamMmio for PhysMmio {
    fn write16(&self, offset: usize, value: u16) {
        let shift = (offset & 3) * 8;
        let word = self.read32(offset & !3);
        let mask = 0xffffu32 << shift;
        self.write32(offset & !3, (word & !mask) | (u32::from(value) << shift));
    }

    fn write8(&self, offset: usize, value: u8) {
        let shift = (offset & 3) * 8;
        let word = self.read32(offset & !3);
        let mask = 0xffu32 << shift;
        self.write32(offset & !3, (word & !mask) | (u32::from(value) << shift));
    }
}

/// ECAM when the MCFG describes segment 0, the configuration ports otherwise.
pub fn config_access(p: &Platform) -> Box<dyn ConfigAccess + Send + Sync> {
    match p.ecam.iter().find(|r| r.segment == 0 && r.bus_start == 0) {
        Some(region) => {
            map_kernel_mmio(region.base, region.len());
            info!(
                "pci: ECAM at {:#x} for buses {}..={}",
                region.base, region.bus_start, region.bus_end
            );
            let mmio = PhysMmio::new(region.base, region.len() as usize);
            Box::new(EcamAccess::new(*region, mmio))
        }
        None => {
            info!("pci: configuration through ports 0xcf8/0xcfc");
            Box::new(PortAccess::new(Ports))
        }
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Xen's TSC frequency (CPUID leaf base+3, sub-leaf 0, ECX in kHz).
fn xen_tsc_hz() -> Option<u64> {
    use kernel::xen::cpuid::{Cpuid, NativeCpuid, find_leaves};
    let (base, _) = find_leaves(&NativeCpuid)?;
    let r = NativeCpuid.cpuid(base + 3);
    (r.ecx != 0).then(|| u64::from(r.ecx) * 1000)
}

pub static CLOCK: spin::Once<Clock> = spin::Once::new();

/// Calibrates the TSC clock: HPET, else Xen's figure, else `fallback_hz`.
pub fn init_clock(p: &Platform, fallback_hz: u64) {
    let start = rdtsc();
    let measured = p.hpet.and_then(|h| {
        map_kernel_mmio(h.base, 1024);
        let hpet = Hpet::new(PhysMmio::new(h.base, 1024)).ok()?;
        hpet.enable();
        let mut src = HpetCalibration { hpet, tsc: rdtsc };
        match time::calibrate(&mut src, 1_000_000, 5, 100_000_000) {
            Ok(hz) => Some((hz, "HPET")),
            Err(e) => {
                warn!("clock: HPET calibration failed: {e}");
                None
            }
        }
    });
    let (hz, source) = measured
        .or_else(|| xen_tsc_hz().map(|hz| (hz, "Xen CPUID")))
        .unwrap_or((fallback_hz, "the PIT-calibrated APIC timer"));
    match Clock::new(hz, start) {
        Ok(c) => {
            CLOCK.call_once(|| c);
            info!("clock: TSC at {} kHz (from {source})", hz / 1000);
        }
        Err(e) => warn!("clock: {e}; uptime falls back to timer ticks"),
    }
}

/// Nanoseconds since the clock started (0 before it has).
pub fn now_ns() -> u64 {
    CLOCK.get().map_or(0, |c| c.now_ns(rdtsc()))
}
