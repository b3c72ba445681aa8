//! The NIC server exchanging real Ethernet frames: nc2dd boots in QEMU with an igb (82576) on a
//! `-netdev dgram` backend whose other end is a peer in this test process (tests/src/netpeer.rs).
//! The server gives two MACs a VMDq pool each; the peer ARPs for the pool-0 address, pings it,
//! sends malformed frames that must be dropped, probes both MACs (each probe must be answered
//! from its own pool), and finally sends "done" so the system ends itself.
//!
//! The responder and the settings parser are unit-tested where they live, against this peer's
//! frame builders (servers/nic-ixgbe/src/server/).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::qemu::QemuConfig;
use nc2dd_tests::netpeer::{self, Echo, NetPeer};
use nc2dd_tests::qemu::{self, Expect, Outcome};

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_IP: [u8; 4] = [192, 0, 2, 1];
/// RFC 5737 documentation addresses: they exist only on the emulated wire.
const IP0: [u8; 4] = [192, 0, 2, 2];
const MAC0: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const MAC1: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
/// The igb's own (permanent) address: no pool receives for it.
const NIC_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x00];

// ---- QEMU: the server in the image on the igb ------------------------------------------------

const DEADLINE: Duration = Duration::from_secs(300);
const PEER_DEADLINE: Duration = Duration::from_secs(240);

/// What the peer saw, for the assertions after the run.
#[derive(Debug, Default)]
struct PeerLog {
    arp_from: Option<[u8; 6]>,
    echo_payload_ok: bool,
    acks: Vec<(u8, [u8; 6])>,
    /// Distinct probes of a flood that were acknowledged.
    flood_acks: usize,
    /// A probe sent to the stalled pool after its flood was answered.
    stalled_answered: bool,
}

/// Sends `frame` every `every` until `pick` accepts a received frame, `stop` is set, or
/// `deadline` passes.
fn ask<T>(
    peer: &NetPeer,
    frame: &[u8],
    every: Duration,
    deadline: Instant,
    stop: &AtomicBool,
    mut pick: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, String> {
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        peer.send(frame).map_err(|e| format!("send: {e}"))?;
        let until = (Instant::now() + every).min(deadline);
        if let Some(t) = peer
            .recv_match(until, &mut pick)
            .map_err(|e| format!("recv: {e}"))?
        {
            return Ok(t);
        }
    }
    Err("no answer before the deadline".into())
}

fn converse(peer: &NetPeer, stop: &AtomicBool, log: &mut PeerLog) -> Result<(), String> {
    let deadline = Instant::now() + PEER_DEADLINE;
    // Boot takes a while: keep asking until the server's pool 0 is up.
    let arp = ask(
        peer,
        &netpeer::arp_request(PEER_MAC, PEER_IP, IP0),
        Duration::from_secs(1),
        deadline,
        stop,
        |f| netpeer::parse_arp_reply(f).filter(|r| r.sender_ip == IP0 && r.target_ip == PEER_IP),
    )
    .map_err(|e| format!("ARP who-has {IP0:?}: {e}"))?;
    if (arp.eth_dst, arp.eth_src, arp.target_mac) != (PEER_MAC, MAC0, PEER_MAC) {
        return Err(format!("ARP reply addressed wrongly: {arp:?}"));
    }
    log.arp_from = Some(arp.sender_mac);

    let req = Echo {
        eth_dst: arp.sender_mac,
        eth_src: PEER_MAC,
        src_ip: PEER_IP,
        dst_ip: IP0,
        ttl: 64,
        id: 0x4e43,
        seq: 1,
        payload: (0..200u32).map(|i| (i * 13 + 5) as u8).collect(),
    };
    let reply = ask(
        peer,
        &netpeer::icmp_echo_request(&req),
        Duration::from_secs(2),
        deadline,
        stop,
        |f| netpeer::parse_icmp_echo_reply(f).filter(|r| r.id == req.id && r.seq == req.seq),
    )
    .map_err(|e| format!("ping: {e}"))?;
    if (reply.eth_dst, reply.eth_src, reply.src_ip, reply.dst_ip) != (PEER_MAC, MAC0, IP0, PEER_IP)
    {
        return Err(format!("echo reply addressed wrongly: {reply:?}"));
    }
    log.echo_payload_ok = reply.payload == req.payload;

    // Frames the server must count as malformed and drop: a bad ICMP checksum, a cut ARP.
    let mut bad = netpeer::icmp_echo_request(&Echo {
        seq: 2,
        ..req.clone()
    });
    bad[40] ^= 0xFF;
    peer.send(&bad).map_err(|e| e.to_string())?;
    let mut cut = netpeer::arp_request(PEER_MAC, PEER_IP, IP0);
    cut.truncate(14 + 20);
    cut.resize(60, 0);
    cut[14 + 4] = 7; // hardware address length: no longer Ethernet ARP
    peer.send(&cut).map_err(|e| e.to_string())?;

    for (pool, mac, seq) in [(0u8, MAC0, 100u16), (1, MAC1, 101)] {
        let probe = netpeer::test_frame(mac, PEER_MAC, netpeer::TEST_PROBE, pool, seq);
        let ack = ask(peer, &probe, Duration::from_secs(2), deadline, stop, |f| {
            netpeer::parse_test_frame(f)
                .filter(|t| t.op == netpeer::TEST_ACK && t.seq == seq && t.eth_dst == PEER_MAC)
        })
        .map_err(|e| format!("probe to {}: {e}", netpeer::mac_string(mac)))?;
        log.acks.push((ack.pool, ack.eth_src));
    }
    Ok(())
}

/// The peer's side of one run.
type Conversation = fn(&NetPeer, &AtomicBool, &mut PeerLog) -> Result<(), String>;

/// Boots the nic system with the server arguments `args` (`key=value`, space separated) and the
/// igb on a dgram netdev, while `converse` talks to it from a thread. The peer always ends with
/// "done" frames, so a failed exchange still ends the run at once.
fn boot_with_peer(
    name: &str,
    args: &str,
    converse: Conversation,
) -> (Outcome, Result<(), String>, PeerLog) {
    let peer = NetPeer::bind().expect("peer socket on 127.0.0.1");
    let a = qemu::system_artefacts("nic");
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    let args: Vec<String> = args
        .split_whitespace()
        .map(|kv| format!("nc2dd.nic-ixgbe.{kv}"))
        .collect();
    cfg.cmdline = format!("nc2dd.shutdown=allow {}", args.join(" "));
    cfg.extra = vec![
        "-netdev".into(),
        peer.netdev("n0").expect("netdev argument"),
        "-device".into(),
        format!("igb,netdev=n0,mac={}", netpeer::mac_string(NIC_MAC)),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut log = PeerLog::default();
            let r = converse(&peer, &stop, &mut log);
            let done = netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_DONE, 0, 0);
            for _ in 0..3 {
                let _ = peer.send(&done);
                std::thread::sleep(Duration::from_millis(100));
            }
            (r, log)
        })
    };
    let mut expect = Expect::pass();
    expect.fail_on = vec!["NC2DD_FAIL", "NC2DD_PANIC", "NC2DD_FAULT"];
    let out = qemu::run(name, &cfg, DEADLINE, &expect);
    stop.store(true, Ordering::Relaxed);
    let (peer_result, log) = talker.join().expect("peer thread");
    let out = out.unwrap_or_else(|e| panic!("{e}\npeer: {peer_result:?}"));
    (out, peer_result, log)
}

fn has(out: &Outcome, needle: &str) {
    assert!(
        out.line_with(needle).is_some(),
        "no line with {needle:?} (log {})",
        out.log_path.display()
    );
}

#[test]
fn igb_pools_exchange_frames_with_a_host_peer() {
    let (out, peer, log) = boot_with_peer(
        "nic-igb-frames",
        &format!(
            "mac0={} ip0=192.0.2.2 mac1={}",
            netpeer::mac_string(MAC0),
            netpeer::mac_string(MAC1)
        ),
        converse,
    );
    peer.unwrap_or_else(|e| panic!("peer: {e} (log {})", out.log_path.display()));
    assert_eq!(log.arp_from, Some(MAC0), "ARP answered with the pool-0 MAC");
    assert!(
        log.echo_payload_ok,
        "echo reply carries the request's payload"
    );
    assert_eq!(
        log.acks,
        vec![(0, MAC0), (1, MAC1)],
        "each MAC answered from its own pool"
    );

    has(&out, "nic-ixgbe: device ");
    has(&out, " 8086:10c9, BAR0 at ");
    has(&out, "nic-ixgbe: link up");
    let peer_mac = netpeer::mac_string(PEER_MAC);
    for (pool, mac) in [(0, MAC0), (1, MAC1)] {
        has(
            &out,
            &format!("nic-ixgbe: pool {pool}: mac {}", netpeer::mac_string(mac)),
        );
        has(
            &out,
            &format!(
                "nic-ixgbe: pool {pool}: frame from {peer_mac} to {} type 0x88b5 len 60: probe {} acknowledged",
                netpeer::mac_string(mac),
                100 + pool
            ),
        );
    }
    // The probes must not have shown up on the other pool.
    assert!(
        out.line_with(&format!(
            "pool 1: frame from {peer_mac} to {}",
            netpeer::mac_string(MAC0)
        ))
        .is_none()
            && out
                .line_with(&format!(
                    "pool 0: frame from {peer_mac} to {}",
                    netpeer::mac_string(MAC1)
                ))
                .is_none(),
        "a frame arrived on the wrong pool (log {})",
        out.log_path.display()
    );
    has(&out, "ARP request answered");
    has(&out, "echo request id 20035 seq 1 answered");
    has(&out, "malformed (bad ICMP checksum), dropped");
    has(&out, "malformed (bad ARP header), dropped");
    has(&out, "done requested");
    let pool0 = out
        .lines
        .iter()
        .find(|l| l.contains("nic-ixgbe: pool 0: ") && l.contains(" frames, "))
        .unwrap_or_else(|| panic!("no pool 0 summary (log {})", out.log_path.display()));
    assert!(pool0.contains(", 2 malformed,"), "{pool0}");
    let finished = out
        .line_with("nic-ixgbe: finished after ")
        .unwrap_or_else(|| panic!("no summary line (log {})", out.log_path.display()));
    // The pools' MSI-X vectors must have woken the server, not only the fallback poll timer.
    let msix_wakeups: u64 = finished
        .split("woken ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wake-up count in {finished:?}"));
    assert!(msix_wakeups >= 1, "no MSI-X wake-up: {finished:?}");
    has(&out, "supervisor: task 1 exited with status 0");
    eprintln!(
        "nic frame exchange passed under {} in {:?}",
        out.accel, out.elapsed
    );
}

/// Probes pool 0 until the first answer.
fn one_probe(peer: &NetPeer, stop: &AtomicBool, log: &mut PeerLog) -> Result<(), String> {
    let probe = netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_PROBE, 0, 1);
    let deadline = Instant::now() + PEER_DEADLINE;
    let ack = ask(
        peer,
        &probe,
        Duration::from_millis(500),
        deadline,
        stop,
        |f| netpeer::parse_test_frame(f).filter(|t| t.op == netpeer::TEST_ACK),
    )?;
    log.acks.push((ack.pool, ack.eth_src));
    Ok(())
}

#[test]
fn igb_server_stops_after_the_configured_number_of_frames() {
    let (out, peer, log) = boot_with_peer(
        "nic-igb-frame-limit",
        &format!("mac0={} frames=1", netpeer::mac_string(MAC0)),
        one_probe,
    );
    peer.unwrap_or_else(|e| panic!("peer: {e} (log {})", out.log_path.display()));
    assert_eq!(log.acks, vec![(0, MAC0)]);
    // Exactly one frame handled, however many probes were queued, and no "done" involved.
    has(&out, "nic-ixgbe: finished after 1 frames; ");
    assert!(out.line_with("done requested").is_none());
    has(&out, "supervisor: task 1 exited with status 0");
}

const FLOOD: u16 = 100;

/// Floods pool 1 (whose buffers the server does not repost) with more probes than its ring
/// holds, then checks that pool 0 still answers and pool 1 no longer does.
fn flood_stalled_pool(peer: &NetPeer, stop: &AtomicBool, log: &mut PeerLog) -> Result<(), String> {
    let deadline = Instant::now() + PEER_DEADLINE;
    let probe0 = |seq| netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_PROBE, 0, seq);
    let acked = |seq: u16, mac: [u8; 6]| {
        move |f: &[u8]| {
            netpeer::parse_test_frame(f)
                .filter(|t| t.op == netpeer::TEST_ACK && t.seq == seq && t.eth_src == mac)
        }
    };
    ask(
        peer,
        &probe0(1),
        Duration::from_millis(500),
        deadline,
        stop,
        acked(1, MAC0),
    )
    .map_err(|e| format!("first probe to pool 0: {e}"))?;

    for seq in 1000..1000 + FLOOD {
        let f = netpeer::test_frame(MAC1, PEER_MAC, netpeer::TEST_PROBE, 1, seq);
        peer.send(&f).map_err(|e| e.to_string())?;
    }
    let mut seen = std::collections::BTreeSet::new();
    let settle = Instant::now() + Duration::from_secs(3);
    while let Some(f) = peer.recv(settle).map_err(|e| e.to_string())? {
        if let Some(t) = netpeer::parse_test_frame(&f)
            && t.op == netpeer::TEST_ACK
            && t.eth_src == MAC1
        {
            seen.insert(t.seq);
        }
    }
    log.flood_acks = seen.len();

    let ack = ask(
        peer,
        &probe0(2),
        Duration::from_secs(1),
        deadline,
        stop,
        acked(2, MAC0),
    )
    .map_err(|e| format!("pool 0 after the flood of pool 1: {e}"))?;
    log.acks.push((ack.pool, ack.eth_src));
    let late = netpeer::test_frame(MAC1, PEER_MAC, netpeer::TEST_PROBE, 1, 2000);
    peer.send(&late).map_err(|e| e.to_string())?;
    log.stalled_answered = peer
        .recv_match(Instant::now() + Duration::from_secs(1), acked(2000, MAC1))
        .map_err(|e| e.to_string())?
        .is_some();
    Ok(())
}

#[test]
fn igb_pool_without_buffers_drops_only_its_own_frames() {
    let (out, peer, log) = boot_with_peer(
        "nic-igb-stalled-pool",
        &format!(
            "mac0={} mac1={} stall=1",
            netpeer::mac_string(MAC0),
            netpeer::mac_string(MAC1)
        ),
        flood_stalled_pool,
    );
    peer.unwrap_or_else(|e| panic!("peer: {e} (log {})", out.log_path.display()));
    has(
        &out,
        "nic-ixgbe: pool 1: receive buffers will not be reposted (stall=1)",
    );
    // Pool 1's ring holds 63 buffers: exactly those frames reach the server, the rest of the
    // flood is dropped by the NIC for pool 1 alone.
    assert_eq!(log.flood_acks, 63, "acknowledged probes of the flood");
    has(&out, "nic-ixgbe: pool 1: 63 frames, 63 replies,");
    assert_eq!(
        log.acks,
        vec![(0, MAC0)],
        "pool 0 answers after pool 1 filled up"
    );
    assert!(!log.stalled_answered, "the stalled pool received again");
    has(&out, "supervisor: task 1 exited with status 0");
}
