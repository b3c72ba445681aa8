//! The 82576 (QEMU igb) side of the driver core against the model's 82576 variant: init,
//! 8 pools with pool p on queue p, MAC steering, transmit, drop-enable isolation (bit 31),
//! MSI-X routing through the 82576 IVAR layout.

mod common;

use common::*;
use nic_ixgbe::regs::igb as r;
use nic_ixgbe::{Chip, Error, PoolFlags, RxCompletion, TxBuf};

fn rx_all(nic: &mut ModelNic, p: u8) -> Vec<RxCompletion> {
    let mut out = vec![RxCompletion::default(); 64];
    let n = nic.rx_burst(p, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn init_enables_vmdq_and_brings_link_up() {
    let (m, nic) = nic(Chip::I82576);
    assert_eq!(m.violations(), Vec::<String>::new());
    assert_eq!(nic.mac(), NIC_MAC);
    let link = nic.link();
    assert!(link.up);
    assert_eq!(link.mbps, 1000);
    assert_eq!(m.read32(r::MRQC), r::MRQC_VMDQ);
    assert_ne!(m.read32(r::VT_CTL) & r::VT_CTL_DIS_DEF_POOL, 0);
    // Reset left queue 0 and all pools enabled; init turned them off.
    assert_eq!(m.read32(r::VFRE), 0);
    assert_eq!(m.read32(r::VFTE), 0);
    assert_eq!(m.read32(r::rxq(0, r::RXDCTL)) & r::RXDCTL_ENABLE, 0);
    assert_ne!(m.read32(r::RCTL) & r::RCTL_EN, 0);
}

#[test]
fn eight_pools_each_on_its_own_queue() {
    let (m, mut nic) = nic(Chip::I82576);
    for i in 0..8u8 {
        let p = nic.alloc_pool(guest_mac(i), PoolFlags::default()).unwrap();
        assert_eq!(p, i);
        let q = u32::from(p);
        let srrctl = m.read32(r::rxq(q, r::SRRCTL));
        assert_ne!(
            srrctl & r::SRRCTL_DROP_EN,
            0,
            "DROP_EN is bit 31 on the 82576"
        );
        assert_eq!(
            srrctl & r::SRRCTL_DESCTYPE_ADV_ONEBUF,
            r::SRRCTL_DESCTYPE_ADV_ONEBUF
        );
        assert_ne!(m.read32(r::rxq(q, r::RXDCTL)) & r::RXDCTL_ENABLE, 0);
        assert_ne!(m.read32(r::txq(q, r::TXDCTL)) & r::TXDCTL_ENABLE, 0);
        let rah = m.read32(r::rah(q + 1));
        assert_eq!(rah & r::RAH_POOLSEL_MASK, 1 << (r::RAH_POOLSEL_SHIFT + q));
        assert_ne!(rah & r::RAH_AV, 0);
    }
    assert_eq!(m.read32(r::VFRE), 0xFF);
    assert_eq!(
        nic.alloc_pool(guest_mac(8), PoolFlags::default()),
        Err(Error::NoFreePool)
    );
    assert_eq!(m.violations(), Vec::<String>::new());
}

#[test]
fn frames_for_two_macs_arrive_on_two_pools_and_replies_leave() {
    let (m, mut nic) = nic(Chip::I82576);
    let bufs = Buffers::new(&m, 40, 2048);
    let a = nic
        .alloc_pool(
            guest_mac(1),
            PoolFlags {
                broadcast: true,
                multicast: false,
            },
        )
        .unwrap();
    let b = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    nic.post_rx(a, &bufs.rx(0..10)).unwrap();
    nic.post_rx(b, &bufs.rx(10..20)).unwrap();
    m.inject(&frame(guest_mac(1), guest_mac(50), 1, 64));
    m.inject(&frame(guest_mac(2), guest_mac(50), 2, 70));
    m.inject(&frame([0xFF; 6], guest_mac(50), 3, 60));
    let ga = rx_all(&mut nic, a);
    let gb = rx_all(&mut nic, b);
    assert_eq!(
        ga.iter()
            .map(|c| seq_of(&bufs.read(c.id, c.len.into())))
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(gb.len(), 1);
    assert_eq!(
        bufs.read(gb[0].id, 70),
        frame(guest_mac(2), guest_mac(50), 2, 70)
    );
    // Replies from each pool, one of them short (padded on the wire).
    bufs.write(30, &frame(guest_mac(50), guest_mac(1), 10, 42));
    bufs.write(31, &frame(guest_mac(50), guest_mac(2), 11, 64));
    nic.tx_burst(
        a,
        &[TxBuf {
            addr: bufs.addr(30),
            len: 42,
            id: 30,
        }],
    )
    .unwrap();
    nic.tx_burst(
        b,
        &[TxBuf {
            addr: bufs.addr(31),
            len: 64,
            id: 31,
        }],
    )
    .unwrap();
    let wire = m.take_transmitted();
    assert_eq!(wire.len(), 2);
    assert_eq!((seq_of(&wire[0]), wire[0].len()), (10, 60));
    assert_eq!(seq_of(&wire[1]), 11);
    let mut ids = [0u32; 4];
    assert_eq!(nic.tx_reclaim(a, &mut ids).unwrap(), 1);
    assert_eq!(ids[0], 30);
    assert_eq!(m.violations(), Vec::<String>::new());
}

#[test]
fn a_starved_pool_does_not_block_the_other() {
    let (m, mut nic) = nic(Chip::I82576);
    let bufs = Buffers::new(&m, 40, 2048);
    let starved = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let fed = nic.alloc_pool(guest_mac(2), PoolFlags::default()).unwrap();
    nic.post_rx(fed, &bufs.rx(0..40)).unwrap();
    for seq in 0..20 {
        let dst = if seq % 2 == 0 {
            guest_mac(1)
        } else {
            guest_mac(2)
        };
        m.inject(&frame(dst, guest_mac(50), seq, 64));
    }
    assert_eq!(rx_all(&mut nic, fed).len(), 10);
    assert_eq!(m.rx_buffered(), 0);
    assert_eq!(nic.pool_stats(starved).unwrap().rx_dropped, Some(10));
    let s = nic.stats();
    assert_eq!(s.rx_frames, 20);
}

#[test]
fn pool_vectors_follow_the_82576_ivar_layout() {
    let (m, mut nic) = nic(Chip::I82576);
    let bufs = Buffers::new(&m, 20, 2048);
    let pools: Vec<u8> = (0..8)
        .map(|i| nic.alloc_pool(guest_mac(i), PoolFlags::default()).unwrap())
        .collect();
    for &p in &pools {
        nic.post_rx(p, &bufs.rx(u32::from(p) * 2..u32::from(p) * 2 + 2))
            .unwrap();
    }
    m.take_msix();
    for &p in &pools {
        m.inject(&frame(guest_mac(p), guest_mac(50), 0, 64));
        let v = nic.pool_vector(p).unwrap();
        assert!((1..10).contains(&v), "QEMU gives the PF vectors 0..9");
        assert_eq!(m.take_msix(), vec![v], "pool {p}");
    }
}

#[test]
fn link_up_is_reported_once() {
    let m = ixgbe_model::Model::new(ixgbe_model::Chip::I82576, NIC_MAC);
    let mut nic = nic_ixgbe::Nic::new(
        Regs(m.clone()),
        ModelDma(m.clone()),
        Clock(m.clone()),
        nic_ixgbe::Config::new(Chip::I82576),
    )
    .unwrap();
    assert!(!nic.link().up);
    m.take_msix();
    let link = nic.wait_link(2000).unwrap();
    assert_eq!(link.mbps, 1000);
    assert_eq!(m.take_msix(), vec![nic_ixgbe::igb::msix::MISC_VECTOR]);
    assert!(nic.link_changed());
    assert!(!nic.link_changed());
}
