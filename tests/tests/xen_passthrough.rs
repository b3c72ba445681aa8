//! nc2dd as an HVM driver domain owning a passed-through NIC, in the nested Xen test bed.
//!
//! dom0 hands the outer igb to pciback; xl creates nc2dd with `firmware_override` (the PVH-entry
//! ELF runs as the HVM guest's firmware, so no hvmloader places the BARs and there is no ACPI)
//! and `pci = [...]`. The probe task must find the igb, read it through its BAR, get DMA memory
//! and receive MSI-X interrupts delivered through Xen's interrupt remapping.

use std::fs;
use std::time::Duration;

use std::time::Instant;

use nc2dd_tests::guests;
use nc2dd_tests::netpeer::{self, Echo, NetPeer};
use nc2dd_tests::qemu;
use nc2dd_tests::xenbed::{self, BedConfig, Flavour, Netdev, XenBed};

const TEST: &str = "nc2dd_hvm_passthrough";

fn report(line: &str) {
    report_as(TEST, line)
}

fn report_as(test: &str, line: &str) {
    eprintln!("[{test}] {line}");
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(xenbed::log_dir().join(format!("{test}.times")))
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
}

#[test]
fn nc2dd_drives_a_passed_through_nic_as_an_hvm_driver_domain() {
    xenbed::retry_on_bed_fault(
        "nc2dd_drives_a_passed_through_nic_as_an_hvm_driver_domain",
        || {
            xenbed::check_qemu().unwrap_or_else(|e| panic!("{e}"));
            let a = qemu::system_artefacts("hvm-probe");
            let _ = fs::create_dir_all(xenbed::log_dir());
            let _ = fs::remove_file(xenbed::log_dir().join(format!("{TEST}.times")));
            let mut cfg = BedConfig::new(TEST);
            cfg.flavour = Flavour::Hvm;
            cfg.dom0_files = vec![
                (
                    "nc2dd.elf".into(),
                    fs::read(&a.standalone).expect("standalone kernel ELF"),
                ),
                (
                    "nc2dd-hvm.cfg".into(),
                    guests::hvm_driver_domain_cfg().into_bytes(),
                ),
            ];
            let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| panic!("{e}"));
            for m in ["NC2DD_FAIL", "NC2DD_PANIC", "NC2DD_FAULT", "Triple fault"] {
                bed.add_fail_marker(m);
            }
            report(&format!(
                "Xen + dom0 boot to shell: {:.1} s",
                bed.boot_time.as_secs_f64()
            ));
            let fail = |bed: &XenBed, e: xenbed::BedError| -> ! {
                panic!("{e}\nserial log: {}", bed.log_path().display())
            };
            let out = bed
                .run(
                    "xl pci-assignable-add 0000:00:04.0 && xl pci-assignable-list",
                    Duration::from_secs(60),
                )
                .unwrap_or_else(|e| fail(&bed, e));
            assert!(
                out.contains("0000:00:04.0"),
                "the igb is not assignable:\n{out}"
            );
            let dom = bed
                .xl_create("/nc2dd/nc2dd-hvm.cfg", "nc2dd", Duration::from_secs(120))
                .unwrap_or_else(|e| fail(&bed, e));
            let steps = [
                "nc2dd kernel 0.1.0 starting (Xen PVH entry)",
                "pci: 00:04.0 8086:10c9",
                "nic -> task 1 (probe): MSI-X vectors",
                "probe: config space: vendor 0x8086 device 0x10c9",
                "probe: BAR0 at 0x450000000000",
                "probe: DMA: 8192 bytes",
                "probe: MSI-X vector 0 interrupt 1 received",
                "probe: MSI-X vector 0 interrupt 2 received",
                "probe: device checks passed",
            ];
            for step in steps {
                let m = bed
                    .wait_for(step, Duration::from_secs(120))
                    .unwrap_or_else(|e| fail(&bed, e));
                report(&format!(
                    "xl create to {step:?}: {:.1} s",
                    m.arrived
                        .saturating_duration_since(dom.started)
                        .as_secs_f64()
                ));
            }
        },
    );
}

const NIC_TEST: &str = "nc2dd_hvm_nic_frames";
const MAC0: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const IP0: [u8; 4] = [192, 0, 2, 2];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_IP: [u8; 4] = [192, 0, 2, 1];

/// The whole data path through Xen: the outer igb, passed through to nc2dd, receives frames from
/// a peer in this test process and the nic-ixgbe server answers them, its receive and transmit
/// DMA going through the emulated IOMMU and its interrupts through interrupt remapping.
#[test]
fn nc2dd_answers_arp_and_ping_through_a_passed_through_nic() {
    xenbed::retry_on_bed_fault(
        "nc2dd_answers_arp_and_ping_through_a_passed_through_nic",
        || {
            xenbed::check_qemu().unwrap_or_else(|e| panic!("{e}"));
            // firmware_override passes no command line: the server's arguments travel in the module.
            let args = format!(
                "nc2dd.shutdown=allow nc2dd.nic-ixgbe.mac0={} nc2dd.nic-ixgbe.ip0=192.0.2.2",
                netpeer::mac_string(MAC0)
            );
            let a = qemu::system_artefacts_with("nic", Some(&args));
            let peer = NetPeer::bind().expect("a UDP socket on 127.0.0.1");
            let _ = fs::create_dir_all(xenbed::log_dir());
            let _ = fs::remove_file(xenbed::log_dir().join(format!("{NIC_TEST}.times")));
            let mut cfg = BedConfig::new(NIC_TEST);
            cfg.flavour = Flavour::Hvm;
            cfg.netdev = Netdev::Spec(peer.netdev("n0").expect("netdev spec"));
            cfg.dom0_files = vec![
                (
                    "nc2dd.elf".into(),
                    fs::read(&a.standalone).expect("standalone kernel ELF"),
                ),
                (
                    "nc2dd-hvm.cfg".into(),
                    guests::hvm_driver_domain_cfg().into_bytes(),
                ),
            ];
            let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| panic!("{e}"));
            for m in ["NC2DD_FAIL", "NC2DD_PANIC", "NC2DD_FAULT", "Triple fault"] {
                bed.add_fail_marker(m);
            }
            let fail = |bed: &XenBed, e: xenbed::BedError| -> ! {
                panic!("{e}\nserial log: {}", bed.log_path().display())
            };
            bed.run(
                "xl pci-assignable-add 0000:00:04.0",
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(&bed, e));
            let dom = bed
                .xl_create("/nc2dd/nc2dd-hvm.cfg", "nc2dd", Duration::from_secs(120))
                .unwrap_or_else(|e| fail(&bed, e));
            let ready = bed
                .wait_for("nic-ixgbe: pool 0: mac", Duration::from_secs(180))
                .unwrap_or_else(|e| fail(&bed, e));
            report_as(
                NIC_TEST,
                &format!(
                    "xl create to pool 0 ready: {:.1} s",
                    ready
                        .arrived
                        .saturating_duration_since(dom.started)
                        .as_secs_f64()
                ),
            );

            // ARP: who has 192.0.2.2?
            let start = Instant::now();
            peer.send(&netpeer::arp_request(PEER_MAC, PEER_IP, IP0))
                .expect("send ARP");
            let reply = peer
                .recv_match(Instant::now() + Duration::from_secs(30), |f| {
                    netpeer::parse_arp_reply(f)
                })
                .expect("receive")
                .unwrap_or_else(|| panic!("no ARP reply; serial log {}", bed.log_path().display()));
            assert_eq!((reply.sender_mac, reply.sender_ip), (MAC0, IP0));
            report_as(
                NIC_TEST,
                &format!(
                    "ARP answered in {:.1} ms",
                    start.elapsed().as_secs_f64() * 1e3
                ),
            );

            // Pings with distinct payloads.
            let mut rtts = Vec::new();
            for seq in 1..=5u16 {
                let echo = Echo {
                    eth_dst: MAC0,
                    eth_src: PEER_MAC,
                    src_ip: PEER_IP,
                    dst_ip: IP0,
                    ttl: 64,
                    id: 0x4e32,
                    seq,
                    payload: (0..56).map(|i| (i as u8) ^ (seq as u8)).collect(),
                };
                let sent = Instant::now();
                peer.send(&netpeer::icmp_echo_request(&echo))
                    .expect("send echo");
                let got = peer
                    .recv_match(Instant::now() + Duration::from_secs(30), |f| {
                        netpeer::parse_icmp_echo_reply(f).filter(|e| e.seq == seq)
                    })
                    .expect("receive")
                    .unwrap_or_else(|| {
                        panic!(
                            "echo {seq} unanswered; serial log {}",
                            bed.log_path().display()
                        )
                    });
                assert_eq!(got.payload, echo.payload, "echo {seq} payload");
                assert_eq!((got.eth_src, got.src_ip), (MAC0, IP0));
                rtts.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            report_as(
                NIC_TEST,
                &format!("5 pings answered, 0% loss, rtt ms {rtts:.1?}"),
            );

            peer.send(&netpeer::test_frame(
                MAC0,
                PEER_MAC,
                netpeer::TEST_DONE,
                0,
                0,
            ))
            .expect("send done");
            bed.wait_for("NC2DD_PASS", Duration::from_secs(60))
                .unwrap_or_else(|e| fail(&bed, e));
        },
    );
}
