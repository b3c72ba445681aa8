//! netback as a whole, generic over the [`Hypervisor`]: the xenbus state machines, the
//! connected vifs and their netif queues, the switch, the local responder and the NIC port's
//! in/out queues. The server's main loop only has to call [`Netback::poll`] when a
//! notification (xenstore, event channel, queue pair) arrives.
//!
//! Invariants: a vif that misbehaves (bad keys, ring violation, bad rx grant) is disconnected
//! and logged by `xenbus`, and nothing it did reaches other vifs' state; every frame a vif
//! cannot take is dropped and counted on that vif; one poll round services each active queue
//! with one batch (bounded work per round, so one busy guest cannot starve the others).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::vec::Vec;

use crate::counters::VifCounters;
use crate::hv::{Hypervisor, Port};
use crate::netif::{NetifQueue, QueueError};
use crate::rate::Credit;
use crate::responder::Responder;
use crate::switch::{Frame, Mac, PortId, Switch};
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
        }
    }
}

struct Vif {
    id: u32,
    queues: Vec<NetifQueue>,
    retired: VifCounters,
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
    nic_out: VecDeque<Frame>,
    /// Frames dropped because the NIC port's queue was full.
    pub nic_drops: u64,
    retired: BTreeMap<VifKey, VifCounters>,
    kicked: BTreeSet<(u32, usize)>,
    published: BTreeMap<VifKey, VifCounters>,
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
        }
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
        }
        c
    }

    /// The earliest time a rate-limited queue may go on or a closed vif's directory is due for
    /// removal (the server's next timer), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.vifs
            .values()
            .flat_map(|(_, v)| v.queues.iter().filter_map(NetifQueue::throttled_until))
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
    }

    /// The MACs that need a NIC pool: the responder's and each connected vif's.
    pub fn port_macs(&self) -> Vec<Mac> {
        let mut v = alloc::vec![self.cfg.mac];
        v.extend(
            self.ids
                .keys()
                .filter_map(|k| self.macs.get(k).copied().flatten()),
        );
        v
    }

    /// A frame from the NIC.
    pub fn nic_receive(&mut self, frame: Frame) {
        self.forward(PortId::Nic, frame);
    }

    /// Frames for the NIC, oldest first.
    pub fn take_nic_frames(&mut self) -> Vec<Frame> {
        self.nic_out.drain(..).collect()
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
            let mut frames: Vec<(u32, Frame)> = Vec::new();
            let mut failed: Vec<(u32, QueueError)> = Vec::new();
            for &(id, qi) in &active {
                let Some((_, vif)) = self.vifs.get_mut(&id) else {
                    continue;
                };
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
                frames.extend(out.into_iter().map(|f| (id, f)));
            }
            for (id, f) in frames {
                self.forward(PortId::Vif(id), f);
            }
            for (id, vif) in self.vifs.values_mut().map(|(_, v)| (v.id, v)) {
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
                self.switch
                    .add_port(PortId::Vif(id), self.macs.get(&key).copied().flatten());
                self.ids.insert(key, id);
                self.vifs.insert(
                    id,
                    (
                        key,
                        Vif {
                            id,
                            queues,
                            retired: VifCounters::default(),
                        },
                    ),
                );
                self.xenbus.connected(&mut self.hv, key);
                // Requests may already be waiting (the guest kicked before we bound).
                let nq = self.vifs.get(&id).map_or(0, |(_, v)| v.queues.len());
                self.kicked.extend((0..nq).map(|qi| (id, qi)));
            }
            Action::Disconnect(key) => self.disconnect(key, false),
            Action::Removed(key) => {
                self.disconnect(key, false);
                self.macs.remove(&key);
            }
        }
    }

    fn disconnect(&mut self, key: VifKey, protocol_error: bool) {
        let Some(id) = self.ids.remove(&key) else {
            return;
        };
        self.switch.remove_port(PortId::Vif(id));
        self.ports.retain(|_, (i, _)| *i != id);
        if let Some((_, vif)) = self.vifs.remove(&id) {
            let mut total = vif.retired;
            for q in vif.queues {
                total.add(&q.disconnect(&mut self.hv));
            }
            if protocol_error {
                total.protocol_errors += 1;
            }
            self.retired.entry(key).or_default().add(&total);
        }
    }

    fn forward(&mut self, from: PortId, frame: Frame) {
        let mut dests = Vec::new();
        self.switch.route(from, &frame.data, &mut dests);
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
                    if let Some((_, vif)) = self.vifs.get_mut(&id)
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
                        self.nic_out.push_back(f);
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
