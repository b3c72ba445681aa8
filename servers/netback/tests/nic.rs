//! The NIC port over a real queue-pair channel, with the test playing nic-ixgbe at the other
//! end: a pool per served MAC, wire frames into each guest, guest frames out through that
//! guest's own pool, the responder reachable from the wire, releases and bogus completions.

mod common;

use std::sync::atomic::AtomicU64;

use common::*;
use libnc2::shm::OwnedRegion;
use netback::nicport::{DmaRegion, NicPort, PortConfig};
use netback::responder::echo_request;
use qpair::{
    Ctrl, CtrlReply, Layout, NetbackEnd, NicEnd, RxDone, RxPost, RxStatus, TxDone, TxPost, TxStatus,
};

const BUS: u64 = 0x4000_0000;
const WIRE: [u8; 6] = [2, 0, 0, 0, 0, 0x77];
const LAYOUT: Layout = Layout {
    ctrl: 16,
    rx: 256,
    tx: 256,
};
const CFG: PortConfig = PortConfig {
    buf_size: 2048,
    rx_per_pool: 8,
    tx_per_pool: 8,
    max_pools: 4,
};

struct FakeNic {
    pools: Vec<(u8, [u8; 6])>,
    rx: Vec<RxPost>,
}

impl FakeNic {
    fn serve_ctrl(&mut self, nic: &mut NicEnd<'_>) -> Vec<Ctrl> {
        let mut c = [Ctrl::ReleasePool { pool: 0 }; 16];
        let n = nic.recv_ctrl(&mut c).unwrap();
        let mut replies = Vec::new();
        for m in &c[..n] {
            match *m {
                Ctrl::AllocPool { req, mac, .. } => {
                    let pool = self.pools.len() as u8 + 1;
                    self.pools.push((pool, mac.0));
                    replies.push(CtrlReply::PoolAllocated { req, pool });
                }
                Ctrl::ReleasePool { pool } => {
                    self.pools.retain(|p| p.0 != pool);
                    self.rx.retain(|r| r.pool != pool);
                    replies.push(CtrlReply::PoolReleased { pool });
                }
            }
        }
        nic.send_ctrl(&replies).unwrap();
        c[..n].to_vec()
    }

    fn take_posts(&mut self, nic: &mut NicEnd<'_>) {
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

    fn pool_of(&self, mac: [u8; 6]) -> u8 {
        self.pools.iter().find(|p| p.1 == mac).unwrap().0
    }

    /// "DMA" a frame into a buffer of `mac`'s pool and complete it.
    fn receive(&mut self, nic: &mut NicEnd<'_>, dma: &OwnedRegion, mac: [u8; 6], data: &[u8]) {
        let pool = self.pool_of(mac);
        let i = self
            .rx
            .iter()
            .position(|r| r.pool == pool)
            .expect("a posted buffer");
        let post = self.rx.remove(i);
        netback::hv::write_bytes(dma.mem(), (post.addr - BUS) as usize, data);
        let done = RxDone {
            pool,
            id: post.id,
            len: data.len() as u16,
            status: RxStatus::Frame,
        };
        nic.send_rx_done(&[done]).unwrap();
    }
}

fn take_tx(nic: &mut NicEnd<'_>) -> Vec<TxPost> {
    let mut p = [TxPost {
        pool: 0,
        id: 0,
        addr: 1,
        len: 1,
    }; 64];
    let n = nic.recv_tx_posts(&mut p).unwrap();
    p[..n].to_vec()
}

fn bytes(dma: &OwnedRegion, p: &TxPost) -> Vec<u8> {
    let mut v = vec![0u8; usize::from(p.len)];
    netback::hv::read_bytes(dma.mem(), (p.addr - BUS) as usize, &mut v);
    v
}

/// netback's NIC port over a queue-pair channel in `mem`, the channel's NIC end, the port's
/// DMA region, and a fake NIC with no pools yet.
fn port_with_fake_nic(
    mem: &[AtomicU64],
) -> (&'static OwnedRegion, NicPort<'_>, NicEnd<'_>, FakeNic) {
    let dma: &'static OwnedRegion = Box::leak(Box::new(OwnedRegion::new(CFG.dma_bytes())));
    let end = NetbackEnd::new(mem, LAYOUT).unwrap();
    let nic = NicEnd::new(mem, LAYOUT).unwrap();
    let port = NicPort::new(
        end,
        DmaRegion {
            mem: dma.mem(),
            bus: BUS,
        },
        CFG,
    )
    .unwrap();
    let fake = FakeNic {
        pools: Vec::new(),
        rx: Vec::new(),
    };
    (dma, port, nic, fake)
}

#[test]
fn each_guest_gets_its_own_pool_both_ways() {
    let mem: Vec<AtomicU64> = (0..LAYOUT.words()).map(|_| AtomicU64::new(0)).collect();
    let (dma, mut port, mut nic, mut fake) = port_with_fake_nic(&mem);

    let mut nb = netback();
    nb.attach_nic();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    nb.poll();

    // The NIC server sleeps armed, so the first requests kick it.
    assert!(!nic.arm().unwrap());
    port.sync_macs(&nb.port_macs()).unwrap();
    assert!(port.take_kick());
    assert_eq!(fake.serve_ctrl(&mut nic).len(), 3, "responder + two guests");
    let mut frames = Vec::new();
    port.poll(&mut frames).unwrap();
    fake.take_posts(&mut nic);
    assert_eq!(fake.rx.len(), 3 * CFG.rx_per_pool as usize);
    for mac in [mac_of(5), mac_of(6)] {
        assert!(port.pool_of(&mac).is_some());
    }

    // Wire -> each guest, through its own pool.
    let to_a = frame(mac_of(5), WIRE, 300, 1);
    let to_b = frame(mac_of(6), WIRE, 1514, 2);
    fake.receive(&mut nic, dma, mac_of(5), &to_a);
    fake.receive(&mut nic, dma, mac_of(6), &to_b);
    port.exchange(&mut nb).unwrap();
    assert_eq!(port.stats.rx_frames, 2);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(a.received.len(), 1);
    assert_eq!(a.received[0].data, to_a);
    assert_eq!(b.received[0].data, to_b);
    // Consumed buffers were posted again.
    fake.take_posts(&mut nic);
    assert_eq!(fake.rx.len(), 3 * CFG.rx_per_pool as usize);

    // Guests -> wire, each through its own pool.
    let from_a = frame(WIRE, mac_of(5), 64, 3);
    let from_b = frame(WIRE, mac_of(6), 128, 4);
    a.send(nb.hv_mut(), &from_a);
    b.send(nb.hv_mut(), &from_b);
    settle(&mut nb, &mut [&mut a, &mut b]);
    port.transmit(nb.take_nic_frames()).unwrap();
    let tx = take_tx(&mut nic);
    assert_eq!(tx.len(), 2);
    let pa = fake.pool_of(mac_of(5));
    let pb = fake.pool_of(mac_of(6));
    let ta = tx.iter().find(|p| p.pool == pa).unwrap();
    let tb = tx.iter().find(|p| p.pool == pb).unwrap();
    assert_eq!(bytes(dma, ta), from_a);
    assert_eq!(bytes(dma, tb), from_b);
    let done: Vec<TxDone> = tx
        .iter()
        .map(|p| TxDone {
            pool: p.pool,
            id: p.id,
            status: TxStatus::Sent,
        })
        .collect();
    nic.send_tx_done(&done).unwrap();
    // The same completion twice is bogus, not a second free.
    nic.send_tx_done(&done[..1]).unwrap();
    port.poll(&mut frames).unwrap();
    assert_eq!(port.stats.tx_frames, 2);
    assert_eq!(port.stats.bogus, 1);
    assert_eq!(port.stats.tx_failed, 0);

    // The wire pings the responder; the reply leaves through the responder's pool.
    let cfg = netback::Config::default();
    let ping = echo_request((WIRE, [10, 0, 0, 77]), (cfg.mac, cfg.ip), 1, 1, b"wire");
    fake.receive(&mut nic, dma, cfg.mac, &ping);
    port.poll(&mut frames).unwrap();
    for f in frames.drain(..) {
        nb.nic_receive(f);
    }
    nb.poll();
    port.transmit(nb.take_nic_frames()).unwrap();
    let tx = take_tx(&mut nic);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].pool, fake.pool_of(cfg.mac));
    let reply = bytes(dma, &tx[0]);
    assert_eq!(&reply[0..6], &WIRE);
    assert_eq!(reply[34], 0, "echo reply");

    // A guest's TCP with a blank checksum and GSO leaves as checksummed segments.
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let gso = libnc2::netif::ExtraInfo::Gso {
        size: 1400,
        gso_type: 1,
        features: 0,
    };
    let csum_blank = libnc2::netif::tx::NETTXF_CSUM_BLANK;
    assert!(a.queue_frame(0, &tcp4(WIRE, mac_of(5), &payload), csum_blank, &[gso]));
    a.push(nb.hv_mut(), 0);
    settle(&mut nb, &mut [&mut a, &mut b]);
    port.exchange(&mut nb).unwrap();
    let tx = take_tx(&mut nic);
    assert_eq!(tx.len(), 3);
    let mut joined = Vec::new();
    for p in &tx {
        assert_eq!(p.pool, pa);
        let s = bytes(dma, p);
        assert!(tcp4_ok(&s));
        joined.extend_from_slice(tcp4_payload(&s));
    }
    assert_eq!(joined, payload);
    let done: Vec<TxDone> = tx
        .iter()
        .map(|p| TxDone {
            pool: p.pool,
            id: p.id,
            status: TxStatus::Sent,
        })
        .collect();
    nic.send_tx_done(&done).unwrap();
    port.poll(&mut frames).unwrap();

    // Frames the NIC path cannot send as they are are dropped, not truncated.
    let before = port.stats.tx_drops;
    let mut big = netback::switch::Frame::plain(frame(WIRE, mac_of(5), 3000, 5));
    port.transmit([big.clone()]).unwrap();
    big.data.truncate(100);
    big.data[6..12].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    port.transmit([big]).unwrap();
    assert_eq!(
        port.stats.tx_drops,
        before + 2,
        "too long; no pool for that source"
    );
    assert!(take_tx(&mut nic).is_empty());

    // B goes away: its pool is released.
    let fe = fe_path(6, 0);
    nb.hv_mut().store_write(&format!("{fe}/state"), b"5");
    nb.poll();
    port.sync_macs(&nb.port_macs()).unwrap();
    let ctrl = fake.serve_ctrl(&mut nic);
    assert_eq!(ctrl, [Ctrl::ReleasePool { pool: pb }]);
    port.poll(&mut frames).unwrap();
    assert_eq!(port.pool_of(&mac_of(6)), None);
    assert!(port.pool_of(&mac_of(5)).is_some());
}

#[test]
fn a_broadcast_or_multicast_from_the_wire_reaches_each_port_once() {
    let mem: Vec<AtomicU64> = (0..LAYOUT.words()).map(|_| AtomicU64::new(0)).collect();
    let (dma, mut port, mut nic, mut fake) = port_with_fake_nic(&mem);
    let mut nb = netback();
    nb.attach_nic();
    for dom in [5, 6] {
        toolstack_add(nb.hv_mut(), dom, 0);
    }
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    nb.poll();
    port.sync_macs(&nb.port_macs()).unwrap();
    fake.serve_ctrl(&mut nic);
    let mut frames = Vec::new();
    port.poll(&mut frames).unwrap();
    fake.take_posts(&mut nic);

    // A third guest connects now: its pool is asked for in the next exchange but not ready.
    toolstack_add(nb.hv_mut(), 7, 0);
    nb.poll();
    let mut c = Guest::connect(nb.hv_mut(), 7, 0, GuestOpts::default());
    nb.poll();

    // The wire asks who has the responder's address; the NIC hands the broadcast to each of
    // the three pools (responder, a, b).
    let cfg = netback::Config::default();
    let who_has = netback::responder::arp_request(WIRE, [10, 0, 0, 77], cfg.ip);
    for mac in [cfg.mac, mac_of(5), mac_of(6)] {
        fake.receive(&mut nic, dma, mac, &who_has);
    }
    port.exchange(&mut nb).unwrap();
    assert_eq!(port.stats.rx_frames, 3);
    settle(&mut nb, &mut [&mut a, &mut b, &mut c]);
    for (name, g) in [("a", &a), ("b", &b), ("c (no pool yet)", &c)] {
        assert_eq!(g.received.len(), 1, "guest {name} got the broadcast once");
        assert_eq!(g.received[0].data, who_has);
    }
    // The responder answered once, through its own pool.
    port.transmit(nb.take_nic_frames()).unwrap();
    let tx = take_tx(&mut nic);
    assert_eq!(tx.len(), 1, "one ARP reply");
    assert_eq!(tx[0].pool, fake.pool_of(cfg.mac));
    assert_eq!(&bytes(dma, &tx[0])[0..6], &WIRE);

    // So does a multicast frame (every pool accepts all multicast): IPv6 all-nodes here.
    let mut all_nodes = frame([0x33, 0x33, 0, 0, 0, 1], WIRE, 90, 7);
    all_nodes[12..14].copy_from_slice(&[0x86, 0xdd]);
    for mac in [cfg.mac, mac_of(5), mac_of(6)] {
        fake.receive(&mut nic, dma, mac, &all_nodes);
    }
    port.exchange(&mut nb).unwrap();
    settle(&mut nb, &mut [&mut a, &mut b, &mut c]);
    for (name, g) in [("a", &a), ("b", &b), ("c (no pool yet)", &c)] {
        assert_eq!(g.received.len(), 2, "guest {name} got the multicast once");
        assert_eq!(g.received[1].data, all_nodes);
    }

    // A unicast frame is switched as before, whichever pool it came through.
    let to_a = frame(mac_of(5), WIRE, 100, 9);
    fake.receive(&mut nic, dma, mac_of(5), &to_a);
    port.exchange(&mut nb).unwrap();
    settle(&mut nb, &mut [&mut a, &mut b, &mut c]);
    assert_eq!(a.received.len(), 3);
    assert_eq!(a.received[2].data, to_a);
    assert_eq!((b.received.len(), c.received.len()), (2, 2));
}
