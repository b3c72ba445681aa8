//! netchannel2 guests against netback over the simulated hypervisor: protocol choice by
//! xenbus keys, traffic with netif guests and the responder, grant reuse, a hostile frontend,
//! teardown and the staging memory of many reconnects.

mod common;

use common::nc2::{Nc2Guest, Nc2Opts, TxKind};
use common::*;
use libnc2::nc2::PacketKind;
use netback::Netback;
use netback::responder::{arp_request, checksum, echo_request};
use netback::sim::SimHypervisor;
use netback::xenbus::NC2_FEATURES;

/// Polls netback and every guest (netif and netchannel2) until nothing moves.
fn settle2(nb: &mut Netback<SimHypervisor>, netif: &mut [&mut Guest], nc2: &mut [&mut Nc2Guest]) {
    for _ in 0..30 {
        let moved = nb.poll();
        for g in netif.iter_mut() {
            g.poll(nb.hv_mut());
        }
        for g in nc2.iter_mut() {
            g.poll(nb.hv_mut());
        }
        if moved == 0 && nb.poll() == 0 {
            for g in nc2.iter_mut() {
                g.poll(nb.hv_mut());
            }
            return;
        }
    }
}

fn nc2_guest(nb: &mut Netback<SimHypervisor>, dom: u16, o: Nc2Opts) -> Nc2Guest {
    toolstack_add(nb.hv_mut(), dom, 0);
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(dom, 0)), Some(2));
    let mut g = Nc2Guest::connect(nb.hv_mut(), dom, 0, o);
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(dom, 0)), Some(4), "Connected");
    g.poll(nb.hv_mut());
    settle2(nb, &mut [], &mut [&mut g]);
    g
}

#[test]
fn probe_advertises_netchannel2_and_bad_keys_fail_the_vif() {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    nb.poll();
    let be = be_path(5, 0);
    for (k, v) in NC2_FEATURES {
        assert_eq!(
            nb.hv().peek(&format!("{be}/{k}")),
            Some(v.as_bytes()),
            "{k}"
        );
    }
    // Both netif and netchannel2 ring keys: refused with a reason.
    let fe = fe_path(5, 0);
    nb.hv_mut().store_write(&format!("{fe}/tx-ring-ref"), b"8");
    let _g = Nc2Guest::connect(nb.hv_mut(), 5, 0, Nc2Opts::default());
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be), Some(5), "Closing");
    let err = nb.hv().peek(&format!("{be}/error")).unwrap().to_vec();
    assert!(String::from_utf8(err).unwrap().contains("tx-ring-ref"));
    assert!(!nb.is_connected((5, 0)));

    // A version we do not speak.
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let _g = Nc2Guest::connect(nb.hv_mut(), 6, 0, Nc2Opts::default());
    nb.hv_mut()
        .store_write(&format!("{}/nc2-wire-version", fe_path(6, 0)), b"2");
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(6, 0)), Some(5));
    assert!(!nb.is_connected((6, 0)));
}

#[test]
fn nc2_and_netif_guests_exchange_frames_through_the_switch() {
    let mut nb = netback();
    let mut a = nc2_guest(&mut nb, 5, Nc2Opts::default());
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    let mut m = nc2_guest(
        &mut nb,
        7,
        Nc2Opts {
            tx: TxKind::Map,
            ..Nc2Opts::default()
        },
    );
    settle2(&mut nb, &mut [&mut b], &mut [&mut a, &mut m]);
    assert!(nb.is_connected((6, 0)));

    // nc2 -> netif: a SMALL packet and a copy packet (header inline, rest in a grant).
    let small = frame(mac_of(6), mac_of(5), 100, 1);
    let big = frame(mac_of(6), mac_of(5), 1514, 2);
    a.send(nb.hv_mut(), &small);
    a.send(nb.hv_mut(), &big);
    // nc2 (receiver-map) -> netif, and a jumbo one over two pages.
    let mapped = frame(mac_of(6), mac_of(7), 6000, 3);
    m.send(nb.hv_mut(), &mapped);
    settle2(&mut nb, &mut [&mut b], &mut [&mut a, &mut m]);
    let got: Vec<&Vec<u8>> = b.received.iter().map(|r| &r.data).collect();
    assert_eq!(got, [&small, &big, &mapped]);
    assert_eq!(a.finished, 1, "the copy packet was finished");
    assert_eq!(m.finished, 1, "the map packet was finished");

    // netif -> nc2: short frames inline, longer ones copied into posted buffers.
    let to_a_small = frame(mac_of(5), mac_of(6), 200, 4);
    let to_a_big = frame(mac_of(5), mac_of(6), 1514, 5);
    b.send(nb.hv_mut(), &to_a_small);
    b.send(nb.hv_mut(), &to_a_big);
    settle2(&mut nb, &mut [&mut b], &mut [&mut a, &mut m]);
    assert_eq!(a.received.len(), 2);
    assert_eq!(a.received[0].kind, PacketKind::Small);
    assert_eq!(a.received[0].data, to_a_small);
    assert_eq!(a.received[1].kind, PacketKind::PrePosted);
    assert_eq!(a.received[1].data, to_a_big);
    // nc2 -> nc2.
    let a_to_m = frame(mac_of(7), mac_of(5), 3000, 6);
    a.send(nb.hv_mut(), &a_to_m);
    settle2(&mut nb, &mut [&mut b], &mut [&mut a, &mut m]);
    assert_eq!(m.received.last().unwrap().data, a_to_m);

    let ca = nb.counters((5, 0)).unwrap();
    assert_eq!((ca.tx_packets, ca.tx_bytes), (3, 100 + 1514 + 3000));
    assert_eq!((ca.rx_packets, ca.rx_bytes), (2, 200 + 1514));
    assert_eq!((ca.rx_copies, ca.rx_zero_copy), (2, 0));
    assert_eq!((ca.tx_errors, ca.rx_drops, ca.protocol_errors), (0, 0, 0));
    nb.publish_counters();
    let s = nb
        .hv()
        .peek(&format!("{}/statistics", be_path(5, 0)))
        .unwrap();
    assert!(
        std::str::from_utf8(s)
            .unwrap()
            .starts_with("tx 3 pkts 4614 B")
    );
}

#[test]
fn nc2_guest_pings_the_responder() {
    let mut nb = netback();
    let mut a = nc2_guest(&mut nb, 5, Nc2Opts::default());
    let me = (mac_of(5), ip_of(5));
    let nb_mac = netback::Config::default().mac;
    let nb_ip = netback::Config::default().ip;
    a.send(nb.hv_mut(), &arp_request(me.0, me.1, nb_ip));
    settle2(&mut nb, &mut [], &mut [&mut a]);
    let arp = a
        .received
        .iter()
        .find(|r| r.data[12..14] == [8, 6])
        .expect("arp reply");
    assert_eq!(&arp.data[22..28], &nb_mac);
    // Long enough to need a posted buffer.
    let payload = vec![0x5a; 1000];
    for seq in 0..3 {
        a.send(
            nb.hv_mut(),
            &echo_request(me, (nb_mac, nb_ip), 9, seq, &payload),
        );
    }
    settle2(&mut nb, &mut [], &mut [&mut a]);
    let echoes: Vec<_> = a
        .received
        .iter()
        .filter(|r| r.data[12..14] == [8, 0])
        .collect();
    assert_eq!(echoes.len(), 3);
    for (seq, e) in echoes.iter().enumerate() {
        assert_eq!(e.kind, PacketKind::PrePosted);
        assert_eq!(e.data[34], 0, "echo reply");
        assert_eq!(checksum(&e.data[14..34]), 0);
        assert_eq!(&e.data[40..42], &(seq as u16).to_be_bytes());
        assert_eq!(&e.data[42..], &payload[..]);
    }
    assert_eq!(nb.responder.echo_replies, 3);
}

#[test]
fn reposted_buffers_cost_no_grant_operation() {
    let mut nb = netback();
    let mut a = nc2_guest(
        &mut nb,
        5,
        Nc2Opts {
            buffers: 8,
            ..Nc2Opts::default()
        },
    );
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    let maps_after_first_post = nb.hv().counters.map_ops;
    // Three rounds through all 8 buffers: every buffer is re-posted with its grant.
    for round in 0..3u8 {
        for i in 0..8u8 {
            b.send(
                nb.hv_mut(),
                &frame(mac_of(5), mac_of(6), 1000, round * 8 + i),
            );
        }
        settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    }
    assert_eq!(a.received.len(), 24);
    for (i, r) in a.received.iter().enumerate() {
        assert_eq!(r.data, frame(mac_of(5), mac_of(6), 1000, i as u8));
    }
    let c = nb.counters((5, 0)).unwrap();
    assert_eq!(c.grant_reuse, 24, "every re-post reused its mapping");
    assert_eq!(
        nb.hv().counters.map_ops,
        maps_after_first_post,
        "no map after the first post"
    );
    // A buffer re-posted under a new grant is mapped again (and the old mapping let go).
    let before = nb.hv().live_mappings();
    a.repost = false;
    b.send(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 1000, 99));
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    let used = a.received.last().unwrap().bufs[0];
    let (gnew, mem) = {
        let hv = nb.hv_mut();
        let (f, mem) = hv.alloc_page(5);
        (hv.grant(5, f, BACKEND, false), mem)
    };
    let c0 = nb.hv().counters;
    a.replace_buffer(used, gnew, mem);
    a.post(&[used]);
    a.push(nb.hv_mut());
    a.repost = true;
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    let c1 = nb.hv().counters;
    assert_eq!(
        (c1.map_ops - c0.map_ops, c1.unmap_ops - c0.unmap_ops),
        (1, 1)
    );
    assert_eq!(nb.hv().live_mappings(), before);
    // Every buffer, the new page included, still carries frames correctly.
    let n0 = a.received.len();
    for i in 0..8u8 {
        b.send(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 900, 100 + i));
    }
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    for (i, r) in a.received[n0..].iter().enumerate() {
        assert_eq!(r.data, frame(mac_of(5), mac_of(6), 900, 100 + i as u8));
    }
    assert!(a.received[n0..].iter().any(|r| r.bufs[0] == used));
}

#[test]
fn a_corrupting_nc2_frontend_is_cut_off_alone() {
    let mut nb = netback();
    let mut bad = nc2_guest(&mut nb, 5, Nc2Opts::default());
    let mut good = nc2_guest(&mut nb, 7, Nc2Opts::default());
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    settle2(&mut nb, &mut [&mut b], &mut [&mut bad, &mut good]);
    let maps_before = nb.hv().live_mappings();

    bad.corrupt_ring(nb.hv_mut());
    nb.poll();
    assert!(!nb.is_connected((5, 0)));
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(5), "Closing");
    let why = nb.hv().peek(&format!("{}/error", be_path(5, 0))).unwrap();
    assert!(
        String::from_utf8_lossy(why).contains("UnknownMessageType"),
        "{}",
        String::from_utf8_lossy(why)
    );
    assert_eq!(nb.counters((5, 0)).unwrap().protocol_errors, 1);
    // 3 channel pages + 32 posted buffers of the bad guest are unmapped.
    assert_eq!(nb.hv().live_mappings(), maps_before - 35);

    // The others go on.
    let f = frame(mac_of(7), mac_of(6), 1514, 9);
    b.send(nb.hv_mut(), &f);
    let g = frame(mac_of(6), mac_of(7), 700, 10);
    good.send(nb.hv_mut(), &g);
    settle2(&mut nb, &mut [&mut b], &mut [&mut good]);
    assert_eq!(good.received.last().unwrap().data, f);
    assert_eq!(b.received.last().unwrap().data, g);
    assert_eq!(nb.counters((7, 0)).unwrap().protocol_errors, 0);
}

#[test]
fn teardown_returns_every_mapping_and_port() {
    let mut nb = netback();
    let mut a = nc2_guest(&mut nb, 5, Nc2Opts::default());
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    b.send(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 1514, 1));
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 1514, 2));
    settle2(&mut nb, &mut [&mut b], &mut [&mut a]);
    assert!(nb.hv().live_mappings() > 0);
    let mut step = |hv: &mut SimHypervisor| {
        let _ = hv;
    };
    a.close(nb.hv_mut(), &mut step);
    nb.poll();
    b.close(nb.hv_mut(), &mut step);
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(6), "Closed");
    assert_eq!(nb.hv().live_mappings(), 0);
    assert_eq!(nb.staging_outstanding(), 0);
    assert_eq!(nb.hv().local_pages(), 0);
}

/// The old leak: every connection's staging memory stayed allocated after teardown (about ten
/// reconnects exhausted the image's 4 MiB heap).
#[test]
fn a_hundred_reconnects_do_not_grow_staging_memory() {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut peak = 0;
    for i in 0..100u8 {
        let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
        let mut n = Nc2Guest::connect(nb.hv_mut(), 6, 0, Nc2Opts::default());
        nb.poll();
        assert!(
            nb.is_connected((5, 0)) && nb.is_connected((6, 0)),
            "round {i}"
        );
        assert_eq!(nb.staging_outstanding(), 2);
        settle2(&mut nb, &mut [&mut a], &mut [&mut n]);
        a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 1514, i));
        settle2(&mut nb, &mut [&mut a], &mut [&mut n]);
        assert_eq!(n.received.len(), 1, "round {i}");
        peak = peak.max(nb.hv().local_pages());
        for (dom, st) in [
            (5, b"5"),
            (6, b"5"),
            (5, b"6"),
            (6, b"6"),
            (5, b"1"),
            (6, b"1"),
        ] {
            nb.hv_mut()
                .store_write(&format!("{}/state", fe_path(dom, 0)), st);
            nb.poll();
        }
        assert_eq!(nb.staging_outstanding(), 0, "round {i}");
        assert_eq!(nb.hv().local_pages(), 0, "round {i}");
        assert_eq!(nb.hv().live_mappings(), 0, "round {i}");
        // Netback offers the device again (InitWait) for the next round.
        assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(2), "round {i}");
    }
    assert!(peak > 0);
}
