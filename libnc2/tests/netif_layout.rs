//! Byte compatibility with `xen/include/public/io/netif.h` and `io/ring.h`:
//! structure sizes, field offsets, shared-ring header and slot counts, checked
//! on the bytes that actually land in the shared page.

use core::sync::atomic::Ordering;
use libnc2::GrantBound;
use libnc2::netif::ctrl::CTRL_SLOT;
use libnc2::netif::extra::{EXTRA_SIZE, GSO_TCPV4};
use libnc2::netif::rx::RX_SLOT;
use libnc2::netif::sring::{
    self, REQ_EVENT, REQ_PROD, RING_OFFSET, RSP_EVENT, RSP_PROD, nr_entries,
};
use libnc2::netif::tx::{NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, TX_SLOT};
use libnc2::netif::{
    CtrlFrontend, CtrlRequest, CtrlResponse, ExtraInfo, RxRequest, RxResponse, TxBackend, TxFrag,
    TxFrontend, TxRequest, TxResponse,
};
use libnc2::shm::OwnedRegion;

#[test]
fn shared_ring_header_offsets() {
    assert_eq!(
        (REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT, RING_OFFSET),
        (0, 4, 8, 12, 64)
    );
    let page = OwnedRegion::new(4096);
    let m = page.mem();
    m.store_u32(100, 0xdead, Ordering::Relaxed);
    sring::init(&m).unwrap();
    assert_eq!(m.load_u32(REQ_PROD, Ordering::Relaxed), 0);
    assert_eq!(m.load_u32(REQ_EVENT, Ordering::Relaxed), 1);
    assert_eq!(m.load_u32(RSP_PROD, Ordering::Relaxed), 0);
    assert_eq!(m.load_u32(RSP_EVENT, Ordering::Relaxed), 1);
    assert_eq!(m.load_u32(100, Ordering::Relaxed), 0);
}

#[test]
fn slot_sizes_and_counts_for_a_4k_page() {
    assert_eq!(TX_SLOT, 12); // union of netif_tx_request (12) and netif_tx_response (4)
    assert_eq!(RX_SLOT, 8); // netif_rx_request / netif_rx_response
    assert_eq!(CTRL_SLOT, 16); // xen_netif_ctrl_request (16) / response (12)
    assert_eq!(EXTRA_SIZE, 8);
    assert_eq!(nr_entries(4096, TX_SLOT), 256);
    assert_eq!(nr_entries(4096, RX_SLOT), 256);
    assert_eq!(nr_entries(4096, CTRL_SLOT), 128);
    assert_eq!(nr_entries(64, 8), 0);
    assert_eq!(nr_entries(64 + 7 * 8, 8), 4);
}

#[test]
fn tx_request_and_response_field_offsets() {
    let r = TxRequest {
        gref: 0x0403_0201,
        offset: 0x0605,
        flags: 0x0807,
        id: 0x0a09,
        size: 0x0c0b,
    };
    assert_eq!(r.encode(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(TxRequest::decode(&r.encode()), r);
    let rsp = TxResponse {
        id: 0x0201,
        status: -2,
    };
    assert_eq!(rsp.encode(), [1, 2, 0xfe, 0xff]);
}

#[test]
fn rx_request_and_response_field_offsets() {
    let r = RxRequest {
        id: 0x0201,
        gref: 0x0807_0605,
    };
    assert_eq!(r.encode(), [1, 2, 0, 0, 5, 6, 7, 8]);
    let rsp = RxResponse {
        id: 0x0201,
        offset: 0x0403,
        flags: 0x0605,
        status: 0x0807,
    };
    assert_eq!(rsp.encode(), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(RxResponse::decode(&rsp.encode()), rsp);
}

#[test]
fn extra_info_layouts() {
    let gso = ExtraInfo::Gso {
        size: 0x0201,
        gso_type: GSO_TCPV4,
        features: 0x0403,
    };
    assert_eq!(gso.encode(true), [1, 1, 1, 2, 1, 0, 3, 4]);
    let mc = ExtraInfo::McastAdd([1, 2, 3, 4, 5, 6]);
    assert_eq!(mc.encode(false), [2, 0, 1, 2, 3, 4, 5, 6]);
    let h = ExtraInfo::Hash {
        htype: 1,
        alg: 1,
        value: 0x0403_0201,
    };
    assert_eq!(h.encode(false), [4, 0, 1, 1, 1, 2, 3, 4]);
    for e in [gso, mc, h, ExtraInfo::McastDel([0; 6])] {
        assert_eq!(ExtraInfo::decode(&e.encode(true)).unwrap(), (e, true));
    }
}

#[test]
fn ctrl_layouts() {
    let r = CtrlRequest {
        id: 0x0201,
        ty: 0x0403,
        data: [0x0807_0605, 0x0c0b_0a09, 0x100f_0e0d],
    };
    assert_eq!(r.encode(), core::array::from_fn(|i| i as u8 + 1));
    let rsp = CtrlResponse {
        id: 0x0201,
        ty: 0x0403,
        status: 0x0807_0605,
        data: 0x0c0b_0a09,
    };
    assert_eq!(rsp.encode(), core::array::from_fn(|i| i as u8 + 1));
    // A request lands in the page at 64 + slot * 16.
    let page = OwnedRegion::new(4096);
    let mut f = CtrlFrontend::new(page.mem()).unwrap();
    f.send(&CtrlRequest {
        id: 1,
        ty: 2,
        data: [3, 4, 5],
    })
    .unwrap();
    f.send(&CtrlRequest {
        id: 9,
        ty: 1,
        data: [0, 0, 0],
    })
    .unwrap();
    f.flush();
    let m = page.mem();
    assert_eq!(m.load_u32(REQ_PROD, Ordering::Relaxed), 2);
    assert_eq!(m.load_u32(64 + 16, Ordering::Relaxed), 9 | (1 << 16));
}

#[test]
fn tx_chain_bytes_in_the_page() {
    let page = OwnedRegion::new(4096);
    let mut f = TxFrontend::new(page.mem()).unwrap();
    let frags = [
        TxFrag {
            id: 5,
            gref: 70,
            offset: 100,
            size: 1000,
        },
        TxFrag {
            id: 6,
            gref: 71,
            offset: 0,
            size: 500,
        },
    ];
    let gso = ExtraInfo::Gso {
        size: 1448,
        gso_type: GSO_TCPV4,
        features: 0,
    };
    f.send_packet(&frags, 0, &[gso]).unwrap();
    f.flush();
    let m = page.mem();
    assert_eq!(m.load_u32(REQ_PROD, Ordering::Relaxed), 3);
    let mut s = [0u8; 12];
    m.read_into(64, &mut s);
    assert_eq!(
        TxRequest::decode(&s),
        TxRequest {
            gref: 70,
            offset: 100,
            flags: NETTXF_MORE_DATA | NETTXF_EXTRA_INFO,
            id: 5,
            size: 1500
        }
    );
    m.read_into(64 + 12, &mut s);
    assert_eq!(&s[..8], &gso.encode(false));
    m.read_into(64 + 24, &mut s);
    assert_eq!(
        TxRequest::decode(&s),
        TxRequest {
            gref: 71,
            offset: 0,
            flags: 0,
            id: 6,
            size: 500
        }
    );
    // And the backend reads it back as one packet.
    let mut b = TxBackend::attach(page.mem(), GrantBound(100), 18).unwrap();
    let p = b.poll_packet().unwrap().unwrap();
    assert_eq!(p.total, 1500);
    assert_eq!(p.slots().len(), 2);
    assert_eq!(p.slots()[0].size, 1000);
    assert_eq!(p.extras.gso(), Some(gso));
}
