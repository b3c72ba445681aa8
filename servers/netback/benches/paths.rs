//! netif path against netchannel2 path, same run, same simulated hypervisor: per-packet cycles
//! (TSC, netback's own work only) and grant operations per packet, for
//! - tx: guest ring -> netback -> switch -> NIC port queue;
//! - rx: a frame from the switch (another guest, the responder) -> the guest;
//! - rx-nic: a frame the NIC received for the guest's pool -> the guest, through netback's NIC
//!   port and a fake NIC on the queue pair (netif: into netback's own DMA buffer, then grant
//!   copy; netchannel2: the NIC writes the guest's own posted page, no copy);
//!
//! at batch 1, 8 and 32, for 64- and 1500-byte frames, with the ratio nc2/netif. The fake
//! NIC's writes and the guests' work are outside the timed calls. Cycles include the
//! simulator's bookkeeping; on Xen each grant operation (and each hypercall) costs far more,
//! so read the grant columns too.

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;

use common::nc2::{Nc2Guest, Nc2Opts};
use common::*;
use libnc2::shm::{OwnedRegion, SharedMem};
use netback::Netback;
use netback::hv::write_bytes;
use netback::nicport::{DmaRegion, NicPort, PortConfig};
use netback::sim::{SimCounters, SimHypervisor};
use netback::switch::Frame;
use qpair::{Ctrl, CtrlReply, Layout, NetbackEnd, NicEnd, RxDone, RxPost, RxStatus};

const WIRE: [u8; 6] = [2, 0, 0, 0, 0, 0x77];
const PACKETS: usize = 16 * 1024;
const BUS: u64 = 0x4000_0000;
const GUEST_BUS: u64 = 0x10_0000_0000;
const LAYOUT: Layout = Layout {
    ctrl: 16,
    rx: 256,
    tx: 256,
};
const PORT_CFG: PortConfig = PortConfig {
    buf_size: 2048,
    rx_per_pool: 64,
    tx_per_pool: 16,
    max_pools: 2,
};

fn tsc() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC reads the time-stamp counter; it has no memory effects.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Netif,
    Nc2,
}

struct Cost {
    cycles: f64,
    grant_ops: f64,
}

fn cost(cycles: u64, c1: SimCounters, c0: SimCounters, n: usize) -> Cost {
    Cost {
        cycles: cycles as f64 / n as f64,
        grant_ops: (c1.grant_ops() - c0.grant_ops()) as f64 / n as f64,
    }
}

/// Guest pages with made-up bus addresses the fake NIC can write through.
type BusMap = Rc<RefCell<BTreeMap<u64, SharedMem<'static>>>>;

struct Rig {
    nb: Netback<SimHypervisor>,
    netif: Option<Guest>,
    nc2: Option<Nc2Guest>,
    pages: BusMap,
}

impl Rig {
    fn new(p: Proto) -> Rig {
        let mut nb = netback();
        let pages: BusMap = Rc::default();
        let map = pages.clone();
        let mut next = GUEST_BUS;
        nb.hv_mut().set_page_source(Box::new(move || {
            let r: &'static OwnedRegion = Box::leak(Box::new(OwnedRegion::new(4096)));
            let bus = next;
            next += 4096;
            map.borrow_mut().insert(bus, r.mem());
            (r.mem(), bus)
        }));
        nb.attach_nic();
        toolstack_add(nb.hv_mut(), 5, 0);
        nb.poll();
        let mut rig = Rig {
            nb,
            netif: None,
            nc2: None,
            pages,
        };
        match p {
            Proto::Netif => {
                rig.netif = Some(Guest::connect(
                    rig.nb.hv_mut(),
                    5,
                    0,
                    GuestOpts {
                        rx_buffers: 200,
                        ..GuestOpts::default()
                    },
                ))
            }
            Proto::Nc2 => {
                rig.nc2 = Some(Nc2Guest::connect(
                    rig.nb.hv_mut(),
                    5,
                    0,
                    Nc2Opts {
                        buffers: 128,
                        ..Nc2Opts::default()
                    },
                ))
            }
        }
        rig.nb.poll();
        assert!(rig.nb.is_connected((5, 0)));
        rig.guest_poll();
        // The switch learns the wire peer, so guest frames go to the NIC port only.
        rig.nb
            .nic_receive(Frame::plain(frame(mac_of(5), WIRE, 60, 0)));
        rig.nb.poll();
        rig.guest_poll();
        assert_eq!(rig.received(), 1);
        rig.clear();
        rig
    }

    fn guest_poll(&mut self) {
        if let Some(g) = self.netif.as_mut() {
            g.poll(self.nb.hv_mut());
        }
        if let Some(g) = self.nc2.as_mut() {
            g.poll(self.nb.hv_mut());
        }
    }

    fn received(&self) -> usize {
        self.netif.as_ref().map_or(0, |g| g.received.len())
            + self.nc2.as_ref().map_or(0, |g| g.received.len())
    }

    fn clear(&mut self) {
        if let Some(g) = self.netif.as_mut() {
            g.received.clear();
        }
        if let Some(g) = self.nc2.as_mut() {
            g.received.clear();
        }
    }

    fn queue(&mut self, f: &[u8]) {
        if let Some(g) = self.netif.as_mut() {
            assert!(g.queue_frame(0, f, 0, &[]));
        }
        if let Some(g) = self.nc2.as_mut() {
            assert!(g.try_send(f));
        }
    }

    fn push(&mut self) {
        if let Some(g) = self.netif.as_mut() {
            g.push(self.nb.hv_mut(), 0);
        }
        if let Some(g) = self.nc2.as_mut() {
            g.push(self.nb.hv_mut());
        }
    }
}

fn tx(p: Proto, batch: usize, len: usize) -> Cost {
    let mut r = Rig::new(p);
    let f = frame(WIRE, mac_of(5), len, 1);
    let c0 = r.nb.hv().counters;
    let (mut cycles, mut sent) = (0, 0);
    while sent < PACKETS {
        for _ in 0..batch {
            r.queue(&f);
        }
        r.push();
        let t = tsc();
        let moved = r.nb.poll();
        cycles += tsc() - t;
        assert_eq!(moved, batch);
        assert_eq!(r.nb.take_nic_frames().len(), batch);
        r.guest_poll();
        sent += batch;
    }
    cost(cycles, r.nb.hv().counters, c0, sent)
}

fn rx(p: Proto, batch: usize, len: usize) -> Cost {
    let mut r = Rig::new(p);
    let f = frame(mac_of(5), WIRE, len, 2);
    let c0 = r.nb.hv().counters;
    let (mut cycles, mut sent) = (0, 0);
    while sent < PACKETS {
        let t = tsc();
        for _ in 0..batch {
            r.nb.nic_receive(Frame::plain(f.clone()));
        }
        let moved = r.nb.poll();
        cycles += tsc() - t;
        assert_eq!(moved, batch);
        r.guest_poll();
        assert_eq!(r.received(), batch);
        r.clear();
        sent += batch;
    }
    cost(cycles, r.nb.hv().counters, c0, sent)
}

/// The NIC end of the queue pair: pools by MAC, posted buffers, "DMA" by bus address.
struct FakeNic {
    pools: Vec<(u8, [u8; 6])>,
    rx: Vec<RxPost>,
    dma: SharedMem<'static>,
    pages: BusMap,
}

impl FakeNic {
    fn serve(&mut self, nic: &mut NicEnd<'_>) {
        let mut c = [Ctrl::ReleasePool { pool: 0 }; 16];
        let n = nic.recv_ctrl(&mut c).unwrap();
        let mut replies = Vec::new();
        for m in &c[..n] {
            if let Ctrl::AllocPool { req, mac, .. } = *m {
                let pool = self.pools.len() as u8 + 1;
                self.pools.push((pool, mac.0));
                replies.push(CtrlReply::PoolAllocated { req, pool });
            }
        }
        nic.send_ctrl(&replies).unwrap();
        let mut p = [RxPost {
            pool: 0,
            id: 0,
            addr: 1,
            len: 1,
        }; 64];
        loop {
            let n = nic.recv_rx_posts(&mut p).unwrap();
            self.rx.extend_from_slice(&p[..n]);
            if n == 0 {
                break;
            }
        }
    }

    /// Writes `data` into the oldest buffer of `mac`'s pool and completes it.
    fn receive(&mut self, nic: &mut NicEnd<'_>, mac: [u8; 6], data: &[u8]) {
        let pool = self.pools.iter().find(|p| p.1 == mac).unwrap().0;
        let i = self
            .rx
            .iter()
            .position(|r| r.pool == pool)
            .expect("a buffer");
        let post = self.rx.remove(i);
        match self.pages.borrow().get(&post.addr) {
            Some(page) => write_bytes(*page, 0, data),
            None => write_bytes(self.dma, (post.addr - BUS) as usize, data),
        }
        nic.send_rx_done(&[RxDone {
            pool,
            id: post.id,
            len: data.len() as u16,
            status: RxStatus::Frame,
        }])
        .unwrap();
    }
}

fn rx_nic(p: Proto, batch: usize, len: usize) -> Cost {
    let mut r = Rig::new(p);
    let chan: &'static [AtomicU64] = Box::leak(
        (0..LAYOUT.words())
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let dma: &'static OwnedRegion = Box::leak(Box::new(OwnedRegion::new(PORT_CFG.dma_bytes())));
    let mut nic = NicEnd::new(chan, LAYOUT).unwrap();
    let mut port = NicPort::new(
        NetbackEnd::new(chan, LAYOUT).unwrap(),
        DmaRegion {
            mem: dma.mem(),
            bus: BUS,
        },
        PORT_CFG,
    )
    .unwrap();
    let mut fake = FakeNic {
        pools: Vec::new(),
        rx: Vec::new(),
        dma: dma.mem(),
        pages: r.pages.clone(),
    };
    for _ in 0..3 {
        port.exchange(&mut r.nb).unwrap();
        fake.serve(&mut nic);
        port.exchange(&mut r.nb).unwrap();
        r.nb.poll();
        r.guest_poll();
    }
    let f = frame(mac_of(5), WIRE, len, 3);
    let c0 = r.nb.hv().counters;
    let (mut cycles, mut sent) = (0, 0);
    while sent < PACKETS {
        fake.serve(&mut nic);
        for _ in 0..batch {
            fake.receive(&mut nic, mac_of(5), &f);
        }
        let t = tsc();
        port.exchange(&mut r.nb).unwrap();
        let moved = r.nb.poll();
        cycles += tsc() - t;
        assert_eq!(moved, batch);
        r.guest_poll();
        assert_eq!(r.received(), batch);
        r.clear();
        sent += batch;
    }
    let c = r.nb.counters((5, 0)).unwrap();
    if p == Proto::Nc2 {
        assert_eq!(c.rx_copies, 1, "only the setup frame was copied");
    }
    cost(cycles, r.nb.hv().counters, c0, sent)
}

fn main() {
    println!(
        "netback: netif vs netchannel2 paths, {PACKETS} frames per case (simulated hypervisor)"
    );
    println!(
        "{:<7} {:>5} {:>6} {:>11} {:>11} {:>7} {:>10} {:>10}",
        "path", "bytes", "batch", "netif cyc", "nc2 cyc", "nc2/nif", "netif ops", "nc2 ops"
    );
    type Run = fn(Proto, usize, usize) -> Cost;
    for (name, run) in [("tx", tx as Run), ("rx", rx), ("rx-nic", rx_nic)] {
        for len in [64, 1500] {
            for batch in [1, 8, 32] {
                let a = run(Proto::Netif, batch, len);
                let b = run(Proto::Nc2, batch, len);
                println!(
                    "{:<7} {:>5} {:>6} {:>11.0} {:>11.0} {:>6.2}x {:>10.3} {:>10.3}",
                    name,
                    len,
                    batch,
                    a.cycles,
                    b.cycles,
                    b.cycles / a.cycles,
                    a.grant_ops,
                    b.grant_ops
                );
            }
        }
    }
}
