//! The 82599 driver core against the software model: init, one queue pair per pool, MAC
//! steering, transmit order, drop-enable isolation, statistics, anti-spoofing, pool release
//! and MSI-X routing.

mod common;

use common::*;
use nic_ixgbe::regs::ixgbe as r;
use nic_ixgbe::{Chip, Config, Error, PoolFlags, Released, RxCompletion, TxBuf};

const BCAST: [u8; 6] = [0xFF; 6];

fn rx_all(nic: &mut ModelNic, p: u8) -> Vec<RxCompletion> {
    let mut out = vec![RxCompletion::default(); 64];
    let mut all = Vec::new();
    loop {
        let n = nic.rx_burst(p, &mut out).unwrap();
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&out[..n]);
    }
}

#[test]
fn init_resets_and_brings_link_up_without_violations() {
    let (m, nic) = nic(Chip::X82599);
    assert_eq!(m.resets(), 1);
    assert_eq!(nic.mac(), NIC_MAC);
    let link = nic.link();
    assert!(link.up);
    assert_eq!(link.mbps, 10_000);
    assert_eq!(m.violations(), Vec::<String>::new());
    // VMDq 64-pool mode with no default pool, TX in 64-pool VT mode, arbiter back on.
    assert_eq!(m.read32(r::MRQC), r::MRQC_VMDQ_64);
    assert_eq!(m.read32(r::MTQC), r::MTQC_VT_ENA | r::MTQC_64VF);
    assert_eq!(m.read32(r::RTTDCS) & r::RTTDCS_ARBDIS, 0);
    let vt = m.read32(r::PFVTCTL);
    assert_ne!(vt & r::PFVTCTL_VT_ENA, 0);
    assert_ne!(vt & r::PFVTCTL_DIS_DEFPL, 0);
    assert_eq!(m.read32(r::pfvfre(0)) | m.read32(r::pfvfre(1)), 0);
    // The permanent MAC is not steered anywhere.
    m.inject(&frame(NIC_MAC, guest_mac(9), 0, 64));
    assert_eq!(m.unmatched(), 1);
}

#[test]
fn bad_config_is_refused_before_touching_hardware() {
    let m = ixgbe_model::Model::new(ixgbe_model::Chip::X82599, NIC_MAC);
    let mut cfg = Config::new(Chip::X82599);
    cfg.rx_ring = 100;
    let r = nic_ixgbe::Nic::new(Regs(m.clone()), ModelDma(m.clone()), Clock(m.clone()), cfg);
    assert!(matches!(r, Err(Error::BadConfig(_))));
    assert_eq!(m.resets(), 0);
}

#[test]
fn each_pool_gets_its_own_enabled_queue_pair() {
    let (m, mut nic) = nic(Chip::X82599);
    let mut cfg_small = *nic.config();
    cfg_small.rx_ring = 8;
    for i in 0..64u8 {
        let p = nic.alloc_pool(guest_mac(i), PoolFlags::default()).unwrap();
        assert_eq!(p, i);
        let q = 2 * u32::from(p);
        assert_ne!(m.read32(r::rxq(q, r::RXDCTL)) & r::RXDCTL_ENABLE, 0);
        assert_ne!(m.read32(r::txq(q, r::TXDCTL)) & r::TXDCTL_ENABLE, 0);
        let srrctl = m.read32(r::rxq(q, r::SRRCTL));
        assert_ne!(srrctl & r::SRRCTL_DROP_EN, 0, "drop-enable on pool {p}");
        assert_eq!(srrctl & r::SRRCTL_BSIZEPKT_MASK, 2);
        // The second queue of the pool stays off.
        assert_eq!(m.read32(r::rxq(q + 1, r::RXDCTL)) & r::RXDCTL_ENABLE, 0);
    }
    assert_eq!(m.read32(r::pfvfre(0)), !0);
    assert_eq!(m.read32(r::pfvfre(1)), !0);
    assert_eq!(
        nic.alloc_pool(guest_mac(200), PoolFlags::default()),
        Err(Error::NoFreePool)
    );
    assert_eq!(nic.pools().count(), 64);
    assert_eq!(m.violations(), Vec::<String>::new());
    let _ = cfg_small;
}

#[test]
fn duplicate_and_multicast_macs_are_refused() {
    let (_, mut nic) = nic(Chip::X82599);
    nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    assert_eq!(
        nic.alloc_pool(guest_mac(1), PoolFlags::default()),
        Err(Error::MacInUse)
    );
    assert_eq!(
        nic.alloc_pool([0x01, 0, 0x5E, 0, 0, 1], PoolFlags::default()),
        Err(Error::BadMac)
    );
    assert_eq!(
        nic.alloc_pool([0; 6], PoolFlags::default()),
        Err(Error::BadMac)
    );
    assert_eq!(nic.rx_burst(5, &mut []), Err(Error::NoSuchPool(5)));
    assert_eq!(nic.rx_burst(200, &mut []), Err(Error::NoSuchPool(200)));
}

#[test]
fn frames_are_steered_by_destination_mac_to_their_pool() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 300, 2048);
    let pools: Vec<u8> = (0..3)
        .map(|i| {
            nic.alloc_pool(guest_mac(10 + i), PoolFlags::default())
                .unwrap()
        })
        .collect();
    for (k, &p) in pools.iter().enumerate() {
        let k = k as u32;
        assert_eq!(
            nic.post_rx(p, &bufs.rx(k * 100..k * 100 + 100)).unwrap(),
            100
        );
    }
    for seq in 0..90u32 {
        let k = (seq % 3) as u8;
        m.inject(&frame(
            guest_mac(10 + k),
            guest_mac(99),
            seq,
            60 + seq as usize,
        ));
    }
    m.inject(&frame(guest_mac(77), guest_mac(99), 1000, 64));
    assert_eq!(m.unmatched(), 1);
    for (k, &p) in pools.iter().enumerate() {
        let got = rx_all(&mut nic, p);
        assert_eq!(got.len(), 30, "pool {p}");
        for (j, c) in got.iter().enumerate() {
            let seq = (3 * j + k) as u32;
            assert!(c.ok);
            assert_eq!(
                c.id,
                k as u32 * 100 + j as u32,
                "buffers fill in posting order"
            );
            assert_eq!(usize::from(c.len), 60 + seq as usize);
            assert_eq!(
                bufs.read(c.id, c.len.into()),
                frame(
                    guest_mac(10 + k as u8),
                    guest_mac(99),
                    seq,
                    60 + seq as usize
                )
            );
        }
    }
    assert_eq!(m.violations(), Vec::<String>::new());
}

#[test]
fn broadcast_reaches_only_pools_that_accept_it() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 30, 2048);
    let yes = PoolFlags {
        broadcast: true,
        multicast: false,
    };
    let a = nic.alloc_pool(guest_mac(1), yes).unwrap();
    let b = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    let c = nic.alloc_pool(guest_mac(3), yes).unwrap();
    nic.post_rx(a, &bufs.rx(0..10)).unwrap();
    nic.post_rx(b, &bufs.rx(10..20)).unwrap();
    nic.post_rx(c, &bufs.rx(20..30)).unwrap();
    m.inject(&frame(BCAST, guest_mac(50), 7, 64));
    assert_eq!(rx_all(&mut nic, a).len(), 1);
    assert_eq!(rx_all(&mut nic, b).len(), 0);
    let got = rx_all(&mut nic, c);
    assert_eq!(got.len(), 1);
    assert_eq!(seq_of(&bufs.read(got[0].id, 64)), 7);
}

#[test]
fn transmitted_frames_leave_in_order_and_complete_in_order() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 200, 2048);
    let p = nic.alloc_pool(guest_mac(4), PoolFlags::default()).unwrap();
    let mut reclaimed = Vec::new();
    let mut ids = [0u32; 64];
    for batch in 0..10u32 {
        let frames: Vec<TxBuf> = (0..20)
            .map(|i| {
                let id = batch * 20 + i;
                let f = frame(guest_mac(90), guest_mac(4), id, 60 + (id as usize % 900));
                bufs.write(id, &f);
                TxBuf {
                    addr: bufs.addr(id),
                    len: f.len() as u16,
                    id,
                }
            })
            .collect();
        assert_eq!(nic.tx_burst(p, &frames).unwrap(), 20);
        let n = nic.tx_reclaim(p, &mut ids).unwrap();
        reclaimed.extend_from_slice(&ids[..n]);
    }
    let wire = m.take_transmitted();
    assert_eq!(wire.len(), 200);
    for (i, f) in wire.iter().enumerate() {
        assert_eq!(seq_of(f), i as u32);
        assert_eq!(f.len(), 60 + i % 900);
        assert_eq!(&f[6..12], &guest_mac(4));
    }
    assert_eq!(reclaimed, (0..200).collect::<Vec<u32>>());
    assert_eq!(m.pool_counters(u32::from(p)).tx_frames, 200);
    assert_eq!(m.violations(), Vec::<String>::new());
}

#[test]
fn tx_ring_full_accepts_only_free_slots_until_reclaimed() {
    let mut cfg = Config::new(Chip::X82599);
    cfg.tx_ring = 8;
    let (m, mut nic) = nic_with(cfg);
    m.defer_tx(true);
    let bufs = Buffers::new(&m, 20, 2048);
    let p = nic.alloc_pool(guest_mac(4), PoolFlags::default()).unwrap();
    let frames: Vec<TxBuf> = (0..20)
        .map(|id| {
            bufs.write(id, &frame(guest_mac(90), guest_mac(4), id, 64));
            TxBuf {
                addr: bufs.addr(id),
                len: 64,
                id,
            }
        })
        .collect();
    assert_eq!(
        nic.tx_burst(p, &frames).unwrap(),
        7,
        "one slot always stays empty"
    );
    assert_eq!(nic.tx_burst(p, &frames[7..]).unwrap(), 0);
    let mut ids = [0u32; 8];
    assert_eq!(
        nic.tx_reclaim(p, &mut ids).unwrap(),
        0,
        "nothing done before the NIC ran"
    );
    m.run_tx();
    assert_eq!(nic.tx_reclaim(p, &mut ids).unwrap(), 7);
    assert_eq!(nic.tx_burst(p, &frames[7..]).unwrap(), 7);
    m.run_tx();
    let seqs: Vec<u32> = m.take_transmitted().iter().map(|f| seq_of(f)).collect();
    assert_eq!(seqs, (0..14).collect::<Vec<u32>>());
}

#[test]
fn a_pool_without_buffers_drops_only_its_own_frames() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 100, 2048);
    let stalled = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let busy = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    nic.post_rx(stalled, &bufs.rx(0..4)).unwrap();
    nic.post_rx(busy, &bufs.rx(10..100)).unwrap();
    for seq in 0..60u32 {
        let dst = if seq % 2 == 0 {
            guest_mac(1)
        } else {
            guest_mac(2)
        };
        m.inject(&frame(dst, guest_mac(50), seq, 64));
    }
    let got_busy = rx_all(&mut nic, busy);
    assert_eq!(
        got_busy.len(),
        30,
        "the busy pool gets every one of its frames"
    );
    let got_stalled = rx_all(&mut nic, stalled);
    assert_eq!(
        got_stalled.len(),
        4,
        "the stalled pool only fills what it posted"
    );
    assert_eq!(m.rx_buffered(), 0, "nothing is stuck in the packet buffer");
    assert_eq!(nic.pool_stats(stalled).unwrap().rx_dropped, Some(26));
    assert_eq!(nic.pool_stats(busy).unwrap().rx_dropped, Some(0));
    assert_eq!(m.pool_counters(u32::from(stalled)).rx_dropped, 26);
}

/// The model itself: without drop-enable a starved queue blocks every pool behind it, which
/// is what the test above would catch if the driver forgot SRRCTL.DROP_EN.
#[test]
fn model_blocks_all_pools_when_drop_enable_is_off() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 100, 2048);
    let stalled = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let busy = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    let srrctl = r::rxq(2 * u32::from(stalled), r::SRRCTL);
    m.write32(srrctl, m.read32(srrctl) & !r::SRRCTL_DROP_EN);
    nic.post_rx(busy, &bufs.rx(10..100)).unwrap();
    m.inject(&frame(guest_mac(1), guest_mac(50), 0, 64));
    m.inject(&frame(guest_mac(2), guest_mac(50), 1, 64));
    assert_eq!(rx_all(&mut nic, busy).len(), 0);
    assert_eq!(m.rx_buffered(), 2);
    // Posting a buffer to the stalled pool releases both.
    nic.post_rx(stalled, &bufs.rx(0..1)).unwrap();
    assert_eq!(rx_all(&mut nic, busy).len(), 1);
    assert_eq!(rx_all(&mut nic, stalled).len(), 1);
}

#[test]
fn statistics_count_frames_and_bytes_once() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 200, 2048);
    let a = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let b = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    nic.post_rx(a, &bufs.rx(0..50)).unwrap();
    let mut rx_bytes = 0u64;
    for seq in 0..40u32 {
        let len = 64 + seq as usize * 10;
        rx_bytes += len as u64;
        m.inject(&frame(guest_mac(1), guest_mac(50), seq, len));
    }
    for seq in 0..5 {
        // Pool b has no buffers: dropped, not counted as received.
        m.inject(&frame(guest_mac(2), guest_mac(50), seq, 64));
    }
    let frames: Vec<TxBuf> = (100..110)
        .map(|id| {
            bufs.write(id, &frame(guest_mac(50), guest_mac(2), id, 100));
            TxBuf {
                addr: bufs.addr(id),
                len: 100,
                id,
            }
        })
        .collect();
    nic.tx_burst(b, &frames).unwrap();
    let s = nic.stats();
    assert_eq!(s.rx_frames, 45, "good frames accepted by the filters");
    assert_eq!(s.rx_bytes, rx_bytes + 5 * 64);
    assert_eq!(s.tx_frames, 10);
    assert_eq!(s.tx_bytes, 1000);
    assert_eq!(s.rx_missed, 0);
    // Clear-on-read: asking again adds nothing.
    assert_eq!(nic.stats(), s);
    rx_all(&mut nic, a);
    let pa = nic.pool_stats(a).unwrap();
    assert_eq!((pa.rx_frames, pa.rx_bytes, pa.rx_errors), (40, rx_bytes, 0));
    let pb = nic.pool_stats(b).unwrap();
    assert_eq!(
        (pb.tx_frames, pb.tx_bytes, pb.rx_dropped),
        (10, 1000, Some(5))
    );
    // And the drop counter was also read-and-cleared into the pool's total.
    assert_eq!(nic.pool_stats(b).unwrap().rx_dropped, Some(5));
}

#[test]
fn anti_spoofing_drops_frames_with_a_foreign_source_mac() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 4, 2048);
    let a = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    bufs.write(0, &frame(guest_mac(9), guest_mac(1), 0, 64));
    bufs.write(1, &frame(guest_mac(9), guest_mac(2), 1, 64)); // pool b's MAC
    bufs.write(2, &frame(guest_mac(9), guest_mac(1), 2, 64));
    let frames: Vec<TxBuf> = (0..3)
        .map(|id| TxBuf {
            addr: bufs.addr(id),
            len: 64,
            id,
        })
        .collect();
    nic.tx_burst(a, &frames).unwrap();
    let seqs: Vec<u32> = m.take_transmitted().iter().map(|f| seq_of(f)).collect();
    assert_eq!(seqs, vec![0, 2]);
    let mut ids = [0u32; 4];
    assert_eq!(
        nic.tx_reclaim(a, &mut ids).unwrap(),
        3,
        "a dropped frame still completes"
    );
    assert_eq!(nic.stats().tx_spoofed, 1);
    assert_eq!(m.pool_counters(u32::from(a)).tx_spoofed, 1);
}

#[test]
fn release_returns_every_buffer_once_and_the_pool_can_be_reused() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 40, 2048);
    let p = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    nic.post_rx(p, &bufs.rx(0..10)).unwrap();
    for seq in 0..3 {
        m.inject(&frame(guest_mac(1), guest_mac(50), seq, 64));
    }
    m.defer_tx(true);
    let frames: Vec<TxBuf> = (20..25)
        .map(|id| {
            bufs.write(id, &frame(guest_mac(50), guest_mac(1), id, 64));
            TxBuf {
                addr: bufs.addr(id),
                len: 64,
                id,
            }
        })
        .collect();
    nic.tx_burst(p, &frames).unwrap();
    let mut events = Vec::new();
    nic.release_pool(p, |e| events.push(e)).unwrap();
    let frames_back: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Released::RxFrame(c) => Some(c.id),
            _ => None,
        })
        .collect();
    let unused: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Released::RxUnused(id) => Some(*id),
            _ => None,
        })
        .collect();
    let tx: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Released::TxSent(id) | Released::TxDiscarded(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(frames_back, vec![0, 1, 2]);
    assert_eq!(unused, (3..10).collect::<Vec<u32>>());
    assert_eq!(tx, (20..25).collect::<Vec<u32>>());
    assert_eq!(nic.pools().count(), 0);
    // The MAC no longer reaches any pool.
    let before = m.unmatched();
    m.inject(&frame(guest_mac(1), guest_mac(50), 9, 64));
    assert_eq!(m.unmatched(), before + 1);
    // Reallocation reuses the slot and its rings, from a clean state.
    m.defer_tx(false);
    let p2 = nic.alloc_pool(guest_mac(7), PoolFlags::default()).unwrap();
    assert_eq!(p2, p);
    nic.post_rx(p2, &bufs.rx(30..35)).unwrap();
    m.inject(&frame(guest_mac(7), guest_mac(50), 11, 64));
    let got = rx_all(&mut nic, p2);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, 30);
    assert_eq!(m.violations(), Vec::<String>::new());
}

#[test]
fn rings_wrap_many_times() {
    let mut cfg = Config::new(Chip::X82599);
    cfg.rx_ring = 8;
    cfg.tx_ring = 8;
    let (m, mut nic) = nic_with(cfg);
    let bufs = Buffers::new(&m, 16, 2048);
    let p = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let mut free: Vec<u32> = (0..16).collect();
    let mut out = [RxCompletion::default(); 8];
    let mut seq = 0u32;
    let mut received = 0u32;
    for _ in 0..50 {
        let room = nic.rx_room(p).unwrap().min(free.len());
        let post: Vec<nic_ixgbe::RxBuf> = free
            .drain(..room)
            .map(|id| nic_ixgbe::RxBuf {
                addr: bufs.addr(id),
                id,
            })
            .collect();
        nic.post_rx(p, &post).unwrap();
        for _ in 0..5 {
            m.inject(&frame(guest_mac(1), guest_mac(50), seq, 64));
            seq += 1;
        }
        let n = nic.rx_burst(p, &mut out).unwrap();
        for c in &out[..n] {
            assert_eq!(seq_of(&bufs.read(c.id, 64)), received);
            received += 1;
            free.push(c.id);
        }
    }
    assert_eq!(received, 250);
}

#[test]
fn each_pool_signals_its_own_vector_and_rearms() {
    let (m, mut nic) = nic(Chip::X82599);
    let bufs = Buffers::new(&m, 20, 2048);
    let a = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let b = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    nic.post_rx(a, &bufs.rx(0..10)).unwrap();
    nic.post_rx(b, &bufs.rx(10..20)).unwrap();
    let (va, vb) = (nic.pool_vector(a).unwrap(), nic.pool_vector(b).unwrap());
    assert_ne!(va, vb);
    assert_ne!(va, 0, "vector 0 is for link and other causes");
    m.take_msix();
    m.inject(&frame(guest_mac(2), guest_mac(50), 0, 64));
    assert_eq!(m.take_msix(), vec![vb]);
    // Auto-masked until the server re-arms after polling.
    m.inject(&frame(guest_mac(2), guest_mac(50), 1, 64));
    assert_eq!(m.take_msix(), Vec::<u32>::new());
    nic.rearm(b).unwrap();
    assert_eq!(
        m.take_msix(),
        vec![vb],
        "the cause that arrived while masked fires on unmask"
    );
    m.inject(&frame(guest_mac(1), guest_mac(50), 2, 64));
    assert_eq!(m.take_msix(), vec![va]);
    // Moderation programmed on the pool vectors.
    assert_ne!(
        m.read32(r::eitr(vb)) & (r::EITR_INTERVAL_MAX << r::EITR_INTERVAL_SHIFT),
        0
    );
}

#[test]
fn link_change_signals_the_misc_vector() {
    let m = ixgbe_model::Model::new(ixgbe_model::Chip::X82599, NIC_MAC);
    let mut nic = nic_ixgbe::Nic::new(
        Regs(m.clone()),
        ModelDma(m.clone()),
        Clock(m.clone()),
        Config::new(Chip::X82599),
    )
    .unwrap();
    m.take_msix();
    nic.wait_link(2000).unwrap();
    assert_eq!(m.take_msix(), vec![nic_ixgbe::ixgbe::msix::MISC_VECTOR]);
    assert!(nic.link_changed());
    assert!(!nic.link_changed(), "acknowledged");
}

#[test]
fn a_queue_that_never_enables_is_a_timeout_not_a_hang() {
    let (m, mut nic) = nic(Chip::X82599);
    // Transmit DMA off: the model refuses TXDCTL.ENABLE, as the 82599 requires TE first.
    m.write32(r::DMATXCTL, 0);
    assert_eq!(
        nic.alloc_pool(guest_mac(1), PoolFlags::default()),
        Err(Error::Timeout("TXDCTL.ENABLE"))
    );
    assert_eq!(nic.pools().count(), 0);
    assert_eq!(
        m.read32(r::rxq(0, r::RXDCTL)) & r::RXDCTL_ENABLE,
        0,
        "the RX queue set up before the failure is off again"
    );
    assert!(m.violations().iter().any(|v| v.contains("DMATXCTL.TE")));
    // Bounded: the wait used virtual time, not forever.
    assert!(m.now_us() < 1_000_000);
}

#[test]
fn a_frame_larger_than_the_buffer_comes_back_as_an_error() {
    let mut cfg = Config::new(Chip::X82599);
    cfg.rx_buf_kb = 1;
    let (m, mut nic) = nic_with(cfg);
    let bufs = Buffers::new(&m, 4, 2048);
    let p = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    nic.post_rx(p, &bufs.rx(0..4)).unwrap();
    m.inject(&frame(guest_mac(1), guest_mac(50), 0, 1500));
    m.inject(&frame(guest_mac(1), guest_mac(50), 1, 1000));
    let got = rx_all(&mut nic, p);
    assert_eq!(got.len(), 2);
    assert!(!got[0].ok);
    assert_eq!(got[0].len, 0);
    assert!(got[1].ok);
    assert_eq!(nic.pool_stats(p).unwrap().rx_errors, 1);
    // Nothing was written past the 1 KiB the NIC was told the buffer holds.
    assert_eq!(bufs.read(0, 1500), vec![0u8; 1500]);
}
