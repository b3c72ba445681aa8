//! netif behaviour: tx/rx/ctrl round trips, responses, notification rule,
//! and hostile-peer errors.

mod common;

use core::sync::atomic::Ordering;
use libnc2::netif::ctrl::{
    CTRL_SET_HASH_ALGORITHM, CTRL_SET_HASH_KEY, CTRL_STATUS_INVALID_PARAMETER, CtrlReject,
};
use libnc2::netif::extra::GSO_TCPV6;
use libnc2::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_MORE_DATA};
use libnc2::netif::sring::{REQ_PROD, RING_OFFSET, RSP_PROD};
use libnc2::netif::tx::{NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_MORE_DATA};
use libnc2::netif::*;
use libnc2::shm::OwnedRegion;
use libnc2::{GrantBound, PeerError, SendError};

const G: GrantBound = GrantBound(1000);

fn frag(id: u16, size: u16) -> TxFrag {
    TxFrag {
        id,
        gref: u32::from(id),
        offset: 0,
        size,
    }
}

#[test]
fn tx_round_trip_and_responses() {
    let page = OwnedRegion::new(4096);
    let mut f = TxFrontend::new(page.mem()).unwrap();
    let mut b = TxBackend::attach(page.mem(), G, 18).unwrap();
    f.send_packet(&[frag(1, 60)], 0, &[]).unwrap();
    f.send_packet(
        &[frag(2, 4096), frag(3, 4096), frag(4, 10)],
        0,
        &[ExtraInfo::McastAdd([1; 6])],
    )
    .unwrap();
    assert!(f.flush(), "initial req_event of 1 asks for an event");
    let p1 = b.poll_packet().unwrap().unwrap();
    let p2 = b.poll_packet().unwrap().unwrap();
    assert!(b.poll_packet().unwrap().is_none());
    assert_eq!(p1.total, 60);
    assert_eq!(p2.total, 8202);
    assert_eq!(
        p2.slots().iter().map(|s| s.size).collect::<Vec<_>>(),
        [4096, 4096, 10]
    );
    b.respond(&p2, NETIF_RSP_OKAY).unwrap();
    b.respond(&p1, NETIF_RSP_ERROR).unwrap();
    assert_eq!(
        b.respond(&p1, NETIF_RSP_OKAY),
        Err(SendError::NothingOutstanding)
    );
    assert!(b.flush());
    let mut got = vec![];
    while let Some(r) = f.poll_response().unwrap() {
        got.push((r.id, r.status));
    }
    assert_eq!(got, [(2, 0), (3, 0), (4, 0), (1, -1)]);
    assert_eq!(f.outstanding(), 0);
}

#[test]
fn tx_incomplete_chain_waits() {
    let page = OwnedRegion::new(4096);
    let m = page.mem();
    let mut f = TxFrontend::new(m).unwrap();
    let mut b = TxBackend::attach(m, G, 18).unwrap();
    f.send_packet(&[frag(1, 100), frag(2, 100)], 0, &[])
        .unwrap();
    f.flush();
    // Pretend only the first slot is published yet.
    m.store_u32(REQ_PROD, 1, Ordering::Release);
    assert!(b.poll_packet().unwrap().is_none());
    m.store_u32(REQ_PROD, 2, Ordering::Release);
    assert_eq!(b.poll_packet().unwrap().unwrap().total, 200);
}

fn raw_tx(reqs: &[[u8; 12]]) -> (OwnedRegion, usize) {
    let page = OwnedRegion::new(4096);
    let m = page.mem();
    libnc2::netif::sring::init(&m).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        m.write_from(RING_OFFSET + i * 12, r);
    }
    m.store_u32(REQ_PROD, reqs.len() as u32, Ordering::Release);
    (page, reqs.len())
}

fn tx_err(reqs: &[[u8; 12]]) -> PeerError {
    let (page, _) = raw_tx(reqs);
    let mut b = TxBackend::attach(page.mem(), G, 18).unwrap();
    let e = b.poll_packet().unwrap_err();
    assert_eq!(b.poll_packet().unwrap_err(), e, "errors are sticky");
    e
}

fn req(gref: u32, offset: u16, flags: u16, id: u16, size: u16) -> [u8; 12] {
    TxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
    .encode()
}

#[test]
fn tx_hostile_requests() {
    assert_eq!(
        tx_err(&[req(1000, 0, 0, 0, 10)]),
        PeerError::GrantOutOfRange {
            gref: 1000,
            bound: 1000
        }
    );
    assert_eq!(
        tx_err(&[req(1, 4000, 0, 0, 200)]),
        PeerError::FragmentOutsidePage {
            index: 0,
            offset: 4000,
            size: 200
        }
    );
    assert_eq!(
        tx_err(&[req(1, 0, 0x40, 0, 10)]),
        PeerError::UnknownNetifFlags { flags: 0x40 }
    );
    assert_eq!(
        tx_err(&[req(1, 0, NETTXF_MORE_DATA, 0, 10), req(1, 0, 0, 1, 20)]),
        PeerError::TxSizeMismatch {
            total: 10,
            rest: 20
        }
    );
    assert_eq!(
        tx_err(&[req(1, 0, NETTXF_MORE_DATA, 0, 100), req(1, 0, 0, 1, 0)]),
        PeerError::EmptyFragment { index: 1 }
    );
    let mut long = vec![req(1, 0, NETTXF_MORE_DATA, 0, 60000)];
    long.extend((1..19).map(|i| req(1, 0, NETTXF_MORE_DATA, i, 1)));
    assert_eq!(
        tx_err(&long),
        PeerError::TooManySlots { count: 19, max: 18 }
    );
    let mut e = [0u8; 12];
    e[..8].copy_from_slice(
        &ExtraInfo::Gso {
            size: 0,
            gso_type: GSO_TCPV6,
            features: 0,
        }
        .encode(false),
    );
    assert_eq!(
        tx_err(&[req(1, 0, libnc2::netif::tx::NETTXF_EXTRA_INFO, 0, 10), e]),
        PeerError::BadGso {
            gso_type: GSO_TCPV6,
            size: 0
        }
    );
    let mut m1 = [0u8; 12];
    m1[..8].copy_from_slice(&ExtraInfo::McastAdd([1; 6]).encode(true));
    assert_eq!(
        tx_err(&[
            req(1, 0, libnc2::netif::tx::NETTXF_EXTRA_INFO, 0, 10),
            m1,
            m1
        ]),
        PeerError::DuplicateExtra { ty: 2 }
    );
}

#[test]
fn tx_request_index_jump() {
    let page = OwnedRegion::new(4096);
    let m = page.mem();
    libnc2::netif::sring::init(&m).unwrap();
    m.store_u32(REQ_PROD, 257, Ordering::Release);
    let mut b = TxBackend::attach(m, G, 18).unwrap();
    assert_eq!(
        b.poll_packet().unwrap_err(),
        PeerError::ProducerIndexJump {
            prod: 257,
            cons: 0,
            capacity: 256
        }
    );
}

#[test]
fn chain_longer_than_the_ring_is_an_error_not_a_stall() {
    // A 4-slot ring (96 bytes of slots) filled with a never-ending chain.
    let page = OwnedRegion::new(64 + 4 * 12 + 8);
    let m = page.mem();
    libnc2::netif::sring::init(&m).unwrap();
    for i in 0..4 {
        m.write_from(
            RING_OFFSET + i * 12,
            &req(1, 0, NETTXF_MORE_DATA, i as u16, 10),
        );
    }
    m.store_u32(REQ_PROD, 4, Ordering::Release);
    let mut b = TxBackend::attach(m, G, 18).unwrap();
    assert!(matches!(
        b.poll_packet(),
        Err(PeerError::TooManySlots { .. })
    ));
}

#[test]
fn tx_frontend_rejects_bad_responses() {
    let page = OwnedRegion::new(4096);
    let m = page.mem();
    let mut f = TxFrontend::new(m).unwrap();
    f.send_packet(&[frag(1, 60)], 0, &[]).unwrap();
    f.flush();
    // Response for an id never sent.
    m.write_from(RING_OFFSET, &TxResponse { id: 9, status: 0 }.encode());
    m.store_u32(RSP_PROD, 1, Ordering::Release);
    assert_eq!(
        f.poll_response().unwrap_err(),
        PeerError::UnexpectedId { id: 9 }
    );

    let page = OwnedRegion::new(4096);
    let m = page.mem();
    let mut f = TxFrontend::new(m).unwrap();
    f.send_packet(&[frag(1, 60)], 0, &[]).unwrap();
    f.flush();
    // More responses than requests.
    m.store_u32(RSP_PROD, 2, Ordering::Release);
    assert_eq!(
        f.poll_response().unwrap_err(),
        PeerError::ProducerIndexJump {
            prod: 2,
            cons: 0,
            capacity: 1
        }
    );

    let page = OwnedRegion::new(4096);
    let m = page.mem();
    let mut f = TxFrontend::new(m).unwrap();
    f.send_packet(&[frag(1, 60)], 0, &[]).unwrap();
    f.flush();
    m.write_from(RING_OFFSET, &TxResponse { id: 1, status: 7 }.encode());
    m.store_u32(RSP_PROD, 1, Ordering::Release);
    assert_eq!(
        f.poll_response().unwrap_err(),
        PeerError::BadStatus { status: 7 }
    );
}

#[test]
fn rx_round_trip_same_slot_rule() {
    let page = OwnedRegion::new(4096);
    let mut f = RxFrontend::new(page.mem(), 18).unwrap();
    let mut b = RxBackend::attach(page.mem(), G).unwrap();
    for i in 0..8u16 {
        f.post_buffer(100 + i, 200 + u32::from(i)).unwrap();
    }
    f.flush();
    for _ in 0..4 {
        b.take_buffer().unwrap().unwrap();
    }
    let gso = ExtraInfo::Gso {
        size: 1448,
        gso_type: GSO_TCPV6,
        features: 0,
    };
    b.push_packet(&[(0, 4096), (0, 1000), (0, 50)], NETRXF_CSUM_BLANK, &[gso])
        .unwrap();
    b.flush();
    let p = f.poll_packet().unwrap().unwrap();
    assert_eq!(p.total, 5146);
    assert_eq!(p.flags, NETRXF_CSUM_BLANK);
    assert_eq!(
        p.frags()
            .iter()
            .map(|x| (x.id, x.gref, x.len))
            .collect::<Vec<_>>(),
        [(100, 200, 4096), (102, 202, 1000), (103, 203, 50)]
    );
    assert_eq!(p.spare_buffers(), &[(101, 201)]);
    assert_eq!(p.extras.gso(), Some(gso));
    // Error status.
    b.take_buffer().unwrap().unwrap();
    b.push_error(-2).unwrap();
    b.flush();
    let p = f.poll_packet().unwrap().unwrap();
    assert_eq!(p.error, Some(-2));
}

#[test]
fn rx_hostile_responses() {
    let setup = || {
        let page = OwnedRegion::new(4096);
        {
            let mut f = RxFrontend::new(page.mem(), 18).unwrap();
            f.post_buffer(7, 8).unwrap();
            f.post_buffer(9, 10).unwrap();
            f.flush();
        }
        page
    };
    let err = |rsps: &[RxResponse]| {
        let page = setup();
        let m = page.mem();
        // Re-create the frontend state (posted ids) on the same page.
        let mut f = RxFrontend::new(m, 18).unwrap();
        f.post_buffer(7, 8).unwrap();
        f.post_buffer(9, 10).unwrap();
        f.flush();
        for (i, r) in rsps.iter().enumerate() {
            m.write_from(RING_OFFSET + i * 8, &r.encode());
        }
        m.store_u32(RSP_PROD, rsps.len() as u32, Ordering::Release);
        f.poll_packet().unwrap_err()
    };
    assert_eq!(
        err(&[RxResponse {
            id: 9,
            offset: 0,
            flags: 0,
            status: 10
        }]),
        PeerError::RxIdMismatch {
            slot: 0,
            expected: 7,
            got: 9
        }
    );
    assert_eq!(
        err(&[RxResponse {
            id: 7,
            offset: 4000,
            flags: 0,
            status: 100
        }]),
        PeerError::FragmentOutsidePage {
            index: 0,
            offset: 4000,
            size: 100
        }
    );
    assert_eq!(
        err(&[RxResponse {
            id: 7,
            offset: 0,
            flags: 0,
            status: -5
        }]),
        PeerError::BadStatus { status: -5 }
    );
    assert_eq!(
        err(&[RxResponse {
            id: 7,
            offset: 0,
            flags: 0x100,
            status: 1
        }]),
        PeerError::UnknownNetifFlags { flags: 0x100 }
    );
    assert_eq!(
        err(&[
            RxResponse {
                id: 7,
                offset: 0,
                flags: 0,
                status: 1
            },
            RxResponse {
                id: 9,
                offset: 0,
                flags: 0,
                status: 1
            },
            RxResponse {
                id: 9,
                offset: 0,
                flags: 0,
                status: 1
            }
        ]),
        PeerError::ProducerIndexJump {
            prod: 3,
            cons: 0,
            capacity: 2
        }
    );
}

#[test]
fn rx_chain_waits_for_the_rest() {
    let page = OwnedRegion::new(4096);
    let mut f = RxFrontend::new(page.mem(), 18).unwrap();
    let mut b = RxBackend::attach(page.mem(), G).unwrap();
    f.post_buffer(1, 1).unwrap();
    f.post_buffer(2, 2).unwrap();
    f.flush();
    b.take_buffer().unwrap().unwrap();
    b.take_buffer().unwrap().unwrap();
    b.push_data(0, 100, NETRXF_MORE_DATA).unwrap();
    b.flush();
    assert!(f.poll_packet().unwrap().is_none());
    b.push_data(0, 50, 0).unwrap();
    b.flush();
    assert_eq!(f.poll_packet().unwrap().unwrap().total, 150);
}

#[test]
fn rx_backend_rejects_bad_grant() {
    let page = OwnedRegion::new(4096);
    let mut f = RxFrontend::new(page.mem(), 18).unwrap();
    let mut b = RxBackend::attach(page.mem(), G).unwrap();
    f.post_buffer(1, 5000).unwrap();
    f.flush();
    assert_eq!(
        b.take_buffer().unwrap_err(),
        PeerError::GrantOutOfRange {
            gref: 5000,
            bound: 1000
        }
    );
}

#[test]
fn ctrl_round_trip_and_parameter_checks() {
    let page = OwnedRegion::new(4096);
    let mut f = CtrlFrontend::new(page.mem()).unwrap();
    let mut b = CtrlBackend::attach(page.mem()).unwrap();
    f.send(&CtrlRequest {
        id: 1,
        ty: CTRL_SET_HASH_ALGORITHM,
        data: [1, 0, 0],
    })
    .unwrap();
    f.send(&CtrlRequest {
        id: 2,
        ty: CTRL_SET_HASH_KEY,
        data: [2000, 40, 0],
    })
    .unwrap();
    f.send(&CtrlRequest {
        id: 3,
        ty: 9,
        data: [0; 3],
    })
    .unwrap();
    assert_eq!(
        f.send(&CtrlRequest {
            id: 3,
            ty: 1,
            data: [0; 3]
        }),
        Err(SendError::IdInUse { id: 3 })
    );
    f.flush();
    let r1 = b.poll_request().unwrap().unwrap();
    assert_eq!(r1.op(G), Ok(CtrlOp::SetHashAlgorithm(1)));
    let r2 = b.poll_request().unwrap().unwrap();
    let rej = r2.op(G).unwrap_err();
    assert_eq!(rej, CtrlReject::GrantOutOfRange { gref: 2000 });
    assert_eq!(rej.status(), CTRL_STATUS_INVALID_PARAMETER);
    let r3 = b.poll_request().unwrap().unwrap();
    assert_eq!(r3.op(G), Ok(CtrlOp::Unsupported(9)));
    for r in [r1, r2, r3] {
        b.respond(&CtrlResponse {
            id: r.id,
            ty: r.ty,
            status: 0,
            data: 0,
        })
        .unwrap();
    }
    b.flush();
    let ids: Vec<u16> = std::iter::from_fn(|| f.poll_response().unwrap())
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn final_check_arms_the_event() {
    let page = OwnedRegion::new(4096);
    let mut f = TxFrontend::new(page.mem()).unwrap();
    let mut b = TxBackend::attach(page.mem(), G, 18).unwrap();
    f.send_packet(&[frag(1, 60)], 0, &[]).unwrap();
    assert!(f.flush());
    f.send_packet(&[frag(2, 60)], 0, &[]).unwrap();
    assert!(!f.flush(), "backend has not asked again");
    while b.poll_packet().unwrap().is_some() {}
    assert!(!b.final_check().unwrap());
    f.send_packet(&[frag(3, 60)], 0, &[]).unwrap();
    assert!(f.flush());
}
