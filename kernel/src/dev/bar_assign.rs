//! Addresses for BARs that no firmware assigned.
//!
//! On bare QEMU, SeaBIOS assigns every BAR before the kernel starts. A Xen HVM driver domain
//! booted through `firmware_override` runs no hvmloader, and hvmloader is what normally places
//! the passed-through device's BARs in the guest's MMIO hole: there they read back as 0 and the
//! kernel must place them itself before a claim can map them.
//!
//! Owns: [`plan`], which places every unassigned BAR of the root bus's endpoints in the given
//! windows, and [`apply`], which programs the plan (decoding off while a BAR changes) and updates
//! the enumerated functions to match.
//!
//! Invariants of a plan: every placed BAR is naturally aligned to its size, memory BARs to at
//! least a page (so no two functions ever share a page, which `dev::claim` would refuse); no two
//! BARs overlap each other or a BAR firmware already assigned; everything lies inside its window.
//! Functions behind bridges are not placed (the bridge's own windows would have to be planned
//! too; no target platform needs that) and are reported instead.

use alloc::vec::Vec;
use core::fmt;

use super::pci::{BarKind, Bdf, ConfigAccess, Function, reg};

/// A half-open address range [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

/// hvmloader's default PCI memory hole below 4 GiB (0xF0000000..0xFC000000): the IO-APIC, HPET
/// and local APIC sit above it. The kernel must still check it against the memory map.
pub const XEN_HVM_MEM32: Window = Window {
    start: 0xF000_0000,
    end: 0xFC00_0000,
};
/// The conventional PCI I/O port window, above the legacy ISA ports.
pub const IO_WINDOW: Window = Window {
    start: 0xC000,
    end: 0x1_0000,
};

/// One BAR to program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub bdf: Bdf,
    pub bar: u8,
    pub kind: BarKind,
    pub address: u64,
}

/// A BAR that could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unplaced {
    NoSpace { bdf: Bdf, bar: u8, size: u64 },
    BehindBridge { bdf: Bdf, bar: u8 },
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, bar) = match *self {
            Unplaced::NoSpace { bdf, bar, .. } | Unplaced::BehindBridge { bdf, bar } => (bdf, bar),
        };
        write!(
            f,
            "{:02x}:{:02x}.{} BAR{bar} left unassigned: ",
            b.bus, b.device, b.function
        )?;
        match *self {
            Unplaced::NoSpace { size, .. } => write!(f, "no room for {size:#x} bytes"),
            Unplaced::BehindBridge { .. } => write!(f, "it is behind a bridge"),
        }
    }
}

/// Places the unassigned BARs of `functions`' endpoints on `root_bus`: memory BARs in `mem32`
/// (64-bit BARs in `mem64` first when given), I/O BARs in `io`. Largest first, each at the lowest
/// free naturally aligned address.
pub fn plan(
    functions: &[Function],
    root_bus: u8,
    mem32: Window,
    mem64: Option<Window>,
    io: Window,
) -> (Vec<Assignment>, Vec<Unplaced>) {
    // Ranges already taken, per space: (start, end).
    let mut mem_used: Vec<(u64, u64)> = Vec::new();
    let mut io_used: Vec<(u64, u64)> = Vec::new();
    let mut wanted = Vec::new();
    let mut unplaced = Vec::new();
    for f in functions {
        for b in &f.bars {
            let used = if b.is_memory() {
                &mut mem_used
            } else {
                &mut io_used
            };
            if b.address != 0 {
                used.push((b.address, b.address.saturating_add(b.size)));
            } else if !f.is_endpoint() || f.bdf.bus != root_bus {
                unplaced.push(Unplaced::BehindBridge {
                    bdf: f.bdf,
                    bar: b.index,
                });
            } else {
                wanted.push((f.bdf, b.index, b.kind, b.size));
            }
        }
    }
    // Largest first keeps natural alignment from fragmenting the window; ties in bus order.
    wanted.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut placed = Vec::new();
    for (bdf, bar, kind, size) in wanted {
        let (align, windows, used) = match kind {
            BarKind::Io => (size.max(4), [Some(io), None], &mut io_used),
            BarKind::Memory32 => (size.max(4096), [Some(mem32), None], &mut mem_used),
            BarKind::Memory64 => (size.max(4096), [mem64, Some(mem32)], &mut mem_used),
        };
        match windows
            .iter()
            .flatten()
            .find_map(|w| lowest_fit(*w, align, used))
        {
            Some(address) => {
                used.push((address, address + align));
                placed.push(Assignment {
                    bdf,
                    bar,
                    kind,
                    address,
                });
            }
            None => unplaced.push(Unplaced::NoSpace { bdf, bar, size }),
        }
    }
    (placed, unplaced)
}

/// The lowest address in `w` aligned to `size` (a power of two) where `size` bytes overlap
/// nothing in `used`.
fn lowest_fit(w: Window, size: u64, used: &[(u64, u64)]) -> Option<u64> {
    let mut at = w.start.checked_next_multiple_of(size)?;
    loop {
        let end = at.checked_add(size)?;
        if end > w.end {
            return None;
        }
        match used
            .iter()
            .filter(|&&(s, e)| s < end && at < e)
            .map(|&(_, e)| e)
            .max()
        {
            None => return Some(at),
            Some(blocker_end) => at = blocker_end.checked_next_multiple_of(size)?,
        }
    }
}

/// Programs `plan` through `config` and records the addresses in `functions`. Each function's
/// memory and I/O decoding is off while its BARs change, and restored afterwards.
pub fn apply<A: ConfigAccess + ?Sized>(
    config: &A,
    functions: &mut [Function],
    plan: &[Assignment],
) {
    for a in plan {
        let offset = reg::BAR0 + u16::from(a.bar) * 4;
        let command = config.read32(a.bdf, reg::COMMAND) & 0xFFFF;
        config.write32(a.bdf, reg::COMMAND, command & !0b11);
        let flags = config.read32(a.bdf, offset) & if a.kind == BarKind::Io { 0x3 } else { 0xF };
        config.write32(a.bdf, offset, (a.address as u32 & !0xF) | flags);
        if a.kind == BarKind::Memory64 {
            config.write32(a.bdf, offset + 4, (a.address >> 32) as u32);
        }
        config.write32(a.bdf, reg::COMMAND, command);
        if let Some(bar) = functions
            .iter_mut()
            .filter(|f| f.bdf == a.bdf)
            .flat_map(|f| f.bars.iter_mut())
            .find(|b| b.index == a.bar)
        {
            bar.address = a.address;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::pci::fake::{FakeFunction, FakePci, bdf};
    use crate::dev::pci::{LEGACY_CONFIG_SIZE, enumerate, read_function};
    use std::vec;

    /// The igb as a Xen HVM guest sees it without hvmloader: BARs sized but at 0.
    fn unassigned_igb(pci: &FakePci, at: Bdf) {
        pci.add(
            at,
            FakeFunction::new(0x8086, 0x10c9, 2, 0, 0)
                .mem32(0, 0, 128 << 10)
                .mem32(1, 0, 128 << 10)
                .io(2, 0, 32)
                .mem32(3, 0, 16 << 10),
        );
    }

    #[test]
    fn unassigned_bars_are_placed_aligned_and_apart() {
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        // Firmware-assigned neighbour occupying the start of the window.
        pci.add(
            bdf(0, 2, 0),
            FakeFunction::new(0x1234, 0x1111, 3, 0, 0).mem32(0, 0xF000_0000, 16 << 20),
        );
        unassigned_igb(&pci, bdf(0, 4, 0));
        pci.add(
            bdf(0, 5, 0),
            FakeFunction::new(0x1af4, 0x1041, 2, 0, 0)
                .mem64(0, 0, 16 << 10, true)
                .mem32(2, 0, 256),
        );
        let mut fs = enumerate(&pci, 0, 0);
        let (placed, unplaced) = plan(&fs, 0, XEN_HVM_MEM32, None, IO_WINDOW);
        assert!(unplaced.is_empty(), "{unplaced:?}");
        let got: Vec<_> = placed
            .iter()
            .map(|a| (a.bdf.device, a.bar, a.address))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, 0, 0xF100_0000),
                (4, 1, 0xF102_0000),
                (4, 3, 0xF104_0000),
                (5, 0, 0xF104_4000),
                (5, 2, 0xF104_8000),
                (4, 2, 0xC000),
            ]
        );
        apply(&pci, &mut fs, &placed);
        // The device now decodes what the plan says, and a re-read agrees with the records.
        let igb = read_function(&pci, bdf(0, 4, 0)).unwrap();
        let bars: Vec<_> = igb
            .bars
            .iter()
            .map(|b| (b.index, b.address, b.size))
            .collect();
        assert_eq!(
            bars,
            vec![
                (0, 0xF100_0000, 128 << 10),
                (1, 0xF102_0000, 128 << 10),
                (2, 0xC000, 32),
                (3, 0xF104_0000, 16 << 10)
            ]
        );
        assert_eq!(
            fs.iter().find(|f| f.bdf == bdf(0, 4, 0)).unwrap().bars,
            igb.bars
        );
        let v = read_function(&pci, bdf(0, 5, 0)).unwrap();
        assert_eq!(v.bars[0].kind, BarKind::Memory64);
        assert_eq!(v.bars[0].address, 0xF104_4000);
        assert!(v.bars[0].prefetchable, "flag bits survive");
    }

    #[test]
    fn sixty_four_bit_bars_prefer_the_high_window_and_full_windows_are_reported() {
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        pci.add(
            bdf(0, 3, 0),
            FakeFunction::new(1, 2, 2, 0, 0).mem64(0, 0, 1 << 20, true),
        );
        unassigned_igb(&pci, bdf(0, 4, 0));
        let fs = enumerate(&pci, 0, 0);
        let high = Window {
            start: 0x10_0000_0000,
            end: 0x20_0000_0000,
        };
        let tiny = Window {
            start: 0xF000_0000,
            end: 0xF003_0000,
        };
        let (placed, unplaced) = plan(&fs, 0, tiny, Some(high), IO_WINDOW);
        assert_eq!(placed[0].address, 0x10_0000_0000);
        // 192 KiB fit one 128K BAR and the 16K one, not the second 128K BAR.
        assert_eq!(
            unplaced,
            vec![Unplaced::NoSpace {
                bdf: bdf(0, 4, 0),
                bar: 1,
                size: 128 << 10
            }]
        );
        assert_eq!(
            std::format!("{}", unplaced[0]),
            "00:04.0 BAR1 left unassigned: no room for 0x20000 bytes"
        );
    }

    #[test]
    fn bars_behind_bridges_are_reported_not_placed() {
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        let mut bridge = FakeFunction::new(0x8086, 0x244e, 6, 4, 1);
        bridge.config[6] = 0x0001_0100;
        pci.add(bdf(0, 1, 0), bridge);
        unassigned_igb(&pci, bdf(1, 0, 0));
        let fs = enumerate(&pci, 0, 0);
        let (placed, unplaced) = plan(&fs, 0, XEN_HVM_MEM32, None, IO_WINDOW);
        assert!(placed.is_empty());
        assert_eq!(unplaced.len(), 4);
        assert!(matches!(unplaced[0], Unplaced::BehindBridge { bar: 0, .. }));
    }
}
