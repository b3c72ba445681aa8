//! Two (or three) simulated netfront guests against netback over the simulated hypervisor:
//! the xenbus handshake, switching between guests, the responder, batching, hostile guests,
//! teardown and counters.

mod common;

use common::*;
use libnc2::netif::ExtraInfo;
use libnc2::netif::extra::GSO_TCPV4;
use libnc2::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED};
use libnc2::netif::tx::NETTXF_CSUM_BLANK;
use netback::Netback;
use netback::responder::{arp_request, checksum, echo_request};
use netback::sim::SimHypervisor;
use netback::switch::BROADCAST;
use netback::xenbus::FEATURES;

fn two_guests(oa: GuestOpts, ob: GuestOpts) -> (Netback<SimHypervisor>, Guest, Guest) {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    for d in [5, 6] {
        assert_eq!(
            state_of(nb.hv(), &be_path(d, 0)),
            Some(2),
            "InitWait at once"
        );
    }
    let a = Guest::connect(nb.hv_mut(), 5, 0, oa);
    let b = Guest::connect(nb.hv_mut(), 6, 0, ob);
    nb.poll();
    for d in [5, 6] {
        assert_eq!(state_of(nb.hv(), &be_path(d, 0)), Some(4), "Connected");
        assert!(nb.is_connected((d, 0)));
    }
    (nb, a, b)
}

#[test]
fn probe_writes_linux_feature_keys_then_initwait() {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    nb.poll();
    let be = be_path(5, 0);
    for (k, v) in FEATURES {
        assert_eq!(
            nb.hv().peek(&format!("{be}/{k}")),
            Some(v.as_bytes()),
            "{k}"
        );
    }
    assert_eq!(
        nb.hv().peek(&format!("{be}/multi-queue-max-queues")),
        Some(&b"4"[..])
    );
    assert_eq!(state_of(nb.hv(), &be), Some(2));
}

#[test]
fn guests_exchange_frames_through_the_switch() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    nb.attach_nic();
    let fa = frame(mac_of(6), mac_of(5), 100, 1);
    let fb = frame(mac_of(5), mac_of(6), 1514, 2);
    a.send(nb.hv_mut(), &fa);
    b.send(nb.hv_mut(), &fb);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 1);
    assert_eq!(b.received[0].data, fa);
    assert_eq!(a.received.len(), 1);
    assert_eq!(a.received[0].data, fb);
    assert_eq!((a.tx_ok, b.tx_ok), (1, 1));
    // A broadcast reaches the other guest and the NIC port, not the sender.
    let bc = frame(BROADCAST, mac_of(5), 60, 3);
    a.send(nb.hv_mut(), &bc);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 2);
    assert_eq!(b.received[1].data, bc);
    assert_eq!(a.received.len(), 1);
    let nic = nb.take_nic_frames();
    assert_eq!(nic.len(), 1);
    assert_eq!(nic[0].data, bc);
    // A frame from the NIC for guest A's MAC lands in A.
    let from_wire = frame(mac_of(5), [2, 0, 0, 0, 0, 7], 200, 4);
    nb.nic_receive(netback::switch::Frame::plain(from_wire.clone()));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(a.received.last().unwrap().data, from_wire);
    let ca = nb.counters((5, 0)).unwrap();
    let cb = nb.counters((6, 0)).unwrap();
    assert_eq!((ca.tx_packets, ca.tx_bytes), (2, 160));
    assert_eq!((ca.rx_packets, ca.rx_bytes), (2, 1514 + 200));
    assert_eq!((cb.tx_packets, cb.rx_packets), (1, 2));
    assert_eq!((ca.tx_errors, ca.rx_drops, ca.protocol_errors), (0, 0, 0));
    nb.publish_counters();
    nb.poll();
    let writes = nb.hv().counters.xs_requests;
    nb.publish_counters();
    assert_eq!(
        nb.hv().counters.xs_requests,
        writes,
        "unchanged counters are not rewritten"
    );
    let s = nb
        .hv()
        .peek(&format!("{}/statistics", be_path(5, 0)))
        .unwrap();
    assert!(
        std::str::from_utf8(s)
            .unwrap()
            .starts_with("tx 2 pkts 160 B")
    );
}

#[test]
fn guest_pings_the_responder() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    let me = (mac_of(5), ip_of(5));
    let nb_mac = netback::Config::default().mac;
    let nb_ip = netback::Config::default().ip;
    a.send(nb.hv_mut(), &arp_request(me.0, me.1, nb_ip));
    settle(&mut nb, &mut [&mut a, &mut b]);
    let arp = a
        .received
        .iter()
        .find(|r| r.data[12..14] == [8, 6])
        .expect("arp reply");
    assert_eq!(&arp.data[22..28], &nb_mac);
    for seq in 0..3 {
        a.send(
            nb.hv_mut(),
            &echo_request(me, (nb_mac, nb_ip), 9, seq, b"ping-payload"),
        );
    }
    settle(&mut nb, &mut [&mut a, &mut b]);
    let echoes: Vec<_> = a
        .received
        .iter()
        .filter(|r| r.data[12..14] == [8, 0])
        .collect();
    assert_eq!(echoes.len(), 3);
    for (seq, e) in echoes.iter().enumerate() {
        assert_eq!(e.data[34], 0, "echo reply");
        assert_eq!(checksum(&e.data[14..34]), 0);
        assert_eq!(&e.data[40..42], &(seq as u16).to_be_bytes());
        assert_eq!(&e.data[42..54], b"ping-payload");
    }
    assert_eq!(nb.responder.echo_replies, 3);
    // B saw the ARP broadcast but no replies meant for A.
    assert_eq!(b.received.len(), 1);
}

#[test]
fn a_batch_costs_one_copy_call_each_way() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    for i in 0..32 {
        assert!(a.queue_frame(0, &frame(mac_of(6), mac_of(5), 64, i), 0, &[]));
    }
    a.push(nb.hv_mut(), 0);
    let before = nb.hv().counters;
    nb.poll();
    let d = nb.hv().counters;
    assert_eq!(
        d.copy_calls - before.copy_calls,
        2,
        "one for A's tx, one for B's rx"
    );
    assert_eq!(d.copy_ops - before.copy_ops, 64);
    assert!(
        d.notifies - before.notifies <= 2,
        "one event per ring per batch"
    );
    b.poll(nb.hv_mut());
    assert_eq!(b.received.len(), 32);
    for (i, r) in b.received.iter().enumerate() {
        assert_eq!(r.data, frame(mac_of(6), mac_of(5), 64, i as u8));
    }
    let ca = nb.counters((5, 0)).unwrap();
    assert_eq!(ca.tx_packets, 32);
    // Connect mapped 2 rings in one call; the batch took one copy call.
    assert_eq!(ca.grant_calls, 2);
    assert_eq!(ca.grant_ops, 2 + 32);
}

#[test]
fn sg_gso_and_checksum_offload_pass_between_guests() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    let big = frame(mac_of(6), mac_of(5), 9000, 5);
    let gso = ExtraInfo::Gso {
        size: 1448,
        gso_type: GSO_TCPV4,
        features: 0,
    };
    assert!(a.queue_frame(0, &big, NETTXF_CSUM_BLANK, &[gso]));
    a.push(nb.hv_mut(), 0);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 1);
    let r = &b.received[0];
    assert_eq!(r.data, big);
    assert_eq!(r.frags, 3);
    assert_eq!(r.flags, NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED);
    assert_eq!(r.extras, [gso]);
    assert_eq!(a.tx_ok, 3, "one OKAY per data slot");
}

#[test]
fn frames_a_guest_cannot_take_are_dropped_and_counted() {
    let no_sg = GuestOpts {
        sg: false,
        gso: false,
        ..GuestOpts::default()
    };
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), no_sg);
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 5000, 1));
    let gso = ExtraInfo::Gso {
        size: 1448,
        gso_type: GSO_TCPV4,
        features: 0,
    };
    assert!(a.queue_frame(0, &frame(mac_of(6), mac_of(5), 3000, 2), 0, &[gso]));
    a.push(nb.hv_mut(), 0);
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 1000, 3));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 1);
    assert_eq!(b.received[0].data, frame(mac_of(6), mac_of(5), 1000, 3));
    assert_eq!(nb.counters((6, 0)).unwrap().rx_drops, 2);
    // A runt is refused with an error response.
    a.send(nb.hv_mut(), &[0u8; 10]);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(a.tx_err, 1);
    assert_eq!(nb.counters((5, 0)).unwrap().tx_errors, 1);
    assert!(
        nb.is_connected((5, 0)),
        "a refused packet is not a protocol error"
    );
}

#[test]
fn a_guest_without_rx_buffers_only_loses_its_own_frames() {
    let starved = GuestOpts {
        rx_buffers: 0,
        ..GuestOpts::default()
    };
    let mut nb = netback();
    for d in [5, 6, 7] {
        toolstack_add(nb.hv_mut(), d, 0);
    }
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    let mut c = Guest::connect(nb.hv_mut(), 7, 0, starved);
    nb.poll();
    let backlog = netback::Config::default().rx_backlog;
    let n = backlog + 40;
    let mut sent = 0;
    while sent < n {
        for _ in 0..32 {
            assert!(a.queue_frame(0, &frame(mac_of(7), mac_of(5), 60, sent as u8), 0, &[]));
            assert!(a.queue_frame(0, &frame(mac_of(6), mac_of(5), 60, sent as u8), 0, &[]));
            sent += 1;
        }
        a.push(nb.hv_mut(), 0);
        settle(&mut nb, &mut [&mut a, &mut b, &mut c]);
    }
    assert_eq!(b.received.len(), sent, "the healthy guest gets everything");
    assert!(c.received.is_empty());
    let cc = nb.counters((7, 0)).unwrap();
    assert_eq!(cc.rx_drops as usize, sent - backlog);
    assert!(nb.is_connected((7, 0)));
}

#[test]
fn a_guest_that_corrupts_its_ring_is_disconnected_others_keep_traffic() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    b.corrupt_tx_ring(nb.hv_mut());
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 80, 1));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert!(!nb.is_connected((6, 0)));
    assert_eq!(state_of(nb.hv(), &be_path(6, 0)), Some(5), "Closing");
    let err = nb.hv().peek(&format!("{}/error", be_path(6, 0))).unwrap();
    assert!(
        std::str::from_utf8(err)
            .unwrap()
            .contains("peer protocol violation")
    );
    assert_eq!(nb.counters((6, 0)).unwrap().protocol_errors, 1);
    // A keeps working: its ping is answered.
    let nb_mac = netback::Config::default().mac;
    let nb_ip = netback::Config::default().ip;
    for seq in 0..5 {
        a.send(
            nb.hv_mut(),
            &echo_request((mac_of(5), ip_of(5)), (nb_mac, nb_ip), 1, seq, b"x"),
        );
        settle(&mut nb, &mut [&mut a, &mut b]);
    }
    assert_eq!(
        a.received
            .iter()
            .filter(|r| r.data[12..14] == [8, 0])
            .count(),
        5
    );
    assert_eq!(a.tx_ok, 6);
    assert!(nb.is_connected((5, 0)));
    // B's rings are unmapped; A's two remain.
    assert_eq!(nb.hv().live_mappings(), 2);
}

#[test]
fn bad_frontend_keys_fail_only_that_vif() {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    // B publishes garbage for its tx ring reference.
    let fe = fe_path(6, 0);
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    nb.hv_mut()
        .store_write(&format!("{fe}/tx-ring-ref"), b"12abc");
    nb.poll();
    assert!(nb.is_connected((5, 0)));
    assert!(!nb.is_connected((6, 0)));
    assert_eq!(state_of(nb.hv(), &be_path(6, 0)), Some(5));
    let err = nb.hv().peek(&format!("{}/error", be_path(6, 0))).unwrap();
    assert_eq!(err, b"frontend key tx-ring-ref is not a decimal number");
    let nb_mac = netback::Config::default().mac;
    a.send(
        nb.hv_mut(),
        &echo_request((mac_of(5), ip_of(5)), (nb_mac, [10, 0, 0, 1]), 1, 1, b""),
    );
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(a.received.len(), 1);
}

#[test]
fn missing_or_ungranted_keys_are_refused() {
    let mut nb = netback();
    for d in [5, 6, 7] {
        toolstack_add(nb.hv_mut(), d, 0);
    }
    nb.poll();
    // 5: no request-rx-copy. 6: a ring reference it never granted. 7: half a split pair.
    let mut g5 = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let mut g6 = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    let mut g7 = Guest::connect(nb.hv_mut(), 7, 0, GuestOpts::default());
    let _ = (&mut g5, &mut g6, &mut g7);
    let hv = nb.hv_mut();
    hv.store_rm(&format!("{}/request-rx-copy", fe_path(5, 0)));
    hv.store_write(&format!("{}/rx-ring-ref", fe_path(6, 0)), b"4000");
    hv.store_write(&format!("{}/event-channel-tx", fe_path(7, 0)), b"1");
    nb.poll();
    let err = |nb: &Netback<SimHypervisor>, d| {
        String::from_utf8(
            nb.hv()
                .peek(&format!("{}/error", be_path(d, 0)))
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    assert!(err(&nb, 5).contains("rx-copy"), "{}", err(&nb, 5));
    assert!(
        err(&nb, 6).contains("cannot map the rx ring"),
        "{}",
        err(&nb, 6)
    );
    assert!(err(&nb, 7).contains("event-channel-tx"), "{}", err(&nb, 7));
    for d in [5, 6, 7] {
        assert!(!nb.is_connected((d, 0)));
    }
    assert_eq!(
        nb.hv().live_mappings(),
        0,
        "the failed map released the good ring"
    );
}

#[test]
fn multi_queue_and_split_event_channels() {
    let mq = GuestOpts {
        queues: 2,
        split: true,
        ..GuestOpts::default()
    };
    let (mut nb, mut a, mut b) = two_guests(mq, GuestOpts::default());
    for q in 0..2 {
        for i in 0..4 {
            assert!(a.queue_frame(
                q,
                &frame(mac_of(6), mac_of(5), 70, (q * 10 + i) as u8),
                0,
                &[]
            ));
        }
        a.push(nb.hv_mut(), q);
    }
    for i in 0..8 {
        b.send(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 90 + i, i as u8));
    }
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 8);
    assert_eq!(a.received.len(), 8);
    let mut got: Vec<usize> = a.received.iter().map(|r| r.data.len()).collect();
    got.sort();
    assert_eq!(got, (90..98).collect::<Vec<_>>());
    assert_eq!(nb.counters((5, 0)).unwrap().tx_packets, 8);
}

#[test]
fn teardown_unmaps_and_removes_the_backend_directory() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 64, 1));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(nb.hv().live_mappings(), 4);
    // The toolstack detaches: online=0, then the frontend closes.
    nb.hv_mut()
        .store_write(&format!("{}/online", be_path(5, 0)), b"0");
    let mut step = |hv: &mut SimHypervisor| {
        let _ = hv;
    };
    a.close(nb.hv_mut(), &mut step);
    nb.poll();
    assert!(!nb.is_connected((5, 0)));
    // Closed stays a while for the toolstack to read (libxl then waits for the directory to go).
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(6));
    nb.hv_mut().clock_ns += netback::xenbus::REMOVE_GRACE_NS - 1;
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(6), "still in grace");
    assert_eq!(
        nb.next_deadline(),
        Some(netback::xenbus::REMOVE_GRACE_NS),
        "the server's timer covers the removal"
    );
    // Then netback removes its directory.
    nb.hv_mut().clock_ns += 1;
    nb.poll();
    assert_eq!(
        nb.hv().peek(&format!("{}/state", be_path(5, 0))),
        None,
        "directory removed"
    );
    assert_eq!(nb.hv().live_mappings(), 2);
    // Counters of the gone vif survive its disconnection.
    assert_eq!(nb.counters((5, 0)).unwrap().tx_packets, 1);
    // B is untouched.
    b.send(nb.hv_mut(), &frame(BROADCAST, mac_of(6), 64, 2));
    settle(&mut nb, &mut [&mut b]);
    assert_eq!(nb.counters((6, 0)).unwrap().tx_packets, 1);
    assert!(nb.is_connected((6, 0)));
}

#[test]
fn backend_directory_goes_once_the_toolstack_removed_the_frontend() {
    // libxl's detach of a driver domain's vif: online=0, the frontend closes, libxl reads the
    // backend's Closed, removes the frontend directory and waits for the backend's to go.
    let (mut nb, mut a, _b) = two_guests(GuestOpts::default(), GuestOpts::default());
    nb.hv_mut()
        .store_write(&format!("{}/online", be_path(5, 0)), b"0");
    let mut step = |_: &mut SimHypervisor| {};
    a.close(nb.hv_mut(), &mut step);
    nb.poll();
    assert_eq!(
        state_of(nb.hv(), &be_path(5, 0)),
        Some(6),
        "Closed stays readable"
    );
    nb.hv_mut().store_rm(&fe_path(5, 0));
    nb.poll();
    assert_eq!(
        nb.hv().peek(&format!("{}/state", be_path(5, 0))),
        None,
        "removed without waiting for the grace"
    );
    assert!(nb.is_connected((6, 0)));
}

#[test]
fn frontend_closing_goes_closing_then_closed_and_reconnects() {
    let (mut nb, _a, _b) = two_guests(GuestOpts::default(), GuestOpts::default());
    let fe = fe_path(5, 0);
    nb.hv_mut().store_write(&format!("{fe}/state"), b"5");
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(5));
    assert!(!nb.is_connected((5, 0)));
    // Settled: netback's own writes do not keep waking it.
    nb.poll();
    nb.poll();
    assert_eq!(
        netback::hv::Hypervisor::xs_poll_watch(nb.hv_mut()).unwrap(),
        None
    );
    nb.hv_mut().store_write(&format!("{fe}/state"), b"6");
    nb.poll();
    assert_eq!(
        state_of(nb.hv(), &be_path(5, 0)),
        Some(6),
        "online=1: directory stays"
    );
    nb.hv_mut().store_write(&format!("{fe}/state"), b"1");
    nb.poll();
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(2), "offered again");
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    nb.poll();
    assert!(nb.is_connected((5, 0)));
    a.send(nb.hv_mut(), &frame(BROADCAST, mac_of(5), 64, 2));
    settle(&mut nb, &mut [&mut a]);
    assert_eq!(a.tx_ok, 1);
}

#[test]
fn revoked_grants_error_tx_packets_and_disconnect_on_rx() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    // B's tx pages are no longer granted: its packet is answered with an error, B stays.
    b.revoke_tx_grants(nb.hv_mut());
    b.send(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 100, 1));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.tx_err, 1);
    assert!(a.received.is_empty());
    assert!(nb.is_connected((6, 0)));
    // B's posted rx buffers are no longer granted: filling one fails, B is disconnected.
    b.revoke_rx_grants(nb.hv_mut());
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 100, 2));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert!(!nb.is_connected((6, 0)));
    let err = nb.hv().peek(&format!("{}/error", be_path(6, 0))).unwrap();
    assert!(std::str::from_utf8(err).unwrap().contains("not writable"));
    // A is unaffected.
    a.send(nb.hv_mut(), &frame(BROADCAST, mac_of(5), 60, 3));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(a.tx_ok, 2);
    assert!(nb.is_connected((5, 0)));
}

#[test]
fn a_frontend_directory_outside_the_guest_is_refused() {
    let mut nb = netback();
    toolstack_add(nb.hv_mut(), 5, 0);
    nb.hv_mut().store_write(
        &format!("{}/frontend", be_path(5, 0)),
        b"/local/domain/0/device/vif/0",
    );
    nb.poll();
    assert_eq!(nb.xenbus().state((5, 0)), None, "not served");
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(1));
}

/// Guests that scribble random words over their shared ring pages: netback never panics,
/// and whatever happens to them, a well-behaved guest keeps its traffic.
#[test]
fn ring_scribblers_never_hurt_netback_or_others() {
    let rounds = if std::env::var("NC2DD_LONG_TESTS").as_deref() == Ok("1") {
        2000
    } else {
        60
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut hurt = 0;
    for round in 0..rounds {
        let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
        for i in 0..4 {
            b.scribble_rings(nb.hv_mut(), &mut seed, 1 + (round % 8));
            b.send_unchecked(nb.hv_mut(), &frame(mac_of(5), mac_of(6), 60 + i, i as u8));
            a.send(nb.hv_mut(), &frame(BROADCAST, mac_of(5), 60, i as u8));
            nb.poll();
            a.poll(nb.hv_mut());
        }
        settle(&mut nb, &mut [&mut a]);
        assert!(nb.is_connected((5, 0)), "round {round}");
        hurt += usize::from(!nb.is_connected((6, 0)));
        assert_eq!(a.tx_ok, 4, "round {round}");
    }
    // The scribbles did break rings (the seed is fixed, so this is deterministic).
    assert!(
        hurt >= rounds / 4,
        "only {hurt} of {rounds} scribblers were disconnected"
    );
}

#[test]
fn a_flooding_guest_does_not_starve_another() {
    let cfg = netback::Config {
        tx_budget: 8,
        ..netback::Config::default()
    };
    let mut nb = Netback::new(SimHypervisor::new(BACKEND), cfg);
    nb.attach_nic();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let mut b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    nb.poll();
    let wire = [2, 0, 0, 0, 0, 9];
    for i in 0..64 {
        assert!(a.queue_frame(0, &frame(wire, mac_of(5), 60, i as u8), 0, &[]));
    }
    a.push(nb.hv_mut(), 0);
    b.send(nb.hv_mut(), &frame(BROADCAST, mac_of(6), 60, 1));
    nb.poll();
    let out = nb.take_nic_frames();
    assert_eq!(out.len(), 65);
    // Each round takes one batch per queue: B's frame leaves with A's first batch.
    let pos = out.iter().position(|f| f.src() == Some(mac_of(6))).unwrap();
    assert!(pos <= 8, "B's frame came out at {pos}");
    b.poll(nb.hv_mut());
    assert_eq!(b.tx_ok, 1);
}

#[test]
fn a_sick_xenstore_does_not_tear_vifs_down() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    nb.hv_mut().xs_fail = Some(String::new());
    // The toolstack touches the backend tree while xenstored is failing our requests.
    nb.hv_mut()
        .store_write(&format!("{}/hotplug-status", be_path(5, 0)), b"connected");
    nb.poll();
    assert!(nb.is_connected((5, 0)) && nb.is_connected((6, 0)));
    // And while only a frontend's state cannot be read.
    nb.hv_mut().xs_fail = Some(fe_path(6, 0));
    nb.hv_mut()
        .store_write(&format!("{}/hotplug-status", be_path(6, 0)), b"connected");
    nb.poll();
    assert!(nb.is_connected((5, 0)) && nb.is_connected((6, 0)));
    nb.hv_mut().xs_fail = None;
    a.send(nb.hv_mut(), &frame(mac_of(6), mac_of(5), 64, 1));
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!(b.received.len(), 1);
    assert_eq!(state_of(nb.hv(), &be_path(5, 0)), Some(4));
}

#[test]
fn the_toolstack_rate_limits_guest_transmit() {
    let mut nb = netback();
    nb.attach_nic();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    // 1000 bytes per millisecond for guest 5; a malformed rate for guest 6.
    nb.hv_mut()
        .store_write(&format!("{}/rate", be_path(5, 0)), b"1000,1000");
    nb.hv_mut()
        .store_write(&format!("{}/rate", be_path(6, 0)), b"1000;1000");
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    let _b = Guest::connect(nb.hv_mut(), 6, 0, GuestOpts::default());
    nb.poll();
    assert!(!nb.is_connected((6, 0)));
    let err = nb.hv().peek(&format!("{}/error", be_path(6, 0))).unwrap();
    assert_eq!(err, b"backend key rate is not <bytes>,<usec>");
    for i in 0..10 {
        assert!(a.queue_frame(0, &frame([2, 0, 0, 0, 0, 9], mac_of(5), 500, i), 0, &[]));
    }
    a.push(nb.hv_mut(), 0);
    let sent = |nb: &Netback<SimHypervisor>| nb.counters((5, 0)).unwrap().tx_packets;
    nb.poll();
    assert_eq!(sent(&nb), 2, "1000 bytes of credit");
    assert_eq!(nb.next_deadline(), Some(1_000_000));
    nb.poll();
    assert_eq!(sent(&nb), 2, "nothing more in the same window");
    nb.hv_mut().clock_ns = 1_000_000;
    nb.poll();
    assert_eq!(sent(&nb), 4);
    // Idle windows are not banked.
    nb.hv_mut().clock_ns = 50_000_000;
    nb.poll();
    assert_eq!(sent(&nb), 6);
    assert_eq!(nb.take_nic_frames().len(), 6);
}

#[test]
fn offloads_a_guest_did_not_ask_for_are_done_in_software() {
    let plain = GuestOpts {
        gso: false,
        ..GuestOpts::default()
    };
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), plain);
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let big = tcp4(mac_of(6), mac_of(5), &data);
    let gso = ExtraInfo::Gso {
        size: 1448,
        gso_type: GSO_TCPV4,
        features: 0,
    };
    assert!(a.queue_frame(0, &big, NETTXF_CSUM_BLANK, &[gso]));
    a.push(nb.hv_mut(), 0);
    settle(&mut nb, &mut [&mut a, &mut b]);
    // B did not ask for GSO: it gets MSS-sized segments with valid checksums.
    assert_eq!(b.received.len(), 4);
    let mut joined = Vec::new();
    for r in &b.received {
        assert!(r.extras.is_empty());
        assert!(tcp4_ok(&r.data));
        assert!(r.data.len() <= 14 + 40 + 1448);
        joined.extend_from_slice(tcp4_payload(&r.data));
    }
    assert_eq!(joined, data);
}

#[test]
fn multicast_control_requests_are_answered_not_forwarded() {
    let (mut nb, mut a, mut b) = two_guests(GuestOpts::default(), GuestOpts::default());
    let add = ExtraInfo::McastAdd([0x01, 0, 0x5e, 0, 0, 1]);
    assert!(a.queue_frame(0, &[], 0, &[add]));
    a.push(nb.hv_mut(), 0);
    settle(&mut nb, &mut [&mut a, &mut b]);
    assert_eq!((a.tx_ok, a.tx_err), (1, 0));
    assert!(b.received.is_empty());
    let c = nb.counters((5, 0)).unwrap();
    assert_eq!((c.tx_packets, c.tx_errors), (0, 0));
    assert!(nb.is_connected((5, 0)));
}
