//! netchannel2 behaviour: message round trips, PAD at the ring end, flow
//! control, posted buffers, notification suppression, and hostile peers.

mod common;

use common::Nc2Mem;
use core::sync::atomic::Ordering;
use libnc2::nc2::layout::{BACKEND_BLOCK, FRONTEND_BLOCK, IN_CONS, IN_PROD_EVENT, OUT_PROD};
use libnc2::nc2::msg::{self, Limits, OutMessage, PKT_CSUM_BLANK, TYPE_PAD};
use libnc2::nc2::{
    Backend, Config, Event, Fragment, Frontend, Offload, PacketKind, PacketMeta, PostedBuffer,
    Segmentation,
};
use libnc2::{GrantBound, PeerError, SendError};

fn cfg() -> Config {
    Config {
        max_packets: 4,
        max_fragments: 8,
        grants: GrantBound(1000),
        tx_ids: 16,
        posted_buffers: 8,
    }
}

/// Connects both ends and lets each absorb the other's opening messages.
fn connect<'a>(mem: &'a Nc2Mem) -> (Frontend<'a>, Backend<'a>) {
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    let mut b = Backend::attach(mem.channel(), cfg()).unwrap();
    f.flush();
    b.flush();
    while b.poll().unwrap().is_some() {}
    while f.poll().unwrap().is_some() {}
    (f, b)
}

#[test]
fn opening_messages_set_peer_limits() {
    let mem = Nc2Mem::new(4096);
    let (f, b) = connect(&mem);
    assert_eq!(f.status().peer_max_packets, 4);
    assert_eq!(f.status().peer_max_fragments, 8);
    assert_eq!(f.status().peer_max_posted, 8);
    assert_eq!(b.status().peer_max_packets, 4);
    assert_eq!(b.status().peer_max_posted, 0);
}

#[test]
fn packet_round_trip_with_offloads() {
    let mem = Nc2Mem::new(4096);
    let (mut f, mut b) = connect(&mem);
    let mut meta = PacketMeta::new(3, PacketKind::ReceiverCopy);
    meta.flags = PKT_CSUM_BLANK;
    meta.seg = Segmentation::TcpV4;
    meta.mss = 1448;
    // Offloads need the receiver's consent first.
    assert!(matches!(
        f.send_packet(
            &meta,
            &[Fragment {
                size: 100,
                offset: 0,
                gref: 1
            }],
            &[0; 54]
        ),
        Err(SendError::Invalid(_))
    ));
    b.set_offload(Offload {
        csum: true,
        tso4: true,
        tso6: false,
    })
    .unwrap();
    b.flush();
    assert!(matches!(f.poll().unwrap(), Some(Event::PeerOffload(_))));
    meta.mss = 1448;
    meta.csum_start = 34;
    meta.csum_offset = 16;
    let frags = [
        Fragment {
            size: 4000,
            offset: 96,
            gref: 17,
        },
        Fragment {
            size: 10,
            offset: 0,
            gref: 999,
        },
    ];
    let prefix: Vec<u8> = (0..54u8).collect();
    f.send_packet(&meta, &frags, &prefix).unwrap();
    f.flush();
    match b.poll().unwrap() {
        Some(Event::Packet(p)) => {
            assert_eq!(p.meta, meta);
            assert_eq!(p.frags().collect::<Vec<_>>(), frags);
            assert_eq!(p.prefix, &prefix[..]);
            assert_eq!(p.total_len, 4064);
        }
        other => panic!("expected packet, got {other:?}"),
    }
    assert_eq!(b.status().peer_outstanding, 1);
    b.finish_packet(3).unwrap();
    b.flush();
    assert!(matches!(f.poll().unwrap(), Some(Event::Finished { id: 3 })));
    assert_eq!(f.status().awaiting_finish, 0);
}

#[test]
fn small_packets_need_no_finish_and_no_credit() {
    let mem = Nc2Mem::new(1024);
    let (mut f, mut b) = connect(&mem);
    for i in 0..20u32 {
        let data = [i as u8; 200];
        f.send_packet(&PacketMeta::new(i, PacketKind::Small), &[], &data)
            .unwrap();
        f.flush();
        match b.poll().unwrap() {
            Some(Event::Packet(p)) => assert_eq!(p.prefix, &data[..]),
            other => panic!("{other:?}"),
        }
        b.flush();
    }
    assert_eq!(b.status().peer_outstanding, 0);
}

#[test]
fn pad_fills_the_ring_end_and_message_lands_at_start() {
    // 1024-byte ring, 232-byte messages: the 5th no longer fits before the end.
    let mem = Nc2Mem::new(1024);
    let (mut f, mut b) = connect(&mem);
    for round in 0..40u32 {
        let data = [round as u8; 208];
        f.send_packet(&PacketMeta::new(round, PacketKind::Small), &[], &data)
            .unwrap();
        f.flush();
        match b.poll().unwrap() {
            Some(Event::Packet(p)) => assert_eq!(p.prefix, &data[..], "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
        b.flush();
    }
    // The raw ring really contains a PAD somewhere after wrapping.
    let ring = mem.channel().front_to_back;
    let mut found = false;
    let mut off = 0;
    while off < 1024 {
        if ring.read_u8(off) == TYPE_PAD {
            found = true;
        }
        off += 8;
    }
    assert!(found, "no PAD message was written");
}

#[test]
fn credit_limits_outstanding_packets() {
    let mem = Nc2Mem::new(4096);
    let (mut f, _b) = connect(&mem);
    let fr = [Fragment {
        size: 100,
        offset: 0,
        gref: 1,
    }];
    for id in 0..4 {
        f.send_packet(&PacketMeta::new(id, PacketKind::ReceiverMap), &fr, &[])
            .unwrap();
    }
    assert_eq!(
        f.send_packet(&PacketMeta::new(9, PacketKind::ReceiverMap), &fr, &[]),
        Err(SendError::NoPacketCredit)
    );
    assert_eq!(
        f.send_packet(&PacketMeta::new(2, PacketKind::ReceiverMap), &fr, &[]),
        Err(SendError::IdInUse { id: 2 })
    );
    assert_eq!(
        f.send_packet(&PacketMeta::new(99, PacketKind::ReceiverMap), &fr, &[]),
        Err(SendError::IdOutOfRange { id: 99, bound: 16 })
    );
}

#[test]
fn fragment_limit_is_the_peers() {
    let mem = Nc2Mem::new(4096);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    let fr = [Fragment {
        size: 100,
        offset: 0,
        gref: 1,
    }; 2];
    // Before the backend's SET_MAX_FRAGMENTS arrives the limit is 1.
    assert_eq!(
        f.send_packet(&PacketMeta::new(0, PacketKind::ReceiverCopy), &fr, &[]),
        Err(SendError::TooManyFragments { count: 2, max: 1 })
    );
}

#[test]
fn posted_buffers_flow() {
    let mem = Nc2Mem::new(4096);
    let (mut f, mut b) = connect(&mem);
    let bufs: Vec<PostedBuffer> = (0..6)
        .map(|i| PostedBuffer {
            id: i,
            gref: 100 + i,
        })
        .collect();
    f.post_buffers(&bufs).unwrap();
    assert_eq!(
        f.post_buffers(&[
            PostedBuffer { id: 6, gref: 1 },
            PostedBuffer { id: 7, gref: 1 },
            PostedBuffer { id: 5, gref: 1 }
        ]),
        Err(SendError::IdInUse { id: 5 })
    );
    f.flush();
    match b.poll().unwrap() {
        Some(Event::BuffersPosted(p)) => assert_eq!(p.iter().collect::<Vec<_>>(), bufs),
        other => panic!("{other:?}"),
    }
    // The NIC filled buffers 2 and 4.
    let frags = [
        Fragment {
            size: 1500,
            offset: 64,
            gref: 2,
        },
        Fragment {
            size: 100,
            offset: 64,
            gref: 4,
        },
    ];
    b.send_packet(&PacketMeta::new(0, PacketKind::PrePosted), &frags, &[])
        .unwrap();
    assert_eq!(
        b.send_packet(&PacketMeta::new(0, PacketKind::PrePosted), &frags[..1], &[]),
        Err(SendError::BufferUnavailable { id: 2 })
    );
    b.return_buffers(&[0, 1]).unwrap();
    b.flush();
    match f.poll().unwrap() {
        Some(Event::Packet(p)) => {
            assert_eq!(p.meta.kind, PacketKind::PrePosted);
            assert_eq!(p.total_len, 1600);
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.is_posted(2) && !f.is_posted(4) && f.is_posted(3));
    assert!(matches!(f.poll().unwrap(), Some(Event::BuffersReturned(_))));
    assert_eq!(f.status().posted, 2);
    assert_eq!(b.status().posted, 2);
}

#[test]
fn frontend_cannot_send_pre_posted() {
    let mem = Nc2Mem::new(4096);
    let (mut f, _b) = connect(&mem);
    assert!(matches!(
        f.send_packet(
            &PacketMeta::new(0, PacketKind::PrePosted),
            &[Fragment {
                size: 1,
                offset: 0,
                gref: 0
            }],
            &[]
        ),
        Err(SendError::Invalid(_))
    ));
}

#[test]
fn offload_is_announced() {
    let mem = Nc2Mem::new(4096);
    let (mut f, mut b) = connect(&mem);
    let o = Offload {
        csum: true,
        tso4: true,
        tso6: false,
    };
    b.set_offload(o).unwrap();
    b.flush();
    assert!(matches!(f.poll().unwrap(), Some(Event::PeerOffload(x)) if x == o));
    assert_eq!(f.status().peer_offload, o);
}

#[test]
fn events_only_when_the_peer_asked() {
    let mem = Nc2Mem::new(4096);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    let mut b = Backend::attach(mem.channel(), cfg()).unwrap();
    // Initial thresholds are 1: the first publish wakes the peer.
    assert!(f.flush());
    assert!(b.flush());
    while b.poll().unwrap().is_some() {}
    while f.poll().unwrap().is_some() {}
    // Consumers have not re-armed: no event for more data.
    b.flush();
    f.flush();
    f.send_packet(&PacketMeta::new(1, PacketKind::Small), &[], &[1])
        .unwrap();
    assert!(!f.flush(), "backend did not ask for an event");
    // Backend drains and prepares to sleep: now the next message wakes it.
    while b.poll().unwrap().is_some() {}
    b.flush();
    assert!(!b.prepare_to_sleep().unwrap());
    f.send_packet(&PacketMeta::new(2, PacketKind::Small), &[], &[2])
        .unwrap();
    assert!(f.flush());
    // A sleeper that finds work pending is told not to sleep.
    f.send_packet(&PacketMeta::new(3, PacketKind::Small), &[], &[3])
        .unwrap();
    f.flush();
    assert!(b.prepare_to_sleep().unwrap());
}

#[test]
fn producer_waits_for_space_and_gets_woken() {
    let mem = Nc2Mem::new(256);
    let (mut f, mut b) = connect(&mem);
    let mut n = 0;
    while f
        .send_packet(&PacketMeta::new(n, PacketKind::Small), &[], &[0u8; 40])
        .is_ok()
    {
        n += 1;
    }
    assert!(n >= 3);
    f.flush();
    assert!(!f.producer().prepare_wait_for_space(64).unwrap());
    // The backend consuming enough to free 64 bytes must signal.
    let mut woke = false;
    while b.poll().unwrap().is_some() {
        woke |= b.flush();
    }
    assert!(woke);
    assert!(f.producer().has_space(64).unwrap());
}

// ---- hostile peers ----

fn raw_backend_sends(mem: &Nc2Mem, bytes: &[u8]) {
    // Write a raw message at the start of the back-to-front ring and publish it.
    let ch = mem.channel();
    ch.back_to_front.write_from(0, bytes);
    ch.control.store_u32(
        BACKEND_BLOCK + OUT_PROD,
        bytes.len() as u32,
        Ordering::Release,
    );
}

#[test]
fn producer_index_jump_is_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    mem.channel()
        .control
        .store_u32(BACKEND_BLOCK + OUT_PROD, 4096, Ordering::Release);
    assert_eq!(
        f.poll().unwrap_err(),
        PeerError::ProducerIndexJump {
            prod: 4096,
            cons: 0,
            capacity: 1024
        }
    );
    // Sticky.
    assert!(f.poll().is_err());
}

#[test]
fn misaligned_index_is_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    mem.channel()
        .control
        .store_u32(BACKEND_BLOCK + OUT_PROD, 12, Ordering::Release);
    assert_eq!(
        f.poll().unwrap_err(),
        PeerError::MisalignedIndex { index: 12 }
    );
}

#[test]
fn message_crossing_ring_end_is_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    let ch = mem.channel();
    // A PAD of 1008 bytes, consumed; then a 24-byte message at offset 1008,
    // which would cross the end.
    ch.back_to_front.write_from(0, &[TYPE_PAD, 0, 0xF0, 0x03]);
    ch.control
        .store_u32(BACKEND_BLOCK + OUT_PROD, 1008, Ordering::Release);
    assert!(f.poll().unwrap().is_none());
    ch.back_to_front
        .write_from(1008, &[msg::TYPE_FINISH_PACKET, 0, 24, 0]);
    ch.control
        .store_u32(BACKEND_BLOCK + OUT_PROD, 1032, Ordering::Release);
    assert_eq!(
        f.poll().unwrap_err(),
        PeerError::MessageCrossesRingEnd {
            size: 24,
            to_end: 16
        }
    );
}

#[test]
fn truncated_and_tiny_messages_are_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    raw_backend_sends(&mem, &[msg::TYPE_FINISH_PACKET, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        f.poll().unwrap_err(),
        PeerError::MessageTooSmall { size: 0 }
    );

    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    raw_backend_sends(&mem, &[msg::TYPE_FINISH_PACKET, 0, 64, 0, 0, 0, 0, 0]);
    assert_eq!(
        f.poll().unwrap_err(),
        PeerError::MessageBeyondProducer {
            size: 64,
            available: 8
        }
    );
}

#[test]
fn unexpected_finish_is_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    raw_backend_sends(&mem, &[msg::TYPE_FINISH_PACKET, 0, 8, 0, 7, 0, 0, 0]);
    assert_eq!(f.poll().unwrap_err(), PeerError::UnexpectedId { id: 7 });
}

#[test]
fn pre_posted_packet_naming_unposted_buffer_is_reported() {
    let mem = Nc2Mem::new(1024);
    let mut f = Frontend::new(mem.channel(), cfg()).unwrap();
    let mut out = [0u8; msg::MAX_MESSAGE_SIZE];
    let frags = [Fragment {
        size: 60,
        offset: 0,
        gref: 3,
    }];
    let n = msg::encode(
        &OutMessage::Packet(&PacketMeta::new(0, PacketKind::PrePosted), &frags, &[]),
        &mut out,
    )
    .unwrap();
    raw_backend_sends(&mem, &out[..n]);
    assert_eq!(f.poll().unwrap_err(), PeerError::BufferNotPosted { id: 3 });
}

#[test]
fn too_many_outstanding_packets_is_reported() {
    let mem = Nc2Mem::new(4096);
    let mut b = Backend::attach(mem.channel(), cfg()).unwrap();
    // A frontend ignoring our credit of 4.
    let ch = mem.channel();
    let mut out = [0u8; msg::MAX_MESSAGE_SIZE];
    let mut off = 0;
    for id in 0..5u32 {
        let frags = [Fragment {
            size: 60,
            offset: 0,
            gref: 3,
        }];
        let n = msg::encode(
            &OutMessage::Packet(&PacketMeta::new(id, PacketKind::ReceiverCopy), &frags, &[]),
            &mut out,
        )
        .unwrap();
        ch.front_to_back.write_from(off, &out[..n]);
        off += n;
    }
    ch.control
        .store_u32(FRONTEND_BLOCK + OUT_PROD, off as u32, Ordering::Release);
    for _ in 0..4 {
        assert!(matches!(b.poll().unwrap(), Some(Event::Packet(_))));
    }
    assert_eq!(
        b.poll().unwrap_err(),
        PeerError::TooManyOutstandingPackets { max: 4 }
    );
}

#[test]
fn consumer_index_jump_is_reported_to_the_producer() {
    let mem = Nc2Mem::new(256);
    let (mut f, _b) = connect(&mem);
    mem.channel()
        .control
        .store_u32(BACKEND_BLOCK + IN_CONS, 5000, Ordering::Release);
    let mut err = None;
    for i in 0..100 {
        if let Err(e) = f.send_packet(&PacketMeta::new(i, PacketKind::Small), &[], &[0; 40]) {
            err = Some(e);
            break;
        }
    }
    assert!(
        matches!(
            err,
            Some(SendError::Peer(PeerError::ConsumerIndexJump {
                cons: 5000,
                ..
            }))
        ),
        "{err:?}"
    );
}

#[test]
fn decode_rejects_each_packet_rule() {
    let limits = Limits {
        grants: GrantBound(100),
        max_fragments: 4,
        buffer_ids: 8,
    };
    let mut out = [0u8; msg::MAX_MESSAGE_SIZE];
    let fr = |size, offset, gref| Fragment { size, offset, gref };
    let cases: Vec<(PacketMeta, Vec<Fragment>, usize, PeerError)> = vec![
        (
            PacketMeta::new(0, PacketKind::ReceiverCopy),
            vec![fr(10, 0, 100)],
            0,
            PeerError::GrantOutOfRange {
                gref: 100,
                bound: 100,
            },
        ),
        (
            PacketMeta::new(0, PacketKind::ReceiverCopy),
            vec![fr(10, 0, 1); 5],
            0,
            PeerError::TooManyFragments { count: 5, max: 4 },
        ),
        (
            PacketMeta::new(0, PacketKind::PrePosted),
            vec![fr(10, 0, 8)],
            0,
            PeerError::BufferIdOutOfRange { id: 8, bound: 8 },
        ),
    ];
    for (meta, frags, plen, want) in cases {
        let prefix = vec![0u8; plen];
        let n = msg::encode(&OutMessage::Packet(&meta, &frags, &prefix), &mut out).unwrap();
        let got = msg::decode(out[0], out[1], &out[..n], &limits).unwrap_err();
        assert_eq!(got, want);
    }
    // Sender-side rules come back as Malformed.
    let bad: Vec<(PacketMeta, Vec<Fragment>, usize)> = vec![
        (
            PacketMeta::new(0, PacketKind::ReceiverCopy),
            vec![fr(0, 0, 1)],
            0,
        ),
        (
            PacketMeta::new(0, PacketKind::ReceiverCopy),
            vec![fr(100, 4000, 1)],
            0,
        ),
        (PacketMeta::new(0, PacketKind::ReceiverCopy), vec![], 10),
        (PacketMeta::new(0, PacketKind::Small), vec![fr(1, 0, 1)], 10),
        (PacketMeta::new(0, PacketKind::Small), vec![], 257),
        (
            PacketMeta {
                seg: Segmentation::TcpV6,
                ..PacketMeta::new(0, PacketKind::Small)
            },
            vec![],
            10,
        ),
        (
            PacketMeta {
                flags: PKT_CSUM_BLANK,
                csum_start: 9,
                ..PacketMeta::new(0, PacketKind::Small)
            },
            vec![],
            10,
        ),
        (
            PacketMeta {
                flags: 0x40,
                ..PacketMeta::new(0, PacketKind::Small)
            },
            vec![],
            10,
        ),
    ];
    for (meta, frags, plen) in bad {
        let prefix = vec![0u8; plen];
        let r = msg::encode(&OutMessage::Packet(&meta, &frags, &prefix), &mut out);
        assert!(
            matches!(r, Err(SendError::Malformed(_))),
            "{meta:?} {frags:?} {plen}: {r:?}"
        );
    }
}

#[test]
fn packet_longer_than_64k_is_rejected() {
    let limits = Limits {
        grants: GrantBound(100),
        max_fragments: 64,
        buffer_ids: 8,
    };
    let mut out = [0u8; msg::MAX_MESSAGE_SIZE];
    let frags = vec![
        Fragment {
            size: 4096,
            offset: 0,
            gref: 1
        };
        16
    ];
    let meta = PacketMeta::new(0, PacketKind::ReceiverCopy);
    let n = msg::encode(&OutMessage::Packet(&meta, &frags, &[7]), &mut out);
    assert!(matches!(
        n,
        Err(SendError::Malformed(PeerError::PacketTooLong {
            len: 65537,
            ..
        }))
    ));
    let n = msg::encode(&OutMessage::Packet(&meta, &frags, &[]), &mut out).unwrap();
    assert_eq!(
        msg::decode(out[0], out[1], &out[..n], &limits).map(|_| ()),
        Ok(())
    );
}

#[test]
fn unknown_message_type_and_flags_are_reported() {
    let limits = Limits {
        grants: GrantBound(100),
        max_fragments: 4,
        buffer_ids: 8,
    };
    let b = [42u8, 0, 8, 0, 0, 0, 0, 0];
    assert_eq!(
        msg::decode(42, 0, &b, &limits).unwrap_err(),
        PeerError::UnknownMessageType { ty: 42 }
    );
    assert_eq!(
        msg::decode(1, 3, &b, &limits).unwrap_err(),
        PeerError::UnknownMessageFlags { ty: 1, flags: 3 }
    );
    let off = [4u8, 0, 8, 0, 1, 2, 0, 0];
    assert_eq!(
        msg::decode(4, 0, &off, &limits).unwrap_err(),
        PeerError::BadBoolean { value: 2 }
    );
}

#[test]
fn backend_resets_its_own_block() {
    let mem = Nc2Mem::new(1024);
    let ch = mem.channel();
    ch.init().unwrap();
    ch.control
        .store_u32(BACKEND_BLOCK + OUT_PROD, 777, Ordering::Relaxed);
    ch.control
        .store_u32(BACKEND_BLOCK + IN_PROD_EVENT, 777, Ordering::Relaxed);
    let _b = Backend::attach(ch, cfg()).unwrap();
    assert_eq!(
        ch.control
            .load_u32(BACKEND_BLOCK + OUT_PROD, Ordering::Relaxed),
        0
    );
    assert_eq!(
        ch.control
            .load_u32(BACKEND_BLOCK + IN_PROD_EVENT, Ordering::Relaxed),
        1
    );
}

/// Regression: a message that does not fit before the ring end, and that
/// together with the PAD is larger than the whole ring, used to get
/// `RingFull` forever even on an empty ring.
#[test]
fn large_message_after_the_midpoint_is_not_stuck() {
    let mem = Nc2Mem::new(1024);
    let mut cfg = cfg();
    cfg.max_fragments = 64;
    let mut f = Frontend::new(mem.channel(), cfg).unwrap();
    let mut b = Backend::attach(mem.channel(), cfg).unwrap();
    f.flush();
    b.flush();
    while b.poll().unwrap().is_some() {}
    while f.poll().unwrap().is_some() {}
    b.flush();
    f.flush();
    // Move the producer to offset 16 + 520 = 536 (the opening messages took 16).
    f.send_packet(&PacketMeta::new(0, PacketKind::Small), &[], &[0; 256])
        .unwrap();
    f.send_packet(&PacketMeta::new(0, PacketKind::Small), &[], &[0; 220])
        .unwrap();
    f.flush();
    while b.poll().unwrap().is_some() {}
    b.flush();
    // 20 + 64 * 8 + 256 = 788 -> 792 bytes; only 488 left before the end.
    let frags = vec![
        Fragment {
            size: 1,
            offset: 0,
            gref: 1
        };
        64
    ];
    let meta = PacketMeta::new(1, PacketKind::ReceiverCopy);
    let mut sent = false;
    for _ in 0..4 {
        match f.send_packet(&meta, &frags, &[9; 256]) {
            Ok(()) => {
                sent = true;
                break;
            }
            Err(SendError::RingFull) => {
                f.flush();
                while b.poll().unwrap().is_some() {}
                b.flush();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(sent, "the large message never fitted");
    f.flush();
    match b.poll().unwrap() {
        Some(Event::Packet(p)) => assert_eq!((p.nr_frags(), p.prefix.len()), (64, 256)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lowering_credit_does_not_reject_packets_sent_under_the_old_one() {
    let mem = Nc2Mem::new(4096);
    let (mut f, mut b) = connect(&mem);
    let fr = [Fragment {
        size: 100,
        offset: 0,
        gref: 1,
    }];
    for id in 0..4 {
        f.send_packet(&PacketMeta::new(id, PacketKind::ReceiverCopy), &fr, &[])
            .unwrap();
    }
    f.flush();
    b.set_max_packets(1).unwrap();
    b.flush();
    for _ in 0..4 {
        assert!(matches!(b.poll().unwrap(), Some(Event::Packet(_))));
    }
    // The frontend now sees the lower credit and must wait for FINISHes.
    assert!(matches!(f.poll().unwrap(), Some(Event::PeerMaxPackets(1))));
    assert_eq!(
        f.send_packet(&PacketMeta::new(9, PacketKind::ReceiverCopy), &fr, &[]),
        Err(SendError::NoPacketCredit)
    );
}
