//! The netif backend of one vif queue: the guest's tx and rx rings (libnc2's backend ends over
//! the mapped ring pages), its event channels, and the local staging memory that grant copies
//! go through.
//!
//! - Guest TX: whole validated packets are taken from the ring (SG slots, GSO/checksum extras),
//!   every slot of the batch is grant-copied into staging in ONE `GNTTABOP_copy`, then each
//!   packet becomes a [`Frame`] and is answered (OKAY, or ERROR if it was refused or a copy
//!   failed). One notification per batch, and only if the ring's event threshold asks for it.
//! - Guest RX (rx-copy): frames wait in a bounded backlog; a batch takes as many posted buffers
//!   as the frames need, stages the frames, fills the buffers in ONE `GNTTABOP_copy` and
//!   answers in the same slots. A guest that stops posting buffers only fills its own backlog:
//!   further frames for it are dropped and counted.
//!
//! Invariants: each queue holds exactly one staging region, from `connect` until
//! `disconnect` returns it; nothing read from the rings is used before libnc2 validated it; grant
//! references go only to the hypervisor (which checks them); a ring protocol violation or a
//! failed copy INTO the guest (it posted a bad grant) is a [`QueueError`] that disconnects the
//! vif; the ring views are dropped before their pages are unmapped.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use libnc2::netif::extra::{GSO_TCPV4, GSO_TCPV6};
use libnc2::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED};
use libnc2::netif::tx::{
    NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED,
};
use libnc2::netif::{ExtraInfo, RxBackend, TxBackend, TxPacket};
use libnc2::{GrantBound, PeerError};

use crate::counters::VifCounters;
use crate::hv::{
    CopyOp, CopyPtr, DomId, GNTST_OKAY, HvError, Hypervisor, LocalRegion, Mapping, PAGE, Port,
    read_bytes, write_bytes,
};
use crate::offload;
use crate::rate::Credit;
use crate::switch::{ETH_HLEN, Frame, Offload};

/// Data slots per guest packet before the guest counts as hostile (Linux's `fatal_skb_slots`).
pub const MAX_TX_SLOTS: u32 = 20;
/// Largest packet the ring format can describe.
pub const MAX_PACKET: usize = 0xFFFF;
/// Staging pages for guest TX: room for a batch and always for one more maximal packet.
const TX_STAGE_PAGES: usize = 48;
/// Staging pages for guest RX.
const RX_STAGE_PAGES: usize = 48;
/// Staged packets start on this alignment (word copies stay aligned).
const STAGE_ALIGN: usize = 64;

/// What the frontend told us it can do (from its xenstore keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-sg`: accepts multi-slot packets on rx.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: accepts frames with a blank checksum.
    pub csum_offload: bool,
}

/// One queue's frontend keys: ring references and the frontend's event-channel ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRefs {
    /// `tx-ring-ref`.
    pub tx_ring_ref: u32,
    /// `rx-ring-ref`.
    pub rx_ring_ref: u32,
    /// `event-channel-tx` (or the single `event-channel`).
    pub evtchn_tx: Port,
    /// `event-channel-rx` (equal to `evtchn_tx` without split channels).
    pub evtchn_rx: Port,
}

/// Why a queue stopped (the vif is disconnected with this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The guest broke the ring protocol.
    Ring(PeerError),
    /// A ring page could not be mapped (`GNTST_*`).
    MapRing {
        /// Which ring.
        ring: &'static str,
        /// The status.
        status: i16,
    },
    /// A posted rx buffer could not be written (`GNTST_*`).
    RxGrant {
        /// The guest's reference.
        gref: u32,
        /// The status.
        status: i16,
    },
    /// A hypervisor call failed as a whole.
    Hv(HvError),
    /// The ring page is unusable (libnc2's reason).
    Setup(&'static str),
}

impl From<PeerError> for QueueError {
    fn from(e: PeerError) -> Self {
        QueueError::Ring(e)
    }
}

impl From<HvError> for QueueError {
    fn from(e: HvError) -> Self {
        QueueError::Hv(e)
    }
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            QueueError::Ring(e) => write!(f, "{e}"),
            QueueError::MapRing { ring, status } => {
                write!(f, "cannot map the {ring} ring (grant status {status})")
            }
            QueueError::RxGrant { gref, status } => {
                write!(
                    f,
                    "rx buffer grant {gref} not writable (grant status {status})"
                )
            }
            QueueError::Hv(e) => write!(f, "{e}"),
            QueueError::Setup(s) => write!(f, "unusable ring page: {s}"),
        }
    }
}

/// A packet taken in the current TX batch.
struct TxItem {
    pkt: TxPacket,
    stage: usize,
    ops: core::ops::Range<usize>,
    refused: bool,
    /// A multicast-control request (an extra with no frame): answered OKAY, not forwarded.
    control: bool,
}

/// A frame placed in the current RX batch.
struct RxItem {
    frame: Frame,
    ops: core::ops::Range<usize>,
    frags: usize,
    extra: Option<ExtraInfo>,
}

/// One connected netif queue.
pub struct NetifQueue {
    dom: DomId,
    tx: TxBackend<'static>,
    rx: RxBackend<'static>,
    handles: [u32; 2],
    port_tx: Port,
    port_rx: Port,
    stage: LocalRegion,
    features: Features,
    backlog: VecDeque<Frame>,
    backlog_max: usize,
    ops: Vec<CopyOp>,
    credit: Option<Credit>,
    /// This queue's counters.
    pub counters: VifCounters,
}

fn ops_ok(ops: &[CopyOp]) -> bool {
    ops.iter().all(|o| o.status == GNTST_OKAY)
}

impl NetifQueue {
    /// Maps the rings of `refs` (one map call), binds the event channels and allocates
    /// staging. On failure everything already acquired is released.
    pub fn connect<H: Hypervisor>(
        hv: &mut H,
        dom: DomId,
        refs: QueueRefs,
        features: Features,
        backlog_max: usize,
    ) -> Result<Self, QueueError> {
        let mut counters = VifCounters::default();
        let mut maps: Vec<Result<Mapping, i16>> = Vec::with_capacity(2);
        hv.grant_map(dom, &[refs.tx_ring_ref, refs.rx_ring_ref], false, &mut maps)?;
        counters.grant_call(2);
        let held: Vec<u32> = maps
            .iter()
            .filter_map(|m| m.ok().map(|m| m.handle))
            .collect();
        let release = |hv: &mut H, counters: &mut VifCounters| {
            if !held.is_empty() && hv.grant_unmap(&held).is_ok() {
                counters.grant_call(held.len());
            }
        };
        let (tx_map, rx_map) = match (maps.first().copied(), maps.get(1).copied()) {
            (Some(Ok(t)), Some(Ok(r))) => (t, r),
            (Some(Err(status)), _) => {
                release(hv, &mut counters);
                return Err(QueueError::MapRing { ring: "tx", status });
            }
            (_, Some(Err(status))) => {
                release(hv, &mut counters);
                return Err(QueueError::MapRing { ring: "rx", status });
            }
            _ => {
                release(hv, &mut counters);
                return Err(QueueError::Hv(HvError::Grant(-22)));
            }
        };
        // Guest grant references are checked by the hypervisor on every copy; the ring layer
        // only needs a bound that no reference can break.
        let bound = GrantBound(u32::MAX);
        let rings = TxBackend::attach(tx_map.mem, bound, MAX_TX_SLOTS)
            .and_then(|t| RxBackend::attach(rx_map.mem, bound).map(|r| (t, r)));
        let (tx, rx) = match rings {
            Ok(x) => x,
            Err(e) => {
                release(hv, &mut counters);
                return Err(QueueError::Setup(e.0));
            }
        };
        let bound_ports = (|| {
            let ptx = hv.evtchn_bind(dom, refs.evtchn_tx)?;
            if refs.evtchn_rx == refs.evtchn_tx {
                return Ok((ptx, ptx));
            }
            match hv.evtchn_bind(dom, refs.evtchn_rx) {
                Ok(prx) => Ok((ptx, prx)),
                Err(e) => {
                    hv.evtchn_close(ptx);
                    Err(e)
                }
            }
        })();
        let (port_tx, port_rx) = match bound_ports {
            Ok(p) => p,
            Err(e) => {
                drop((tx, rx));
                release(hv, &mut counters);
                return Err(e.into());
            }
        };
        let stage = match hv.alloc_local(TX_STAGE_PAGES + RX_STAGE_PAGES) {
            Ok(s) => s,
            Err(e) => {
                hv.evtchn_close(port_tx);
                if port_rx != port_tx {
                    hv.evtchn_close(port_rx);
                }
                drop((tx, rx));
                release(hv, &mut counters);
                return Err(e.into());
            }
        };
        hv.evtchn_unmask(port_tx);
        if port_rx != port_tx {
            hv.evtchn_unmask(port_rx);
        }
        Ok(NetifQueue {
            dom,
            tx,
            rx,
            handles: [tx_map.handle, rx_map.handle],
            port_tx,
            port_rx,
            stage,
            features,
            backlog: VecDeque::new(),
            backlog_max,
            ops: Vec::new(),
            credit: None,
            counters,
        })
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

    /// Local ports of this queue (tx, rx; equal without split channels).
    pub fn ports(&self) -> (Port, Port) {
        (self.port_tx, self.port_rx)
    }

    /// Frames waiting for rx buffers.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Closes the event channels, unmaps the rings (one unmap call) and returns the staging
    /// memory.
    pub fn disconnect<H: Hypervisor>(self, hv: &mut H) -> VifCounters {
        let NetifQueue {
            tx,
            rx,
            handles,
            port_tx,
            port_rx,
            stage,
            mut counters,
            ..
        } = self;
        hv.free_local(stage);
        hv.evtchn_close(port_tx);
        if port_rx != port_tx {
            hv.evtchn_close(port_rx);
        }
        // The ring views must be gone before their pages are.
        drop((tx, rx));
        if hv.grant_unmap(&handles).is_ok() {
            counters.grant_call(handles.len());
        }
        counters
    }

    /// Takes up to `budget` packets from the guest into `out` (one copy call for all of them)
    /// and answers them, within the rate limit at time `now`. Returns how many were taken.
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
        let stage_tx = TX_STAGE_PAGES * PAGE;
        let mut items: Vec<TxItem> = Vec::new();
        let mut pos = 0usize;
        self.ops.clear();
        // Stop while a maximal packet still fits, so a taken packet always has room.
        while items.len() < budget && pos + MAX_PACKET < stage_tx {
            if self.credit.as_ref().is_some_and(|c| !c.allows()) {
                break;
            }
            let Some(pkt) = self.tx.poll_packet()? else {
                break;
            };
            let total = pkt.total as usize;
            if let Some(c) = self.credit.as_mut() {
                c.charge(total);
            }
            let start = self.ops.len();
            // Like Linux netback: a request carrying a multicast add/del extra is a filter
            // update, consumed and answered; netback floods multicast to every vif anyway.
            let control = pkt
                .extras
                .iter()
                .any(|e| matches!(e, ExtraInfo::McastAdd(_) | ExtraInfo::McastDel(_)));
            let refused = !control && total < ETH_HLEN;
            if !refused && !control {
                let mut off = pos;
                for s in pkt.slots().iter().filter(|s| s.size > 0) {
                    self.ops.push(CopyOp::new(
                        CopyPtr::Grant {
                            dom: self.dom,
                            gref: s.gref,
                            offset: s.offset,
                        },
                        CopyPtr::Local {
                            region: self.stage.id,
                            offset: off as u32,
                        },
                        s.size,
                    ));
                    off += usize::from(s.size);
                }
            }
            items.push(TxItem {
                pkt,
                stage: pos,
                ops: start..self.ops.len(),
                refused,
                control,
            });
            pos += total.div_ceil(STAGE_ALIGN) * STAGE_ALIGN;
        }
        if !self.ops.is_empty() {
            hv.grant_copy(&mut self.ops)?;
            self.counters.grant_call(self.ops.len());
        }
        for it in &items {
            let ok = !it.refused && ops_ok(&self.ops[it.ops.clone()]);
            let status = if ok { NETIF_RSP_OKAY } else { NETIF_RSP_ERROR };
            if it.control {
                // Answered below; nothing to forward.
            } else if ok {
                let total = it.pkt.total as usize;
                let mut data = alloc::vec![0u8; total];
                read_bytes(self.stage.mem, it.stage, &mut data);
                self.counters.copy_bytes += total as u64;
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += total as u64;
                let gso = it.pkt.extras.gso().and_then(|e| match e {
                    ExtraInfo::Gso { size, gso_type, .. } => Some((gso_type, size)),
                    _ => None,
                });
                out.push(Frame {
                    data,
                    offload: Offload {
                        csum_blank: it.pkt.flags & NETTXF_CSUM_BLANK != 0,
                        data_validated: it.pkt.flags & (NETTXF_DATA_VALIDATED | NETTXF_CSUM_BLANK)
                            != 0,
                        gso,
                    },
                });
            } else {
                self.counters.tx_errors += 1;
            }
            // The ring had room for these responses when the requests were taken.
            if self.tx.respond(&it.pkt, status).is_err() {
                return Err(QueueError::Setup("tx response ring inconsistent"));
            }
        }
        if !items.is_empty() && self.tx.flush() {
            hv.evtchn_notify(self.port_tx);
            self.counters.notifications += 1;
        }
        Ok(items.len())
    }

    /// Arms the tx request event; true means requests arrived meanwhile (service again).
    pub fn tx_final_check(&mut self) -> Result<bool, QueueError> {
        Ok(self.tx.final_check()?)
    }

    /// Queues a frame for the guest, completing in software the offloads its frontend did
    /// not ask for; drops (and counts) what the backlog or the frontend cannot take.
    pub fn deliver(&mut self, frame: Frame) {
        let feat = self.features;
        let gso_ok =
            |ty| (ty == GSO_TCPV4 && feat.gso_tcpv4) || (ty == GSO_TCPV6 && feat.gso_tcpv6);
        let frames = match offload::complete(frame, gso_ok, feat.csum_offload) {
            Ok(f) => f,
            Err(_) => {
                self.counters.rx_drops += 1;
                return;
            }
        };
        for f in frames {
            if self.backlog.len() >= self.backlog_max || !self.acceptable(&f) {
                self.counters.rx_drops += 1;
            } else {
                self.backlog.push_back(f);
            }
        }
    }

    fn acceptable(&self, f: &Frame) -> bool {
        let len = f.data.len();
        (ETH_HLEN..=MAX_PACKET).contains(&len) && (len <= PAGE || self.features.sg)
    }

    /// Moves backlogged frames into posted buffers (one copy call for the batch). Returns how
    /// many frames were delivered; frames without enough buffers stay queued.
    pub fn guest_rx<H: Hypervisor>(&mut self, hv: &mut H) -> Result<usize, QueueError> {
        if self.backlog.is_empty() {
            return Ok(0);
        }
        let base = TX_STAGE_PAGES * PAGE;
        let stage_rx = RX_STAGE_PAGES * PAGE;
        let mut avail = self.rx.ring().available_requests()? as usize;
        let mut items: Vec<RxItem> = Vec::new();
        let mut pos = 0usize;
        self.ops.clear();
        while let Some(f) = self.backlog.front() {
            let len = f.data.len();
            let frags = len.div_ceil(PAGE);
            let extra = f.offload.gso.map(|(gso_type, size)| ExtraInfo::Gso {
                size,
                gso_type,
                features: 0,
            });
            let need = frags + usize::from(extra.is_some());
            if need > avail || pos + len > stage_rx {
                break;
            }
            let Some(f) = self.backlog.pop_front() else {
                break;
            };
            write_bytes(self.stage.mem, base + pos, &f.data);
            let start = self.ops.len();
            for b in 0..need {
                let Some(buf) = self.rx.take_buffer()? else {
                    return Err(QueueError::Setup("rx requests vanished"));
                };
                // With an extra, the second buffer's slot carries it (no data).
                let frag = match (extra.is_some(), b) {
                    (true, 1) => continue,
                    (true, b) if b > 1 => b - 1,
                    _ => b,
                };
                let off = frag * PAGE;
                let n = (len - off).min(PAGE);
                self.ops.push(CopyOp::new(
                    CopyPtr::Local {
                        region: self.stage.id,
                        offset: (base + pos + off) as u32,
                    },
                    CopyPtr::Grant {
                        dom: self.dom,
                        gref: buf.gref,
                        offset: 0,
                    },
                    n as u16,
                ));
            }
            avail -= need;
            pos += len.div_ceil(STAGE_ALIGN) * STAGE_ALIGN;
            items.push(RxItem {
                frame: f,
                ops: start..self.ops.len(),
                frags,
                extra,
            });
        }
        if items.is_empty() {
            return Ok(0);
        }
        if !self.ops.is_empty() {
            hv.grant_copy(&mut self.ops)?;
            self.counters.grant_call(self.ops.len());
        }
        for it in &items {
            if let Some(bad) = self.ops[it.ops.clone()]
                .iter()
                .find(|o| o.status != GNTST_OKAY)
            {
                let gref = match bad.dst {
                    CopyPtr::Grant { gref, .. } => gref,
                    CopyPtr::Local { .. } => 0,
                };
                return Err(QueueError::RxGrant {
                    gref,
                    status: bad.status,
                });
            }
            let len = it.frame.data.len();
            let mut frags: [(u16, u16); 17] = [(0, 0); 17];
            for (k, fr) in frags.iter_mut().enumerate().take(it.frags) {
                *fr = (0, (len - k * PAGE).min(PAGE) as u16);
            }
            let o = it.frame.offload;
            let flags = if o.csum_blank {
                NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED
            } else if o.data_validated {
                NETRXF_DATA_VALIDATED
            } else {
                0
            };
            let extras: &[ExtraInfo] = match &it.extra {
                Some(e) => core::slice::from_ref(e),
                None => &[],
            };
            if self
                .rx
                .push_packet(&frags[..it.frags], flags, extras)
                .is_err()
            {
                return Err(QueueError::Setup("rx response ring inconsistent"));
            }
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += len as u64;
            self.counters.copy_bytes += len as u64;
            self.counters.rx_copies += 1;
        }
        if self.rx.flush() {
            hv.evtchn_notify(self.port_rx);
            self.counters.notifications += 1;
        }
        Ok(items.len())
    }

    /// Arms the rx request event while frames wait; true means buffers arrived meanwhile.
    pub fn rx_final_check(&mut self) -> Result<bool, QueueError> {
        if self.backlog.is_empty() {
            return Ok(false);
        }
        Ok(self.rx.final_check()?)
    }
}
