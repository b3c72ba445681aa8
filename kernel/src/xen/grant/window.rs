//! A task's grant window: where foreign grants are mapped, and the checks on every batched map,
//! unmap and copy a task asks for.
//!
//! The window is a run of page slots with two addresses each: the task-virtual address the task
//! sees, and the guest-physical address (in an unpopulated hole of our physmap) where Xen puts
//! the foreign frame (`host_addr` of `GNTTABOP_map_grant_ref` is a GPA on HVM/PVH). The kernel
//! maps slot VA -> slot GPA in the task's page tables after a successful map and removes that
//! mapping (and flushes the TLB) before asking for an unmap.
//!
//! Invariants:
//! - a slot is either free or holds exactly one live mapping with Xen's handle;
//! - a batch is checked completely before any hypercall: too many entries, a reserved domain, a
//!   slot that is not the task's live mapping, a duplicate in one unmap batch, or a copy side
//!   outside the task's memory or across a page reject the whole batch with the entry's index;
//! - per-entry failures reported by Xen leave the window consistent (a failed map frees its
//!   slot; a failed unmap keeps the mapping).

use alloc::vec::Vec;

use super::GrantHypervisor;
use crate::xen::abi::grant_table::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY, GnttabCopy,
    GnttabCopyPtr, GnttabMapGrantRef, GnttabStatus, GnttabUnmapGrantRef,
};
use crate::xen::abi::{DOMID_FIRST_RESERVED, DOMID_SELF, DomId, GrantHandle, GrantRef, PAGE_SIZE};
use crate::xen::hypercall::Errno;

/// Entries in one batched request.
pub const MAX_BATCH: usize = 256;

const PAGE: u64 = PAGE_SIZE as u64;

/// Where a window lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    /// First task-virtual address (page aligned).
    pub va_base: u64,
    /// First guest-physical address of the hole backing it (page aligned).
    pub gpa_base: u64,
    pub slots: u32,
}

/// Resolves a task's own (non-window) memory: the task's regions as the kernel knows them.
pub trait TaskMemory {
    /// The guest-physical address of task-virtual `va`, if `[va, va + len)` lies in one page of
    /// the task's memory and is writable when `write`.
    fn translate(&self, va: u64, len: u64, write: bool) -> Option<u64>;
}

/// One live foreign mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub dom: DomId,
    pub gref: GrantRef,
    pub handle: GrantHandle,
    pub readonly: bool,
}

/// A task asks to map `gref` of `dom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
}

/// Per-entry result of a map batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOutcome {
    /// Mapped: the task sees it at `va`; devices reach it at `gpa` (IOMMU permitting).
    Mapped { va: u64, gpa: u64 },
    /// Xen refused this entry (`Err` holds a status value Xen does not define).
    Failed(Result<GnttabStatus, i16>),
}

/// One side of a copy as the task names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySide {
    /// Bytes at `offset` in grant `gref` of `dom`.
    Grant {
        dom: DomId,
        gref: GrantRef,
        offset: u16,
    },
    /// Bytes at task-virtual `va`: own memory (copied as our frame), or a live window mapping
    /// (copied through the grant it maps).
    Local { va: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySegment {
    pub src: CopySide,
    pub dst: CopySide,
    pub len: u16,
}

/// Why a batch was refused before reaching Xen, or Xen failed the whole call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// More than [`MAX_BATCH`] entries, or an output slice of a different length.
    BadBatch { len: usize },
    /// Not enough free slots for the whole map batch.
    NoSpace { wanted: usize, free: usize },
    /// Entry `index` names a reserved domain id.
    BadDomain { index: usize, dom: DomId },
    /// Entry `index` of an unmap is not a live mapping of this window (or is unaligned).
    NotMapped { index: usize, va: u64 },
    /// Entry `index` of an unmap names a slot already named earlier in the batch.
    Duplicate { index: usize, va: u64 },
    /// Copy entry `index` has a zero length or a side that crosses its page.
    CrossesPage { index: usize },
    /// Copy entry `index` names local memory the task may not access that way.
    BadLocal { index: usize, va: u64 },
    /// Copy entry `index` writes through a read-only mapping.
    ReadOnly { index: usize, va: u64 },
    /// The hypercall itself failed; nothing was done.
    Xen(Errno),
}

/// A task's window.
pub struct GrantWindow {
    layout: WindowLayout,
    slots: Vec<Option<Mapping>>,
    free: Vec<u32>,
}

impl GrantWindow {
    pub fn new(layout: WindowLayout) -> Self {
        Self {
            layout,
            slots: alloc::vec![None; layout.slots as usize],
            free: (0..layout.slots).rev().collect(),
        }
    }

    pub fn layout(&self) -> WindowLayout {
        self.layout
    }

    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    fn va(&self, slot: u32) -> u64 {
        self.layout.va_base + u64::from(slot) * PAGE
    }

    fn gpa(&self, slot: u32) -> u64 {
        self.layout.gpa_base + u64::from(slot) * PAGE
    }

    /// The slot holding `va`'s page, whatever the offset within it.
    fn slot_of(&self, va: u64) -> Option<u32> {
        let off = va.checked_sub(self.layout.va_base)?;
        let slot = off / PAGE;
        (slot < u64::from(self.layout.slots)).then_some(slot as u32)
    }

    /// The live mapping at `va`, if any.
    pub fn mapping(&self, va: u64) -> Option<Mapping> {
        self.slot_of(va).and_then(|s| self.slots[s as usize])
    }

    /// VAs of all live mappings (to unmap them when the task dies).
    pub fn mapped_vas(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|_| self.va(i as u32)))
    }

    fn check_len(len: usize, out: usize) -> Result<(), WindowError> {
        if len > MAX_BATCH || len != out {
            return Err(WindowError::BadBatch { len });
        }
        Ok(())
    }

    /// Maps a batch of foreign grants; `out[i]` tells what became of `reqs[i]`.
    pub fn map(
        &mut self,
        hv: &impl GrantHypervisor,
        reqs: &[MapRequest],
        out: &mut [MapOutcome],
    ) -> Result<(), WindowError> {
        Self::check_len(reqs.len(), out.len())?;
        if let Some((index, r)) = reqs
            .iter()
            .enumerate()
            .find(|(_, r)| r.dom >= DOMID_FIRST_RESERVED)
        {
            return Err(WindowError::BadDomain { index, dom: r.dom });
        }
        if reqs.len() > self.free.len() {
            return Err(WindowError::NoSpace {
                wanted: reqs.len(),
                free: self.free.len(),
            });
        }
        let taken: Vec<u32> = (0..reqs.len()).filter_map(|_| self.free.pop()).collect();
        let mut ops: Vec<GnttabMapGrantRef> = reqs
            .iter()
            .zip(&taken)
            .map(|(r, &slot)| GnttabMapGrantRef {
                host_addr: self.gpa(slot),
                flags: GNTMAP_HOST_MAP | if r.readonly { GNTMAP_READONLY } else { 0 },
                r#ref: r.gref,
                dom: r.dom,
                ..Default::default()
            })
            .collect();
        if let Err(e) = hv.map(&mut ops) {
            self.free.extend(taken.iter().rev());
            return Err(WindowError::Xen(e));
        }
        for (i, ((op, r), &slot)) in ops.iter().zip(reqs).zip(&taken).enumerate() {
            out[i] = if op.status == GnttabStatus::Okay as i16 {
                self.slots[slot as usize] = Some(Mapping {
                    dom: r.dom,
                    gref: r.gref,
                    handle: op.handle,
                    readonly: r.readonly,
                });
                MapOutcome::Mapped {
                    va: self.va(slot),
                    gpa: self.gpa(slot),
                }
            } else {
                self.free.push(slot);
                MapOutcome::Failed(GnttabStatus::from_raw(op.status))
            };
        }
        Ok(())
    }

    /// Unmaps a batch of this window's mappings, named by their VAs; `out[i]` is Xen's status
    /// for `vas[i]` (the mapping is gone only where it is `Okay`).
    pub fn unmap(
        &mut self,
        hv: &impl GrantHypervisor,
        vas: &[u64],
        out: &mut [Result<GnttabStatus, i16>],
    ) -> Result<(), WindowError> {
        Self::check_len(vas.len(), out.len())?;
        let mut slots = Vec::with_capacity(vas.len());
        for (index, &va) in vas.iter().enumerate() {
            let slot = self
                .slot_of(va)
                .filter(|&s| va.is_multiple_of(PAGE) && self.slots[s as usize].is_some())
                .ok_or(WindowError::NotMapped { index, va })?;
            if slots.contains(&slot) {
                return Err(WindowError::Duplicate { index, va });
            }
            slots.push(slot);
        }
        let mut ops: Vec<GnttabUnmapGrantRef> = slots
            .iter()
            .map(|&s| GnttabUnmapGrantRef {
                host_addr: self.gpa(s),
                dev_bus_addr: 0,
                handle: self.slots[s as usize].map_or(0, |m| m.handle),
                status: 0,
            })
            .collect();
        hv.unmap(&mut ops).map_err(WindowError::Xen)?;
        for (i, (op, &slot)) in ops.iter().zip(&slots).enumerate() {
            out[i] = GnttabStatus::from_raw(op.status);
            if op.status == GnttabStatus::Okay as i16 {
                self.slots[slot as usize] = None;
                self.free.push(slot);
            }
        }
        Ok(())
    }

    fn copy_ptr(
        &self,
        mem: &impl TaskMemory,
        index: usize,
        side: CopySide,
        len: u16,
        write: bool,
    ) -> Result<(GnttabCopyPtr, bool), WindowError> {
        match side {
            CopySide::Grant { dom, gref, offset } => {
                if dom >= DOMID_FIRST_RESERVED {
                    return Err(WindowError::BadDomain { index, dom });
                }
                if usize::from(offset) + usize::from(len) > PAGE_SIZE {
                    return Err(WindowError::CrossesPage { index });
                }
                Ok((
                    GnttabCopyPtr {
                        u: u64::from(gref),
                        domid: dom,
                        offset,
                    },
                    true,
                ))
            }
            CopySide::Local { va } => {
                if va % PAGE + u64::from(len) > PAGE {
                    return Err(WindowError::CrossesPage { index });
                }
                if let Some(slot) = self.slot_of(va) {
                    // A foreign page mapped in the window is copied through its grant: Xen does
                    // not accept grant-mapped frames of our physmap as a plain frame operand.
                    let m = self.slots[slot as usize].ok_or(WindowError::BadLocal { index, va })?;
                    if write && m.readonly {
                        return Err(WindowError::ReadOnly { index, va });
                    }
                    let ptr = GnttabCopyPtr {
                        u: u64::from(m.gref),
                        domid: m.dom,
                        offset: (va % PAGE) as u16,
                    };
                    return Ok((ptr, true));
                }
                let gpa = mem
                    .translate(va, u64::from(len), write)
                    .filter(|gpa| gpa % PAGE == va % PAGE)
                    .ok_or(WindowError::BadLocal { index, va })?;
                Ok((
                    GnttabCopyPtr {
                        u: gpa / PAGE,
                        domid: DOMID_SELF,
                        offset: (gpa % PAGE) as u16,
                    },
                    false,
                ))
            }
        }
    }

    /// Copies a batch of segments; `out[i]` is Xen's status for `segs[i]`.
    pub fn copy(
        &self,
        hv: &impl GrantHypervisor,
        mem: &impl TaskMemory,
        segs: &[CopySegment],
        out: &mut [Result<GnttabStatus, i16>],
    ) -> Result<(), WindowError> {
        Self::check_len(segs.len(), out.len())?;
        let mut ops = Vec::with_capacity(segs.len());
        for (index, s) in segs.iter().enumerate() {
            if s.len == 0 || usize::from(s.len) > PAGE_SIZE {
                return Err(WindowError::CrossesPage { index });
            }
            let (source, src_gref) = self.copy_ptr(mem, index, s.src, s.len, false)?;
            let (dest, dst_gref) = self.copy_ptr(mem, index, s.dst, s.len, true)?;
            let flags = if src_gref { GNTCOPY_SOURCE_GREF } else { 0 }
                | if dst_gref { GNTCOPY_DEST_GREF } else { 0 };
            ops.push(GnttabCopy {
                source,
                dest,
                len: s.len,
                flags,
                status: 0,
            });
        }
        hv.copy(&mut ops).map_err(WindowError::Xen)?;
        for (o, op) in out.iter_mut().zip(&ops) {
            *o = GnttabStatus::from_raw(op.status);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A hypervisor with other domains' grants: (dom, gref) -> (page contents, readonly).
    /// Mapped grants appear at their host GPA; our memory is a map GPA frame -> page.
    type Grants = BTreeMap<(DomId, GrantRef), (Vec<u8>, bool)>;

    #[derive(Default)]
    struct FakeXen {
        grants: RefCell<Grants>,
        ours: RefCell<BTreeMap<u64, Vec<u8>>>,
        handles: RefCell<BTreeMap<GrantHandle, u64>>,
        next_handle: RefCell<GrantHandle>,
        calls: RefCell<u32>,
        fail_call: Option<Errno>,
    }

    impl FakeXen {
        fn with_grants(n: u32) -> Self {
            let x = FakeXen::default();
            for g in 0..n {
                x.grants
                    .borrow_mut()
                    .insert((5, g), (alloc::vec![g as u8; PAGE_SIZE], g % 2 == 1));
            }
            x
        }

        fn page(&self, dom: DomId, u: u64) -> Option<*mut u8> {
            if dom == DOMID_SELF {
                self.ours.borrow_mut().get_mut(&u).map(|p| p.as_mut_ptr())
            } else {
                self.grants
                    .borrow_mut()
                    .get_mut(&(dom, u as u32))
                    .map(|p| p.0.as_mut_ptr())
            }
        }
    }

    impl GrantHypervisor for FakeXen {
        fn map(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), Errno> {
            *self.calls.borrow_mut() += 1;
            if let Some(e) = self.fail_call {
                return Err(e);
            }
            for op in ops {
                let g = self.grants.borrow().get(&(op.dom, op.r#ref)).cloned();
                op.status = match g {
                    None => GnttabStatus::BadGntref as i16,
                    Some((_, ro)) if ro && op.flags & GNTMAP_READONLY == 0 => {
                        GnttabStatus::PermissionDenied as i16
                    }
                    Some(_) => {
                        let mut h = self.next_handle.borrow_mut();
                        op.handle = *h;
                        self.handles.borrow_mut().insert(*h, op.host_addr);
                        *h += 1;
                        0
                    }
                };
            }
            Ok(())
        }

        fn unmap(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), Errno> {
            *self.calls.borrow_mut() += 1;
            for op in ops {
                let ok = self.handles.borrow().get(&op.handle) == Some(&op.host_addr);
                op.status = if ok {
                    self.handles.borrow_mut().remove(&op.handle);
                    0
                } else {
                    GnttabStatus::BadHandle as i16
                };
            }
            Ok(())
        }

        fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), Errno> {
            *self.calls.borrow_mut() += 1;
            for op in ops {
                assert!(op.source.offset as usize + op.len as usize <= PAGE_SIZE);
                assert!(op.dest.offset as usize + op.len as usize <= PAGE_SIZE);
                let src = self.page(op.source.domid, op.source.u);
                let dst = self.page(op.dest.domid, op.dest.u);
                op.status = match (src, dst) {
                    (Some(s), Some(d)) => {
                        // SAFETY: both are distinct or identical 4 KiB pages owned by the fake;
                        // offsets + len were asserted to stay inside them.
                        unsafe {
                            core::ptr::copy(
                                s.add(op.source.offset as usize),
                                d.add(op.dest.offset as usize),
                                op.len as usize,
                            )
                        };
                        0
                    }
                    _ => GnttabStatus::BadGntref as i16,
                };
            }
            Ok(())
        }
    }

    /// Task memory: VA 0x10_0000.. maps to GPA 0x80_0000.. for 4 pages; the last is read-only.
    struct Mem;
    impl TaskMemory for Mem {
        fn translate(&self, va: u64, len: u64, write: bool) -> Option<u64> {
            let off = va.checked_sub(0x10_0000)?;
            if off + len > 4 * PAGE || (write && off >= 3 * PAGE) {
                return None;
            }
            Some(0x80_0000 + off)
        }
    }

    fn window(slots: u32) -> GrantWindow {
        GrantWindow::new(WindowLayout {
            va_base: 0x4000_0000,
            gpa_base: 0x1_0000_0000,
            slots,
        })
    }

    fn req(gref: GrantRef, readonly: bool) -> MapRequest {
        MapRequest {
            dom: 5,
            gref,
            readonly,
        }
    }

    #[test]
    fn a_batch_maps_each_grant_into_its_own_slot() {
        let xen = FakeXen::with_grants(64);
        let mut w = window(64);
        let reqs: Vec<_> = (0..64).map(|g| req(g, true)).collect();
        let mut out = alloc::vec![MapOutcome::Failed(Ok(GnttabStatus::GeneralError)); 64];
        w.map(&xen, &reqs, &mut out).unwrap();
        assert_eq!(*xen.calls.borrow(), 1, "one hypercall for the whole batch");
        let mut vas: Vec<u64> = out
            .iter()
            .map(|o| match o {
                MapOutcome::Mapped { va, gpa } => {
                    assert_eq!(va - 0x4000_0000, gpa - 0x1_0000_0000);
                    *va
                }
                f => panic!("{f:?}"),
            })
            .collect();
        vas.sort();
        vas.dedup();
        assert_eq!(vas.len(), 64);
        assert_eq!(w.free_slots(), 0);
        assert_eq!(w.mapping(vas[3] + 100).unwrap().dom, 5);
    }

    #[test]
    fn failed_entries_free_their_slots_and_report_xens_status() {
        let xen = FakeXen::with_grants(4);
        let mut w = window(8);
        // gref 1 is read-only at the granter: a writable map is refused; gref 9 does not exist.
        let reqs = [req(0, false), req(1, false), req(9, true)];
        let mut out = [MapOutcome::Failed(Ok(GnttabStatus::Okay)); 3];
        w.map(&xen, &reqs, &mut out).unwrap();
        assert!(matches!(out[0], MapOutcome::Mapped { .. }));
        assert_eq!(
            out[1],
            MapOutcome::Failed(Ok(GnttabStatus::PermissionDenied))
        );
        assert_eq!(out[2], MapOutcome::Failed(Ok(GnttabStatus::BadGntref)));
        assert_eq!(w.free_slots(), 7);
        assert_eq!(w.mapped_vas().count(), 1);
    }

    #[test]
    fn bad_map_batches_never_reach_xen() {
        let mut xen = FakeXen::with_grants(4);
        let mut w = window(2);
        let mut out = [MapOutcome::Failed(Ok(GnttabStatus::Okay)); 3];
        assert_eq!(
            w.map(&xen, &[req(0, true); 3], &mut out),
            Err(WindowError::NoSpace { wanted: 3, free: 2 })
        );
        assert_eq!(
            w.map(&xen, &[req(0, true); 2], &mut out),
            Err(WindowError::BadBatch { len: 2 })
        );
        let bad = [
            req(0, true),
            MapRequest {
                dom: DOMID_SELF,
                gref: 0,
                readonly: true,
            },
            req(1, true),
        ];
        assert_eq!(
            w.map(&xen, &bad, &mut out),
            Err(WindowError::BadDomain {
                index: 1,
                dom: DOMID_SELF
            })
        );
        let mut big = window(1000);
        let many = alloc::vec![req(0, true); MAX_BATCH + 1];
        let mut big_out = alloc::vec![MapOutcome::Failed(Ok(GnttabStatus::Okay)); MAX_BATCH + 1];
        assert_eq!(
            big.map(&xen, &many, &mut big_out),
            Err(WindowError::BadBatch { len: MAX_BATCH + 1 })
        );
        assert_eq!(*xen.calls.borrow(), 0);
        // A failing hypercall gives every slot back.
        xen.fail_call = Some(Errno::EFAULT);
        let mut out2 = [MapOutcome::Failed(Ok(GnttabStatus::Okay)); 2];
        assert_eq!(
            w.map(&xen, &[req(0, true); 2], &mut out2),
            Err(WindowError::Xen(Errno::EFAULT))
        );
        assert_eq!(w.free_slots(), 2);
    }

    fn map_all(w: &mut GrantWindow, xen: &FakeXen, grefs: &[GrantRef]) -> Vec<u64> {
        let reqs: Vec<_> = grefs.iter().map(|&g| req(g, g % 2 == 1)).collect();
        let mut out = alloc::vec![MapOutcome::Failed(Ok(GnttabStatus::Okay)); reqs.len()];
        w.map(xen, &reqs, &mut out).unwrap();
        out.iter()
            .map(|o| match o {
                MapOutcome::Mapped { va, .. } => *va,
                f => panic!("{f:?}"),
            })
            .collect()
    }

    #[test]
    fn unmap_names_only_own_live_mappings() {
        let xen = FakeXen::with_grants(8);
        let mut w = window(8);
        let vas = map_all(&mut w, &xen, &[0, 1, 2]);
        let mut out = [Ok(GnttabStatus::GeneralError); 2];
        let calls = *xen.calls.borrow();
        // Free slot, outside the window, unaligned, duplicate: all refused up front.
        let free_slot = (0x4000_0000..0x4000_0000 + 8 * PAGE)
            .step_by(PAGE_SIZE)
            .find(|va| !vas.contains(va))
            .unwrap();
        assert_eq!(
            w.unmap(&xen, &[vas[0], free_slot], &mut out),
            Err(WindowError::NotMapped {
                index: 1,
                va: free_slot
            })
        );
        assert_eq!(
            w.unmap(&xen, &[0x1000, vas[0]], &mut out),
            Err(WindowError::NotMapped {
                index: 0,
                va: 0x1000
            })
        );
        assert_eq!(
            w.unmap(&xen, &[vas[0] + 8, vas[1]], &mut out),
            Err(WindowError::NotMapped {
                index: 0,
                va: vas[0] + 8
            })
        );
        assert_eq!(
            w.unmap(&xen, &[vas[1], vas[1]], &mut out),
            Err(WindowError::Duplicate {
                index: 1,
                va: vas[1]
            })
        );
        assert_eq!(*xen.calls.borrow(), calls);
        w.unmap(&xen, &[vas[2], vas[0]], &mut out).unwrap();
        assert_eq!(out, [Ok(GnttabStatus::Okay); 2]);
        assert_eq!(w.mapped_vas().collect::<Vec<_>>(), [vas[1]]);
        assert_eq!(w.free_slots(), 7);
        // Xen's handle table agrees: only one mapping left.
        assert_eq!(xen.handles.borrow().len(), 1);
    }

    #[test]
    fn copies_move_bytes_between_grants_and_task_memory() {
        let xen = FakeXen::with_grants(4);
        xen.ours
            .borrow_mut()
            .insert(0x800, alloc::vec![0xaa; PAGE_SIZE]);
        xen.ours
            .borrow_mut()
            .insert(0x801, alloc::vec![0; PAGE_SIZE]);
        let mut w = window(4);
        let vas = map_all(&mut w, &xen, &[2]);
        let segs = [
            // guest grant 3 -> our page 0x801 at offset 16
            CopySegment {
                src: CopySide::Grant {
                    dom: 5,
                    gref: 3,
                    offset: 100,
                },
                dst: CopySide::Local { va: 0x10_1010 },
                len: 50,
            },
            // our page 0x800 -> guest grant 0
            CopySegment {
                src: CopySide::Local { va: 0x10_0000 },
                dst: CopySide::Grant {
                    dom: 5,
                    gref: 0,
                    offset: 4000,
                },
                len: 96,
            },
        ];
        let mut out = [Ok(GnttabStatus::GeneralError); 2];
        w.copy(&xen, &Mem, &segs, &mut out).unwrap();
        assert_eq!(out, [Ok(GnttabStatus::Okay); 2]);
        assert_eq!(*xen.calls.borrow(), 2, "one map + one copy hypercall");
        assert_eq!(&xen.ours.borrow()[&0x801][16..66], &[3u8; 50][..]);
        assert_eq!(xen.ours.borrow()[&0x801][66], 0);
        assert_eq!(&xen.grants.borrow()[&(5, 0)].0[4000..], &[0xaa; 96][..]);
        // A window mapping is copied through its grant (gref 2 holds bytes of value 2).
        let from_window = [CopySegment {
            src: CopySide::Local { va: vas[0] + 8 },
            dst: CopySide::Local { va: 0x10_1000 },
            len: 4,
        }];
        w.copy(&xen, &Mem, &from_window, &mut out[..1]).unwrap();
        assert_eq!(out[0], Ok(GnttabStatus::Okay));
        assert_eq!(&xen.ours.borrow()[&0x801][..4], &[2u8; 4]);
        // Writing into a read-only mapping is refused.
        let ro = map_all(&mut w, &xen, &[1])[0];
        let into_ro = [CopySegment {
            src: CopySide::Local { va: vas[0] },
            dst: CopySide::Local { va: ro },
            len: 8,
        }];
        assert_eq!(
            w.copy(&xen, &Mem, &into_ro, &mut out[..1]),
            Err(WindowError::ReadOnly { index: 0, va: ro })
        );
    }

    #[test]
    fn copy_segments_must_stay_in_a_page_and_in_task_memory() {
        let xen = FakeXen::with_grants(4);
        let w = window(4);
        let g = CopySide::Grant {
            dom: 5,
            gref: 0,
            offset: 0,
        };
        let cases = [
            (
                CopySegment {
                    src: g,
                    dst: CopySide::Local { va: 0x10_0ff0 },
                    len: 32,
                },
                WindowError::CrossesPage { index: 0 },
            ),
            (
                CopySegment {
                    src: CopySide::Grant {
                        dom: 5,
                        gref: 0,
                        offset: 4090,
                    },
                    dst: CopySide::Local { va: 0x10_0000 },
                    len: 7,
                },
                WindowError::CrossesPage { index: 0 },
            ),
            (
                CopySegment {
                    src: g,
                    dst: CopySide::Local { va: 0x10_0000 },
                    len: 0,
                },
                WindowError::CrossesPage { index: 0 },
            ),
            (
                CopySegment {
                    src: g,
                    dst: CopySide::Local { va: 0x20_0000 },
                    len: 8,
                },
                WindowError::BadLocal {
                    index: 0,
                    va: 0x20_0000,
                },
            ),
            // Readable but not writable task page as a destination.
            (
                CopySegment {
                    src: g,
                    dst: CopySide::Local { va: 0x10_3000 },
                    len: 8,
                },
                WindowError::BadLocal {
                    index: 0,
                    va: 0x10_3000,
                },
            ),
            // An unmapped window slot.
            (
                CopySegment {
                    src: CopySide::Local { va: 0x4000_1000 },
                    dst: g,
                    len: 8,
                },
                WindowError::BadLocal {
                    index: 0,
                    va: 0x4000_1000,
                },
            ),
            (
                CopySegment {
                    src: CopySide::Grant {
                        dom: 0x7ff2,
                        gref: 0,
                        offset: 0,
                    },
                    dst: CopySide::Local { va: 0x10_0000 },
                    len: 8,
                },
                WindowError::BadDomain {
                    index: 0,
                    dom: 0x7ff2,
                },
            ),
        ];
        let mut out = [Ok(GnttabStatus::GeneralError)];
        for (seg, want) in cases {
            assert_eq!(w.copy(&xen, &Mem, &[seg], &mut out), Err(want), "{seg:?}");
        }
        // The read-only task page is fine as a source.
        let ok = CopySegment {
            src: CopySide::Local { va: 0x10_3000 },
            dst: g,
            len: 8,
        };
        xen.ours
            .borrow_mut()
            .insert(0x803, alloc::vec![7; PAGE_SIZE]);
        w.copy(&xen, &Mem, &[ok], &mut out).unwrap();
        assert_eq!(out, [Ok(GnttabStatus::Okay)]);
        assert_eq!(*xen.calls.borrow(), 1);
    }

    /// Random map/unmap batches: the window and the hypervisor's handle table never disagree,
    /// and no slot is lost or shared.
    #[test]
    fn random_batches_keep_window_and_hypervisor_in_step() {
        let long = std::env::var("NC2DD_LONG_TESTS").is_ok_and(|v| v == "1");
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..if long { 5_000 } else { 100 } {
            let xen = FakeXen::with_grants(16);
            let mut w = window(1 + rnd(32) as u32);
            let slots = w.layout().slots as usize;
            for _ in 0..30 {
                if rnd(2) == 0 {
                    let n = rnd(8) as usize;
                    let reqs: Vec<_> = (0..n).map(|_| req(rnd(20) as u32, rnd(2) == 0)).collect();
                    let mut out = alloc::vec![MapOutcome::Failed(Ok(GnttabStatus::Okay)); n];
                    match w.map(&xen, &reqs, &mut out) {
                        Ok(()) => {
                            for (r, o) in reqs.iter().zip(&out) {
                                if let MapOutcome::Mapped { va, .. } = o {
                                    assert_eq!(w.mapping(*va).unwrap().gref, r.gref);
                                }
                            }
                        }
                        Err(WindowError::NoSpace { wanted, free }) => assert!(wanted > free),
                        Err(e) => panic!("{e:?}"),
                    }
                } else {
                    let mapped: Vec<u64> = w.mapped_vas().collect();
                    let vas: Vec<u64> = mapped.into_iter().filter(|_| rnd(2) == 0).collect();
                    let mut out = alloc::vec![Ok(GnttabStatus::GeneralError); vas.len()];
                    w.unmap(&xen, &vas, &mut out).unwrap();
                    assert!(out.iter().all(|s| *s == Ok(GnttabStatus::Okay)));
                }
                let mapped = w.mapped_vas().count();
                assert_eq!(mapped, xen.handles.borrow().len());
                assert_eq!(mapped + w.free_slots(), slots);
                let mut gpas: Vec<u64> = xen.handles.borrow().values().copied().collect();
                gpas.sort();
                gpas.dedup();
                assert_eq!(gpas.len(), mapped, "two mappings share a slot");
            }
        }
    }
}
