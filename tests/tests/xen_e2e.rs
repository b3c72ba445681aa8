//! Guests reach the wire: stock Debian Linux PV guests, whose vifs name nc2dd as backend, talk
//! to a peer beyond the NIC that nc2dd owns as an HVM driver domain in the nested Xen bed.
//!
//! The path: guest netfront -> netback (switch, the guest's own NIC pool over queue pair
//! `qp0`) -> nic-ixgbe -> the outer igb, passed through to nc2dd -> QEMU's user-mode network,
//! and back. The peer is that user-mode network (`restrict=on`, so nothing leaves the VM but
//! what the test forwards): it answers pings to its gateway 10.0.2.2 itself, and a TCP
//! connection to 10.0.2.100:80 runs `cat` of a file this test wrote (an HTTP response with a
//! random body) on this machine (`guestfwd=...-cmd:`), so all traffic stays here. The command
//! then reads the request until the guest closes: slirp talks to it over a loopback TCP pair,
//! and a command that exits with the request unread resets that pair, which can cut the
//! response short ("connection closed prematurely" in the guest).
//!
//! One bed run, timed per stage: xl create of nc2dd to its NIC pool ready, guest A Connected,
//! A's pings (0% loss, RTT) and download (SHA-256 checked, time and throughput); then guest B
//! next to A: B gets its own pool (netback's log), B reaches the peer, and A keeps reaching it.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nc2dd_tests::guests::{self, fail, guest_log, guest_verdict, report, start_guest, sums_after};
use nc2dd_tests::xenbed::{self, Netdev, XenBed};

const TEST: &str = "xen_e2e_guests_reach_the_wire";

/// QEMU's user-mode network: its gateway, and the address forwarded to the file.
const GATEWAY: &str = "10.0.2.2";
const SERVER: &str = "10.0.2.100";
const FILE_LEN: usize = 384 * 1024;

struct Guest {
    name: &'static str,
    mac: &'static str,
    ip: &'static str,
}

const A: Guest = Guest {
    name: "wire-a",
    mac: "00:16:3e:00:00:0a",
    ip: "10.0.2.15",
};
const B: Guest = Guest {
    name: "wire-b",
    mac: "00:16:3e:00:00:0b",
    ip: "10.0.2.16",
};

const FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    "Triple fault",
    "xen gateway: bring-up failed",
    "disconnecting it",
    "NIC port dropped",
    "queue pair unusable",
];

/// A random body (xorshift seeded by the clock: new content every run).
fn random_body(len: usize) -> Vec<u8> {
    let mut x = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of `path` by the host's `sha256sum`.
fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running sha256sum: {e}"));
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Writes the body and the HTTP response the forwarded connection returns; gives the
/// response's path and the body's SHA-256.
fn write_file(dir: &Path) -> (std::path::PathBuf, String) {
    let body = random_body(FILE_LEN);
    let body_path = dir.join("xen_e2e_file.bin");
    fs::write(&body_path, &body).expect("writing the body");
    let mut resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(&body);
    let resp_path = dir.join("xen_e2e_file.http");
    fs::write(&resp_path, &resp).expect("writing the response");
    (resp_path, sha256_of(&body_path))
}

/// The average round-trip time from busybox ping's summary on the guest's console.
fn ping_summary(bed: &mut XenBed, name: &str) -> String {
    let out = bed
        .run(
            &format!("grep -E 'packet loss|round-trip' {}", guest_log(name)),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| fail(TEST, e));
    let loss = out
        .lines()
        .rfind(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        loss.contains("5 packets received, 0% packet loss"),
        "{name}: no 0% loss line on its console:\n{out}"
    );
    let rtt = out
        .lines()
        .rfind(|l| l.contains("round-trip"))
        .unwrap_or("")
        .trim()
        .to_string();
    format!("{loss}; {rtt}")
}

/// Waits for `name`'s ping and first download, checks the checksum; returns the verdict words.
fn ping_and_fetch(bed: &mut XenBed, name: &str, sha: &str) -> String {
    let t = Instant::now();
    let out = guest_verdict(
        bed,
        TEST,
        name,
        "NC2DD_GUEST_FETCH_OK",
        &[
            "NC2DD_GUEST_PING_LOST",
            "NC2DD_GUEST_FETCH_FAILED",
            "NC2DD_GUEST_INSMOD_FAILED",
        ],
    );
    assert!(out.contains("NC2DD_GUEST_PING_OK"), "{name}: {out}");
    report(
        TEST,
        &format!(
            "{name}: pings and download done {:.1} s after Connected",
            t.elapsed().as_secs_f64()
        ),
    );
    report(TEST, &format!("{name}: {}", ping_summary(bed, name)));
    let got = sums_after(&out, "NC2DD_GUEST_GOT ");
    assert_eq!(
        got.first().map(String::as_str),
        Some(sha),
        "{name}: the file changed on its way from the wire: {out}"
    );
    let ms: u64 = out
        .split("NC2DD_GUEST_FETCH_MS ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no download time in {out:?}"));
    report(
        TEST,
        &format!(
            "{name}: {FILE_LEN} bytes downloaded in {ms} ms ({:.1} KiB/s), SHA-256 {sha} matches",
            FILE_LEN as f64 / 1024.0 / (ms.max(1) as f64 / 1000.0)
        ),
    );
    out
}

/// Counts `name`'s repeated downloads with the right checksum so far.
fn agains(bed: &mut XenBed, name: &str, sha: &str) -> usize {
    let out = bed
        .run(
            &format!(
                "grep -o 'NC2DD_GUEST_AGAIN [0-9a-f]*' {} | tr '\\n' ' '; echo",
                guest_log(name)
            ),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| fail(TEST, e));
    let sums = sums_after(&out, "NC2DD_GUEST_AGAIN ");
    assert!(
        sums.iter().all(|s| s == sha),
        "{name}: a repeated download changed: {out}"
    );
    sums.len()
}

#[test]
fn linux_guests_reach_a_peer_beyond_the_passed_through_nic() {
    xenbed::retry_on_bed_fault(
        "linux_guests_reach_a_peer_beyond_the_passed_through_nic",
        || {
            xenbed::check_qemu().unwrap_or_else(|e| panic!("{e}"));
            let logs = xenbed::log_dir();
            let _ = fs::create_dir_all(&logs);
            let (resp, sha) = write_file(&logs);
            let resp = resp.to_string_lossy().into_owned();
            assert!(
                !resp.contains(',') && !resp.contains(' '),
                "the response path {resp:?} cannot go into a -netdev argument"
            );
            let mut files = Vec::new();
            for g in [&A, &B] {
                let args = format!("nc2dd.role=wire nc2dd.peer={GATEWAY} nc2dd.server={SERVER}");
                files.push((
                    format!("{}.cfg", g.name),
                    guests::guest_cfg(g.name, g.mac, g.ip, &args).into_bytes(),
                ));
            }
            // nc2dd up: netback serving, nic-ixgbe driving the igb, netback's first pool allocated.
            let (mut bed, dd) = guests::start_hvm_nc2dd(
                TEST,
                Netdev::Spec(format!(
                    "user,id=n0,restrict=on,guestfwd=tcp:{SERVER}:80-cmd:sh -c \"cat {resp}; exec cat >/dev/null\""
                )),
                files,
                FAIL_MARKERS,
                &[
                    "netback: serving vifs of domain",
                    "nic-ixgbe: link up",
                    "netback: NIC port up",
                    "netback: NIC pool",
                ],
            );

            // Guest A alone: pings the peer, downloads the file.
            let before_a = bed.cursor();
            let (_, backend_a, _) = start_guest(&mut bed, TEST, dd.domid, A.name);
            ping_and_fetch(&mut bed, A.name, &sha);
            let pool_a =
                guests::nic_pool_of(&mut bed, TEST, before_a, A.mac, Duration::from_secs(60));

            // Guest B next to A: its own pool, and both reach the peer.
            let before_b = bed.cursor();
            let (_, backend_b, _) = start_guest(&mut bed, TEST, dd.domid, B.name);
            ping_and_fetch(&mut bed, B.name, &sha);
            let pool_b =
                guests::nic_pool_of(&mut bed, TEST, before_b, B.mac, Duration::from_secs(60));
            assert_ne!(pool_a, pool_b, "the two guests share a NIC pool");
            report(
                TEST,
                &format!(
                    "NIC pools: {} -> pool {pool_a}, {} -> pool {pool_b}",
                    A.mac, B.mac
                ),
            );
            let a_before = agains(&mut bed, A.name, &sha);
            let b_before = agains(&mut bed, B.name, &sha);
            let t = Instant::now();
            loop {
                let (a, b) = (
                    agains(&mut bed, A.name, &sha),
                    agains(&mut bed, B.name, &sha),
                );
                if a > a_before && b > b_before {
                    report(
                        TEST,
                        &format!(
                            "both guests downloaded again with B up ({a} and {b} repeats so far), \
                         {:.1} s",
                            t.elapsed().as_secs_f64()
                        ),
                    );
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(180),
                    "no repeated download by both guests in 180 s (A {a_before} -> {a}, B {b_before} -> {b})"
                );
                std::thread::sleep(Duration::from_secs(5));
            }
            // nic-ixgbe's own counters (logged every 5 s while they change, and the guests keep
            // downloading) show both pools carrying frames; netback's port line says what it saw.
            let now = bed.cursor();
            for (needle, end) in [
                (format!("nic-ixgbe: qp0: pool {pool_a}: "), " sent"),
                (format!("nic-ixgbe: qp0: pool {pool_b}: "), " sent"),
                ("netback: NIC port: ".to_string(), " timers"),
            ] {
                bed.rewind(now);
                bed.wait_for(&needle, Duration::from_secs(90))
                    .unwrap_or_else(|e| fail(TEST, e));
                // The rest of the same line, so the report holds all of it.
                let m = bed
                    .wait_for(end, Duration::from_secs(30))
                    .unwrap_or_else(|e| fail(TEST, e));
                report(TEST, m.line.trim());
            }
            guests::report_vif_stats_without_errors(&mut bed, TEST, &[&backend_a, &backend_b]);
            report(
                TEST,
                &format!("whole bed run {:.1} s", bed.elapsed().as_secs_f64()),
            );
        },
    );
}
