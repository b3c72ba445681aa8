//! The main job's demo: boots the real nc2dd system (image/system.toml) in QEMU with an igb
//! (82576) on a `-netdev dgram` backend whose other end is a peer in this process, streams the
//! serial console to the terminal, and shows packets moving.
//!
//! The peer ARPs for nc2dd's address, pings it `--count` times and prints each reply as ping
//! does (bytes, sequence, TTL, round-trip time measured here on the host) and ping's summary,
//! then probes the second MAC to show its frames arrive on the second VMDq pool, and finally
//! sends "done" so the system ends itself (the supervisor's shutdown, QEMU status 33).
//!
//! Exit status 0 only when every ping was answered, the second pool answered its probes, and
//! the run ended cleanly. Addresses are RFC 5737 documentation addresses that exist only on the
//! emulated wire; the only real traffic is UDP on 127.0.0.1 between this process and QEMU.
//!
//! ```text
//! cargo run -p nc2dd-tests --bin demo [-- --count N]
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::qemu::QemuConfig;
use nc2dd_tests::netpeer::{self, Echo, NetPeer};
use nc2dd_tests::qemu::{self, Expect};

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_IP: [u8; 4] = [192, 0, 2, 1];
const IP0: [u8; 4] = [192, 0, 2, 2];
const MAC0: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const MAC1: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
/// The igb's own (permanent) address: no pool receives for it.
const NIC_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x00];
/// ping's default: 56 bytes of data, 64 bytes of ICMP.
const PAYLOAD: usize = 56;
const PROBES: u16 = 3;
const INTERVAL: Duration = Duration::from_millis(500);
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// Boot until the first ARP answer (TCG is slow), and the whole run.
const PEER_DEADLINE: Duration = Duration::from_secs(240);
const RUN_DEADLINE: Duration = Duration::from_secs(300);

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// What the peer saw.
#[derive(Debug, Default)]
struct Report {
    sent: u32,
    rtts: Vec<Duration>,
    probes_acked: u16,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// ping's closing lines for `r`.
fn summary(r: &Report) -> String {
    let received = r.rtts.len() as u32;
    let loss = (r.sent - received)
        .checked_mul(100)
        .and_then(|l| l.checked_div(r.sent))
        .unwrap_or(100);
    let mut s = format!(
        "--- {} ping statistics ---\n{} packets transmitted, {} received, {}% packet loss",
        ip(IP0),
        r.sent,
        received,
        loss
    );
    if let (Some(min), Some(max)) = (r.rtts.iter().min(), r.rtts.iter().max()) {
        let avg = r.rtts.iter().sum::<Duration>() / received;
        s.push_str(&format!(
            "\nrtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            ms(*min),
            ms(avg),
            ms(*max)
        ));
    }
    s
}

fn converse(peer: &NetPeer, count: u16, stop: &AtomicBool, r: &mut Report) -> Result<(), String> {
    let deadline = Instant::now() + PEER_DEADLINE;
    println!(
        "demo: peer {} ({}) asks who has {} until nc2dd's pool 0 answers",
        ip(PEER_IP),
        netpeer::mac_string(PEER_MAC),
        ip(IP0)
    );
    let who_has = netpeer::arp_request(PEER_MAC, PEER_IP, IP0);
    let arp = loop {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return Err(format!("no ARP answer for {}", ip(IP0)));
        }
        peer.send(&who_has).map_err(|e| format!("send: {e}"))?;
        let until = (Instant::now() + Duration::from_secs(1)).min(deadline);
        let got = peer
            .recv_match(until, |f| {
                netpeer::parse_arp_reply(f).filter(|a| a.sender_ip == IP0 && a.target_ip == PEER_IP)
            })
            .map_err(|e| format!("recv: {e}"))?;
        if let Some(a) = got {
            break a;
        }
    };
    println!(
        "demo: ARP reply: {} is at {}",
        ip(arp.sender_ip),
        netpeer::mac_string(arp.sender_mac)
    );

    println!("PING {} ({}) {} data bytes", ip(IP0), ip(IP0), PAYLOAD);
    for seq in 1..=count {
        if stop.load(Ordering::Relaxed) {
            return Err("the run ended during the pings".into());
        }
        let req = Echo {
            eth_dst: arp.sender_mac,
            eth_src: PEER_MAC,
            src_ip: PEER_IP,
            dst_ip: IP0,
            ttl: 64,
            id: 0x4e43,
            seq,
            payload: (0..PAYLOAD)
                .map(|i| (i as u8).wrapping_add(seq as u8))
                .collect(),
        };
        let sent_at = Instant::now();
        peer.send(&netpeer::icmp_echo_request(&req))
            .map_err(|e| format!("send: {e}"))?;
        r.sent += 1;
        let reply = peer
            .recv_match(sent_at + REPLY_WAIT, |f| {
                netpeer::parse_icmp_echo_reply(f).filter(|e| {
                    e.id == req.id && e.seq == seq && e.src_ip == IP0 && e.payload == req.payload
                })
            })
            .map_err(|e| format!("recv: {e}"))?;
        match reply {
            Some(e) => {
                let rtt = sent_at.elapsed();
                r.rtts.push(rtt);
                println!(
                    "{} bytes from {}: icmp_seq={} ttl={} time={:.3} ms",
                    8 + e.payload.len(),
                    ip(e.src_ip),
                    seq,
                    e.ttl,
                    ms(rtt)
                );
            }
            None => println!("no reply for icmp_seq={seq}"),
        }
        std::thread::sleep(INTERVAL.saturating_sub(sent_at.elapsed()));
    }
    println!("\n{}\n", summary(r));

    println!(
        "demo: {PROBES} test frames to the second MAC {}, which has a VMDq pool of its own",
        netpeer::mac_string(MAC1)
    );
    for seq in 1..=PROBES {
        let probe = netpeer::test_frame(MAC1, PEER_MAC, netpeer::TEST_PROBE, 1, seq);
        let sent_at = Instant::now();
        peer.send(&probe).map_err(|e| format!("send: {e}"))?;
        let ack = peer
            .recv_match(sent_at + REPLY_WAIT, |f| {
                netpeer::parse_test_frame(f)
                    .filter(|t| t.op == netpeer::TEST_ACK && t.seq == seq && t.eth_dst == PEER_MAC)
            })
            .map_err(|e| format!("recv: {e}"))?;
        match ack {
            Some(t) if t.pool == 1 && t.eth_src == MAC1 => {
                r.probes_acked += 1;
                println!(
                    "demo: probe {seq} to {} acknowledged by pool {} in {:.3} ms",
                    netpeer::mac_string(MAC1),
                    t.pool,
                    ms(sent_at.elapsed())
                );
            }
            Some(t) => println!(
                "demo: probe {seq} answered by the wrong pool {} from {}",
                t.pool,
                netpeer::mac_string(t.eth_src)
            ),
            None => println!("demo: probe {seq} unanswered"),
        }
    }
    Ok(())
}

fn parse_count() -> Result<u16, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(5),
        [flag, n] if flag == "--count" => n
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("--count {n}: not a number from 1 to 65535")),
        _ => Err("usage: demo [--count N]".into()),
    }
}

fn main() -> ExitCode {
    let count = match parse_count() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("demo: building nc2dd (image/system.toml)");
    let a = qemu::artefacts();
    let peer = match NetPeer::bind() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo: cannot bind the peer's socket on 127.0.0.1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let netdev = match peer.netdev("n0") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    let args = [
        format!("mac0={}", netpeer::mac_string(MAC0)),
        format!("ip0={}", ip(IP0)),
        format!("mac1={}", netpeer::mac_string(MAC1)),
    ];
    cfg.cmdline = format!(
        "console=com1 nc2dd.shutdown=allow {}",
        args.map(|kv| format!("nc2dd.nic-ixgbe.{kv}")).join(" ")
    );
    cfg.extra = vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!("igb,netdev=n0,mac={}", netpeer::mac_string(NIC_MAC)),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut r = Report::default();
            let result = converse(&peer, count, &stop, &mut r);
            // Always end the run, whatever happened above.
            let done = netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_DONE, 0, 0);
            println!("demo: sending \"done\": nc2dd's server finishes and the system shuts down");
            for _ in 0..3 {
                let _ = peer.send(&done);
                std::thread::sleep(Duration::from_millis(100));
            }
            (result, r)
        })
    };
    let run = qemu::run("demo", &cfg, RUN_DEADLINE, &Expect::pass());
    stop.store(true, Ordering::Relaxed);
    let (talked, r) = talker
        .join()
        .unwrap_or_else(|_| (Err("the peer thread panicked".into()), Report::default()));

    let mut ok = true;
    match &run {
        Ok(out) => println!(
            "demo: nc2dd shut down cleanly (QEMU status {}) after {:.1} s under {}; serial log {}",
            out.status.unwrap_or_default(),
            out.elapsed.as_secs_f64(),
            out.accel,
            out.log_path.display()
        ),
        Err(e) => {
            println!("demo: the run did not end cleanly: {e}");
            ok = false;
        }
    }
    if let Err(e) = &talked {
        println!("demo: peer: {e}");
        ok = false;
    }
    if r.sent != u32::from(count) || r.rtts.len() != usize::from(count) {
        println!("demo: {} of {} pings answered", r.rtts.len(), count);
        ok = false;
    }
    if r.probes_acked != PROBES {
        println!(
            "demo: {} of {PROBES} probes answered by the second pool",
            r.probes_acked
        );
        ok = false;
    }
    if ok {
        println!("demo: passed: every ping answered, both pools served, clean shutdown");
        ExitCode::SUCCESS
    } else {
        println!("demo: FAILED");
        ExitCode::FAILURE
    }
}
