//! The NIC server's end of the queue-pair channel: turns netback's requests into driver calls
//! and the driver's completions into replies, in batches.
//!
//! Trust: the channel (qpair) already rejects malformed entries; this module enforces
//! ownership and resources. A channel may only touch pools it allocated; buffers must lie
//! inside the bus windows the system description granted to netback; receive buffers must be
//! at least the configured size; transmit frames must be 14..=1522 bytes; netback may keep at
//! most `ring - 1` buffers outstanding per pool and direction. Any request breaking a rule is
//! answered with a `Refused` completion carrying its id, never acted upon.
//!
//! Ordering: each poll takes posts before control requests, and all completions of a released
//! pool are pushed before its `PoolReleased` reply; netback posts nothing for a pool after
//! asking to release it (such posts are refused as not owned).
//! Completions wait in bounded backlogs when the completion rings are full; requests are only
//! taken off the channel while there is room to answer them, so a peer cannot make the
//! backlogs grow past what a pool can hold.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use qpair::{
    ChannelError, Ctrl, CtrlReply, MacAddr, NicEnd, RefuseReason, RxDone, RxPost, RxStatus, TxDone,
    TxPost, TxStatus,
};

use crate::error::Error;
use crate::hw::{Delay, Dma, RegisterAccess};
use crate::nic::{Nic, Released};
use crate::pool::PoolFlags;
use crate::queue::{RxBuf, RxCompletion, TxBuf};

/// Requests taken per ring per poll.
const BATCH: usize = 64;
/// Batches of posts taken per ring per poll.
const MAX_BATCHES: usize = 8;
/// Largest frame the NIC is asked to send (no jumbo frames).
pub const MAX_TX_FRAME: u16 = 1522;
pub const MIN_TX_FRAME: u16 = 14;

/// A bus address range netback's buffers may live in: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

/// Requests this end refused, by rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    pub not_owned: u64,
    pub outside_window: u64,
    pub bad_length: u64,
    pub ring_full: u64,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Requests taken plus completions pushed.
    pub work: usize,
    /// Netback asked to be notified of something pushed in this poll.
    pub notify: bool,
}

pub struct Service {
    windows: Vec<Window>,
    owned: u64,
    rx_backlog: VecDeque<RxDone>,
    tx_backlog: VecDeque<TxDone>,
    ctrl_backlog: VecDeque<CtrlReply>,
    /// Pools whose `PoolReleased` waits for their completions to leave the backlogs.
    releasing: Vec<u8>,
    /// Scratch for runs of same-pool posts, kept to avoid an allocation per poll.
    rx_run: Vec<RxBuf>,
    tx_run: Vec<TxBuf>,
    pub refusals: Refusals,
}

impl Service {
    pub fn new(windows: &[Window]) -> Self {
        Self {
            windows: windows.to_vec(),
            owned: 0,
            rx_backlog: VecDeque::new(),
            tx_backlog: VecDeque::new(),
            ctrl_backlog: VecDeque::new(),
            releasing: Vec::new(),
            rx_run: Vec::with_capacity(BATCH),
            tx_run: Vec::with_capacity(BATCH),
            refusals: Refusals::default(),
        }
    }

    /// Pools this channel owns (the server re-arms their vectors after a poll).
    pub fn pools(&self) -> impl Iterator<Item = u8> + '_ {
        (0..64u8).filter(|p| self.owned & (1 << p) != 0)
    }

    fn owns(&self, p: u8) -> bool {
        p < 64 && self.owned & (1 << p) != 0
    }

    fn in_window(&self, addr: u64, len: u16) -> bool {
        let end = addr + u64::from(len);
        self.windows.iter().any(|w| addr >= w.start && end <= w.end)
    }

    /// One round: control, RX posts, TX posts, completions. Call when notified and after
    /// every NIC interrupt.
    pub fn poll<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        ch: &mut NicEnd<'_>,
    ) -> Result<Activity, ChannelError> {
        let mut act = Activity::default();
        self.flush(ch, &mut act)?;
        // Posts before control, so buffers posted ahead of a release belong to the pool.
        // Bounded, so a peer that keeps refilling cannot hold the server here.
        for _ in 0..MAX_BATCHES {
            if self.rx_posts(nic, ch, &mut act)? < BATCH {
                break;
            }
        }
        for _ in 0..MAX_BATCHES {
            if self.tx_posts(nic, ch, &mut act)? < BATCH {
                break;
            }
        }
        self.control(nic, ch, &mut act)?;
        self.harvest(nic, ch)?;
        self.flush(ch, &mut act)?;
        Ok(act)
    }

    fn control<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        ch: &mut NicEnd<'_>,
        act: &mut Activity,
    ) -> Result<(), ChannelError> {
        // Leave room for every reply, counting those already waiting.
        let room = (ch.ctrl_room()? as usize).saturating_sub(self.ctrl_backlog.len());
        let mut reqs = [Ctrl::ReleasePool { pool: 0 }; 8];
        let n = ch.recv_ctrl(&mut reqs[..room.min(8)])?;
        act.work += n;
        for req in &reqs[..n] {
            match *req {
                Ctrl::AllocPool { req, mac, flags } => {
                    let reply = self.alloc(nic, req, mac, flags);
                    self.ctrl_backlog.push_back(reply);
                }
                Ctrl::ReleasePool { pool } => {
                    if !self.owns(pool) {
                        self.refusals.not_owned += 1;
                        continue;
                    }
                    self.release(nic, pool);
                }
            }
        }
        Ok(())
    }

    fn alloc<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        req: u32,
        mac: MacAddr,
        flags: qpair::PoolFlags,
    ) -> CtrlReply {
        let flags = PoolFlags {
            broadcast: flags.broadcast,
            multicast: flags.multicast,
        };
        match nic.alloc_pool(mac.0, flags) {
            Ok(pool) => {
                self.owned |= 1 << pool;
                CtrlReply::PoolAllocated { req, pool }
            }
            Err(e) => CtrlReply::PoolRefused {
                req,
                reason: match e {
                    Error::NoFreePool => RefuseReason::NoPool,
                    Error::MacInUse => RefuseReason::MacInUse,
                    _ => RefuseReason::Hardware,
                },
            },
        }
    }

    fn release<R: RegisterAccess, D: Dma, T: Delay>(&mut self, nic: &mut Nic<R, D, T>, pool: u8) {
        let (rxb, txb) = (&mut self.rx_backlog, &mut self.tx_backlog);
        // The pool is gone even if a queue was slow to stop; every buffer was still handed back.
        let _ = nic.release_pool(pool, |e| match e {
            Released::RxFrame(c) => rxb.push_back(rx_done(pool, c)),
            Released::RxUnused(id) => rxb.push_back(RxDone {
                pool,
                id,
                len: 0,
                status: RxStatus::Unused,
            }),
            Released::TxSent(id) => txb.push_back(TxDone {
                pool,
                id,
                status: TxStatus::Sent,
            }),
            Released::TxDiscarded(id) => txb.push_back(TxDone {
                pool,
                id,
                status: TxStatus::Discarded,
            }),
        });
        self.owned &= !(1 << pool);
        self.releasing.push(pool);
    }

    fn rx_posts<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        ch: &mut NicEnd<'_>,
        act: &mut Activity,
    ) -> Result<usize, ChannelError> {
        let room = (ch.completion_room()?.0 as usize).saturating_sub(self.rx_backlog.len());
        let mut posts = [RxPost {
            pool: 0,
            id: 0,
            addr: 1,
            len: 1,
        }; BATCH];
        let n = ch.recv_rx_posts(&mut posts[..room.min(BATCH)])?;
        act.work += n;
        let min_len = nic.config().rx_buf_kb * 1024;
        let mut run = core::mem::take(&mut self.rx_run);
        let mut run_pool = None;
        for post in &posts[..n] {
            let refuse = if !self.owns(post.pool) {
                Some(&mut self.refusals.not_owned)
            } else if u32::from(post.len) < min_len {
                Some(&mut self.refusals.bad_length)
            } else if !self.in_window(post.addr, post.len) {
                Some(&mut self.refusals.outside_window)
            } else {
                None
            };
            if let Some(counter) = refuse {
                *counter += 1;
                self.rx_backlog.push_back(refused_rx(post));
                continue;
            }
            if run_pool != Some(post.pool) {
                self.post_run(nic, run_pool, &mut run);
                run_pool = Some(post.pool);
            }
            run.push(RxBuf {
                addr: post.addr,
                id: post.id,
            });
        }
        self.post_run(nic, run_pool, &mut run);
        self.rx_run = run;
        Ok(n)
    }

    fn post_run<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        pool: Option<u8>,
        run: &mut Vec<RxBuf>,
    ) {
        let Some(pool) = pool else { return };
        let taken = nic.post_rx(pool, run).unwrap_or(0);
        for b in &run[taken..] {
            self.refusals.ring_full += 1;
            self.rx_backlog.push_back(RxDone {
                pool,
                id: b.id,
                len: 0,
                status: RxStatus::Refused,
            });
        }
        run.clear();
    }

    fn tx_posts<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        ch: &mut NicEnd<'_>,
        act: &mut Activity,
    ) -> Result<usize, ChannelError> {
        let room = (ch.completion_room()?.1 as usize).saturating_sub(self.tx_backlog.len());
        let mut posts = [TxPost {
            pool: 0,
            id: 0,
            addr: 1,
            len: 1,
        }; BATCH];
        let n = ch.recv_tx_posts(&mut posts[..room.min(BATCH)])?;
        act.work += n;
        let mut run = core::mem::take(&mut self.tx_run);
        let mut run_pool = None;
        for post in &posts[..n] {
            let refuse = if !self.owns(post.pool) {
                Some(&mut self.refusals.not_owned)
            } else if !(MIN_TX_FRAME..=MAX_TX_FRAME).contains(&post.len) {
                Some(&mut self.refusals.bad_length)
            } else if !self.in_window(post.addr, post.len) {
                Some(&mut self.refusals.outside_window)
            } else {
                None
            };
            if let Some(counter) = refuse {
                *counter += 1;
                self.tx_backlog.push_back(TxDone {
                    pool: post.pool,
                    id: post.id,
                    status: TxStatus::Refused,
                });
                continue;
            }
            if run_pool != Some(post.pool) {
                self.send_run(nic, run_pool, &mut run);
                run_pool = Some(post.pool);
            }
            run.push(TxBuf {
                addr: post.addr,
                len: post.len,
                id: post.id,
            });
        }
        self.send_run(nic, run_pool, &mut run);
        self.tx_run = run;
        Ok(n)
    }

    fn send_run<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        pool: Option<u8>,
        run: &mut Vec<TxBuf>,
    ) {
        let Some(pool) = pool else { return };
        let taken = nic.tx_burst(pool, run).unwrap_or(0);
        for f in &run[taken..] {
            self.refusals.ring_full += 1;
            self.tx_backlog.push_back(TxDone {
                pool,
                id: f.id,
                status: TxStatus::Refused,
            });
        }
        run.clear();
    }

    fn harvest<R: RegisterAccess, D: Dma, T: Delay>(
        &mut self,
        nic: &mut Nic<R, D, T>,
        ch: &mut NicEnd<'_>,
    ) -> Result<(), ChannelError> {
        let (rx_free, tx_free) = ch.completion_room()?;
        let mut rx_room = (rx_free as usize).saturating_sub(self.rx_backlog.len());
        let mut tx_room = (tx_free as usize).saturating_sub(self.tx_backlog.len());
        let mut rx = [RxCompletion::default(); BATCH];
        let mut ids = [0u32; BATCH];
        let mut owned = self.owned;
        while owned != 0 {
            let pool = owned.trailing_zeros() as u8;
            owned &= owned - 1;
            let n = nic
                .rx_burst(pool, &mut rx[..rx_room.min(BATCH)])
                .unwrap_or(0);
            rx_room -= n;
            self.rx_backlog
                .extend(rx[..n].iter().map(|c| rx_done(pool, *c)));
            let n = nic
                .tx_reclaim(pool, &mut ids[..tx_room.min(BATCH)])
                .unwrap_or(0);
            tx_room -= n;
            self.tx_backlog.extend(ids[..n].iter().map(|&id| TxDone {
                pool,
                id,
                status: TxStatus::Sent,
            }));
        }
        Ok(())
    }

    fn flush(&mut self, ch: &mut NicEnd<'_>, act: &mut Activity) -> Result<(), ChannelError> {
        let mut buf = [RxDone {
            pool: 0,
            id: 0,
            len: 0,
            status: RxStatus::Unused,
        }; BATCH];
        while !self.rx_backlog.is_empty() {
            let n = self.rx_backlog.len().min(BATCH);
            for (b, d) in buf.iter_mut().zip(self.rx_backlog.iter()) {
                *b = *d;
            }
            let pushed = ch.send_rx_done(&buf[..n])?;
            self.rx_backlog.drain(..pushed.count);
            act.work += pushed.count;
            act.notify |= pushed.notify;
            if pushed.count < n {
                break;
            }
        }
        let mut tbuf = [TxDone {
            pool: 0,
            id: 0,
            status: TxStatus::Sent,
        }; BATCH];
        while !self.tx_backlog.is_empty() {
            let n = self.tx_backlog.len().min(BATCH);
            for (b, d) in tbuf.iter_mut().zip(self.tx_backlog.iter()) {
                *b = *d;
            }
            let pushed = ch.send_tx_done(&tbuf[..n])?;
            self.tx_backlog.drain(..pushed.count);
            act.work += pushed.count;
            act.notify |= pushed.notify;
            if pushed.count < n {
                break;
            }
        }
        if self.rx_backlog.is_empty() && self.tx_backlog.is_empty() {
            for pool in self.releasing.drain(..) {
                self.ctrl_backlog
                    .push_back(CtrlReply::PoolReleased { pool });
            }
        }
        while let Some(&reply) = self.ctrl_backlog.front() {
            let pushed = ch.send_ctrl(&[reply])?;
            if pushed.count == 0 {
                break;
            }
            self.ctrl_backlog.pop_front();
            act.work += 1;
            act.notify |= pushed.notify;
        }
        Ok(())
    }
}

fn rx_done(pool: u8, c: RxCompletion) -> RxDone {
    // A zero-length "good" write-back is not a frame either.
    let ok = c.ok && c.len > 0;
    RxDone {
        pool,
        id: c.id,
        len: if ok { c.len } else { 0 },
        status: if ok { RxStatus::Frame } else { RxStatus::Error },
    }
}

fn refused_rx(p: &RxPost) -> RxDone {
    RxDone {
        pool: p.pool,
        id: p.id,
        len: 0,
        status: RxStatus::Refused,
    }
}
