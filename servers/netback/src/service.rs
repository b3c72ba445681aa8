//! netback as a whole, generic over the [`Hypervisor`]: the xenbus state machines, the
//! connected vifs and their netif queues, the switch, the local responder and the NIC port's
//! in/out queues. The server's main loop only has to call [`Netback::poll`] when a
//! notification (xenstore, event channel, queue pair) arrives.
//!
//! A vif is either netif (its queues) or netchannel2 (one [`Nc2Vif`]), as its frontend chose;
//! both sit behind the same switch port, counters and teardown. A netchannel2 vif's posted
//! buffers can go to the NIC by bus address (`nic_guest_rx_*`, driven by
//! [`crate::nicport::NicPort::exchange`]); a buffer still at the NIC when its vif goes keeps its
//! mapping until the NIC gives it back, then it is unmapped here.
//!
//! Invariants: a vif that misbehaves (bad keys, ring violation, bad rx grant) is disconnected
//! and logged by `xenbus`, and nothing it did reaches other vifs' state; every frame a vif
//! cannot take is dropped and counted on that vif; one poll round services each active queue
//! with one batch (bounded work per round, so one busy guest cannot starve the others).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::vec::Vec;

use crate::counters::VifCounters;
use crate::hv::{Hypervisor, PAGE, Port};
use crate::nc2::{Nc2Config, Nc2Vif, NicTx, TX_TAG_BIT, TxOut};
use crate::netif::{NetifQueue, QueueError};
use crate::nicport::{GuestRxBuf, GuestRxDone, GuestTxBuf, GuestTxDone, NicOut};
use crate::rate::Credit;
use crate::responder::Responder;
use crate::switch::{ETH_HLEN, Frame, Mac, PortId, Switch};
use crate::xenbus::{Action, VifKey, Xenbus};

/// netback's settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The responder's MAC.
    pub mac: Mac,
    /// The responder's IPv4 address.
    pub ip: [u8; 4],
    /// Queues offered per vif.
    pub max_queues: u32,
    /// Frames held per queue for a guest that has not posted buffers.
    pub rx_backlog: usize,
    /// Packets taken from a guest per queue per round.
    pub tx_budget: usize,
    /// Frames held for the NIC port.
    pub nic_backlog: usize,
    /// MACs the switch learns at most.
    pub max_macs: usize,
    /// Limits of netchannel2 vifs.
    pub nc2: Nc2Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mac: [0x02, 0x6e, 0x63, 0x32, 0x64, 0x64],
            ip: [10, 0, 0, 1],
            max_queues: 4,
            rx_backlog: 256,
            tx_budget: 64,
            nic_backlog: 1024,
            max_macs: 1024,
            nc2: Nc2Config::default(),
        }
    }
}

struct Vif {
    id: u32,
    queues: Vec<NetifQueue>,
    nc2: Option<Nc2Vif>,
    retired: VifCounters,
}

impl Vif {
    fn staging_regions(&self) -> usize {
        self.queues.len() + usize::from(self.nc2.is_some())
    }
}

/// A buffer tag at the NIC: the vif's handle and the buffer id.
fn tag(vif: u32, buf: u32) -> u64 {
    (u64::from(vif) << 32) | u64::from(buf)
}

/// The netback core.
pub struct Netback<H: Hypervisor> {
    hv: H,
    cfg: Config,
    xenbus: Xenbus,
    switch: Switch,
    /// The local responder.
    pub responder: Responder,
    ids: BTreeMap<VifKey, u32>,
    vifs: BTreeMap<u32, (VifKey, Vif)>,
    macs: BTreeMap<VifKey, Option<Mac>>,
    ports: BTreeMap<Port, (u32, usize)>,
    next_id: u32,
    nic_out: VecDeque<NicOut>,
    /// Frames dropped because the NIC port's queue was full.
    pub nic_drops: u64,
    retired: BTreeMap<VifKey, VifCounters>,
    kicked: BTreeSet<(u32, usize)>,
    published: BTreeMap<VifKey, VifCounters>,
    nic_attached: bool,
    /// Mappings of buffers that were at the NIC when their vif went: tag -> handle.
    nic_held: BTreeMap<u64, u32>,
    /// Staging regions allocated and not yet returned.
    staging: usize,
}

fn flow_hash(d: &[u8]) -> usize {
    // FNV-1a over addresses and ports (whatever of them the frame has), so one flow stays on
    // one queue and packets are not reordered.
    let mut h: u32 = 0x811c_9dc5;
    for &b in d.iter().take(38) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize
}

impl<H: Hypervisor> Netback<H> {
    /// netback over `hv`.
    pub fn new(hv: H, cfg: Config) -> Self {
        let me = hv.domid();
        Netback {
            hv,
            cfg,
            xenbus: Xenbus::new(me, cfg.max_queues),
            switch: Switch::new(cfg.mac, cfg.max_macs),
            responder: Responder::new(cfg.mac, cfg.ip),
            ids: BTreeMap::new(),
            vifs: BTreeMap::new(),
            macs: BTreeMap::new(),
            ports: BTreeMap::new(),
            next_id: 1,
            nic_out: VecDeque::new(),
            nic_drops: 0,
            retired: BTreeMap::new(),
            kicked: BTreeSet::new(),
            published: BTreeMap::new(),
            nic_attached: false,
            nic_held: BTreeMap::new(),
            staging: 0,
        }
    }

    /// Staging (local copy) regions the core holds now: one per netif queue and one per
    /// netchannel2 vif; back to zero once every vif is gone.
    pub fn staging_outstanding(&self) -> usize {
        self.staging
    }

    /// Buffer mappings kept only because the NIC still holds the buffer (their vif is gone).
    pub fn nic_held_mappings(&self) -> usize {
        self.nic_held.len()
    }

    /// The hypervisor.
    pub fn hv(&self) -> &H {
        &self.hv
    }

    /// The hypervisor, mutably (tests drive guests through it).
    pub fn hv_mut(&mut self) -> &mut H {
        &mut self.hv
    }

    /// The xenbus state machines.
    pub fn xenbus(&self) -> &Xenbus {
        &self.xenbus
    }

    /// Whether a vif is connected.
    pub fn is_connected(&self, key: VifKey) -> bool {
        self.ids.contains_key(&key)
    }

    /// A vif's counters: its live queues plus everything from earlier connections.
    pub fn counters(&self, key: VifKey) -> Option<VifCounters> {
        let mut c = self.retired.get(&key).copied();
        if let Some((_, v)) = self.ids.get(&key).and_then(|id| self.vifs.get(id)) {
            let t = c.get_or_insert_with(VifCounters::default);
            t.add(&v.retired);
            for q in &v.queues {
                t.add(&q.counters);
            }
            if let Some(n) = &v.nc2 {
                t.add(&n.counters);
            }
        }
        c
    }

    /// The earliest time a rate-limited queue may go on or a closed vif's directory is due for
    /// removal (the server's next timer), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.vifs
            .values()
            .flat_map(|(_, v)| {
                v.queues
                    .iter()
                    .filter_map(NetifQueue::throttled_until)
                    .chain(v.nc2.as_ref().and_then(Nc2Vif::throttled_until))
            })
            .chain(self.xenbus.next_deadline())
            .min()
    }

    /// Writes every live vif's counters to its backend directory (`statistics`), for dom0;
    /// only values that changed are written (each write fires netback's own watch).
    pub fn publish_counters(&mut self) {
        let keys: Vec<VifKey> = self.ids.keys().copied().collect();
        self.published.retain(|k, _| keys.contains(k));
        for k in keys {
            if let (Some(c), Some(p)) = (self.counters(k), self.xenbus.path(k)) {
                if self.published.get(&k) == Some(&c) {
                    continue;
                }
                let path = format!("{p}/statistics");
                if self.hv.xs_write(&path, format!("{c}").as_bytes()).is_ok() {
                    self.published.insert(k, c);
                }
            }
        }
    }

    /// Adds the NIC port (a queue pair to nic-ixgbe is up): unknown and group destinations
    /// are then also queued for it.
    pub fn attach_nic(&mut self) {
        self.switch.add_port(PortId::Nic, None);
        self.nic_attached = true;
        for (_, v) in self.vifs.values_mut() {
            if let Some(n2) = v.nc2.as_mut() {
                n2.set_nic_tx(true);
            }
        }
    }

    /// The MACs of connected netchannel2 vifs: their NIC pools receive into the guests'
    /// own posted buffers (empty while no NIC port is attached).
    pub fn guest_rx_macs(&self) -> Vec<Mac> {
        if !self.nic_attached {
            return Vec::new();
        }
        self.ids
            .iter()
            .filter(|(_, id)| {
                self.vifs
                    .get(id)
                    .is_some_and(|(_, v)| v.nc2.as_ref().is_some_and(Nc2Vif::nic_capable))
            })
            .filter_map(|(k, _)| self.macs.get(k).copied().flatten())
            .collect()
    }

    fn nc2_by_mac(&mut self, mac: &Mac) -> Option<&mut Nc2Vif> {
        let key = self
            .macs
            .iter()
            .find(|(k, m)| **m == Some(*mac) && self.ids.contains_key(k))
            .map(|(k, _)| *k)?;
        let id = self.ids.get(&key)?;
        self.vifs.get_mut(id)?.1.nc2.as_mut()
    }

    /// Up to `n` posted buffers of the netchannel2 vif with `mac`, for its NIC pool; they are
    /// at the NIC until [`Netback::nic_guest_rx_done`] or [`Netback::nic_guest_rx_untaken`].
    pub fn nic_guest_rx_take(&mut self, mac: &Mac, n: usize) -> Vec<GuestRxBuf> {
        let Some(v) = self.nc2_by_mac(mac) else {
            return Vec::new();
        };
        let id = v.id();
        v.nic_take(n)
            .into_iter()
            .map(|(b, bus)| GuestRxBuf {
                tag: tag(id, b),
                bus,
                len: PAGE as u16,
            })
            .collect()
    }

    /// Buffers from [`Netback::nic_guest_rx_take`] that the port could not post.
    pub fn nic_guest_rx_untaken(&mut self, bufs: &[GuestRxBuf]) {
        let done: Vec<GuestRxDone> = bufs
            .iter()
            .map(|b| GuestRxDone {
                tag: b.tag,
                len: 0,
                status: qpair::RxStatus::Unused,
            })
            .collect();
        self.nic_guest_rx_done(&done);
    }

    /// Guest buffers the NIC gave back: a frame goes to its guest (no copy), an unused buffer
    /// is idle again; the buffer of a vif that is gone is unmapped now.
    pub fn nic_guest_rx_done(&mut self, done: &[GuestRxDone]) {
        let mut unmap = Vec::new();
        for d in done {
            if let Some(h) = self.nic_held.remove(&d.tag) {
                unmap.push(h);
                continue;
            }
            let (id, buf) = ((d.tag >> 32) as u32, d.tag as u32);
            let filled = (d.status == qpair::RxStatus::Frame).then_some(d.len);
            let Some(v) = self.vifs.get_mut(&id).and_then(|(_, v)| v.nc2.as_mut()) else {
                continue;
            };
            if !v.nic_done(buf, filled) {
                continue;
            }
            if d.status == qpair::RxStatus::Refused {
                v.nic_refuse();
            }
            if filled.is_some() {
                // The switch still learns the sender; the CPU reads only the header.
                let mut hdr = [0u8; ETH_HLEN];
                if v.peek_buffer(buf, &mut hdr) {
                    let mut dests = Vec::new();
                    self.switch.route(PortId::Nic, &hdr, &mut dests);
                }
                self.kicked.insert((id, 0));
            }
        }
        if !unmap.is_empty() {
            // The vif is gone, so the calls are counted on no vif.
            if let Err(e) = self.hv.grant_unmap(&unmap) {
                log::warn!("unmapping buffers the NIC gave back: {e}");
            }
        }
    }

    /// The MACs that need a NIC pool: the responder's and each connected vif's. A netchannel2
    /// vif waits until its first posted buffer is mapped: only then is it known whether its
    /// pool receives into the guest's pages, and a pool asked for too early would be released
    /// and asked for again, losing the frames that arrive meanwhile.
    pub fn port_macs(&self) -> Vec<Mac> {
        let mut v = alloc::vec![self.cfg.mac];
        v.extend(
            self.ids
                .iter()
                .filter(|(_, id)| {
                    self.vifs
                        .get(id)
                        .is_none_or(|(_, vif)| vif.nc2.as_ref().is_none_or(Nc2Vif::nic_kind_known))
                })
                .filter_map(|(k, _)| self.macs.get(k).copied().flatten()),
        );
        v
    }

    /// A frame from the NIC.
    pub fn nic_receive(&mut self, frame: Frame) {
        self.forward(PortId::Nic, frame);
    }

    /// A frame from the NIC that came through the pool of MAC `via`; `pooled` are the MACs
    /// that have a pool. Every pool accepts broadcasts and all multicast, so the NIC hands a
    /// group-addressed frame to every pool, and each copy goes only to the ports behind its
    /// own pool: through a vif's pool to that vif; through the responder's pool to the
    /// responder and to every vif without a pool of its own. Every port then gets it once,
    /// not once per pool. Unicast frames are switched as usual.
    pub fn nic_receive_via(&mut self, frame: Frame, via: Mac, pooled: &[Mac]) {
        let group = frame.data.first().is_some_and(|b| b & 1 == 1);
        if !group {
            return self.forward(PortId::Nic, frame);
        }
        let responder_pool = via == self.cfg.mac;
        let mac_of: BTreeMap<u32, Option<Mac>> = self
            .ids
            .iter()
            .map(|(k, id)| (*id, self.macs.get(k).copied().flatten()))
            .collect();
        self.forward_where(PortId::Nic, frame, |port| match port {
            PortId::Local => responder_pool,
            PortId::Nic => false,
            PortId::Vif(id) => match mac_of.get(&id).copied().flatten() {
                Some(m) if m == via => true,
                Some(m) => responder_pool && !pooled.contains(&m),
                None => responder_pool,
            },
        });
    }

    /// Frames for the NIC, oldest first. Frames still in a guest's page are read by the CPU
    /// here (and their packets FINISHed); [`Netback::take_nic_out`] leaves them there.
    pub fn take_nic_frames(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let out: Vec<NicOut> = self.nic_out.drain(..).collect();
        for o in out {
            match o {
                NicOut::Frame(f) => frames.push(f),
                NicOut::Guest(g) => {
                    if let Some(h) = self.nic_held.remove(&g.tag) {
                        if let Err(e) = self.hv.grant_unmap(&[h]) {
                            log::warn!("unmapping a page of a vif that is gone: {e}");
                        }
                        continue;
                    }
                    let (id, pkt) = ((g.tag >> 32) as u32, g.tag as u32 & !TX_TAG_BIT);
                    if let Some(v) = self.vifs.get_mut(&id).and_then(|(_, v)| v.nc2.as_mut())
                        && let Some(f) = v.tx_materialize(&mut self.hv, pkt)
                    {
                        frames.push(f);
                    }
                }
            }
        }
        frames
    }

    /// Everything for the NIC, oldest first, including frames the NIC sends straight from a
    /// guest's page (each comes back in [`Netback::nic_guest_tx_done`]).
    pub fn take_nic_out(&mut self) -> Vec<NicOut> {
        self.nic_out.drain(..).collect()
    }

    /// The NIC is done with guest frames it was to send from the guests' pages: each page is
    /// unmapped and its packet FINISHed.
    pub fn nic_guest_tx_done(&mut self, done: &[GuestTxDone]) {
        let mut unmap = Vec::new();
        for d in done {
            if let Some(h) = self.nic_held.remove(&d.tag) {
                unmap.push(h);
                continue;
            }
            let (id, pkt) = ((d.tag >> 32) as u32, d.tag as u32 & !TX_TAG_BIT);
            if let Some(v) = self.vifs.get_mut(&id).and_then(|(_, v)| v.nc2.as_mut()) {
                v.tx_done(&mut self.hv, pkt, d.sent);
                self.kicked.insert((id, 0));
            }
        }
        if !unmap.is_empty()
            && let Err(e) = self.hv.grant_unmap(&unmap)
        {
            log::warn!("unmapping pages the NIC sent from: {e}");
        }
    }

    /// A zero-copy transmit candidate of vif `id`: to the NIC from the guest's page if the
    /// switch sends it there alone, else read by the CPU and forwarded as usual.
    fn forward_guest_page(&mut self, id: u32, t: NicTx) {
        let mut dests = Vec::new();
        self.switch.route(PortId::Vif(id), &t.hdr, &mut dests);
        let Some(v) = self.vifs.get_mut(&id).and_then(|(_, v)| v.nc2.as_mut()) else {
            return;
        };
        if dests == [PortId::Nic] && self.nic_out.len() < self.cfg.nic_backlog {
            let mut src = [0u8; 6];
            src.copy_from_slice(&t.hdr[6..12]);
            self.nic_out.push_back(NicOut::Guest(GuestTxBuf {
                tag: tag(id, TX_TAG_BIT | t.id),
                bus: t.bus,
                len: t.len,
                src,
            }));
            return;
        }
        if dests.is_empty() || dests == [PortId::Nic] {
            // Nowhere to go, or the NIC queue is full: no byte needs reading.
            if !dests.is_empty() {
                self.nic_drops += 1;
            }
            v.tx_done(&mut self.hv, t.id, false);
            return;
        }
        if let Some(f) = v.tx_materialize(&mut self.hv, t.id) {
            self.forward(PortId::Vif(id), f);
        }
    }

    /// One round: xenstore events, pending event channels, one batch per active queue each
    /// way. Returns the packets moved (0 when idle).
    pub fn poll(&mut self) -> usize {
        let mut actions = Vec::new();
        self.xenbus.process(&mut self.hv, &mut actions);
        for a in actions {
            self.act(a);
        }
        let mut pending = Vec::new();
        self.hv.evtchn_take_pending(&mut pending);
        let mut active = core::mem::take(&mut self.kicked);
        let now = self.hv.now_ns();
        // Queues held back by their rate limit go on once their window has come.
        for (id, (_, vif)) in &self.vifs {
            for (qi, q) in vif.queues.iter().enumerate() {
                if q.throttled_until().is_some_and(|t| t <= now) {
                    active.insert((*id, qi));
                }
            }
            if vif
                .nc2
                .as_ref()
                .and_then(Nc2Vif::throttled_until)
                .is_some_and(|t| t <= now)
            {
                active.insert((*id, 0));
            }
        }
        for p in pending {
            if let Some(&q) = self.ports.get(&p) {
                self.hv.evtchn_unmask(p);
                active.insert(q);
            }
        }
        let mut moved = 0;
        let mut again = true;
        let mut rounds = 0;
        while again && rounds < 64 {
            again = false;
            rounds += 1;
            let mut frames: Vec<(u32, TxOut)> = Vec::new();
            let mut failed: Vec<(u32, QueueError)> = Vec::new();
            for &(id, qi) in &active {
                let Some((_, vif)) = self.vifs.get_mut(&id) else {
                    continue;
                };
                if let Some(n2) = vif.nc2.as_mut() {
                    let mut out = Vec::new();
                    let r = n2
                        .guest_tx(&mut self.hv, self.cfg.tx_budget, now, &mut out)
                        .and_then(|n| Ok((n, n2.tx_final_check(&mut self.hv)?)));
                    match r {
                        Ok((n, more)) => {
                            moved += n;
                            again |=
                                (more || n == self.cfg.tx_budget) && n2.throttled_until().is_none();
                        }
                        Err(e) => failed.push((id, e)),
                    }
                    frames.extend(out.into_iter().map(|o| (id, o)));
                    continue;
                }
                let Some(q) = vif.queues.get_mut(qi) else {
                    continue;
                };
                let mut out = Vec::new();
                let r = q
                    .guest_tx(&mut self.hv, self.cfg.tx_budget, now, &mut out)
                    .and_then(|n| Ok((n, q.tx_final_check()?)));
                match r {
                    Ok((n, more)) => {
                        moved += n;
                        again |= (more || n == self.cfg.tx_budget) && q.throttled_until().is_none();
                    }
                    Err(e) => failed.push((id, e)),
                }
                frames.extend(out.into_iter().map(|f| (id, TxOut::Frame(f))));
            }
            for (id, o) in frames {
                match o {
                    TxOut::Frame(f) => self.forward(PortId::Vif(id), f),
                    TxOut::Nic(t) => self.forward_guest_page(id, t),
                }
            }
            for (id, vif) in self.vifs.values_mut().map(|(_, v)| (v.id, v)) {
                if let Some(n2) = vif.nc2.as_mut()
                    && n2.rx_pending() > 0
                {
                    let r = n2
                        .guest_rx(&mut self.hv)
                        .and_then(|n| Ok((n, n2.tx_final_check(&mut self.hv)?)));
                    match r {
                        Ok((n, more)) => {
                            moved += n;
                            if more {
                                again = true;
                                active.insert((id, 0));
                            }
                        }
                        Err(e) => failed.push((id, e)),
                    }
                }
                for (qi, q) in vif.queues.iter_mut().enumerate() {
                    if q.backlog() == 0 {
                        continue;
                    }
                    let r = q
                        .guest_rx(&mut self.hv)
                        .and_then(|n| Ok((n, q.rx_final_check()?)));
                    match r {
                        Ok((n, more)) => {
                            moved += n;
                            if more {
                                again = true;
                                active.insert((id, qi));
                            }
                        }
                        Err(e) => failed.push((id, e)),
                    }
                }
            }
            for (id, e) in failed {
                if let Some((key, _)) = self.vifs.get(&id).map(|(k, v)| (*k, v.id)) {
                    self.xenbus.fail(&mut self.hv, key, &format!("{e}"));
                    self.disconnect(key, true);
                    active.retain(|&(i, _)| i != id);
                }
            }
        }
        moved
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Added(key, mac) => {
                self.macs.insert(key, mac);
            }
            Action::Connect(key, info) => {
                self.disconnect(key, false);
                if let Some(refs) = info.nc2 {
                    let id = self.next_id;
                    match Nc2Vif::connect(&mut self.hv, key.0, id, refs, self.cfg.nc2) {
                        Ok(mut v) => {
                            self.next_id += 1;
                            v.set_nic_tx(self.nic_attached);
                            if let Some(r) = info.rate {
                                let now = self.hv.now_ns();
                                v.set_credit(Credit::new(r, now));
                            }
                            self.ports.insert(v.port(), (id, 0));
                            self.add_vif(
                                key,
                                Vif {
                                    id,
                                    queues: Vec::new(),
                                    nc2: Some(v),
                                    retired: VifCounters::default(),
                                },
                            );
                        }
                        Err(e) => {
                            let retired = VifCounters {
                                protocol_errors: 1,
                                ..VifCounters::default()
                            };
                            self.retired.entry(key).or_default().add(&retired);
                            self.xenbus.fail(&mut self.hv, key, &format!("{e}"));
                        }
                    }
                    return;
                }
                let mut queues = Vec::new();
                let mut err = None;
                for refs in &info.queues {
                    match NetifQueue::connect(
                        &mut self.hv,
                        key.0,
                        *refs,
                        info.features,
                        self.cfg.rx_backlog,
                    ) {
                        Ok(mut q) => {
                            if let Some(r) = info.rate {
                                let now = self.hv.now_ns();
                                q.set_credit(Credit::new(r, now));
                            }
                            queues.push(q)
                        }
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = err {
                    let mut retired = VifCounters::default();
                    for q in queues {
                        retired.add(&q.disconnect(&mut self.hv));
                    }
                    retired.protocol_errors += 1;
                    self.retired.entry(key).or_default().add(&retired);
                    self.xenbus.fail(&mut self.hv, key, &format!("{e}"));
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                for (qi, q) in queues.iter().enumerate() {
                    let (t, r) = q.ports();
                    self.ports.insert(t, (id, qi));
                    self.ports.insert(r, (id, qi));
                }
                self.add_vif(
                    key,
                    Vif {
                        id,
                        queues,
                        nc2: None,
                        retired: VifCounters::default(),
                    },
                );
            }
            Action::Disconnect(key) => self.disconnect(key, false),
            Action::Removed(key) => {
                self.disconnect(key, false);
                self.macs.remove(&key);
            }
        }
    }

    fn add_vif(&mut self, key: VifKey, vif: Vif) {
        let id = vif.id;
        self.switch
            .add_port(PortId::Vif(id), self.macs.get(&key).copied().flatten());
        self.ids.insert(key, id);
        self.staging += vif.staging_regions();
        // Requests may already be waiting (the guest kicked before we bound).
        let nq = vif.queues.len().max(1);
        self.vifs.insert(id, (key, vif));
        self.xenbus.connected(&mut self.hv, key);
        self.kicked.extend((0..nq).map(|qi| (id, qi)));
    }

    fn disconnect(&mut self, key: VifKey, protocol_error: bool) {
        let Some(id) = self.ids.remove(&key) else {
            return;
        };
        self.switch.remove_port(PortId::Vif(id));
        self.ports.retain(|_, (i, _)| *i != id);
        if let Some((_, vif)) = self.vifs.remove(&id) {
            self.staging -= vif.staging_regions();
            let mut total = vif.retired;
            for q in vif.queues {
                total.add(&q.disconnect(&mut self.hv));
            }
            if let Some(n2) = vif.nc2 {
                let (c, held) = n2.disconnect(&mut self.hv);
                total.add(&c);
                for (buf, handle) in held {
                    self.nic_held.insert(tag(id, buf), handle);
                }
            }
            if protocol_error {
                total.protocol_errors += 1;
            }
            self.retired.entry(key).or_default().add(&total);
        }
    }

    fn forward(&mut self, from: PortId, frame: Frame) {
        self.forward_where(from, frame, |_| true);
    }

    /// [`Netback::forward`] to those of the switch's destinations that `keep` accepts.
    fn forward_where(&mut self, from: PortId, frame: Frame, keep: impl Fn(PortId) -> bool) {
        let mut dests = Vec::new();
        self.switch.route(from, &frame.data, &mut dests);
        dests.retain(|d| keep(*d));
        let n = dests.len();
        let mut frame = Some(frame);
        for (i, d) in dests.into_iter().enumerate() {
            // The last destination takes the frame, the others a copy.
            let f = if i + 1 == n {
                frame.take()
            } else {
                frame.clone()
            };
            let Some(f) = f else {
                return;
            };
            match d {
                PortId::Vif(id) => {
                    if let Some(n2) = self.vifs.get_mut(&id).and_then(|(_, v)| v.nc2.as_mut()) {
                        n2.deliver(f);
                    } else if let Some((_, vif)) = self.vifs.get_mut(&id)
                        && !vif.queues.is_empty()
                    {
                        let qi = flow_hash(&f.data) % vif.queues.len();
                        vif.queues[qi].deliver(f);
                    }
                }
                PortId::Nic => {
                    if self.nic_out.len() >= self.cfg.nic_backlog {
                        self.nic_drops += 1;
                    } else {
                        self.nic_out.push_back(NicOut::Frame(f));
                    }
                }
                PortId::Local => {
                    if let Some(reply) = self.responder.handle(&f.data) {
                        self.forward(PortId::Local, Frame::plain(reply));
                    }
                }
            }
        }
    }
}
