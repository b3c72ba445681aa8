//! nc2dd's own kernel as a guest (guests/nc2-guest) next to stock Linux guests, all served by
//! nc2dd's netback in the nested Xen bed.
//!
//! - `hostile_frontends_are_disconnected_while_linux_guests_transfer`: two stock Linux PV
//!   guests move a 2 MiB file over TCP through netback (HTTP, as in `xen_guest.rs`) while an
//!   nc2-guest connects as a netif frontend, sends good frames and then jumps its tx ring's
//!   `req_prod` far beyond the ring: netback must log why it disconnects that vif and move it to
//!   Closing/Closed, and the Linux transfer must still complete with matching SHA-256. A second
//!   nc2-guest writes garbage into its xenstore ring keys (refused at once with an `error` key),
//!   then garbage into its `state` key (the backend goes Closed). A third, a netchannel2
//!   frontend, publishes a message of size 12 (sizes are multiples of 8) and must be refused too,
//!   as must a fourth whose producer index jumps two ring sizes ahead;
//!   a fifth (netif) posts a receive buffer with a grant reference that names nothing and keeps
//!   replies coming until netback reaches it.
//! - `nc2_guest_pings_and_sends_a_file_to_linux`: an nc2-guest in application mode connects
//!   (netchannel2 when netback offers `feature-nc2`, netif otherwise; the test logs which),
//!   pings netback's responder, runs its packet generator (500 UDP datagrams to the Linux guest)
//!   and sends a 1 MiB file over TCP to a stock Linux guest listening with `nc -l`; the SHA-256
//!   the nc2-guest printed must match what Linux received; Linux then pings the nc2-guest, and
//!   netback's per-vif counters must show the traffic. A second nc2-guest does the same at the
//!   same time over the netif transport (ping, then a 512 KiB file to port 5001, which Linux
//!   listens on after the first file: the guest retries its refused connection meanwhile).
//!
//! The nc2-guest image is built from `guests/nc2-guest/system.toml` into `target/nc2-guest/`
//! (`nc2dd_tests::guests`, which also holds the Linux guests' init and configs). Stage wall
//! times go to `target/xenbed-logs/<test>.times`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nc2dd_tests::guests::{self, fail, nc2_guest_cfg, report, wait_line};
use nc2dd_tests::xenbed::{self, BedError, XenBed};

const NC2DD_IP: &str = guests::PVH_NC2DD_IP;

const FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    "Triple fault",
    "xen gateway: bring-up failed",
    "NC2_GUEST_FAILED",
    "NC2_GUEST_SEND_FAILED",
    "NC2_GUEST_PING_LOST",
];

/// nc2dd as the PVH driver domain, with the nc2-guest image and `cfgs` under /nc2dd, netback
/// serving.
fn start_nc2dd(test: &str, cfgs: &[(&str, String)]) -> (XenBed, u32) {
    let guest = guests::nc2_guest_image();
    let read = |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let extra = vec![
        ("nc2-guest.elf".to_string(), read(&guest.kernel)),
        ("nc2-guest-modules.bin".to_string(), read(&guest.module)),
    ];
    guests::start_pvh_nc2dd(test, extra, cfgs, FAIL_MARKERS, Duration::from_secs(900))
}

/// How long one dom0 command may take: dom0 shares two emulated CPUs with the guests booting
/// beside it, and on a loaded host its shell has stalled for over a minute.
const DOM0_CMD: Duration = Duration::from_secs(240);

/// `xl create`s `/nc2dd/<name>.cfg`. libxl gives a driver domain 10 s to show the new vif's
/// backend in InitWait; on a loaded machine the nested bed can miss that, so one failed create
/// is retried (and said so in the times file).
fn create(bed: &mut XenBed, test: &str, name: &str) -> xenbed::Domain {
    let cfg = format!("/nc2dd/{name}.cfg");
    match bed.xl_create(&cfg, name, Duration::from_secs(180)) {
        Ok(d) => d,
        Err(BedError::CommandFailed { cmd, status, .. }) if cmd.starts_with("xl create") => {
            report(test, &format!("{cmd} exited {status}; retrying once"));
            let _ = bed.run_status(&format!("xl destroy {name}"), DOM0_CMD);
            bed.xl_create(&cfg, name, Duration::from_secs(180))
                .unwrap_or_else(|e| fail(test, e))
        }
        Err(e) => fail(test, e),
    }
}

/// `xl destroy`s `name`, which must succeed.
fn destroy(bed: &mut XenBed, test: &str, name: &str) {
    let (status, out) = bed
        .run_status(&format!("xl destroy {name}"), DOM0_CMD)
        .unwrap_or_else(|e| fail(test, e));
    assert_eq!(status, 0, "xl destroy {name}: {out}");
}

/// `xl create`s `name` and waits for its vif's backend state Connected.
fn start_guest(bed: &mut XenBed, test: &str, dd: u32, name: &str) -> (u32, String) {
    let guest = create(bed, test, name);
    let backend = format!("/local/domain/{dd}/backend/vif/{}/0", guest.domid);
    let connected = bed
        .wait_for(&format!("{backend}/state = 4"), Duration::from_secs(180))
        .unwrap_or_else(|e| fail(test, e));
    report(
        test,
        &format!(
            "xl create {name} to vif Connected: {:.1} s",
            connected
                .arrived
                .saturating_duration_since(guest.started)
                .as_secs_f64()
        ),
    );
    (guest.domid, backend)
}

/// Polls a Linux guest's console log until `ok` appears (returns the markers) or one of `bad`.
fn linux_verdict(bed: &mut XenBed, test: &str, name: &str, ok: &str, bad: &[&str]) -> String {
    guests::guest_verdict_within(
        bed,
        test,
        name,
        (ok, bad),
        DOM0_CMD,
        Duration::from_secs(300),
    )
}

fn read_key(bed: &mut XenBed, test: &str, key: &str) -> String {
    guests::read_key_within(bed, test, key, DOM0_CMD)
}

fn sum_after(out: &str, marker: &str) -> String {
    out.split(marker)
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no SHA-256 after {marker} in {out:?}"))
        .to_string()
}

/// The number after `word ` in netback's statistics line (`tx 12 pkts ...`).
fn stat(stats: &str, word: &str) -> u64 {
    guests::vif_counter(stats, word).unwrap_or_else(|| panic!("no {word} count in {stats:?}"))
}

fn hostile_ring_guest(bed: &mut XenBed, test: &str, dd: u32, g: &xenbed::Domain, transport: &str) {
    let backend = format!("/local/domain/{dd}/backend/vif/{}/0", g.domid);
    let mark = |m: &str| format!("{}[INFO ] nc2-guest: {m}", g.console_prefix);
    let connected = wait_line(
        bed,
        test,
        &format!("{}[INFO ] nc2-guest: NC2_GUEST_CONNECTED", g.console_prefix),
        Duration::from_secs(180),
    );
    assert!(
        connected.line.contains(&format!("over {transport}")),
        "the hostile guest did not connect over {transport}: {}",
        connected.line
    );
    report(
        test,
        &format!(
            "hostile guest d{}: xl create to {transport} Connected: {:.1} s",
            g.domid,
            connected
                .arrived
                .saturating_duration_since(g.started)
                .as_secs_f64()
        ),
    );
    let good = wait_line(
        bed,
        test,
        &mark("NC2_GUEST_GOOD_FRAMES 5 echo replies"),
        Duration::from_secs(120),
    );
    assert!(
        good.line.contains("NC2_GUEST_GOOD_FRAMES 5 echo replies"),
        "the hostile guest's good frames were not all answered: {}",
        good.line
    );
    let corrupted = wait_line(
        bed,
        test,
        &mark("NC2_GUEST_CORRUPTED"),
        Duration::from_secs(60),
    );
    report(test, &format!("hostile guest: {}", corrupted.line.trim()));
    let why = wait_line(
        bed,
        test,
        &format!("vif {}/0: ", g.domid),
        Duration::from_secs(60),
    );
    report(test, &format!("netback: {}", why.line.trim()));
    assert!(
        why.line.contains("disconnecting it"),
        "netback's line about the hostile vif does not say it disconnects it: {}",
        why.line
    );
    report(
        test,
        &format!(
            "ring corrupted to netback's verdict: {:.2} s",
            why.arrived
                .saturating_duration_since(corrupted.arrived)
                .as_secs_f64()
        ),
    );
    let refused = wait_line(
        bed,
        test,
        &mark("NC2_GUEST_HOSTILE_REFUSED"),
        Duration::from_secs(60),
    );
    report(test, &format!("hostile guest: {}", refused.line.trim()));
    let state = read_key(bed, test, &format!("{backend}/state"));
    assert!(
        state == "5" || state == "6",
        "hostile vif's backend state is {state:?}, not Closing/Closed"
    );
    let error = read_key(bed, test, &format!("{backend}/error"));
    report(
        test,
        &format!("hostile vif: state {state}, error key {error:?}"),
    );
}

#[test]
fn hostile_frontends_are_disconnected_while_linux_guests_transfer() {
    xenbed::retry_on_bed_fault(
        "hostile_frontends_are_disconnected_while_linux_guests_transfer",
        || {
            const TEST: &str = "xen_nc2_hostile";
            const SERVER: &str = "netfront-server";
            const CLIENT: &str = "netfront-client";
            const HOSTILE: &str = "nc2-hostile-ring";
            const GARBAGE: &str = "nc2-hostile-xs";
            const HOSTILE_NC2: &str = "nc2-hostile-nc2";
            const HOSTILE_GREF: &str = "nc2-hostile-gref";
            const HOSTILE_JUMP: &str = "nc2-hostile-jump";
            const SERVER_IP: &str = "192.0.2.3";
            const CLIENT_IP: &str = "192.0.2.4";
            let (mut bed, dd) = start_nc2dd(
                TEST,
                &[
                    (
                        SERVER,
                        guests::guest_cfg(
                            SERVER,
                            "00:16:3e:00:00:03",
                            SERVER_IP,
                            "nc2dd.role=server",
                        ),
                    ),
                    (
                        CLIENT,
                        guests::guest_cfg(
                            CLIENT,
                            "00:16:3e:00:00:04",
                            CLIENT_IP,
                            &format!("nc2dd.role=client nc2dd.peer={SERVER_IP}"),
                        ),
                    ),
                    (
                        HOSTILE,
                        nc2_guest_cfg(
                            HOSTILE,
                            "00:16:3e:00:00:05",
                            &format!("mode=netif-prod-jump ip=192.0.2.5 ping={NC2DD_IP}"),
                        ),
                    ),
                    (
                        GARBAGE,
                        nc2_guest_cfg(GARBAGE, "00:16:3e:00:00:06", "mode=xs-garbage ip=192.0.2.6"),
                    ),
                    (
                        HOSTILE_NC2,
                        nc2_guest_cfg(
                            HOSTILE_NC2,
                            "00:16:3e:00:00:08",
                            &format!(
                                "mode=nc2-bad-size transport=nc2 ip=192.0.2.8 ping={NC2DD_IP}"
                            ),
                        ),
                    ),
                    (
                        HOSTILE_JUMP,
                        nc2_guest_cfg(
                            HOSTILE_JUMP,
                            "00:16:3e:00:00:0a",
                            &format!(
                                "mode=nc2-index-jump transport=nc2 ip=192.0.2.10 ping={NC2DD_IP}"
                            ),
                        ),
                    ),
                    (
                        HOSTILE_GREF,
                        nc2_guest_cfg(
                            HOSTILE_GREF,
                            "00:16:3e:00:00:09",
                            &format!("mode=netif-bad-gref ip=192.0.2.9 ping={NC2DD_IP}"),
                        ),
                    ),
                ],
            );
            let (_, server_backend) = start_guest(&mut bed, TEST, dd, SERVER);
            let served = linux_verdict(
                &mut bed,
                TEST,
                SERVER,
                "NC2DD_GUEST_SERVING",
                &["NC2DD_GUEST_INSMOD_FAILED"],
            );
            // The client starts fetching while the hostile guest connects and corrupts its ring.
            let t_client = Instant::now();
            let client = create(&mut bed, TEST, CLIENT);
            let client_backend = format!("/local/domain/{dd}/backend/vif/{}/0", client.domid);
            let hostile = create(&mut bed, TEST, HOSTILE);
            let at = bed.cursor();
            hostile_ring_guest(&mut bed, TEST, dd, &hostile, "netif");
            bed.rewind(at);

            // The Linux transfer completes regardless.
            let got = linux_verdict(
                &mut bed,
                TEST,
                CLIENT,
                "NC2DD_GUEST_FETCH_OK",
                &["NC2DD_GUEST_FETCH_FAILED", "NC2DD_GUEST_INSMOD_FAILED"],
            );
            report(
                TEST,
                &format!(
                    "client xl create to file fetched (hostile guest meanwhile): {:.1} s",
                    t_client.elapsed().as_secs_f64()
                ),
            );
            let sent = sum_after(&served, "NC2DD_GUEST_SHA ");
            let received = sum_after(&got, "NC2DD_GUEST_GOT ");
            report(TEST, &format!("SHA-256 served {sent}, fetched {received}"));
            assert_eq!(
                sent, received,
                "the file changed on its way through netback"
            );
            guests::report_vif_stats_without_errors(
                &mut bed,
                TEST,
                &[&server_backend, &client_backend],
            );

            // Garbage keys: refused before anything is mapped, then the state key itself.
            let garbage = create(&mut bed, TEST, GARBAGE);
            let garbage_backend = format!("/local/domain/{dd}/backend/vif/{}/0", garbage.domid);
            let why = wait_line(
                &mut bed,
                TEST,
                &format!("vif {}/0: ", garbage.domid),
                Duration::from_secs(120),
            );
            report(TEST, &format!("netback: {}", why.line.trim()));
            assert!(
                why.line.contains("disconnecting it"),
                "netback's line about the garbage vif: {}",
                why.line
            );
            let closed = wait_line(
                &mut bed,
                TEST,
                "NC2_GUEST_HOSTILE_STATE_GARBAGE",
                Duration::from_secs(120),
            );
            report(TEST, &format!("garbage guest: {}", closed.line.trim()));
            report(
                TEST,
                &format!(
                    "garbage guest: xl create to backend Closed: {:.1} s",
                    closed
                        .arrived
                        .saturating_duration_since(garbage.started)
                        .as_secs_f64()
                ),
            );
            let error = read_key(&mut bed, TEST, &format!("{garbage_backend}/error"));
            assert!(
                error.contains("tx-ring-ref"),
                "the garbage vif's error key does not name the bad key: {error:?}"
            );

            // Each hostile guest goes once checked (its memory is needed for the next).
            destroy(&mut bed, TEST, HOSTILE);
            destroy(&mut bed, TEST, GARBAGE);

            // netchannel2: a message of a size the wire format forbids, then an index jump.
            let nc2 = create(&mut bed, TEST, HOSTILE_NC2);
            hostile_ring_guest(&mut bed, TEST, dd, &nc2, "nc2");
            destroy(&mut bed, TEST, HOSTILE_NC2);
            let jump = create(&mut bed, TEST, HOSTILE_JUMP);
            hostile_ring_guest(&mut bed, TEST, dd, &jump, "nc2");
            destroy(&mut bed, TEST, HOSTILE_JUMP);

            // netif: a receive buffer whose grant reference names nothing, reached by replies.
            let gref = create(&mut bed, TEST, HOSTILE_GREF);
            hostile_ring_guest(&mut bed, TEST, dd, &gref, "netif");
            report(
                TEST,
                &format!("whole bed run {:.1} s", bed.elapsed().as_secs_f64()),
            );
        },
    );
}

/// What one application nc2-guest reported: its console lines after each stage.
struct AppRun {
    sent_sum: String,
    transport: String,
}

/// Follows application guest `g` from `NC2_GUEST_CONNECTED` to `NC2_GUEST_SENT`, reporting each
/// stage's wall time; `gen` says whether it runs the packet generator.
fn follow_app(bed: &mut XenBed, test: &str, g: &xenbed::Domain, label: &str, gen_: bool) -> AppRun {
    let mark = |m: &str| format!("{}[INFO ] nc2-guest: {m}", g.console_prefix);
    let connected = wait_line(
        bed,
        test,
        &mark("NC2_GUEST_CONNECTED"),
        Duration::from_secs(180),
    );
    let transport = if connected.line.contains("over nc2") {
        "nc2"
    } else {
        "netif"
    };
    report(
        test,
        &format!(
            "{label}: xl create to Connected over {transport}: {:.1} s ({})",
            connected
                .arrived
                .saturating_duration_since(g.started)
                .as_secs_f64(),
            connected.line.trim()
        ),
    );
    let ping = wait_line(
        bed,
        test,
        &mark("NC2_GUEST_PING_OK 5/5"),
        Duration::from_secs(120),
    );
    report(test, &format!("{label}: {}", ping.line.trim()));
    if gen_ {
        let generated = wait_line(
            bed,
            test,
            &mark("NC2_GUEST_GEN_DONE"),
            Duration::from_secs(120),
        );
        report(test, &format!("{label}: {}", generated.line.trim()));
    }
    let sha = wait_line(bed, test, &mark("NC2_GUEST_SHA "), Duration::from_secs(120));
    let sent_sum = sum_after(&sha.line, "NC2_GUEST_SHA ");
    let sent = wait_line(bed, test, &mark("NC2_GUEST_SENT"), Duration::from_secs(300));
    report(test, &format!("{label}: {}", sent.line.trim()));
    AppRun {
        sent_sum,
        transport: transport.to_string(),
    }
}

#[test]
fn nc2_guest_pings_and_sends_a_file_to_linux() {
    xenbed::retry_on_bed_fault("nc2_guest_pings_and_sends_a_file_to_linux", || {
        const TEST: &str = "xen_nc2_app";
        const SINK: &str = "netfront-sink";
        const APP: &str = "nc2-app";
        const APP_NETIF: &str = "nc2-app-netif";
        const SINK_IP: &str = "192.0.2.3";
        let (mut bed, dd) = start_nc2dd(
            TEST,
            &[
                (
                    SINK,
                    guests::guest_cfg(
                        SINK,
                        "00:16:3e:00:00:03",
                        SINK_IP,
                        "nc2dd.role=sink nc2dd.peer=192.0.2.7",
                    ),
                ),
                (
                    APP,
                    nc2_guest_cfg(
                        APP,
                        "00:16:3e:00:00:07",
                        &format!(
                            "ip=192.0.2.7 ping={NC2DD_IP} gen={SINK_IP}:9:500 send={SINK_IP}:5000 file-size=1048576 seed=7"
                        ),
                    ),
                ),
                (
                    APP_NETIF,
                    nc2_guest_cfg(
                        APP_NETIF,
                        "00:16:3e:00:00:0b",
                        &format!(
                            "transport=netif ip=192.0.2.11 ping={NC2DD_IP} send={SINK_IP}:5001 file-size=524288 seed=11"
                        ),
                    ),
                ),
            ],
        );
        start_guest(&mut bed, TEST, dd, SINK);
        linux_verdict(
            &mut bed,
            TEST,
            SINK,
            "NC2DD_GUEST_LISTENING",
            &["NC2DD_GUEST_INSMOD_FAILED"],
        );
        // Both run at once: the netif one (what Linux netfront speaks) and the auto one, which
        // must pick netchannel2 when netback offers it.
        let at = bed.cursor();
        let g_netif = create(&mut bed, TEST, APP_NETIF);
        let g_nc2 = create(&mut bed, TEST, APP);
        bed.rewind(at);
        let nc2 = follow_app(&mut bed, TEST, &g_nc2, "nc2-guest", true);
        bed.rewind(at);
        let netif = follow_app(&mut bed, TEST, &g_netif, "nc2-guest (netif)", false);
        assert_eq!(netif.transport, "netif");
        let backend = format!("/local/domain/{dd}/backend/vif/{}/0", g_nc2.domid);
        let offered = read_key(&mut bed, TEST, &format!("{backend}/feature-nc2"));
        if offered == "1" {
            assert_eq!(
                nc2.transport, "nc2",
                "netback offers feature-nc2 but the guest used netif"
            );
        }
        let got = linux_verdict(
            &mut bed,
            TEST,
            SINK,
            "NC2DD_GUEST_PEER_PING_OK",
            &["NC2DD_GUEST_PEER_PING_LOST", "NC2DD_GUEST_INSMOD_FAILED"],
        );
        let answered = got
            .split("NC2DD_GUEST_PEER_PING_OK ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?");
        report(
            TEST,
            &format!("Linux pinged the nc2-guest: {answered} of 5 answered"),
        );
        let received = sum_after(&got, "NC2DD_GUEST_GOT ");
        report(
            TEST,
            &format!(
                "{}: SHA-256 sent {}, received {received}",
                nc2.transport, nc2.sent_sum
            ),
        );
        assert_eq!(
            nc2.sent_sum, received,
            "the file changed on its way through netback"
        );
        let got = linux_verdict(
            &mut bed,
            TEST,
            SINK,
            "NC2DD_GUEST_NETIF_RECEIVED",
            &["NC2DD_GUEST_INSMOD_FAILED"],
        );
        let received = sum_after(&got, "NC2DD_GUEST_NETIF_GOT ");
        report(
            TEST,
            &format!(
                "netif: SHA-256 sent {}, received {received}",
                netif.sent_sum
            ),
        );
        assert_eq!(
            netif.sent_sum, received,
            "the file changed on its way through netback (netif)"
        );
        let netif_backend = format!("/local/domain/{dd}/backend/vif/{}/0", g_netif.domid);
        // 718 data segments + 500 generated datagrams; 359 data segments.
        for (b, label, min) in [
            (&backend, nc2.transport.as_str(), 1200),
            (&netif_backend, "netif", 359),
        ] {
            let stats = guests::vif_stats_when(&mut bed, TEST, b, |s| {
                guests::vif_counter(s, "tx").is_some_and(|n| n >= min)
            });
            report(TEST, &format!("nc2-guest vif ({label}): {stats}"));
            assert!(
                stat(&stats, "tx") >= min,
                "netback counted too few packets from the {label} nc2-guest: {stats}"
            );
            assert!(
                stats.contains(" 0 proto-err"),
                "protocol errors counted: {stats}"
            );
        }
        report(
            TEST,
            &format!("whole bed run {:.1} s", bed.elapsed().as_secs_f64()),
        );
    });
}
