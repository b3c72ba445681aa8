//! The receive buffers a netchannel2 frontend posted: each buffer id's grant, its mapping
//! (kept for the life of the connection: grant reuse) and where the buffer is now.
//!
//! A buffer id is in exactly one state: with the guest (not posted, or handed back in a
//! PRE_POSTED packet), idle (posted, waiting for a frame), or at the NIC (its page given to
//! the vif's queue pair by bus address). libnc2's backend end already checks that ids are
//! posted and returned legally; this table adds the mappings. A re-posted buffer whose grant
//! reference is unchanged reuses its mapping (no grant operation, counted as reuse); a new
//! reference replaces the old mapping (one unmap, one map, both batched per post message).
//!
//! Invariants: every mapping is listed in exactly one entry until [`BufferTable::release`]
//! hands its handle back; a buffer at the NIC keeps its mapping until the NIC returns it,
//! since the device may write the page until then.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use libnc2::nc2::PostedBuffer;

use crate::counters::VifCounters;
use crate::hv::{DomId, HvError, Hypervisor, Mapping};

/// Where a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufState {
    /// The guest holds it.
    Guest,
    /// Posted, waiting for a frame.
    Idle,
    /// Given to the NIC.
    AtNic,
}

#[derive(Clone, Copy, Debug)]
struct Buf {
    gref: u32,
    map: Option<Mapping>,
    state: BufState,
}

/// Why posted buffers could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// A posted grant could not be mapped writable (`GNTST_*`).
    Map {
        /// The guest's reference.
        gref: u32,
        /// The status.
        status: i16,
    },
    /// The hypervisor call failed as a whole.
    Hv(HvError),
}

/// The posted-buffer table of one vif.
pub struct BufferTable {
    bufs: Vec<Buf>,
    idle: VecDeque<u32>,
    reachable: Option<bool>,
}

impl BufferTable {
    /// A table for buffer ids `0..n`.
    pub fn new(n: u32) -> Self {
        BufferTable {
            bufs: (0..n)
                .map(|_| Buf {
                    gref: 0,
                    map: None,
                    state: BufState::Guest,
                })
                .collect(),
            idle: VecDeque::new(),
            reachable: None,
        }
    }

    /// Whether a device can reach the posted pages (known once one is mapped).
    pub fn device_reachable(&self) -> bool {
        self.reachable == Some(true)
    }

    /// Whether a posted page was mapped yet, so [`Buffers::device_reachable`] is known.
    pub fn reachability_known(&self) -> bool {
        self.reachable.is_some()
    }

    /// Takes posted buffers (ids already validated by libnc2): maps what is not mapped yet in
    /// one call, after unmapping replaced mappings in one call.
    pub fn post<H: Hypervisor>(
        &mut self,
        hv: &mut H,
        dom: DomId,
        posted: &[PostedBuffer],
        counters: &mut VifCounters,
    ) -> Result<(), PostError> {
        let mut stale = Vec::new();
        let mut need: Vec<(usize, u32)> = Vec::new();
        for p in posted {
            let Some(b) = self.bufs.get_mut(p.id as usize) else {
                continue;
            };
            match b.map {
                Some(_) if b.gref == p.gref => counters.grant_reuse += 1,
                Some(m) => {
                    stale.push(m.handle);
                    b.map = None;
                    need.push((p.id as usize, p.gref));
                }
                None => need.push((p.id as usize, p.gref)),
            }
            b.gref = p.gref;
            b.state = BufState::Idle;
            self.idle.push_back(p.id);
        }
        if !stale.is_empty() {
            hv.grant_unmap(&stale).map_err(PostError::Hv)?;
            counters.grant_call(stale.len());
        }
        if need.is_empty() {
            return Ok(());
        }
        let grefs: Vec<u32> = need.iter().map(|&(_, g)| g).collect();
        let mut out = Vec::with_capacity(grefs.len());
        hv.grant_map(dom, &grefs, false, &mut out)
            .map_err(PostError::Hv)?;
        counters.grant_call(grefs.len());
        let mut bad = None;
        for (&(i, gref), r) in need.iter().zip(out) {
            match r {
                Ok(m) => {
                    self.reachable.get_or_insert(m.bus.is_some());
                    self.bufs[i].map = Some(m)
                }
                Err(status) => {
                    bad.get_or_insert(PostError::Map { gref, status });
                }
            }
        }
        match bad {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Idle buffers.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// The oldest idle buffer, now the caller's to fill: (id, mapping).
    pub fn take_idle(&mut self) -> Option<(u32, Mapping)> {
        let id = self.idle.pop_front()?;
        let b = &mut self.bufs[id as usize];
        b.state = BufState::Guest;
        b.map.map(|m| (id, m))
    }

    /// Gives back buffers taken with [`BufferTable::take_idle`] but not used (oldest first).
    pub fn untake(&mut self, ids: &[u32]) {
        for &id in ids.iter().rev() {
            if let Some(b) = self.bufs.get_mut(id as usize) {
                b.state = BufState::Idle;
                self.idle.push_front(id);
            }
        }
    }

    /// Up to `n` idle buffers a device can reach, now at the NIC: (id, bus address). Leaves
    /// `reserve` idle buffers for frames that must be copied.
    pub fn take_for_nic(&mut self, n: usize, reserve: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        while out.len() < n && self.idle.len() > reserve {
            let Some(&id) = self.idle.front() else { break };
            let Some(bus) = self.bufs[id as usize].map.and_then(|m| m.bus) else {
                break;
            };
            self.idle.pop_front();
            self.bufs[id as usize].state = BufState::AtNic;
            out.push((id, bus));
        }
        out
    }

    /// The NIC gave buffer `id` back; `filled` means it holds a frame (it goes to the guest),
    /// otherwise it is idle again. False if `id` was not at the NIC.
    pub fn from_nic(&mut self, id: u32, filled: bool) -> bool {
        let Some(b) = self.bufs.get_mut(id as usize) else {
            return false;
        };
        if b.state != BufState::AtNic {
            return false;
        }
        if filled {
            b.state = BufState::Guest;
        } else {
            b.state = BufState::Idle;
            self.idle.push_front(id);
        }
        true
    }

    /// The mapping of buffer `id`.
    pub fn mapping(&self, id: u32) -> Option<Mapping> {
        self.bufs.get(id as usize).and_then(|b| b.map)
    }

    /// Buffers at the NIC.
    pub fn at_nic(&self) -> usize {
        self.bufs
            .iter()
            .filter(|b| b.state == BufState::AtNic)
            .count()
    }

    /// Ends the table: the handles free to unmap now, and (id, handle) of buffers still at the
    /// NIC, which must stay mapped until the NIC returns them.
    pub fn release(self) -> (Vec<u32>, Vec<(u32, u32)>) {
        let mut now = Vec::new();
        let mut held = Vec::new();
        for (id, b) in self.bufs.iter().enumerate() {
            if let Some(m) = b.map {
                if b.state == BufState::AtNic {
                    held.push((id as u32, m.handle));
                } else {
                    now.push(m.handle);
                }
            }
        }
        (now, held)
    }
}
