//! The switch's NIC port: netback's end of a queue-pair channel to nic-ixgbe. Every MAC that
//! netback serves (each connected vif's, and the responder's) gets its own NIC pool, so the
//! NIC filters frames per guest; received frames come back as [`Frame`]s for the switch, and
//! a frame for the wire leaves through the pool of its SOURCE MAC (each guest's own queue).
//!
//! Buffers live in one DMA region netback owns: pool slot `k` owns buffers
//! `k*per_pool .. (k+1)*per_pool`, the first `rx_per_pool` for receive, the rest for
//! transmit; a buffer's id is its index, its bus address `bus + index * buf_size`.
//!
//! Guest receive buffers: a pool can instead receive into buffers that are not the port's own
//! (a netchannel2 guest's posted pages, given by bus address with a caller's tag). Such a pool
//! ("guest pool") gets none of the port's own receive buffers, so every frame the NIC steers to
//! it lands in the guest's page; its completions come back as [`GuestRxDone`]s naming the tag,
//! never as frames. Their channel ids have [`GUEST_ID_BIT`] set and index a slot table; at most
//! `rx_per_pool` of them are outstanding per pool. Every guest buffer posted comes back exactly
//! once (a frame, an error, or unused when the pool is released), so the caller knows when the
//! NIC can no longer write the page.
//!
//! Guest transmit buffers likewise: a frame already in a guest's page ([`NicOut::Guest`]) is
//! posted by bus address on the pool of its source MAC, and comes back exactly once as a
//! [`GuestTxDone`] (sent, or not: no pool, too long, no room, refused, discarded).
//!
//! Invariants: a completion is acted on only if its id is a buffer of the pool it names and
//! that buffer is outstanding in that direction (anything else is counted and ignored); a
//! frame is only posted for a pool the NIC allocated and not released; frames longer than
//! 1522 bytes (or that cannot be completed in software) are dropped and counted, never
//! truncated. GSO frames are segmented and blank checksums filled in software
//! first ([`crate::offload`]), since the channel carries no offload metadata.

use alloc::vec;
use alloc::vec::Vec;

use libnc2::shm::SharedMem;
use qpair::{
    ChannelError, Ctrl, CtrlReply, MacAddr, NetbackEnd, PoolFlags, RefuseReason, RxDone, RxPost,
    RxStatus, TxDone, TxPost,
};

use crate::hv::{Hypervisor, read_bytes, write_bytes};
use crate::offload;
use crate::service::Netback;
use crate::switch::{ETH_HLEN, Frame, Mac};

/// Longest frame the NIC path transmits (with a VLAN tag).
pub const MAX_WIRE_FRAME: usize = 1522;

/// Memory the NIC can reach: `mem` is at bus address `bus`.
#[derive(Clone, Copy, Debug)]
pub struct DmaRegion {
    /// The CPU's view.
    pub mem: SharedMem<'static>,
    /// Bus address of its first byte.
    pub bus: u64,
}

/// Sizes of the port's buffers.
#[derive(Clone, Copy, Debug)]
pub struct PortConfig {
    /// Bytes per buffer (at least the NIC's receive buffer size).
    pub buf_size: usize,
    /// Receive buffers per pool.
    pub rx_per_pool: u32,
    /// Transmit buffers per pool.
    pub tx_per_pool: u32,
    /// Pools at most.
    pub max_pools: usize,
}

impl PortConfig {
    /// Bytes of DMA memory the port needs.
    pub fn dma_bytes(&self) -> usize {
        self.buf_size * (self.rx_per_pool + self.tx_per_pool) as usize * self.max_pools
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolState {
    Requested,
    Ready(u8),
    Refused(RefuseReason),
    Releasing(u8),
}

struct Pool {
    mac: Mac,
    state: PoolState,
    /// Receives into guest buffers only ([`NicPort::post_guest_rx`]).
    guest_rx: bool,
    /// Guest buffers outstanding at the NIC.
    guest_out: u32,
    /// Guest transmit buffers outstanding at the NIC.
    guest_tx_out: u32,
    rx_posted: Vec<bool>,
    tx_free: Vec<u32>,
    tx_busy: Vec<bool>,
}

/// What the port has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Receive completions flagged as errors.
    pub rx_errors: u64,
    /// Frames posted for transmit.
    pub tx_frames: u64,
    /// Transmit completions other than `Sent`.
    pub tx_failed: u64,
    /// Frames not transmitted (no pool for the source, no buffer, offload, too long).
    pub tx_drops: u64,
    /// Completions or replies that named something we do not have outstanding.
    pub bogus: u64,
    /// Pools the NIC refused.
    pub refused: u64,
}

/// Channel ids of guest receive buffers have this bit set (the port's own ids never do).
pub const GUEST_ID_BIT: u32 = 1 << 31;

/// A receive buffer that is not the port's own: `len` bytes at bus address `bus`, named by
/// the caller's `tag` in its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRxBuf {
    /// The caller's name for the buffer.
    pub tag: u64,
    /// Bus address the NIC writes to.
    pub bus: u64,
    /// Its size.
    pub len: u16,
}

/// A guest receive buffer the NIC gave back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRxDone {
    /// The tag it was posted with.
    pub tag: u64,
    /// Frame bytes in it (status `Frame` only).
    pub len: u16,
    /// What happened to it.
    pub status: RxStatus,
}

/// A frame in a guest's page for the wire: `len` bytes at bus address `bus`, sent from `src`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTxBuf {
    /// The caller's name for it.
    pub tag: u64,
    /// Bus address of the frame's first byte.
    pub bus: u64,
    /// Its length.
    pub len: u16,
    /// Its source MAC (whose pool sends it).
    pub src: Mac,
}

/// A guest transmit buffer the NIC is done with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTxDone {
    /// The tag it was given with.
    pub tag: u64,
    /// Whether it went on the wire.
    pub sent: bool,
}

/// Something for the wire, in netback's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicOut {
    /// A frame in netback's memory (copied into one of the port's buffers).
    Frame(Frame),
    /// A frame in a guest's page (sent from there).
    Guest(GuestTxBuf),
}

#[derive(Clone, Copy)]
struct GuestSlot {
    k: usize,
    tag: u64,
    len: u16,
}

/// netback's end of one queue-pair channel.
pub struct NicPort<'a> {
    end: NetbackEnd<'a>,
    dma: DmaRegion,
    cfg: PortConfig,
    pools: Vec<Option<Pool>>,
    guest: Vec<Option<GuestSlot>>,
    guest_free: Vec<u32>,
    guest_done: Vec<GuestRxDone>,
    gtx: Vec<Option<GuestSlot>>,
    gtx_free: Vec<u32>,
    gtx_done: Vec<GuestTxDone>,
    by_nic: [Option<usize>; qpair::msg::MAX_POOLS as usize],
    kick: bool,
    /// What happened so far.
    pub stats: PortStats,
}

impl<'a> NicPort<'a> {
    /// A port over `end` with buffers in `dma` (which must hold `cfg.dma_bytes()`).
    pub fn new(end: NetbackEnd<'a>, dma: DmaRegion, cfg: PortConfig) -> Option<Self> {
        if dma.mem.len() < cfg.dma_bytes()
            || cfg.buf_size < MAX_WIRE_FRAME
            || !cfg.buf_size.is_multiple_of(8)
        {
            return None;
        }
        let mut pools = Vec::new();
        pools.resize_with(cfg.max_pools, || None);
        Some(NicPort {
            end,
            dma,
            cfg,
            pools,
            guest: Vec::new(),
            guest_free: Vec::new(),
            guest_done: Vec::new(),
            gtx: Vec::new(),
            gtx_free: Vec::new(),
            gtx_done: Vec::new(),
            by_nic: [None; qpair::msg::MAX_POOLS as usize],
            kick: false,
            stats: PortStats::default(),
        })
    }

    /// True once since the last call if the NIC server should be notified.
    pub fn take_kick(&mut self) -> bool {
        core::mem::take(&mut self.kick)
    }

    fn per_pool(&self) -> u32 {
        self.cfg.rx_per_pool + self.cfg.tx_per_pool
    }

    /// The NIC pool of `mac`, once allocated.
    pub fn pool_of(&self, mac: &Mac) -> Option<u8> {
        self.pools.iter().flatten().find_map(|p| match p.state {
            PoolState::Ready(n) if p.mac == *mac => Some(n),
            _ => None,
        })
    }

    /// Makes the pools match `macs`: asks for pools of new MACs, releases those of MACs gone.
    pub fn sync_macs(&mut self, macs: &[Mac]) -> Result<(), ChannelError> {
        self.sync_pools(macs, &[])
    }

    /// Like [`NicPort::sync_macs`], where the MACs in `guest_rx` get guest pools (receiving
    /// only into buffers given with [`NicPort::post_guest_rx`]). A pool whose kind no longer
    /// matches is released and asked for again on a later call.
    pub fn sync_pools(&mut self, macs: &[Mac], guest_rx: &[Mac]) -> Result<(), ChannelError> {
        let mut ctrl = Vec::new();
        for slot in self.pools.iter_mut() {
            let Some(p) = slot else { continue };
            let want_guest = guest_rx.contains(&p.mac);
            if p.state == PoolState::Requested {
                // No buffer was posted yet: the kind can still change.
                p.guest_rx = want_guest;
            }
            if macs.contains(&p.mac) && p.guest_rx == want_guest {
                continue;
            }
            match p.state {
                PoolState::Ready(n) => {
                    ctrl.push(Ctrl::ReleasePool { pool: n });
                    p.state = PoolState::Releasing(n);
                }
                PoolState::Refused(_) => *slot = None,
                // A pending request is released once its answer arrives.
                PoolState::Requested | PoolState::Releasing(_) => {}
            }
        }
        for mac in macs {
            if self.pools.iter().flatten().any(|p| p.mac == *mac) {
                continue;
            }
            let Some(k) = self.pools.iter().position(Option::is_none) else {
                self.stats.refused += 1;
                continue;
            };
            let per_rx = self.cfg.rx_per_pool as usize;
            self.pools[k] = Some(Pool {
                mac: *mac,
                state: PoolState::Requested,
                guest_rx: guest_rx.contains(mac),
                guest_out: 0,
                guest_tx_out: 0,
                rx_posted: vec![false; per_rx],
                tx_free: (0..self.cfg.tx_per_pool).rev().collect(),
                tx_busy: vec![false; self.cfg.tx_per_pool as usize],
            });
            ctrl.push(Ctrl::AllocPool {
                req: k as u32,
                mac: MacAddr(*mac),
                flags: PoolFlags {
                    broadcast: true,
                    multicast: true,
                },
            });
        }
        if !ctrl.is_empty() {
            let p = self.end.send_ctrl(&ctrl)?;
            self.kick |= p.notify;
        }
        Ok(())
    }

    fn buf_off(&self, id: u32) -> usize {
        id as usize * self.cfg.buf_size
    }

    fn post_rx_all(&mut self, k: usize) -> Result<(), ChannelError> {
        let base = k as u32 * self.per_pool();
        let (buf, bus) = (self.cfg.buf_size, self.dma.bus);
        let Some(p) = self.pools[k].as_mut() else {
            return Ok(());
        };
        let PoolState::Ready(n) = p.state else {
            return Ok(());
        };
        if p.guest_rx {
            return Ok(());
        }
        let mut posts = Vec::new();
        for (i, posted) in p.rx_posted.iter_mut().enumerate() {
            if !*posted {
                let id = base + i as u32;
                posts.push(RxPost {
                    pool: n,
                    id,
                    addr: bus + (id as usize * buf) as u64,
                    len: buf.min(usize::from(qpair::msg::MAX_LEN)) as u16,
                });
                *posted = true;
            }
        }
        if !posts.is_empty() {
            let r = self.end.post_rx(&posts)?;
            self.kick |= r.notify;
            // Whatever did not fit is posted on a later round.
            for post in &posts[r.count..] {
                p.rx_posted[(post.id - base) as usize] = false;
            }
        }
        Ok(())
    }

    /// Handles everything the NIC sent back; received frames go to `out`.
    pub fn poll(&mut self, out: &mut Vec<Frame>) -> Result<(), ChannelError> {
        let mut via = Vec::new();
        self.poll_pools(&mut via)?;
        out.extend(via.into_iter().map(|(_, f)| f));
        Ok(())
    }

    /// The MACs whose pools the NIC allocated (and has not been asked to release).
    pub fn pooled_macs(&self) -> Vec<Mac> {
        self.pools
            .iter()
            .flatten()
            .filter(|p| matches!(p.state, PoolState::Ready(_)))
            .map(|p| p.mac)
            .collect()
    }

    /// Like [`NicPort::poll`], with each received frame paired with the MAC of the pool it
    /// came through (the NIC hands a broadcast or multicast frame to every pool that accepts it).
    pub fn poll_pools(&mut self, out: &mut Vec<(Mac, Frame)>) -> Result<(), ChannelError> {
        let mut replies = [CtrlReply::PoolReleased { pool: 0 }; 16];
        loop {
            let n = self.end.recv_ctrl(&mut replies)?;
            for r in &replies[..n] {
                self.ctrl_reply(*r)?;
            }
            if n < replies.len() {
                break;
            }
        }
        let mut done = [RxDone {
            pool: 0,
            id: 0,
            len: 0,
            status: RxStatus::Unused,
        }; 32];
        let mut repost: Vec<usize> = Vec::new();
        loop {
            let n = self.end.recv_rx_done(&mut done)?;
            for d in &done[..n] {
                if let Some(k) = self.rx_done(*d, out) {
                    repost.push(k);
                }
            }
            if n < done.len() {
                break;
            }
        }
        repost.sort_unstable();
        repost.dedup();
        for k in repost {
            self.post_rx_all(k)?;
        }
        let mut tdone = [TxDone {
            pool: 0,
            id: 0,
            status: qpair::TxStatus::Sent,
        }; 32];
        loop {
            let n = self.end.recv_tx_done(&mut tdone)?;
            for d in &tdone[..n] {
                self.tx_done(*d);
            }
            if n < tdone.len() {
                break;
            }
        }
        Ok(())
    }

    fn ctrl_reply(&mut self, r: CtrlReply) -> Result<(), ChannelError> {
        match r {
            CtrlReply::PoolAllocated { req, pool } => {
                let k = req as usize;
                let ok = matches!(self.pools.get(k), Some(Some(p)) if p.state == PoolState::Requested)
                    && self.by_nic[usize::from(pool)].is_none();
                if !ok {
                    self.stats.bogus += 1;
                    return Ok(());
                }
                self.by_nic[usize::from(pool)] = Some(k);
                if let Some(p) = self.pools[k].as_mut() {
                    p.state = PoolState::Ready(pool);
                }
                self.post_rx_all(k)?;
            }
            CtrlReply::PoolRefused { req, reason } => match self.pools.get_mut(req as usize) {
                Some(Some(p)) if p.state == PoolState::Requested => {
                    log::warn!("NIC refused a pool: {reason:?}");
                    p.state = PoolState::Refused(reason);
                    self.stats.refused += 1;
                }
                _ => self.stats.bogus += 1,
            },
            CtrlReply::PoolReleased { pool } => match self.by_nic[usize::from(pool)].take() {
                Some(k) => {
                    // The NIC completes every buffer before the release; any guest buffer
                    // still listed is given back unused, so its owner can let the page go.
                    let left: Vec<usize> = (0..self.guest.len())
                        .filter(|&i| matches!(self.guest[i], Some(g) if g.k == k))
                        .collect();
                    for i in left {
                        if let Some(g) = self.guest[i] {
                            self.guest_done.push(GuestRxDone {
                                tag: g.tag,
                                len: 0,
                                status: RxStatus::Unused,
                            });
                        }
                        self.release_guest_slot(i);
                    }
                    let left: Vec<usize> = (0..self.gtx.len())
                        .filter(|&i| matches!(self.gtx[i], Some(g) if g.k == k))
                        .collect();
                    for i in left {
                        self.finish_guest_tx(i, false);
                    }
                    self.pools[k] = None
                }
                None => self.stats.bogus += 1,
            },
        }
        Ok(())
    }

    /// The pool slot and buffer index a completion names, if it is one of ours.
    fn locate(&self, pool: u8, id: u32) -> Option<(usize, usize)> {
        let k = (*self.by_nic.get(usize::from(pool))?)?;
        let base = k as u32 * self.per_pool();
        let i = id.checked_sub(base)?;
        (i < self.per_pool()).then_some((k, i as usize))
    }

    fn rx_done(&mut self, d: RxDone, out: &mut Vec<(Mac, Frame)>) -> Option<usize> {
        if d.id & GUEST_ID_BIT != 0 {
            self.guest_rx_done(d);
            return None;
        }
        let rx_n = self.cfg.rx_per_pool as usize;
        let Some((k, i)) = self.locate(d.pool, d.id).filter(|&(_, i)| i < rx_n) else {
            self.stats.bogus += 1;
            return None;
        };
        let off = self.buf_off(d.id);
        let p = self.pools[k].as_mut()?;
        if !p.rx_posted[i] {
            self.stats.bogus += 1;
            return None;
        }
        p.rx_posted[i] = false;
        let releasing = matches!(p.state, PoolState::Releasing(_));
        match d.status {
            RxStatus::Frame if usize::from(d.len) <= self.cfg.buf_size => {
                let mut data = vec![0u8; usize::from(d.len)];
                read_bytes(self.dma.mem, off, &mut data);
                self.stats.rx_frames += 1;
                out.push((p.mac, Frame::plain(data)));
            }
            RxStatus::Frame => self.stats.bogus += 1,
            RxStatus::Error => self.stats.rx_errors += 1,
            RxStatus::Unused | RxStatus::Refused => return None,
        }
        (!releasing).then_some(k)
    }

    fn guest_rx_done(&mut self, d: RxDone) {
        let i = (d.id & !GUEST_ID_BIT) as usize;
        let k = self.by_nic.get(usize::from(d.pool)).copied().flatten();
        let slot = self.guest.get(i).copied().flatten();
        let Some(g) = slot.filter(|g| Some(g.k) == k) else {
            self.stats.bogus += 1;
            return;
        };
        let (len, status) = match d.status {
            RxStatus::Frame if d.len <= g.len => {
                self.stats.rx_frames += 1;
                (d.len, RxStatus::Frame)
            }
            RxStatus::Frame => {
                // Longer than the buffer: the NIC (or the peer faking it) is wrong; the page
                // holds nothing usable.
                self.stats.bogus += 1;
                (0, RxStatus::Error)
            }
            RxStatus::Error => {
                self.stats.rx_errors += 1;
                (0, RxStatus::Error)
            }
            s => (0, s),
        };
        self.release_guest_slot(i);
        self.guest_done.push(GuestRxDone {
            tag: g.tag,
            len,
            status,
        });
    }

    fn release_guest_slot(&mut self, i: usize) {
        if let Some(g) = self.guest.get_mut(i).and_then(Option::take) {
            if let Some(p) = self.pools[g.k].as_mut() {
                p.guest_out = p.guest_out.saturating_sub(1);
            }
            self.guest_free.push(i as u32);
        }
    }

    /// How many more guest buffers the guest pool of `mac` takes now (0 if it has none ready).
    pub fn guest_rx_room(&self, mac: &Mac) -> usize {
        self.pools
            .iter()
            .flatten()
            .find(|p| p.mac == *mac && p.guest_rx && matches!(p.state, PoolState::Ready(_)))
            .map_or(0, |p| {
                self.cfg.rx_per_pool.saturating_sub(p.guest_out) as usize
            })
    }

    /// Posts guest buffers to the guest pool of `mac`; returns how many were taken (a prefix
    /// of `bufs`; the rest were not posted and stay the caller's).
    pub fn post_guest_rx(&mut self, mac: &Mac, bufs: &[GuestRxBuf]) -> Result<usize, ChannelError> {
        let room = self.guest_rx_room(mac).min(bufs.len());
        let Some(k) = self.pools.iter().position(
            |p| matches!(p, Some(p) if p.mac == *mac && p.guest_rx && matches!(p.state, PoolState::Ready(_))),
        ) else {
            return Ok(0);
        };
        let Some(PoolState::Ready(n)) = self.pools[k].as_ref().map(|p| p.state) else {
            return Ok(0);
        };
        let mut posts = Vec::with_capacity(room);
        for b in &bufs[..room] {
            let i = match self.guest_free.pop() {
                Some(i) => i as usize,
                None => {
                    self.guest.push(None);
                    self.guest.len() - 1
                }
            };
            self.guest[i] = Some(GuestSlot {
                k,
                tag: b.tag,
                len: b.len,
            });
            posts.push(RxPost {
                pool: n,
                id: GUEST_ID_BIT | i as u32,
                addr: b.bus,
                len: b.len,
            });
        }
        if let Some(p) = self.pools[k].as_mut() {
            p.guest_out += room as u32;
        }
        if posts.is_empty() {
            return Ok(0);
        }
        let r = self.end.post_rx(&posts)?;
        self.kick |= r.notify;
        for post in &posts[r.count..] {
            self.release_guest_slot((post.id & !GUEST_ID_BIT) as usize);
        }
        Ok(r.count)
    }

    /// Guest buffers the NIC gave back since the last call, in completion order.
    pub fn take_guest_rx_done(&mut self) -> Vec<GuestRxDone> {
        core::mem::take(&mut self.guest_done)
    }

    fn finish_guest_tx(&mut self, i: usize, sent: bool) {
        if let Some(g) = self.gtx.get_mut(i).and_then(Option::take) {
            if let Some(p) = self.pools[g.k].as_mut() {
                p.guest_tx_out = p.guest_tx_out.saturating_sub(1);
            }
            self.gtx_free.push(i as u32);
            self.gtx_done.push(GuestTxDone { tag: g.tag, sent });
        }
    }

    /// Guest transmit buffers the NIC is done with since the last call.
    pub fn take_guest_tx_done(&mut self) -> Vec<GuestTxDone> {
        core::mem::take(&mut self.gtx_done)
    }

    fn tx_done(&mut self, d: TxDone) {
        if d.id & GUEST_ID_BIT != 0 {
            let i = (d.id & !GUEST_ID_BIT) as usize;
            let k = self.by_nic.get(usize::from(d.pool)).copied().flatten();
            if !matches!(self.gtx.get(i), Some(Some(g)) if Some(g.k) == k) {
                self.stats.bogus += 1;
                return;
            }
            let sent = d.status == qpair::TxStatus::Sent;
            if !sent {
                self.stats.tx_failed += 1;
            }
            self.finish_guest_tx(i, sent);
            return;
        }
        let rx_n = self.cfg.rx_per_pool as usize;
        let Some((k, i)) = self.locate(d.pool, d.id).filter(|&(_, i)| i >= rx_n) else {
            self.stats.bogus += 1;
            return;
        };
        let Some(p) = self.pools[k].as_mut() else {
            return;
        };
        let t = i - rx_n;
        if !p.tx_busy[t] {
            self.stats.bogus += 1;
            return;
        }
        p.tx_busy[t] = false;
        p.tx_free.push(t as u32);
        if d.status != qpair::TxStatus::Sent {
            self.stats.tx_failed += 1;
        }
    }

    /// Posts `frames` for the wire, each through its source MAC's pool.
    pub fn transmit(
        &mut self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), ChannelError> {
        self.transmit_out(frames.into_iter().map(NicOut::Frame).collect())
    }

    fn ready_pool_of(&self, src: Option<Mac>) -> Option<usize> {
        let src = src?;
        self.pools.iter().position(
            |p| matches!(p, Some(p) if p.mac == src && matches!(p.state, PoolState::Ready(_))),
        )
    }

    /// Posts a guest's frame by bus address on its source's pool; `None` if it cannot go.
    fn guest_tx_post(&mut self, g: &GuestTxBuf) -> Option<TxPost> {
        let len = usize::from(g.len);
        let k = self.ready_pool_of(Some(g.src))?;
        let p = self.pools[k].as_mut()?;
        let PoolState::Ready(n) = p.state else {
            return None;
        };
        if !(ETH_HLEN..=MAX_WIRE_FRAME).contains(&len) || p.guest_tx_out >= self.cfg.tx_per_pool {
            return None;
        }
        p.guest_tx_out += 1;
        let i = match self.gtx_free.pop() {
            Some(i) => i as usize,
            None => {
                self.gtx.push(None);
                self.gtx.len() - 1
            }
        };
        self.gtx[i] = Some(GuestSlot {
            k,
            tag: g.tag,
            len: g.len,
        });
        Some(TxPost {
            pool: n,
            id: GUEST_ID_BIT | i as u32,
            addr: g.bus,
            len: g.len,
        })
    }

    /// Posts `items` for the wire in order, each through its source MAC's pool: frames are
    /// copied into the port's buffers, guest frames are sent from the guest's page.
    pub fn transmit_out(&mut self, items: Vec<NicOut>) -> Result<(), ChannelError> {
        let mut posts = Vec::new();
        let per = self.per_pool();
        let rx_n = self.cfg.rx_per_pool;
        let mut frames: Vec<Frame> = Vec::new();
        for item in items {
            let g = match item {
                NicOut::Frame(f) => {
                    // The queue pair carries no offload metadata: segment and checksum here.
                    match offload::complete(f, |_| false, false) {
                        Ok(v) => frames.extend(v),
                        Err(_) => self.stats.tx_drops += 1,
                    }
                    continue;
                }
                NicOut::Guest(g) => g,
            };
            // Frames queued before this one go first (one pool's order is the wire's).
            self.post_frames(core::mem::take(&mut frames), &mut posts, per, rx_n);
            match self.guest_tx_post(&g) {
                Some(p) => posts.push(p),
                None => {
                    self.stats.tx_drops += 1;
                    self.gtx_done.push(GuestTxDone {
                        tag: g.tag,
                        sent: false,
                    });
                }
            }
        }
        self.post_frames(frames, &mut posts, per, rx_n);
        if posts.is_empty() {
            return Ok(());
        }
        let r = self.end.post_tx(&posts)?;
        self.kick |= r.notify;
        self.stats.tx_frames += r.count as u64;
        for post in &posts[r.count..] {
            self.stats.tx_drops += 1;
            if post.id & GUEST_ID_BIT != 0 {
                self.finish_guest_tx((post.id & !GUEST_ID_BIT) as usize, false);
                continue;
            }
            // The ring was full: give the buffer back and count the frame as dropped.
            if let Some((k, i)) = self.locate(post.pool, post.id)
                && let Some(p) = self.pools[k].as_mut()
            {
                let t = i - rx_n as usize;
                p.tx_busy[t] = false;
                p.tx_free.push(t as u32);
            }
        }
        Ok(())
    }

    /// Copies `frames` into free transmit buffers of their pools, appending the posts.
    fn post_frames(&mut self, frames: Vec<Frame>, posts: &mut Vec<TxPost>, per: u32, rx_n: u32) {
        for f in frames {
            let len = f.data.len();
            let sendable = (ETH_HLEN..=MAX_WIRE_FRAME).contains(&len);
            let slot = self.ready_pool_of(f.src());
            let (Some(k), true) = (slot, sendable) else {
                self.stats.tx_drops += 1;
                continue;
            };
            let Some(p) = self.pools[k].as_mut() else {
                continue;
            };
            let PoolState::Ready(n) = p.state else {
                continue;
            };
            let Some(t) = p.tx_free.pop() else {
                self.stats.tx_drops += 1;
                continue;
            };
            p.tx_busy[t as usize] = true;
            let id = k as u32 * per + rx_n + t;
            let off = id as usize * self.cfg.buf_size;
            write_bytes(self.dma.mem, off, &f.data);
            posts.push(TxPost {
                pool: n,
                id,
                addr: self.dma.bus + off as u64,
                len: len as u16,
            });
        }
    }

    /// One exchange with netback: pools follow the served MACs, frames from the NIC go into
    /// the switch, frames for the wire go out. The server calls this after `Netback::poll`
    /// and after a queue-pair notification, then kicks the NIC if [`NicPort::take_kick`].
    ///
    /// Netchannel2 vifs get guest pools: their posted buffers go to the NIC by bus address
    /// ([`Netback::nic_guest_rx_take`]) and come back to them ([`Netback::nic_guest_rx_done`])
    /// with the frame already in the guest's page.
    pub fn exchange<H: Hypervisor>(&mut self, nb: &mut Netback<H>) -> Result<(), ChannelError> {
        self.exchange_holding(nb, false)
    }

    /// [`NicPort::exchange`], but with `hold` frames for the wire stay in netback's bounded NIC
    /// backlog instead of leaving: the server holds them while a served MAC waits for its
    /// pool (a vif that just connected sends its first ARP requests at once, and they would
    /// be dropped for want of a pool).
    pub fn exchange_holding<H: Hypervisor>(
        &mut self,
        nb: &mut Netback<H>,
        hold: bool,
    ) -> Result<(), ChannelError> {
        let guest_macs = nb.guest_rx_macs();
        self.sync_pools(&nb.port_macs(), &guest_macs)?;
        let mut frames = Vec::new();
        self.poll_pools(&mut frames)?;
        let pooled = self.pooled_macs();
        for (via, f) in frames {
            nb.nic_receive_via(f, via, &pooled);
        }
        nb.nic_guest_rx_done(&self.take_guest_rx_done());
        for mac in guest_macs {
            let room = self.guest_rx_room(&mac);
            if room == 0 {
                continue;
            }
            let bufs = nb.nic_guest_rx_take(&mac, room);
            let n = self.post_guest_rx(&mac, &bufs)?;
            nb.nic_guest_rx_untaken(&bufs[n..]);
        }
        let out = if hold {
            Ok(())
        } else {
            self.transmit_out(nb.take_nic_out())
        };
        nb.nic_guest_tx_done(&self.take_guest_tx_done());
        out
    }
}
