//! The kernel's own page tables: which physical ranges are identity-mapped, with what rights.
//!
//! Owns: the mapping plan (a pure function of the memory map and the kernel image layout, unit
//! tested on the host) and applying a plan to a fresh level-4 table through the `x86_64` crate's
//! mapper. Invariants of every plan: nothing is both writable and executable (W^X); only the
//! kernel's text is executable; page 0 is never mapped, so a null dereference faults; no entry
//! is user-accessible (kernel memory is supervisor-only).

use alloc::vec::Vec;
use x86_64::structures::paging::mapper::{MapToError, MapperFlush};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTableFlags as F, PhysFrame,
    Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::boot::start_info::{MemoryRegion, MemoryType};

pub const PAGE: u64 = 4096;
pub const HUGE: u64 = 2 * 1024 * 1024;

/// Where the linker put the kernel's sections (page aligned, from the linker script).
#[derive(Clone, Copy, Debug)]
pub struct KernelImage {
    /// Read-only data, including the PVH note: `[start, text_start)`.
    pub start: u64,
    pub text_start: u64,
    /// Writable data and bss: `[text_end, end)`.
    pub text_end: u64,
    pub end: u64,
}

/// One identity-mapped range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub flags: F,
}

fn data_flags() -> F {
    F::PRESENT | F::WRITABLE | F::NO_EXECUTE
}

/// The kernel mapping plan: RAM read-write and non-executable, the kernel image per section,
/// ACPI tables read-only. Regions are page aligned and do not overlap.
pub fn plan(memmap: &[MemoryRegion], image: &KernelImage) -> Vec<Region> {
    let mut out = Vec::new();
    for r in memmap {
        let flags = match r.kind {
            MemoryType::Ram => data_flags(),
            MemoryType::AcpiReclaimable | MemoryType::AcpiNvs => F::PRESENT | F::NO_EXECUTE,
            _ => continue,
        };
        // Page 0 stays unmapped; partial pages at the ends of a region are left out.
        let start = (r.start.div_ceil(PAGE) * PAGE).max(PAGE);
        let end = r.end() / PAGE * PAGE;
        if start >= end {
            continue;
        }
        // Cut the kernel image out; it is mapped section by section below.
        if start < image.start {
            out.push(Region {
                start,
                end: end.min(image.start),
                flags,
            });
        }
        if end > image.end {
            out.push(Region {
                start: start.max(image.end),
                end,
                flags,
            });
        }
    }
    out.push(Region {
        start: image.start,
        end: image.text_start,
        flags: F::PRESENT | F::NO_EXECUTE,
    });
    out.push(Region {
        start: image.text_start,
        end: image.text_end,
        flags: F::PRESENT,
    });
    out.push(Region {
        start: image.text_end,
        end: image.end,
        flags: data_flags(),
    });
    out.retain(|r| r.start < r.end);
    out.sort_by_key(|r| r.start);
    out
}

/// Adds read-only, non-executable mappings for loader data (start info, memory map, module list,
/// command line, modules) that the memory map does not report as RAM, page by page, merging
/// neighbours. (Xen's HVM `firmware_override` path puts the start info below 1 MiB, outside the
/// one RAM range it reports.) Pages already planned keep their rights.
pub fn add_loader_ranges(plan: &mut Vec<Region>, ranges: &[(u64, u64)]) {
    let mut extra: Vec<Region> = Vec::new();
    for &(start, len) in ranges {
        if len == 0 {
            continue;
        }
        let first = start / PAGE * PAGE;
        let end = (start.saturating_add(len)).div_ceil(PAGE) * PAGE;
        let mut page = first.max(PAGE);
        while page < end {
            let covered = plan
                .iter()
                .chain(extra.iter())
                .any(|r| r.start <= page && page < r.end);
            if !covered {
                match extra.last_mut() {
                    Some(r) if r.end == page => r.end += PAGE,
                    _ => extra.push(Region {
                        start: page,
                        end: page + PAGE,
                        flags: F::PRESENT | F::NO_EXECUTE,
                    }),
                }
            }
            page += PAGE;
        }
    }
    plan.extend(extra);
    plan.sort_by_key(|r| r.start);
}

/// Identity-maps `region` into `table`, with 2 MiB pages where alignment allows.
///
/// # Safety
/// Creating mappings can break memory safety if they alias memory in use under other rights;
/// the caller must pass a table that is not active yet (or regions that match what is mapped).
pub unsafe fn map_region(
    table: &mut OffsetPageTable<'_>,
    region: &Region,
    frames: &mut impl FrameAllocator<Size4KiB>,
) -> Result<(), MapToError<Size4KiB>> {
    let mut at = region.start;
    while at < region.end {
        if at.is_multiple_of(HUGE) && region.end - at >= HUGE {
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(at));
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(at));
            // SAFETY: forwarded from the caller.
            let r = unsafe {
                table.map_to_with_table_flags(
                    page,
                    frame,
                    region.flags | F::HUGE_PAGE,
                    F::PRESENT | F::WRITABLE,
                    frames,
                )
            };
            r.map(MapperFlush::ignore).map_err(|e| match e {
                MapToError::FrameAllocationFailed => MapToError::FrameAllocationFailed,
                MapToError::ParentEntryHugePage => MapToError::ParentEntryHugePage,
                MapToError::PageAlreadyMapped(f) => {
                    MapToError::PageAlreadyMapped(PhysFrame::containing_address(f.start_address()))
                }
            })?;
            at += Size2MiB::SIZE;
        } else {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(at));
            let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(at));
            // SAFETY: forwarded from the caller.
            unsafe {
                table.map_to_with_table_flags(
                    page,
                    frame,
                    region.flags,
                    F::PRESENT | F::WRITABLE,
                    frames,
                )
            }
            .map(MapperFlush::ignore)?;
            at += Size4KiB::SIZE;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86_64::structures::paging::PageTable;
    use x86_64::structures::paging::mapper::{MappedFrame, Translate, TranslateResult};

    fn ram(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            len,
            kind: MemoryType::Ram,
        }
    }

    fn image() -> KernelImage {
        KernelImage {
            start: 0x10_0000,
            text_start: 0x10_3000,
            text_end: 0x12_0000,
            end: 0x14_0000,
        }
    }

    fn qemu_map() -> Vec<MemoryRegion> {
        vec![
            ram(0, 0x9fc00),
            MemoryRegion {
                start: 0xf0000,
                len: 0x10000,
                kind: MemoryType::Reserved,
            },
            ram(0x10_0000, 0x7ee_0000),
            MemoryRegion {
                start: 0x7fe_0000,
                len: 0x20000,
                kind: MemoryType::AcpiReclaimable,
            },
        ]
    }

    #[test]
    fn plan_is_wx_exclusive_and_leaves_page_zero_out() {
        let p = plan(&qemu_map(), &image());
        for r in &p {
            assert!(
                !r.flags.contains(F::WRITABLE) || r.flags.contains(F::NO_EXECUTE),
                "{r:?} is writable and executable"
            );
            assert!(!r.flags.contains(F::USER_ACCESSIBLE));
            assert_eq!(r.start % PAGE, 0);
            assert_eq!(r.end % PAGE, 0);
            assert!(r.start >= PAGE, "page 0 mapped");
        }
        for w in p.windows(2) {
            assert!(w[0].end <= w[1].start, "overlap {w:?}");
        }
        let exec: Vec<_> = p
            .iter()
            .filter(|r| !r.flags.contains(F::NO_EXECUTE))
            .collect();
        assert_eq!(exec.len(), 1);
        assert_eq!((exec[0].start, exec[0].end), (0x10_3000, 0x12_0000));
        assert!(
            p.iter()
                .any(|r| r.start == 0x7fe_0000 && !r.flags.contains(F::WRITABLE))
        );
        assert!(
            !p.iter().any(|r| r.start < 0x10_0000 && r.end > 0x9f000),
            "BIOS hole mapped"
        );
    }

    #[test]
    fn loader_data_outside_ram_is_mapped_read_only() {
        let mut p = plan(&[ram(0x10_0000, 0x370_0000)], &image());
        let before = p.clone();
        // Start info at 0x7000 (outside RAM), a module inside RAM, one straddling RAM's end.
        add_loader_ranges(
            &mut p,
            &[(0x7010, 56), (0x20_0000, 0x5000), (0x37f_f000, 0x2000)],
        );
        let added: Vec<_> = p.iter().filter(|r| !before.contains(r)).collect();
        assert_eq!(added.len(), 2, "{added:?}");
        assert_eq!((added[0].start, added[0].end), (0x7000, 0x8000));
        assert_eq!((added[1].start, added[1].end), (0x380_0000, 0x380_1000));
        for r in added {
            assert!(!r.flags.contains(F::WRITABLE) && r.flags.contains(F::NO_EXECUTE));
        }
        for w in p.windows(2) {
            assert!(w[0].end <= w[1].start, "overlap {w:?}");
        }
        add_loader_ranges(&mut p, &[(0, 16)]);
        assert!(p.iter().all(|r| r.start >= PAGE), "page 0 stays unmapped");
    }

    /// Frames for page tables come from a host arena; with a physical offset of zero the mapper
    /// reads and writes them through their host addresses.
    struct Arena {
        tables: Vec<PageTable>,
        next: usize,
    }

    // SAFETY: every frame handed out is a distinct, unused, page-aligned arena slot.
    unsafe impl FrameAllocator<Size4KiB> for Arena {
        fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
            let t = self.tables.get_mut(self.next)?;
            self.next += 1;
            Some(PhysFrame::containing_address(PhysAddr::new(
                t as *mut PageTable as u64,
            )))
        }
    }

    #[test]
    fn applying_the_plan_maps_exactly_the_planned_rights() {
        let mut arena = Arena {
            tables: (0..64).map(|_| PageTable::new()).collect(),
            next: 0,
        };
        let mut l4 = Box::new(PageTable::new());
        // SAFETY: offset 0 is correct for host-arena frames; nothing runs on these tables.
        let mut table = unsafe { OffsetPageTable::new(&mut l4, VirtAddr::new(0)) };
        let p = plan(&qemu_map(), &image());
        for r in &p {
            // SAFETY: the table is inactive.
            unsafe { map_region(&mut table, r, &mut arena).unwrap() };
        }
        let lookup = |a: u64| match table.translate(VirtAddr::new(a)) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let base = match frame {
                    MappedFrame::Size4KiB(f) => f.start_address().as_u64(),
                    MappedFrame::Size2MiB(f) => f.start_address().as_u64(),
                    MappedFrame::Size1GiB(f) => f.start_address().as_u64(),
                };
                Some((base + offset, flags))
            }
            _ => None,
        };
        assert_eq!(lookup(0), None);
        assert_eq!(lookup(0x500), None);
        let (pa, f) = lookup(0x10_4010).unwrap();
        assert_eq!(pa, 0x10_4010);
        assert!(!f.contains(F::NO_EXECUTE) && !f.contains(F::WRITABLE));
        let (_, f) = lookup(0x10_0010).unwrap();
        assert!(f.contains(F::NO_EXECUTE) && !f.contains(F::WRITABLE));
        let (_, f) = lookup(0x13_0000).unwrap();
        assert!(f.contains(F::NO_EXECUTE) && f.contains(F::WRITABLE));
        let (pa, f) = lookup(0x40_0123).unwrap();
        assert_eq!(pa, 0x40_0123);
        assert!(
            f.contains(F::HUGE_PAGE),
            "aligned RAM should use 2 MiB pages"
        );
        assert_eq!(lookup(0x7fd_ffff).map(|x| x.0), Some(0x7fd_ffff));
        assert_eq!(lookup(0x800_0000), None);
        assert!(arena.next < 16, "{} table frames used", arena.next);
    }
}
