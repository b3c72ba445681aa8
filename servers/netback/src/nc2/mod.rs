//! A netchannel2 vif: libnc2's backend end over the frontend's mapped control area and rings
//! (one page each, `docs/nc2-xenbus.md`), one event channel, the posted receive buffers
//! ([`buffers`]) and a staging region for copies.
//!
//! - Guest TX ([`Nc2Vif::guest_tx`]): SMALL packets are taken from the message itself;
//!   RECEIVER_COPY fragments of the whole batch are grant-copied into staging in ONE call;
//!   RECEIVER_MAP fragments are mapped read-only in one call, read, and unmapped in one call
//!   before the FINISH goes out. Every copy/map packet is FINISHed once its bytes are ours,
//!   which returns its credit (our SET_MAX_PACKETS) to the frontend. POST_BUFFERS messages
//!   met on the way are applied in the same round (one map call for the new grants).
//! - Guest RX from the switch ([`Nc2Vif::deliver`], [`Nc2Vif::guest_rx`]): frames of at most
//!   [`MAX_PREFIX`] bytes go inline as SMALL packets; longer ones are copied by the CPU into
//!   idle posted buffers (mapped once, reused) and announced as PRE_POSTED packets. The
//!   frontend's SET_OFFLOAD and SET_MAX_FRAGMENTS are honoured: blank checksums and GSO
//!   frames are completed in software first, frames needing more buffers than it takes
//!   fragments are dropped and counted.
//! - Guest RX from the NIC: idle buffers a device can reach go to the vif's own NIC pool by
//!   bus address ([`Nc2Vif::nic_take`]); a buffer the NIC filled ([`Nc2Vif::nic_done`]) is
//!   announced as PRE_POSTED with no copy at all.
//!
//! Invariants: nothing the frontend wrote is used before libnc2 validated it; any
//! [`libnc2::PeerError`] (or a posted grant we cannot map) is a [`QueueError`] that
//! disconnects this vif only; the channel views are dropped before their pages are unmapped;
//! a buffer at the NIC stays mapped until the NIC gave it back (see [`Nc2Vif::disconnect`]).

pub mod buffers;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use libnc2::GrantBound;
use libnc2::SendError;
use libnc2::nc2::msg::{PKT_CSUM_BLANK, PKT_DATA_VALIDATED, packet_message_size};
use libnc2::nc2::{
    Backend, ChannelMem, Config as ChanConfig, Event, Fragment, MAX_PREFIX, Offload as ChanOffload,
    PacketKind, PacketMeta, PostedBuffer, Segmentation,
};
use libnc2::netif::extra::{GSO_TCPV4, GSO_TCPV6};

use crate::counters::VifCounters;
use crate::hv::{
    CopyOp, CopyPtr, DomId, GNTST_OKAY, HvError, Hypervisor, LocalRegion, Mapping, PAGE, Port,
    read_bytes, write_bytes,
};
use crate::netif::{MAX_PACKET, QueueError};
use crate::offload;
use crate::rate::Credit;
use crate::switch::{ETH_HLEN, Frame, Offload};
use buffers::{BufferTable, PostError};

/// Staging pages for guest TX copies: room for a batch and always for one maximal packet.
const TX_STAGE_PAGES: usize = 48;
/// Staged packets start on this alignment (word copies stay aligned).
const STAGE_ALIGN: usize = 64;

/// A netchannel2 frontend's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nc2Refs {
    /// `nc2-control-ref`.
    pub control_ref: u32,
    /// `nc2-f2b-ring-ref`.
    pub f2b_ring_ref: u32,
    /// `nc2-b2f-ring-ref`.
    pub b2f_ring_ref: u32,
    /// `event-channel` (both directions).
    pub evtchn: Port,
}

/// Limits of a netchannel2 vif.
#[derive(Clone, Copy, Debug)]
pub struct Nc2Config {
    /// Copy/map packets the frontend may have outstanding (our SET_MAX_PACKETS).
    pub max_packets: u32,
    /// Buffers the frontend may post (ids `0..n`); each costs one mapping while posted.
    pub posted_buffers: u32,
    /// Idle buffers kept back from the NIC for frames that must be copied (from other
    /// guests, the responder, or the NIC through netback's own buffers).
    pub copy_reserve: usize,
    /// Frames held for a frontend that has not posted buffers.
    pub backlog: usize,
}

impl Default for Nc2Config {
    fn default() -> Self {
        Nc2Config {
            max_packets: 64,
            posted_buffers: 128,
            copy_reserve: 4,
            backlog: 256,
        }
    }
}

/// How a taken guest packet's bytes are reached.
enum TxBody {
    /// Everything is in `prefix`.
    Inline,
    /// Fragments grant-copied to staging at `stage`, by `ops`.
    Copied {
        stage: usize,
        len: usize,
        ops: core::ops::Range<usize>,
    },
    /// Fragments to map, the `maps` range of the batch's map list.
    Mapped { maps: core::ops::Range<usize> },
}

struct TxItem {
    meta: PacketMeta,
    prefix: Vec<u8>,
    body: TxBody,
}

/// One connected netchannel2 vif.
pub struct Nc2Vif {
    dom: DomId,
    id: u32,
    be: Backend<'static>,
    handles: [u32; 3],
    port: Port,
    stage: LocalRegion,
    bufs: BufferTable,
    cfg: Nc2Config,
    backlog: VecDeque<Frame>,
    /// Buffers the NIC filled, (id, length), not yet announced (ring full).
    nic_filled: VecDeque<(u32, u16)>,
    finishes: VecDeque<u32>,
    ops: Vec<CopyOp>,
    credit: Option<Credit>,
    /// This vif's counters.
    pub counters: VifCounters,
}

fn send_err(e: SendError) -> QueueError {
    match e {
        SendError::Peer(p) => QueueError::Ring(p),
        _ => QueueError::Setup("netchannel2 message refused by our own end"),
    }
}

fn post_err(e: PostError) -> QueueError {
    match e {
        PostError::Map { gref, status } => QueueError::RxGrant { gref, status },
        PostError::Hv(h) => QueueError::Hv(h),
    }
}

impl Nc2Vif {
    /// Maps the control area and both rings (one call), attaches libnc2's backend, binds the
    /// event channel and allocates staging; announces our limits and offloads. On failure
    /// everything acquired is released. `id` is netback's handle of the vif (it names the
    /// vif's buffers at the NIC).
    pub fn connect<H: Hypervisor>(
        hv: &mut H,
        dom: DomId,
        id: u32,
        refs: Nc2Refs,
        cfg: Nc2Config,
    ) -> Result<Self, QueueError> {
        let mut counters = VifCounters::default();
        let grefs = [refs.control_ref, refs.f2b_ring_ref, refs.b2f_ring_ref];
        let mut maps: Vec<Result<Mapping, i16>> = Vec::with_capacity(3);
        hv.grant_map(dom, &grefs, false, &mut maps)?;
        counters.grant_call(3);
        let held: Vec<u32> = maps
            .iter()
            .filter_map(|m| m.ok().map(|m| m.handle))
            .collect();
        let release = |hv: &mut H, counters: &mut VifCounters| {
            if !held.is_empty() && hv.grant_unmap(&held).is_ok() {
                counters.grant_call(held.len());
            }
        };
        let mut got = [None; 3];
        for (i, name) in ["control", "front-to-back", "back-to-front"]
            .into_iter()
            .enumerate()
        {
            match maps.get(i).copied() {
                Some(Ok(m)) => got[i] = Some(m),
                Some(Err(status)) => {
                    release(hv, &mut counters);
                    return Err(QueueError::MapRing { ring: name, status });
                }
                None => {
                    release(hv, &mut counters);
                    return Err(QueueError::Hv(HvError::Grant(-22)));
                }
            }
        }
        let [Some(control), Some(f2b), Some(b2f)] = got else {
            release(hv, &mut counters);
            return Err(QueueError::Hv(HvError::Grant(-22)));
        };
        let mem = ChannelMem {
            control: control.mem,
            front_to_back: f2b.mem,
            back_to_front: b2f.mem,
        };
        let chan = ChanConfig {
            max_packets: cfg.max_packets,
            max_fragments: libnc2::nc2::MAX_FRAGMENTS,
            // Grant references only go to the hypervisor, which checks them.
            grants: GrantBound(u32::MAX),
            // We never send copy/map packets, so no id needs a FINISH.
            tx_ids: 1,
            posted_buffers: cfg.posted_buffers,
        };
        let mut be = match Backend::attach(mem, chan) {
            Ok(b) => b,
            Err(e) => {
                release(hv, &mut counters);
                return Err(QueueError::Setup(e.0));
            }
        };
        // Whatever offloads the guest leaves undone, netback completes before the next hop.
        let all = ChanOffload {
            csum: true,
            tso4: true,
            tso6: true,
        };
        if let Err(e) = be.set_offload(all) {
            drop(be);
            release(hv, &mut counters);
            return Err(send_err(e));
        }
        let port = match hv.evtchn_bind(dom, refs.evtchn) {
            Ok(p) => p,
            Err(e) => {
                drop(be);
                release(hv, &mut counters);
                return Err(e.into());
            }
        };
        let stage = match hv.alloc_local(TX_STAGE_PAGES) {
            Ok(s) => s,
            Err(e) => {
                hv.evtchn_close(port);
                drop(be);
                release(hv, &mut counters);
                return Err(e.into());
            }
        };
        hv.evtchn_unmask(port);
        if be.flush() {
            hv.evtchn_notify(port);
            counters.notifications += 1;
        }
        Ok(Nc2Vif {
            dom,
            id,
            be,
            handles: [control.handle, f2b.handle, b2f.handle],
            port,
            stage,
            bufs: BufferTable::new(cfg.posted_buffers),
            cfg,
            backlog: VecDeque::new(),
            nic_filled: VecDeque::new(),
            finishes: VecDeque::new(),
            ops: Vec::new(),
            credit: None,
            counters,
        })
    }

    /// The local event-channel port.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Limits guest transmit to `credit` from now on.
    pub fn set_credit(&mut self, credit: Credit) {
        self.credit = Some(credit);
    }

    /// If the rate limit holds guest transmit back: when it may go on.
    pub fn throttled_until(&self) -> Option<u64> {
        self.credit
            .as_ref()
            .filter(|c| !c.allows())
            .map(Credit::next_window)
    }

    /// Frames and NIC-filled buffers waiting to go to the guest.
    pub fn rx_pending(&self) -> usize {
        self.backlog.len() + self.nic_filled.len()
    }

    /// Buffers now at the NIC.
    pub fn at_nic(&self) -> usize {
        self.bufs.at_nic()
    }

    /// Closes the event channel, drops the channel, unmaps the rings and every buffer not at
    /// the NIC (one unmap call) and returns the staging memory. Returns the counters and the
    /// (buffer id, handle) of buffers still at the NIC: the caller unmaps each once the NIC
    /// gave it back.
    pub fn disconnect<H: Hypervisor>(self, hv: &mut H) -> (VifCounters, Vec<(u32, u32)>) {
        let Nc2Vif {
            be,
            handles,
            port,
            stage,
            bufs,
            mut counters,
            ..
        } = self;
        hv.evtchn_close(port);
        // The channel views must be gone before their pages are.
        drop(be);
        let (mut now, held) = bufs.release();
        now.extend_from_slice(&handles);
        if hv.grant_unmap(&now).is_ok() {
            counters.grant_call(now.len());
        }
        hv.free_local(stage);
        (counters, held)
    }

    /// Takes up to `budget` packets from the guest into `out` (one copy call, one map and
    /// one unmap call for the whole batch) and FINISHes them; applies buffer posts met on the
    /// way. Returns how many packets were taken.
    pub fn guest_tx<H: Hypervisor>(
        &mut self,
        hv: &mut H,
        budget: usize,
        now: u64,
        out: &mut Vec<Frame>,
    ) -> Result<usize, QueueError> {
        if let Some(c) = self.credit.as_mut() {
            c.refill(now);
        }
        self.send_finishes()?;
        let stage_len = TX_STAGE_PAGES * PAGE;
        let mut items: Vec<TxItem> = Vec::new();
        let mut posted: Vec<PostedBuffer> = Vec::new();
        let mut maps: Vec<Fragment> = Vec::new();
        let mut pos = 0usize;
        let mut events = 0;
        self.ops.clear();
        // Stop while a maximal packet still fits staging; bound the other messages too.
        while items.len() < budget && pos + MAX_PACKET < stage_len && events < 4 * budget {
            if self.credit.as_ref().is_some_and(|c| !c.allows()) {
                break;
            }
            events += 1;
            let Some(ev) = self.be.poll()? else {
                break;
            };
            let p = match ev {
                Event::Packet(p) => p,
                Event::BuffersPosted(b) => {
                    posted.extend(b.iter());
                    continue;
                }
                // Limits the frontend sets are kept (and enforced) by libnc2's end; the
                // frontend-only events cannot reach a backend.
                _ => continue,
            };
            if let Some(c) = self.credit.as_mut() {
                c.charge(p.total_len as usize);
            }
            let prefix = p.prefix.to_vec();
            let body = match p.meta.kind {
                PacketKind::Small => TxBody::Inline,
                PacketKind::ReceiverCopy => {
                    let start = self.ops.len();
                    let mut off = pos;
                    for f in p.frags() {
                        self.ops.push(CopyOp::new(
                            CopyPtr::Grant {
                                dom: self.dom,
                                gref: f.gref,
                                offset: f.offset,
                            },
                            CopyPtr::Local {
                                region: self.stage.id,
                                offset: off as u32,
                            },
                            f.size,
                        ));
                        off += usize::from(f.size);
                    }
                    let len = off - pos;
                    let body = TxBody::Copied {
                        stage: pos,
                        len,
                        ops: start..self.ops.len(),
                    };
                    pos += len.div_ceil(STAGE_ALIGN) * STAGE_ALIGN;
                    body
                }
                PacketKind::ReceiverMap => {
                    let start = maps.len();
                    maps.extend(p.frags());
                    TxBody::Mapped {
                        maps: start..maps.len(),
                    }
                }
                // libnc2 refuses PRE_POSTED from a frontend; nothing to take.
                PacketKind::PrePosted => continue,
            };
            items.push(TxItem {
                meta: p.meta,
                prefix,
                body,
            });
        }
        if !posted.is_empty() {
            self.bufs
                .post(hv, self.dom, &posted, &mut self.counters)
                .map_err(post_err)?;
        }
        if !self.ops.is_empty() {
            hv.grant_copy(&mut self.ops)?;
            self.counters.grant_call(self.ops.len());
        }
        let mapped = self.map_fragments(hv, &maps)?;
        for it in &items {
            let mut data = it.prefix.clone();
            let ok = match &it.body {
                TxBody::Inline => true,
                TxBody::Copied { stage, len, ops } => {
                    let ok = self.ops[ops.clone()].iter().all(|o| o.status == GNTST_OKAY);
                    if ok {
                        let at = data.len();
                        data.resize(at + len, 0);
                        read_bytes(self.stage.mem, *stage, &mut data[at..]);
                        self.counters.copy_bytes += *len as u64;
                    }
                    ok
                }
                TxBody::Mapped { maps: r } => {
                    let mut ok = true;
                    for (f, m) in maps[r.clone()].iter().zip(&mapped[r.clone()]) {
                        match m {
                            Some(m) => {
                                let at = data.len();
                                data.resize(at + usize::from(f.size), 0);
                                read_bytes(m.mem, usize::from(f.offset), &mut data[at..]);
                            }
                            None => ok = false,
                        }
                    }
                    ok
                }
            };
            if ok && data.len() >= ETH_HLEN {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += data.len() as u64;
                out.push(Frame {
                    data,
                    offload: tx_offload(&it.meta),
                });
            } else {
                self.counters.tx_errors += 1;
            }
            if it.meta.kind.needs_finish() {
                self.finishes.push_back(it.meta.id);
            }
        }
        // Promptly, as RECEIVER_MAP asks: the bytes are ours now.
        self.unmap_fragments(hv, &mapped)?;
        self.send_finishes()?;
        Ok(items.len())
    }

    /// Maps the pages of RECEIVER_MAP fragments read-only, in one call; `None` where the
    /// grant was refused. The caller unmaps them with [`Nc2Vif::unmap_fragments`].
    fn map_fragments<H: Hypervisor>(
        &mut self,
        hv: &mut H,
        frags: &[Fragment],
    ) -> Result<Vec<Option<Mapping>>, QueueError> {
        if frags.is_empty() {
            return Ok(Vec::new());
        }
        let grefs: Vec<u32> = frags.iter().map(|f| f.gref).collect();
        let mut res = Vec::with_capacity(grefs.len());
        hv.grant_map(self.dom, &grefs, true, &mut res)?;
        self.counters.grant_call(grefs.len());
        Ok(res.into_iter().map(Result::ok).collect())
    }

    /// Unmaps what [`Nc2Vif::map_fragments`] mapped, in one call.
    fn unmap_fragments<H: Hypervisor>(
        &mut self,
        hv: &mut H,
        maps: &[Option<Mapping>],
    ) -> Result<(), QueueError> {
        let handles: Vec<u32> = maps.iter().flatten().map(|m| m.handle).collect();
        if !handles.is_empty() {
            hv.grant_unmap(&handles)?;
            self.counters.grant_call(handles.len());
        }
        Ok(())
    }

    /// Sends the FINISHes that wait for ring space.
    fn send_finishes(&mut self) -> Result<(), QueueError> {
        while let Some(&id) = self.finishes.front() {
            match self.be.finish_packet(id) {
                Ok(()) => {
                    self.finishes.pop_front();
                }
                Err(SendError::RingFull) => break,
                Err(e) => return Err(send_err(e)),
            }
        }
        Ok(())
    }

    /// Publishes what we sent and consumed (event if the frontend asks), then arms the event
    /// for the next message; true means messages arrived meanwhile (service again).
    pub fn tx_final_check<H: Hypervisor>(&mut self, hv: &mut H) -> Result<bool, QueueError> {
        self.publish(hv);
        let mut more = self.be.prepare_to_sleep()?;
        if !self.finishes.is_empty() || !self.nic_filled.is_empty() {
            // Wait for ring space: the frontend's consumption wakes us.
            more |= self
                .be
                .producer()
                .prepare_wait_for_space(packet_message_size(1, 0) as u32)?;
        }
        Ok(more)
    }

    fn publish<H: Hypervisor>(&mut self, hv: &mut H) {
        if self.be.flush() {
            hv.evtchn_notify(self.port);
            self.counters.notifications += 1;
        }
    }

    /// Queues a frame from the switch for the guest, completing in software what it cannot
    /// take; drops (and counts) what the backlog or the frontend cannot take.
    pub fn deliver(&mut self, frame: Frame) {
        // PRE_POSTED packets carry no checksum position, so blank checksums are filled and
        // GSO frames segmented here whatever the frontend's SET_OFFLOAD allows.
        let frames = match offload::complete(frame, |_| false, false) {
            Ok(f) => f,
            Err(_) => {
                self.counters.rx_drops += 1;
                return;
            }
        };
        let max_frags = self.be.status().peer_max_fragments as usize;
        for f in frames {
            let len = f.data.len();
            let fits = len <= usize::from(MAX_PREFIX) || len.div_ceil(PAGE) <= max_frags;
            if self.backlog.len() >= self.cfg.backlog || !fits || len < ETH_HLEN {
                self.counters.rx_drops += 1;
            } else {
                self.backlog.push_back(f);
            }
        }
    }

    /// Announces NIC-filled buffers, then moves backlogged frames into the guest (SMALL
    /// inline, or copied into idle posted buffers). Returns how many packets went out.
    pub fn guest_rx<H: Hypervisor>(&mut self, hv: &mut H) -> Result<usize, QueueError> {
        let mut sent = 0;
        while let Some(&(id, len)) = self.nic_filled.front() {
            let frag = Fragment {
                size: len,
                offset: 0,
                gref: id,
            };
            let meta = PacketMeta::new(0, PacketKind::PrePosted);
            match self.be.send_packet(&meta, &[frag], &[]) {
                Ok(()) => {}
                Err(SendError::RingFull) => break,
                Err(e) => return Err(send_err(e)),
            }
            self.nic_filled.pop_front();
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += u64::from(len);
            self.counters.rx_zero_copy += 1;
            sent += 1;
        }
        while let Some(f) = self.backlog.front() {
            let len = f.data.len();
            if len <= usize::from(MAX_PREFIX) {
                let meta = rx_meta(PacketKind::Small, f);
                match self.be.send_packet(&meta, &[], &f.data) {
                    Ok(()) => {}
                    Err(SendError::RingFull) => break,
                    Err(e) => return Err(send_err(e)),
                }
            } else {
                let n = len.div_ceil(PAGE);
                if self.bufs.idle() < n
                    || !self
                        .be
                        .producer()
                        .has_space(packet_message_size(n, 0) as u32)?
                {
                    break;
                }
                let mut frags = Vec::with_capacity(n);
                for chunk in f.data.chunks(PAGE) {
                    let Some((id, m)) = self.bufs.take_idle() else {
                        return Err(QueueError::Setup("idle buffers vanished"));
                    };
                    write_bytes(m.mem, 0, chunk);
                    frags.push(Fragment {
                        size: chunk.len() as u16,
                        offset: 0,
                        gref: id,
                    });
                }
                let meta = rx_meta(PacketKind::PrePosted, f);
                if let Err(e) = self.be.send_packet(&meta, &frags, &[]) {
                    let ids: Vec<u32> = frags.iter().map(|f| f.gref).collect();
                    self.bufs.untake(&ids);
                    if e == SendError::RingFull {
                        break;
                    }
                    return Err(send_err(e));
                }
                self.counters.copy_bytes += len as u64;
            }
            self.backlog.pop_front();
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += len as u64;
            self.counters.rx_copies += 1;
            sent += 1;
        }
        if sent > 0 {
            self.publish(hv);
        }
        Ok(sent)
    }

    /// Up to `n` idle buffers for the vif's NIC pool: (buffer id, bus address).
    pub fn nic_take(&mut self, n: usize) -> Vec<(u32, u64)> {
        self.bufs.take_for_nic(n, self.cfg.copy_reserve)
    }

    /// The NIC gave buffer `id` back: with a frame of `len` bytes (`Some`), or unused. The
    /// frame is announced on the next [`Nc2Vif::guest_rx`]. False if `id` was not at the NIC.
    pub fn nic_done(&mut self, id: u32, len: Option<u16>) -> bool {
        let ok = self.bufs.from_nic(id, len.is_some());
        if let (true, Some(len)) = (ok, len) {
            self.nic_filled.push_back((id, len));
        }
        ok
    }

    /// The first `out.len()` bytes of the frame the NIC put in buffer `id` (the header the
    /// switch learns from); false if the buffer is not mapped.
    pub fn peek_buffer(&self, id: u32, out: &mut [u8]) -> bool {
        match self.bufs.mapping(id) {
            Some(m) if out.len() <= PAGE => {
                read_bytes(m.mem, 0, out);
                true
            }
            _ => false,
        }
    }

    /// netback's handle of this vif.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The frame's offload state as the guest described it.
fn tx_offload(m: &PacketMeta) -> Offload {
    Offload {
        csum_blank: m.flags & PKT_CSUM_BLANK != 0,
        data_validated: m.flags & (PKT_DATA_VALIDATED | PKT_CSUM_BLANK) != 0,
        gso: match m.seg {
            Segmentation::None => None,
            Segmentation::TcpV4 => Some((GSO_TCPV4, m.mss)),
            Segmentation::TcpV6 => Some((GSO_TCPV6, m.mss)),
        },
    }
}

fn rx_meta(kind: PacketKind, f: &Frame) -> PacketMeta {
    let mut m = PacketMeta::new(0, kind);
    if f.offload.data_validated {
        m.flags |= PKT_DATA_VALIDATED;
    }
    m
}
