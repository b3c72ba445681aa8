//! Our own grant table (v1): granting frames to other domains and revoking them.
//!
//! Owns: the entries of the frames Xen placed in our physmap (`XENMEM_add_to_physmap` with
//! `XENMAPSPACE_grant_table`), which refs are free, and which task each granted ref belongs to.
//! Invariants:
//! - refs below `GNTTAB_NR_RESERVED_ENTRIES` (console, xenstore) are never handed out or revoked;
//! - an entry becomes visible in one atomic 64-bit store, so Xen never sees flags without the
//!   matching domid and frame (the header's "domid and frame, barrier, then flags" rule);
//! - a grant is revoked only by a compare-exchange that observes `GTF_reading` and
//!   `GTF_writing` both clear, so a frame the grantee still maps or copies is never reused;
//! - only the owning task may end its grants.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::xen::abi::grant_table::{
    GNTTAB_NR_RESERVED_ENTRIES, GRANT_ENTRIES_PER_FRAME, GTF_PERMIT_ACCESS, GTF_READING,
    GTF_READONLY, GTF_WRITING,
};
use crate::xen::abi::{DOMID_FIRST_RESERVED, DomId, GrantRef};
use crate::xen::shared::SharedPage;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// Every ref is in use.
    Full,
    /// The ref is not in the table.
    OutOfRange(GrantRef),
    /// A reserved ref (0..8).
    Reserved(GrantRef),
    /// The ref is not granted by the caller (free, or another task's).
    NotOwner(GrantRef),
    /// The grantee still maps or copies the frame; try again after it lets go.
    InUse(GrantRef),
    /// A v1 entry holds a 32-bit frame number.
    FrameTooLarge(u64),
    /// The domain id names no ordinary domain.
    BadDomain(DomId),
}

/// Decoded entry word (little-endian: flags, domid, frame).
fn pack(flags: u16, domid: DomId, frame: u32) -> u64 {
    u64::from(flags) | (u64::from(domid) << 16) | (u64::from(frame) << 32)
}

/// A v1 grant table over shared frames, with per-ref ownership by tasks of type `T`.
pub struct GrantTable<'a, T> {
    frames: Vec<SharedPage<'a>>,
    owners: Vec<Option<T>>,
    free: Vec<GrantRef>,
}

impl<'a, T: Copy + Eq> GrantTable<'a, T> {
    /// A table over `frames` (in frame-index order). Entries are assumed invalid (Xen zeroes new
    /// frames); reserved refs are left alone.
    pub fn new(frames: Vec<SharedPage<'a>>) -> Self {
        let n = frames.len() as u32 * GRANT_ENTRIES_PER_FRAME;
        // Hand out low refs first: pop from the end of a descending list.
        let free = (GNTTAB_NR_RESERVED_ENTRIES..n).rev().collect();
        Self {
            frames,
            owners: alloc::vec![None; n as usize],
            free,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.owners.len() as u32
    }

    pub fn free_refs(&self) -> usize {
        self.free.len()
    }

    fn entry(&self, r: GrantRef) -> &'a core::sync::atomic::AtomicU64 {
        let page = self.frames[(r / GRANT_ENTRIES_PER_FRAME) as usize];
        page.word_at((r % GRANT_ENTRIES_PER_FRAME) as usize)
    }

    fn check(&self, r: GrantRef, task: T) -> Result<(), TableError> {
        if r < GNTTAB_NR_RESERVED_ENTRIES {
            return Err(TableError::Reserved(r));
        }
        match self.owners.get(r as usize) {
            None => Err(TableError::OutOfRange(r)),
            Some(Some(o)) if *o == task => Ok(()),
            Some(_) => Err(TableError::NotOwner(r)),
        }
    }

    /// Grants `domid` access to guest frame `gfn` on behalf of `task`. The caller has checked
    /// that `gfn` is memory of `task`.
    pub fn grant_access(
        &mut self,
        task: T,
        domid: DomId,
        gfn: u64,
        readonly: bool,
    ) -> Result<GrantRef, TableError> {
        if domid >= DOMID_FIRST_RESERVED {
            return Err(TableError::BadDomain(domid));
        }
        let frame = u32::try_from(gfn).map_err(|_| TableError::FrameTooLarge(gfn))?;
        let r = self.free.pop().ok_or(TableError::Full)?;
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.entry(r)
            .store(pack(flags, domid, frame), Ordering::Release);
        self.owners[r as usize] = Some(task);
        Ok(r)
    }

    /// Whether the grantee currently maps or copies the frame of `r`.
    pub fn in_use(&self, r: GrantRef) -> bool {
        self.owners.get(r as usize).is_some()
            && self.entry(r).load(Ordering::Acquire) as u16 & (GTF_READING | GTF_WRITING) != 0
    }

    /// Revokes `task`'s grant `r`, unless the grantee still uses it ([`TableError::InUse`]:
    /// the grant stays valid and the caller retries later).
    pub fn end_access(&mut self, task: T, r: GrantRef) -> Result<(), TableError> {
        self.check(r, task)?;
        let e = self.entry(r);
        let mut old = e.load(Ordering::Acquire);
        loop {
            if old as u16 & (GTF_READING | GTF_WRITING) != 0 {
                return Err(TableError::InUse(r));
            }
            // Xen sets READING/WRITING with a compare-exchange on the same word, so either it
            // wins (we see the bits next round) or we do (it then sees an invalid entry).
            match e.compare_exchange(old, old & !0xffff, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        self.owners[r as usize] = None;
        self.free.push(r);
        Ok(())
    }

    /// Grants of `task` (to end them when the task dies).
    pub fn refs_of(&self, task: T) -> impl Iterator<Item = GrantRef> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter_map(move |(i, o)| (*o == Some(task)).then_some(i as GrantRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::shared::zeroed_page;

    #[test]
    fn grant_writes_a_complete_entry_and_end_frees_it() {
        let f0 = zeroed_page();
        let f1 = zeroed_page();
        let mut t = GrantTable::new(alloc::vec![SharedPage::new(&f0), SharedPage::new(&f1)]);
        assert_eq!(t.capacity(), 1024);
        assert_eq!(t.free_refs(), 1016);
        let r = t.grant_access(1u8, 3, 0x1234_5678, true).unwrap();
        assert_eq!(r, 8, "the first free ref follows the reserved ones");
        let w = f0[8].load(Ordering::Relaxed);
        assert_eq!(w as u16, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!((w >> 16) as u16, 3);
        assert_eq!((w >> 32) as u32, 0x1234_5678);
        t.end_access(1, r).unwrap();
        assert_eq!(f0[8].load(Ordering::Relaxed) as u16, 0);
        assert_eq!(t.free_refs(), 1016);
        // Refs in the second frame land in the second page.
        for _ in 0..600 {
            t.grant_access(2u8, 4, 1, false).unwrap();
        }
        assert_ne!(
            f1.iter().filter(|w| w.load(Ordering::Relaxed) != 0).count(),
            0
        );
    }

    #[test]
    fn a_ref_in_use_by_the_grantee_cannot_be_revoked() {
        let f0 = zeroed_page();
        let mut t = GrantTable::new(alloc::vec![SharedPage::new(&f0)]);
        let r = t.grant_access(1u8, 3, 77, false).unwrap();
        // Xen marks the entry while the grantee has it mapped writable.
        f0[r as usize].fetch_or(u64::from(GTF_WRITING | GTF_READING), Ordering::Relaxed);
        assert!(t.in_use(r));
        assert_eq!(t.end_access(1, r), Err(TableError::InUse(r)));
        assert_eq!(t.refs_of(1).collect::<Vec<_>>(), [r]);
        f0[r as usize].fetch_and(!u64::from(GTF_WRITING | GTF_READING), Ordering::Relaxed);
        t.end_access(1, r).unwrap();
        assert_eq!(t.refs_of(1).count(), 0);
    }

    #[test]
    fn ownership_range_and_argument_checks() {
        let f0 = zeroed_page();
        let mut t = GrantTable::new(alloc::vec![SharedPage::new(&f0)]);
        let r = t.grant_access(1u8, 3, 77, false).unwrap();
        assert_eq!(t.end_access(2, r), Err(TableError::NotOwner(r)));
        assert_eq!(t.end_access(1, 1), Err(TableError::Reserved(1)));
        assert_eq!(t.end_access(1, 512), Err(TableError::OutOfRange(512)));
        assert_eq!(t.end_access(1, r + 1), Err(TableError::NotOwner(r + 1)));
        assert_eq!(
            t.grant_access(1, 0x7ff0, 1, false),
            Err(TableError::BadDomain(0x7ff0))
        );
        assert_eq!(
            t.grant_access(1, 3, 1 << 32, false),
            Err(TableError::FrameTooLarge(1 << 32))
        );
        while t.free_refs() > 0 {
            t.grant_access(1, 3, 1, false).unwrap();
        }
        assert_eq!(t.grant_access(1, 3, 1, false), Err(TableError::Full));
        // Reserved entries were never touched.
        assert!(f0[..8].iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }
}
