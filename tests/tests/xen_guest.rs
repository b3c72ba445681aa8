//! A stock Linux guest served by nc2dd's netback in the nested Xen bed.
//!
//! dom0 `xl create`s nc2dd as a PVH domU named `nc2dd` (netback serving, its responder at
//! [`NC2DD_IP`]), then a Debian Linux PV guest whose vif names `nc2dd` as its backend. The guest's
//! initramfs is made here from the bed's own files (busybox and `xen-netfront.ko` of the same
//! kernel package as the guest's kernel): its init loads netfront, configures the interface and
//! pings the responder. The guest's console goes to xenconsoled's log file in dom0, which the test
//! reads until the init's verdict line appears; then dom0's xenstore must show the vif Connected
//! on both ends with netback's counters, and `xl network-detach` must see the backend Closed.
//!
//! Fails, saying what is missing, when QEMU, the bed or the nc2dd image is absent. The serial log
//! is `target/xenbed-logs/<test>.log`; the guest's console is printed on failure.

use std::time::{Duration, Instant};

use nc2dd_tests::guests::{
    self, fail, guest_cfg, guest_log, guest_verdict, read_key, report, start_guest, sums_after,
};
use nc2dd_tests::xenbed::{self, XenBed};

const NC2DD_IP: &str = guests::PVH_NC2DD_IP;
const GUEST_IP: &str = "192.0.2.3";
const GUEST_MAC: &str = "00:16:3e:00:00:02";
const GUEST_NAME: &str = "linux-netfront";

const NC2DD_FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    "Triple fault",
    "xen gateway: bring-up failed",
    // netback's verdict on a vif it disconnects.
    "disconnecting it",
];

/// nc2dd as the PVH driver domain with the guests' configs under /nc2dd, netback serving.
fn start_nc2dd(test: &str, guest_cfgs: &[(&str, String)]) -> (XenBed, u32) {
    guests::start_pvh_nc2dd(
        test,
        Vec::new(),
        guest_cfgs,
        NC2DD_FAIL_MARKERS,
        Duration::from_secs(600),
    )
}

#[test]
fn stock_linux_netfront_guest_pings_netback() {
    xenbed::retry_on_bed_fault("stock_linux_netfront_guest_pings_netback", || {
        const TEST: &str = "xen_guest_netfront_ping";
        let (mut bed, dd) = start_nc2dd(
            TEST,
            &[(
                GUEST_NAME,
                guest_cfg(
                    GUEST_NAME,
                    GUEST_MAC,
                    GUEST_IP,
                    &format!("nc2dd.role=ping nc2dd.peer={NC2DD_IP}"),
                ),
            )],
        );
        let t_guest = Instant::now();
        let (domid, backend, _) = start_guest(&mut bed, TEST, dd, GUEST_NAME);
        guest_verdict(
            &mut bed,
            TEST,
            GUEST_NAME,
            "NC2DD_GUEST_PING_OK",
            &["NC2DD_GUEST_PING_LOST", "NC2DD_GUEST_INSMOD_FAILED"],
        );
        let console = bed
            .run(
                &format!("grep 'packet loss' {}", guest_log(GUEST_NAME)),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        assert!(
            console.contains("5 packets received, 0% packet loss"),
            "no 0% loss line on the guest's console:\n{console}"
        );
        report(
            TEST,
            &format!(
                "xl create guest to 0% loss read: {:.1} s",
                t_guest.elapsed().as_secs_f64()
            ),
        );
        let frontend = format!("/local/domain/{domid}/device/vif/0");
        assert_eq!(
            read_key(&mut bed, TEST, &format!("{backend}/state")),
            "4",
            "backend state"
        );
        assert_eq!(
            read_key(&mut bed, TEST, &format!("{frontend}/state")),
            "4",
            "frontend state"
        );
        let stats = guests::vif_stats_when(&mut bed, TEST, &backend, |s| {
            guests::vif_counter(s, "rx").is_some_and(|n| n >= 5)
        });
        report(TEST, &format!("vif counters after the pings: {stats}"));
        // Five echo replies (and an ARP reply) went to the guest; no ring got a bad request.
        let rx_pkts: u64 = stats
            .split_once("rx ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no rx packet count in {stats:?}"));
        assert!(
            rx_pkts >= 5,
            "netback counted {rx_pkts} packets to the guest: {stats}"
        );
        assert!(
            stats.contains(" 0 proto-err"),
            "protocol errors counted: {stats}"
        );

        // Hot unplug: libxl asks for Closing and waits (10 s) for the backend to reach Closed.
        let t_detach = Instant::now();
        // netback's Closed line may arrive before the command's end marker: look from here.
        let before_detach = bed.cursor();
        let (status, out) = bed
            .run_status(
                &format!("xl network-detach {GUEST_NAME} 0"),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        if status != 0 {
            let store = bed
                .run_status(
                    &format!("xenstore-ls -f /local/domain/{dd}/backend; xenstore-ls -f /local/domain/{domid}/device"),
                    Duration::from_secs(60),
                )
                .map(|(_, o)| o)
                .unwrap_or_default();
            panic!("xl network-detach failed ({status}):\n{out}\nxenstore:\n{store}");
        }
        bed.rewind(before_detach);
        bed.wait_for(&format!("{backend}/state = 6"), Duration::from_secs(30))
            .unwrap_or_else(|e| fail(TEST, e));
        report(
            TEST,
            &format!(
                "xl network-detach to backend Closed: {:.1} s",
                t_detach.elapsed().as_secs_f64()
            ),
        );
        report(
            TEST,
            &format!("whole bed run {:.1} s", bed.elapsed().as_secs_f64()),
        );
    });
}

/// Two guests of nc2dd talk through netback's switch: the server guest makes a 2 MiB random
/// file and serves it over HTTP, the client guest fetches it over TCP; the checksums must agree.
#[test]
fn two_netfront_guests_transfer_a_file_through_netback() {
    xenbed::retry_on_bed_fault(
        "two_netfront_guests_transfer_a_file_through_netback",
        || {
            const TEST: &str = "xen_guest_netfront_transfer";
            const SERVER: &str = "netfront-server";
            const CLIENT: &str = "netfront-client";
            const SERVER_IP: &str = "192.0.2.3";
            const CLIENT_IP: &str = "192.0.2.4";
            let (mut bed, dd) = start_nc2dd(
                TEST,
                &[
                    (
                        SERVER,
                        guest_cfg(SERVER, "00:16:3e:00:00:03", SERVER_IP, "nc2dd.role=server"),
                    ),
                    (
                        CLIENT,
                        guest_cfg(
                            CLIENT,
                            "00:16:3e:00:00:04",
                            CLIENT_IP,
                            &format!("nc2dd.role=client nc2dd.peer={SERVER_IP}"),
                        ),
                    ),
                ],
            );
            let (_, server_backend, _) = start_guest(&mut bed, TEST, dd, SERVER);
            let served = guest_verdict(
                &mut bed,
                TEST,
                SERVER,
                "NC2DD_GUEST_SERVING",
                &["NC2DD_GUEST_INSMOD_FAILED"],
            );
            let t_client = Instant::now();
            let (_, client_backend, _) = start_guest(&mut bed, TEST, dd, CLIENT);
            let got = guest_verdict(
                &mut bed,
                TEST,
                CLIENT,
                "NC2DD_GUEST_FETCH_OK",
                &["NC2DD_GUEST_FETCH_FAILED", "NC2DD_GUEST_INSMOD_FAILED"],
            );
            report(
                TEST,
                &format!(
                    "xl create client to file fetched: {:.1} s",
                    t_client.elapsed().as_secs_f64()
                ),
            );
            let sum_after = |out: &str, marker: &str| -> String {
                sums_after(out, marker)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| panic!("no SHA-256 after {marker} in {out:?}"))
            };
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
            report(
                TEST,
                &format!("whole bed run {:.1} s", bed.elapsed().as_secs_f64()),
            );
        },
    );
}
