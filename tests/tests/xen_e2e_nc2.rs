//! A netchannel2 guest on the passed-through NIC: the NIC writes the frames it receives for the
//! guest straight into the guest's own pages, through the guest's own VMDq pool, with no copy in
//! nc2dd; a stock Linux guest next to it keeps its own pool.
//!
//! nc2dd runs as the HVM driver domain owning the outer igb (as in `xen_e2e.rs`). The peer
//! beyond the NIC is QEMU's user-mode network (`restrict=on`): its gateway 10.0.2.2 answers
//! pings, 10.0.2.100:80 serves a random file to the Linux guest and 10.0.2.101:5000 takes the
//! file the nc2-guest sends, hashing it on this machine (`guestfwd=...-cmd:`), so all traffic
//! stays here. The nc2-guest (nc2dd's own kernel, `guests/nc2-guest`) connects over
//! netchannel2, pings the gateway and sends a 256 KiB file over TCP; its SHA-256 must match what
//! arrived, and netback's counters for its vif must show the frames from the wire delivered
//! zero-copy (none copied). The Linux guest pings and downloads meanwhile.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nc2dd_tests::guests::{
    self, guest_verdict, nc2_guest_cfg, nc2_guest_image, report, start_guest, sums_after, wait_line,
};
use nc2dd_tests::xenbed::{self, Netdev};

const TEST: &str = "xen_e2e_nc2_zero_copy";

const GATEWAY: &str = "10.0.2.2";
const HTTP: &str = "10.0.2.100";
const SINK: &str = "10.0.2.101";
const NC2_NAME: &str = "nc2-wire";
const NC2_MAC: &str = "00:16:3e:00:00:2c";
const LINUX_NAME: &str = "linux-wire";
const LINUX_MAC: &str = "00:16:3e:00:00:2a";
const SEND_LEN: u32 = 256 * 1024;

const FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    "Triple fault",
    "xen gateway: bring-up failed",
    "disconnecting it",
    "queue pair unusable",
    "NC2_GUEST_FAILED",
    "NC2_GUEST_SEND_FAILED",
    "NC2_GUEST_PING_LOST",
];

/// (copied, zero-copy) from netback's statistics line (`... rx 3 copied 12 zero-copy, ...`).
fn rx_copies(stats: &str) -> (u64, u64) {
    let w: Vec<&str> = stats.split_whitespace().collect();
    w.windows(5)
        .find(|x| x[0] == "rx" && x[2] == "copied" && x[4].trim_end_matches(',') == "zero-copy")
        .and_then(|x| Some((x[1].parse().ok()?, x[3].parse().ok()?)))
        .unwrap_or_else(|| panic!("no receive copy counts in {stats:?}"))
}

#[test]
fn a_netchannel2_guest_receives_from_the_passed_through_nic_with_no_copy() {
    xenbed::retry_on_bed_fault(
        "a_netchannel2_guest_receives_from_the_passed_through_nic_with_no_copy",
        || {
            xenbed::check_qemu().unwrap_or_else(|e| panic!("{e}"));
            let logs = xenbed::log_dir();
            let _ = fs::create_dir_all(&logs);
            // The file the Linux guest downloads, as an HTTP response, and where the sink's hash goes.
            let body: Vec<u8> = (0..128 * 1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let body_path = logs.join("xen_e2e_nc2_file.bin");
            fs::write(&body_path, &body).expect("writing the body");
            let mut resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            resp.extend_from_slice(&body);
            let resp_path = logs.join("xen_e2e_nc2_file.http");
            fs::write(&resp_path, &resp).expect("writing the response");
            let sunk = logs.join("xen_e2e_nc2_sink.sha");
            let _ = fs::remove_file(&sunk);
            let body_sha = {
                let out = std::process::Command::new("sha256sum")
                    .arg(&body_path)
                    .output()
                    .expect("sha256sum");
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            for p in [&resp_path, &sunk] {
                let s = p.to_string_lossy();
                assert!(
                    !s.contains(',') && !s.contains(' '),
                    "{s:?} cannot go into a -netdev argument"
                );
            }

            let g = nc2_guest_image();
            let read =
                |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            let nc2_args = format!(
                "ip=10.0.2.17 ping={GATEWAY} send={SINK}:5000 file-size={SEND_LEN} seed=23"
            );
            let linux_args = format!("nc2dd.role=wire nc2dd.peer={GATEWAY} nc2dd.server={HTTP}");
            let files = vec![
                ("nc2-guest.elf".to_string(), read(&g.kernel)),
                ("nc2-guest-modules.bin".to_string(), read(&g.module)),
                (
                    format!("{NC2_NAME}.cfg"),
                    nc2_guest_cfg(NC2_NAME, NC2_MAC, &nc2_args).into_bytes(),
                ),
                (
                    format!("{LINUX_NAME}.cfg"),
                    guests::guest_cfg(LINUX_NAME, LINUX_MAC, "10.0.2.15", &linux_args).into_bytes(),
                ),
            ];
            let (mut bed, dd) = guests::start_hvm_nc2dd(
                TEST,
                Netdev::Spec(format!(
                    "user,id=n0,restrict=on,\
             guestfwd=tcp:{HTTP}:80-cmd:sh -c \"cat {}; exec cat >/dev/null\",\
             guestfwd=tcp:{SINK}:5000-cmd:sh -c \"sha256sum >{}\"",
                    resp_path.display(),
                    sunk.display()
                )),
                files,
                FAIL_MARKERS,
                &["netback: serving vifs of domain", "netback: NIC port up"],
            );

            // The nc2-guest: netchannel2, ping beyond the NIC, a file out over TCP.
            let before = bed.cursor();
            let (_, nc2_backend, _) = start_guest(&mut bed, TEST, dd.domid, NC2_NAME);
            bed.rewind(before);
            let connected = wait_line(
                &mut bed,
                TEST,
                "NC2_GUEST_CONNECTED",
                Duration::from_secs(180),
            );
            assert!(
                connected.line.contains("over nc2"),
                "the nc2-guest did not connect over netchannel2: {}",
                connected.line
            );
            let t = Instant::now();
            let ping = wait_line(
                &mut bed,
                TEST,
                "NC2_GUEST_PING_OK 5/5",
                Duration::from_secs(180),
            );
            report(TEST, &format!("{NC2_NAME}: {}", ping.line.trim()));
            let sha = wait_line(&mut bed, TEST, "NC2_GUEST_SHA ", Duration::from_secs(120));
            let sent_sha = sums_after(&sha.line, "NC2_GUEST_SHA ")
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no checksum in {:?}", sha.line));
            let sent = wait_line(&mut bed, TEST, "NC2_GUEST_SENT", Duration::from_secs(300));
            report(
                TEST,
                &format!(
                    "{NC2_NAME}: ping and {SEND_LEN}-byte send done in {:.1} s: {}",
                    t.elapsed().as_secs_f64(),
                    sent.line.trim()
                ),
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            let got = loop {
                let s = fs::read_to_string(&sunk).unwrap_or_default();
                if let Some(sum) = s.split_whitespace().next().filter(|w| w.len() == 64) {
                    break sum.to_string();
                }
                assert!(
                    Instant::now() < deadline,
                    "the sink on this machine never finished hashing what the nc2-guest sent"
                );
                std::thread::sleep(Duration::from_millis(500));
            };
            assert_eq!(
                got, sent_sha,
                "the file changed on its way from the nc2-guest to the wire"
            );
            report(
                TEST,
                &format!("{NC2_NAME}: SHA-256 {got} arrived intact beyond the NIC"),
            );

            // The Linux guest next to it: its own pool, ping and download.
            let before_linux = bed.cursor();
            start_guest(&mut bed, TEST, dd.domid, LINUX_NAME);
            let out = guest_verdict(
                &mut bed,
                TEST,
                LINUX_NAME,
                "NC2DD_GUEST_FETCH_OK",
                // xen_e2e holds Linux guests to 0% loss; here the guest is the neighbour whose
                // download must arrive intact through its own pool.
                &["NC2DD_GUEST_FETCH_FAILED", "NC2DD_GUEST_INSMOD_FAILED"],
            );
            assert_eq!(
                sums_after(&out, "NC2DD_GUEST_GOT ").first(),
                Some(&body_sha),
                "{LINUX_NAME}'s download changed on the way: {out}"
            );
            let pool_nc2 =
                guests::nic_pool_of(&mut bed, TEST, before, NC2_MAC, Duration::from_secs(120));
            let pool_linux = guests::nic_pool_of(
                &mut bed,
                TEST,
                before_linux,
                LINUX_MAC,
                Duration::from_secs(120),
            );
            assert_ne!(pool_nc2, pool_linux, "the two guests share a NIC pool");
            report(
                TEST,
                &format!(
                    "NIC pools: {NC2_NAME} {NC2_MAC} -> pool {pool_nc2}, {LINUX_NAME} {LINUX_MAC} -> pool {pool_linux}"
                ),
            );

            // netback's counters: frames from the wire reached the nc2-guest with no copy.
            let stats = guests::vif_stats_when(&mut bed, TEST, &nc2_backend, |s| {
                s.contains(" zero-copy") && rx_copies(s).1 >= 5
            });
            report(TEST, &format!("{NC2_NAME} vif statistics: {stats}"));
            let (copied, zero) = rx_copies(&stats);
            assert!(
                zero >= 5,
                "fewer than the five ping replies arrived zero-copy: {stats}"
            );
            assert!(
                zero > copied,
                "most frames for the nc2-guest were copied, not written by the NIC into its pages: {stats}"
            );
            report(
                TEST,
                &format!(
                    "{NC2_NAME}: {zero} frames received zero-copy through pool {pool_nc2}, {copied} copied \
                 (broadcasts flooded from other ports); whole bed run {:.1} s",
                    bed.elapsed().as_secs_f64()
                ),
            );
        },
    );
}
