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
//!   frontend's SET_OFFLOAD and SET_MAX_FRAGMENTS are honoured: a blank checksum or a GSO
//!   frame it accepts goes as such (checksum position located), one it does not is completed
//!   in software first; frames needing more buffers than it takes fragments are dropped and
//!   counted.
//! - Guest RX from the NIC: idle buffers a device can reach go to the vif's own NIC pool by
//!   bus address ([`Nc2Vif::nic_take`]); a buffer the NIC filled ([`Nc2Vif::nic_done`]) is
//!   announced as PRE_POSTED with no copy at all.
//! - Guest TX to the NIC without a copy (lazy mapping): a RECEIVER_MAP packet that is one
//!   fragment with no prefix and no offloads, once mapped where a device reaches it, is
//!   offered as a [`TxOut::Nic`] carrying only its Ethernet header (the CPU reads 14 bytes
//!   for the switch decision). If the switch sends it to the NIC alone, the NIC sends it from
//!   the guest's page and the FINISH waits for the NIC ([`Nc2Vif::tx_done`]); otherwise the
//!   CPU reads it after all ([`Nc2Vif::tx_materialize`]).
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
use crate::nicport::MAX_WIRE_FRAME;
use crate::offload;
use crate::rate::Credit;
use crate::switch::{ETH_HLEN, Frame, Offload};
use buffers::{BufferTable, PostError};

/// Staging pages for guest TX copies: room for a batch and always for one maximal packet.
const TX_STAGE_PAGES: usize = 48;
/// Staged packets start on this alignment (word copies stay aligned).
const STAGE_ALIGN: usize = 64;
/// Posted buffers one received frame may take (a 64 KiB frame in 4 KiB pages); more than the
/// frontend accepts are dropped when delivered.
const MAX_RX_FRAGS: usize = 17;

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
    /// May go to the NIC straight from the guest's page.
    zero_copy: bool,
}

/// Ids of guest packets at the NIC have this bit set in the buffer part of their tag (posted
/// receive buffer ids never do).
pub const TX_TAG_BIT: u32 = 1 << 31;

/// A guest packet the NIC could send from the guest's page: its header for the switch, where
/// the frame is, and the packet id that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicTx {
    /// The guest's packet id.
    pub id: u32,
    /// The frame's Ethernet header.
    pub hdr: [u8; ETH_HLEN],
    /// Bus address of the frame's first byte.
    pub bus: u64,
    /// Frame length.
    pub len: u16,
}

/// What guest TX produced, in the guest's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOut {
    /// A frame in netback's memory.
    Frame(Frame),
    /// A frame still in the guest's page (mapped), see [`NicTx`].
    Nic(NicTx),
}

/// A zero-copy candidate's mapping while the switch or the NIC has it.
#[derive(Clone, Copy)]
struct InFlight {
    map: Mapping,
    offset: u16,
    len: u16,
    offload: Offload,
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
    /// A message did not fit the back-to-front ring: wait for the frontend to make room.
    ring_full: bool,
    /// The NIC refused our buffers (e.g. outside netback's bus windows): copy instead.
    nic_refused: bool,
    /// A NIC port is attached: offer zero-copy transmit candidates.
    nic_tx: bool,
    /// Guest packets (by id) whose page the switch or the NIC still reads.
    tx_inflight: alloc::collections::BTreeMap<u32, InFlight>,
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
            ring_full: false,
            nic_refused: false,
            nic_tx: false,
            tx_inflight: alloc::collections::BTreeMap::new(),
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

    /// Lets guest TX offer zero-copy candidates for the NIC (a NIC port is attached).
    pub fn set_nic_tx(&mut self, on: bool) {
        self.nic_tx = on;
    }

    /// Closes the event channel, drops the channel, unmaps the rings and every buffer not at
    /// the NIC (one unmap call) and returns the staging memory. Returns the counters and the
    /// (buffer id, handle) of buffers still at the NIC (transmitted packets: id with
    /// [`TX_TAG_BIT`]): the caller unmaps each once the NIC gave it back.
    pub fn disconnect<H: Hypervisor>(self, hv: &mut H) -> (VifCounters, Vec<(u32, u32)>) {
        let Nc2Vif {
            be,
            handles,
            port,
            stage,
            bufs,
            tx_inflight,
            mut counters,
            ..
        } = self;
        hv.evtchn_close(port);
        // The channel views must be gone before their pages are.
        drop(be);
        let (mut now, mut held) = bufs.release();
        held.extend(
            tx_inflight
                .iter()
                .map(|(id, f)| (id | TX_TAG_BIT, f.map.handle)),
        );
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
        out: &mut Vec<TxOut>,
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
            let m = p.meta;
            let zero_copy = self.nic_tx
                && m.kind == PacketKind::ReceiverMap
                && p.prefix.is_empty()
                && p.nr_frags() == 1
                && m.flags & PKT_CSUM_BLANK == 0
                && m.seg == Segmentation::None
                && (ETH_HLEN..=MAX_WIRE_FRAME).contains(&(p.total_len as usize))
                && !self.tx_inflight.contains_key(&m.id);
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
                zero_copy,
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
        let mut mapped = self.map_fragments(hv, &maps)?;
        for it in &items {
            if let (true, TxBody::Mapped { maps: r }) = (it.zero_copy, &it.body)
                && let Some(m) = mapped[r.start].filter(|m| m.bus.is_some())
                && let Some(bus) = m.bus
            {
                // Lazy mapping: the CPU reads the header only; the NIC may read the rest.
                let f = maps[r.start];
                let mut hdr = [0u8; ETH_HLEN];
                read_bytes(m.mem, usize::from(f.offset), &mut hdr);
                mapped[r.start] = None;
                self.tx_inflight.insert(
                    it.meta.id,
                    InFlight {
                        map: m,
                        offset: f.offset,
                        len: f.size,
                        offload: tx_offload(&it.meta),
                    },
                );
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += u64::from(f.size);
                out.push(TxOut::Nic(NicTx {
                    id: it.meta.id,
                    hdr,
                    bus: bus + u64::from(f.offset),
                    len: f.size,
                }));
                continue;
            }
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
                out.push(TxOut::Frame(Frame {
                    data,
                    offload: tx_offload(&it.meta),
                }));
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

    /// The switch did not send zero-copy candidate `id` to the NIC alone: the CPU reads the
    /// frame through the mapping after all; the page is unmapped and the packet FINISHed.
    pub fn tx_materialize<H: Hypervisor>(&mut self, hv: &mut H, id: u32) -> Option<Frame> {
        let f = self.tx_inflight.get(&id).copied()?;
        let mut data = alloc::vec![0u8; usize::from(f.len)];
        read_bytes(f.map.mem, usize::from(f.offset), &mut data);
        self.tx_done(hv, id, false);
        Some(Frame {
            data,
            offload: f.offload,
        })
    }

    /// The NIC (or the switch) is done with zero-copy packet `id`: unmap its page and FINISH
    /// it; `sent` counts it as transmitted without a copy.
    pub fn tx_done<H: Hypervisor>(&mut self, hv: &mut H, id: u32, sent: bool) {
        let Some(f) = self.tx_inflight.remove(&id) else {
            return;
        };
        match hv.grant_unmap(&[f.map.handle]) {
            Ok(()) => self.counters.grant_call(1),
            Err(e) => log::warn!("vif of domain {}: unmapping a sent page: {e}", self.dom),
        }
        if sent {
            self.counters.tx_zero_copy += 1;
        }
        self.finishes.push_back(id);
        // The credit goes back now, not at the next wake-up. A broken ring shows up again
        // (and disconnects the vif) at the next guest_tx, which retries these FINISHes.
        if self.send_finishes().is_ok() {
            self.publish(hv);
        }
    }

    /// Sends the FINISHes that wait for ring space.
    fn send_finishes(&mut self) -> Result<(), QueueError> {
        while let Some(&id) = self.finishes.front() {
            match self.be.finish_packet(id) {
                Ok(()) => {
                    self.finishes.pop_front();
                }
                Err(SendError::RingFull) => {
                    self.ring_full = true;
                    break;
                }
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
        if core::mem::take(&mut self.ring_full) {
            // Wait for room for the largest message we send; the frontend's consumption
            // wakes us (or there is room already: go on).
            let largest = packet_message_size(0, usize::from(MAX_PREFIX))
                .max(packet_message_size(MAX_RX_FRAGS, 0));
            more |= self.be.producer().prepare_wait_for_space(largest as u32)?;
        }
        Ok(more)
    }

    fn publish<H: Hypervisor>(&mut self, hv: &mut H) {
        if self.be.flush() {
            hv.evtchn_notify(self.port);
            self.counters.notifications += 1;
        }
    }

    /// Queues a frame from the switch for the guest, completing in software what its
    /// SET_OFFLOAD does not accept (a blank checksum, a GSO super-frame); drops (and counts)
    /// what the backlog or the frontend cannot take.
    pub fn deliver(&mut self, frame: Frame) {
        let o = self.be.status().peer_offload;
        let gso_ok = |ty| (ty == GSO_TCPV4 && o.tso4) || (ty == GSO_TCPV6 && o.tso6);
        let frames = match offload::complete(frame, gso_ok, o.csum) {
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
                Err(SendError::RingFull) => {
                    self.ring_full = true;
                    break;
                }
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
                let Some(meta) = rx_meta(PacketKind::Small, f) else {
                    self.backlog.pop_front();
                    self.counters.rx_drops += 1;
                    continue;
                };
                match self.be.send_packet(&meta, &[], &f.data) {
                    Ok(()) => {}
                    Err(SendError::RingFull) => {
                        self.ring_full = true;
                        break;
                    }
                    Err(SendError::Peer(p)) => return Err(QueueError::Ring(p)),
                    Err(_) => {
                        // A frame the wire format cannot carry (another guest sent it): drop.
                        self.backlog.pop_front();
                        self.counters.rx_drops += 1;
                        continue;
                    }
                }
            } else {
                let Some(meta) = rx_meta(PacketKind::PrePosted, f) else {
                    self.backlog.pop_front();
                    self.counters.rx_drops += 1;
                    continue;
                };
                let n = len.div_ceil(PAGE);
                if self.bufs.idle() < n {
                    // The frontend's next POST_BUFFERS wakes us.
                    break;
                }
                if !self
                    .be
                    .producer()
                    .has_space(packet_message_size(n, 0) as u32)?
                {
                    self.ring_full = true;
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
                if let Err(e) = self.be.send_packet(&meta, &frags, &[]) {
                    let ids: Vec<u32> = frags.iter().map(|f| f.gref).collect();
                    self.bufs.untake(&ids);
                    match e {
                        SendError::RingFull => {
                            self.ring_full = true;
                            break;
                        }
                        SendError::Peer(p) => return Err(QueueError::Ring(p)),
                        _ => {
                            self.backlog.pop_front();
                            self.counters.rx_drops += 1;
                            continue;
                        }
                    }
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

    /// Whether the vif's NIC pool should receive into the posted buffers: they are mapped
    /// where a device reaches them, and the NIC has not refused them.
    pub fn nic_capable(&self) -> bool {
        self.bufs.device_reachable() && !self.nic_refused
    }

    /// Whether netback knows which kind of NIC pool the vif needs: a guest pool when its
    /// posted pages are reachable by the NIC, else an ordinary one. Unknown until its first
    /// posted buffer is mapped.
    pub fn nic_kind_known(&self) -> bool {
        self.bufs.reachability_known() || self.nic_refused
    }

    /// The NIC refused a buffer: from now on frames from the NIC are copied (through
    /// netback's own buffers) like any other.
    pub fn nic_refuse(&mut self) {
        if !self.nic_refused {
            log::warn!(
                "vif of domain {}: the NIC refused its posted buffers; copying instead",
                self.dom
            );
        }
        self.nic_refused = true;
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

/// The packet fields of a frame for the guest (its offloads were already cut down to what
/// the guest accepts); `None` if a blank checksum cannot be located (the frame is dropped).
fn rx_meta(kind: PacketKind, f: &Frame) -> Option<PacketMeta> {
    let mut m = PacketMeta::new(0, kind);
    let o = f.offload;
    if o.data_validated || o.csum_blank {
        m.flags |= PKT_DATA_VALIDATED;
    }
    if o.csum_blank {
        let (start, offset) = offload::checksum_location(&f.data).ok()?;
        m.flags |= PKT_CSUM_BLANK;
        m.csum_start = start;
        m.csum_offset = offset;
    }
    if let Some((ty, mss)) = o.gso {
        m.seg = match ty {
            GSO_TCPV4 => Segmentation::TcpV4,
            GSO_TCPV6 => Segmentation::TcpV6,
            _ => return None,
        };
        m.mss = mss;
    }
    Some(m)
}
