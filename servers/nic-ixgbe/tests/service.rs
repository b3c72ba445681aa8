//! The NIC end of the queue-pair channel against the model, with a test playing netback on the
//! other end: pools by MAC, buffers by bus address, batched completions, every rule enforced.

mod common;

use std::sync::atomic::AtomicU64;

use common::*;
use nic_ixgbe::Chip;
use nic_ixgbe::service::{Service, Window};
use qpair::{
    Ctrl, CtrlReply, Layout, MacAddr, NetbackEnd, NicEnd, PoolFlags, RefuseReason, RxDone, RxPost,
    RxStatus, TxDone, TxPost, TxStatus,
};

const L: Layout = Layout {
    ctrl: 8,
    rx: 256,
    tx: 256,
};

fn region() -> Vec<AtomicU64> {
    (0..L.words()).map(|_| AtomicU64::new(0)).collect()
}

struct Rig {
    m: ixgbe_model::Model,
    nic: ModelNic,
    svc: Service,
    bufs: Buffers,
}

fn rig(chip: Chip) -> Rig {
    let (m, nic) = nic(chip);
    let bufs = Buffers::new(&m, 512, 2048);
    let svc = Service::new(&[Window {
        start: bufs.base,
        end: bufs.base + 512 * 2048,
    }]);
    Rig { m, nic, svc, bufs }
}

fn alloc(r: &mut Rig, nic_end: &mut NicEnd, nb: &mut NetbackEnd, req: u32, mac: [u8; 6]) -> u8 {
    nb.send_ctrl(&[Ctrl::AllocPool {
        req,
        mac: MacAddr(mac),
        flags: PoolFlags::default(),
    }])
    .unwrap();
    r.svc.poll(&mut r.nic, nic_end).unwrap();
    let mut rep = [CtrlReply::PoolReleased { pool: 0 }; 4];
    assert_eq!(nb.recv_ctrl(&mut rep).unwrap(), 1);
    match rep[0] {
        CtrlReply::PoolAllocated { req: got, pool } => {
            assert_eq!(got, req);
            pool
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

fn rx_dones(nb: &mut NetbackEnd) -> Vec<RxDone> {
    let mut out = [RxDone {
        pool: 0,
        id: 0,
        len: 0,
        status: RxStatus::Unused,
    }; 256];
    let n = nb.recv_rx_done(&mut out).unwrap();
    out[..n].to_vec()
}

fn tx_dones(nb: &mut NetbackEnd) -> Vec<TxDone> {
    let mut out = [TxDone {
        pool: 0,
        id: 0,
        status: TxStatus::Sent,
    }; 256];
    let n = nb.recv_tx_done(&mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn netback_receives_and_sends_through_the_channel() {
    for chip in [Chip::X82599, Chip::I82576] {
        let mut r = rig(chip);
        let mem = region();
        let mut nic_end = NicEnd::new(&mem, L).unwrap();
        let mut nb = NetbackEnd::new(&mem, L).unwrap();
        let a = alloc(&mut r, &mut nic_end, &mut nb, 1, guest_mac(1));
        let b = alloc(&mut r, &mut nic_end, &mut nb, 2, guest_mac(2));
        assert_ne!(a, b);
        let posts: Vec<RxPost> = (0..64)
            .map(|id| RxPost {
                pool: if id < 32 { a } else { b },
                id,
                addr: r.bufs.addr(id),
                len: 2048,
            })
            .collect();
        nb.post_rx(&posts).unwrap();
        r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        for seq in 0..20 {
            let dst = guest_mac(1 + (seq % 2) as u8);
            r.m.inject(&frame(dst, guest_mac(50), seq, 100 + seq as usize));
        }
        let act = r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        assert!(act.work >= 20);
        let done = rx_dones(&mut nb);
        assert_eq!(done.len(), 20);
        for d in &done {
            assert_eq!(d.status, RxStatus::Frame);
            let f = r.bufs.read(d.id, d.len.into());
            let seq = seq_of(&f);
            assert_eq!(usize::from(d.len), 100 + seq as usize);
            assert_eq!(
                d.pool,
                if seq.is_multiple_of(2) { a } else { b },
                "{chip:?}"
            );
            assert_eq!(d.pool, if d.id < 32 { a } else { b });
        }
        // Transmit a batch from pool b.
        let tx: Vec<TxPost> = (300..310)
            .map(|id| {
                r.bufs
                    .write(id, &frame(guest_mac(50), guest_mac(2), id, 64));
                TxPost {
                    pool: b,
                    id,
                    addr: r.bufs.addr(id),
                    len: 64,
                }
            })
            .collect();
        nb.post_tx(&tx).unwrap();
        r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        let wire: Vec<u32> = r.m.take_transmitted().iter().map(|f| seq_of(f)).collect();
        assert_eq!(wire, (300..310).collect::<Vec<u32>>());
        r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        let td = tx_dones(&mut nb);
        assert_eq!(
            td.iter().map(|d| d.id).collect::<Vec<_>>(),
            (300..310).collect::<Vec<_>>()
        );
        assert!(td.iter().all(|d| d.status == TxStatus::Sent && d.pool == b));
        assert_eq!(r.m.violations(), Vec::<String>::new());
    }
}

#[test]
fn requests_breaking_the_rules_are_refused_by_id() {
    let mut r = rig(Chip::X82599);
    let mem = region();
    let mut nic_end = NicEnd::new(&mem, L).unwrap();
    let mut nb = NetbackEnd::new(&mem, L).unwrap();
    let a = alloc(&mut r, &mut nic_end, &mut nb, 1, guest_mac(1));
    let other = a + 1; // not allocated by this channel
    let base = r.bufs.base;
    nb.post_rx(&[
        RxPost {
            pool: other,
            id: 1,
            addr: base,
            len: 2048,
        },
        RxPost {
            pool: a,
            id: 2,
            addr: base,
            len: 512,
        },
        RxPost {
            pool: a,
            id: 3,
            addr: 0x1000,
            len: 2048,
        },
        RxPost {
            pool: a,
            id: 4,
            addr: base + 511 * 2048 + 1024,
            len: 2048,
        },
        RxPost {
            pool: a,
            id: 5,
            addr: base,
            len: 2048,
        },
    ])
    .unwrap();
    nb.post_tx(&[
        TxPost {
            pool: a,
            id: 6,
            addr: base,
            len: 2000,
        },
        TxPost {
            pool: a,
            id: 7,
            addr: base,
            len: 10,
        },
        TxPost {
            pool: other,
            id: 8,
            addr: base,
            len: 64,
        },
        TxPost {
            pool: a,
            id: 9,
            addr: 0x1000,
            len: 64,
        },
    ])
    .unwrap();
    r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
    let rx = rx_dones(&mut nb);
    assert_eq!(
        rx.iter().map(|d| (d.id, d.status)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
            .into_iter()
            .map(|id| (id, RxStatus::Refused))
            .collect::<Vec<_>>()
    );
    let tx = tx_dones(&mut nb);
    assert_eq!(tx.len(), 4);
    assert!(tx.iter().all(|d| d.status == TxStatus::Refused));
    let refused = r.svc.refusals;
    assert_eq!(refused.not_owned, 2);
    assert_eq!(refused.bad_length, 3);
    assert_eq!(refused.outside_window, 3);
    assert!(r.m.take_transmitted().is_empty());
    // The one good buffer was posted: a frame lands in it.
    r.m.inject(&frame(guest_mac(1), guest_mac(50), 42, 64));
    r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
    let rx = rx_dones(&mut nb);
    assert_eq!((rx[0].id, rx[0].status), (5, RxStatus::Frame));
    // Releasing a pool this channel does not own does nothing.
    nb.send_ctrl(&[Ctrl::ReleasePool { pool: other }]).unwrap();
    r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
    assert_eq!(r.svc.refusals.not_owned, 3);
    assert_eq!(r.nic.pools().count(), 1);
}

#[test]
fn posting_past_the_ring_is_refused_not_lost() {
    let mut r = rig(Chip::I82576);
    let mem = region();
    let mut nic_end = NicEnd::new(&mem, L).unwrap();
    let mut nb = NetbackEnd::new(&mem, L).unwrap();
    let a = alloc(&mut r, &mut nic_end, &mut nb, 1, guest_mac(1));
    let ring = r.nic.config().rx_ring; // 512: one slot stays empty
    let mut refused = 0;
    let mut id = 0u32;
    for _ in 0..((ring + 64) / 64) {
        let posts: Vec<RxPost> = (0..64)
            .map(|_| {
                id += 1;
                RxPost {
                    pool: a,
                    id,
                    addr: r.bufs.addr(id % 512),
                    len: 2048,
                }
            })
            .collect();
        nb.post_rx(&posts).unwrap();
        r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        refused += rx_dones(&mut nb)
            .iter()
            .filter(|d| d.status == RxStatus::Refused)
            .count();
    }
    assert_eq!(id as usize - refused, ring as usize - 1);
    assert_eq!(r.svc.refusals.ring_full as usize, refused);
}

#[test]
fn release_hands_back_every_buffer_before_the_reply() {
    let mut r = rig(Chip::X82599);
    let mem = region();
    let mut nic_end = NicEnd::new(&mem, L).unwrap();
    let mut nb = NetbackEnd::new(&mem, L).unwrap();
    let a = alloc(&mut r, &mut nic_end, &mut nb, 1, guest_mac(1));
    let posts: Vec<RxPost> = (0..200)
        .map(|id| RxPost {
            pool: a,
            id,
            addr: r.bufs.addr(id),
            len: 2048,
        })
        .collect();
    nb.post_rx(&posts).unwrap();
    r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
    r.m.inject(&frame(guest_mac(1), guest_mac(50), 0, 64));
    r.m.defer_tx(true);
    nb.post_tx(&[TxPost {
        pool: a,
        id: 400,
        addr: r.bufs.addr(400),
        len: 64,
    }])
    .unwrap();
    nb.send_ctrl(&[Ctrl::ReleasePool { pool: a }]).unwrap();
    // Completion rings hold 256; 201 RX completions fit, but poll until everything is out.
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    let mut released = false;
    for _ in 0..10 {
        r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
        rx.extend(rx_dones(&mut nb));
        tx.extend(tx_dones(&mut nb));
        let mut rep = [CtrlReply::PoolReleased { pool: 0 }; 4];
        let n = nb.recv_ctrl(&mut rep).unwrap();
        if n > 0 {
            assert_eq!(rep[0], CtrlReply::PoolReleased { pool: a });
            assert_eq!(rx.len(), 200, "all RX completions came before the reply");
            assert_eq!(tx.len(), 1);
            released = true;
            break;
        }
    }
    assert!(released);
    assert_eq!(rx.iter().filter(|d| d.status == RxStatus::Frame).count(), 1);
    assert_eq!(
        rx.iter().filter(|d| d.status == RxStatus::Unused).count(),
        199
    );
    let mut ids: Vec<u32> = rx.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert_eq!(r.nic.pools().count(), 0);
    // The MAC can be given out again.
    let again = alloc(&mut r, &mut nic_end, &mut nb, 2, guest_mac(1));
    assert_eq!(again, a);
}

#[test]
fn pool_refusals_name_the_reason() {
    let mut r = rig(Chip::I82576);
    let mem = region();
    let mut nic_end = NicEnd::new(&mem, L).unwrap();
    let mut nb = NetbackEnd::new(&mem, L).unwrap();
    for i in 0..8 {
        alloc(&mut r, &mut nic_end, &mut nb, i, guest_mac(i as u8));
    }
    nb.send_ctrl(&[
        Ctrl::AllocPool {
            req: 20,
            mac: MacAddr(guest_mac(3)),
            flags: PoolFlags::default(),
        },
        Ctrl::AllocPool {
            req: 21,
            mac: MacAddr(guest_mac(30)),
            flags: PoolFlags::default(),
        },
    ])
    .unwrap();
    r.svc.poll(&mut r.nic, &mut nic_end).unwrap();
    let mut rep = [CtrlReply::PoolReleased { pool: 0 }; 4];
    assert_eq!(nb.recv_ctrl(&mut rep).unwrap(), 2);
    assert_eq!(
        rep[0],
        CtrlReply::PoolRefused {
            req: 20,
            reason: RefuseReason::MacInUse
        }
    );
    assert_eq!(
        rep[1],
        CtrlReply::PoolRefused {
            req: 21,
            reason: RefuseReason::NoPool
        }
    );
}

#[test]
fn a_corrupt_channel_is_reported_not_trusted() {
    let mut r = rig(Chip::X82599);
    let mem = region();
    let mut nic_end = NicEnd::new(&mem, L).unwrap();
    // Garbage where netback's RX-post producer index lives.
    let rx_post_ring = 2 * qpair::ring::ring_words(L.ctrl);
    mem[rx_post_ring].store(100_000, std::sync::atomic::Ordering::Relaxed);
    assert!(r.svc.poll(&mut r.nic, &mut nic_end).is_err());
    assert_eq!(r.nic.pools().count(), 0);
}
