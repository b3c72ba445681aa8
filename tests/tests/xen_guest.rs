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

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nc2dd_tests::xenbed::{self, BedConfig, BedError, CpioEntry, Flavour, XenBed};

const NC2DD_IP: &str = "192.0.2.2";
const GUEST_IP: &str = "192.0.2.3";
const GUEST_MAC: &str = "00:16:3e:00:00:02";
const GUEST_NAME: &str = "linux-netfront";
const GUEST_LOG: &str = "/var/log/xen/console/guest-linux-netfront.log";

const NC2DD_FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    "Triple fault",
    "xen gateway: bring-up failed",
    // netback's verdict on a vif it disconnects.
    "disconnecting it",
];

/// nc2dd as the driver domain; netback serves until the domain is destroyed.
fn nc2dd_cfg() -> String {
    format!(
        r#"name = "nc2dd"
type = "pvh"
kernel = "/nc2dd/nc2dd.elf"
ramdisk = "/nc2dd/nc2dd-modules.bin"
cmdline = "nc2dd.netback.ip={NC2DD_IP}"
memory = 64
vcpus = 2
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#
    )
}

fn guest_cfg() -> String {
    format!(
        r#"name = "{GUEST_NAME}"
type = "pv"
kernel = "/nc2dd/vmlinuz"
ramdisk = "/nc2dd/guest-initrd.cpio"
extra = "console=hvc0"
memory = 256
vcpus = 1
vif = [ "backend=nc2dd,mac={GUEST_MAC},ip={GUEST_IP}" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#
    )
}

/// The guest's init: netfront, the address, five pings, and a verdict line.
fn guest_init() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
echo NC2DD_GUEST_UP
insmod /xen-netfront.ko || echo NC2DD_GUEST_INSMOD_FAILED
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
ip addr add {GUEST_IP}/24 dev eth0
ip addr show eth0
ping -c 5 -W 5 {NC2DD_IP} > /tmp/ping.out 2>&1
cat /tmp/ping.out
if grep -q ' 0% packet loss' /tmp/ping.out; then echo NC2DD_GUEST_PING_OK; else echo NC2DD_GUEST_PING_LOST; fi
while true; do sleep 1000; done
"#
    )
}

fn report(test: &str, line: &str) {
    let _ = writeln!(std::io::stderr(), "[{test}] {line}");
    let path = xenbed::log_dir().join(format!("{test}.times"));
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn fail(test: &str, e: BedError) -> ! {
    panic!(
        "{e}\nserial log: {}",
        xenbed::log_dir().join(format!("{test}.log")).display()
    )
}

/// One member of the bed's gzipped dom0 initramfs (a shell glob naming exactly one file).
fn from_initramfs(initramfs: &Path, glob: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | cpio -i --quiet --to-stdout '{glob}'",
            initramfs.display()
        ))
        .output()
        .unwrap_or_else(|e| panic!("running gzip | cpio: {e}"));
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{glob} is not in {}: {}",
        initramfs.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The guest's initramfs: busybox, netfront, and [`guest_init`].
fn guest_initramfs(bed_initramfs: &Path) -> Vec<u8> {
    let busybox = from_initramfs(bed_initramfs, "bin/busybox");
    let netfront = from_initramfs(
        bed_initramfs,
        "lib/modules/*/kernel/drivers/net/xen-netfront.ko",
    );
    let init = guest_init();
    xenbed::cpio_newc(&[
        CpioEntry::dir("bin"),
        CpioEntry::dir("dev"),
        CpioEntry::dir("proc"),
        CpioEntry::dir("sys"),
        CpioEntry::dir("tmp"),
        CpioEntry::file("bin/busybox", &busybox),
        CpioEntry::file("init", init.as_bytes()),
        CpioEntry::file("xen-netfront.ko", &netfront),
    ])
}

#[test]
fn stock_linux_netfront_guest_pings_netback() {
    const TEST: &str = "xen_guest_netfront_ping";
    let _ = fs::create_dir_all(xenbed::log_dir());
    let _ = fs::remove_file(xenbed::log_dir().join(format!("{TEST}.times")));
    if let Err(e) = xenbed::check_qemu() {
        panic!("{e}");
    }
    let bed_files = xenbed::build_bed(Flavour::Pvh).unwrap_or_else(|e| panic!("{e}"));
    let art = nc2dd_tests::qemu::artefacts();
    let read = |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let files = vec![
        ("nc2dd.elf".to_string(), read(&art.kernel)),
        ("nc2dd-modules.bin".to_string(), read(&art.module)),
        ("nc2dd.cfg".to_string(), nc2dd_cfg().into_bytes()),
        ("vmlinuz".to_string(), read(&bed_files.vmlinuz)),
        (
            "guest-initrd.cpio".to_string(),
            guest_initramfs(&bed_files.initramfs),
        ),
        ("guest.cfg".to_string(), guest_cfg().into_bytes()),
    ];
    let mut cfg = BedConfig::new(TEST);
    cfg.dom0_files = files;
    cfg.overall_timeout = Duration::from_secs(600);
    let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| fail(TEST, e));
    report(
        TEST,
        &format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ),
    );
    for m in NC2DD_FAIL_MARKERS {
        bed.add_fail_marker(m);
    }

    let dd = bed
        .xl_create("/nc2dd/nc2dd.cfg", "nc2dd", Duration::from_secs(120))
        .unwrap_or_else(|e| fail(TEST, e));
    let serving = bed
        .wait_for("netback: serving vifs of domain", Duration::from_secs(180))
        .unwrap_or_else(|e| fail(TEST, e));
    assert!(
        serving.line.contains(&dd.console_prefix),
        "netback's line came from another console: {}",
        serving.line
    );
    report(
        TEST,
        &format!(
            "xl create nc2dd to netback serving: {:.1} s",
            serving
                .arrived
                .saturating_duration_since(dd.started)
                .as_secs_f64()
        ),
    );

    let guest = bed
        .xl_create("/nc2dd/guest.cfg", GUEST_NAME, Duration::from_secs(180))
        .unwrap_or_else(|e| fail(TEST, e));
    let backend = format!("/local/domain/{}/backend/vif/{}/0", dd.domid, guest.domid);
    // netback logs each state it writes: InitWait came within libxl's 10 s (else `xl create`
    // had failed), Connected once netfront published its rings.
    let connected = bed
        .wait_for(&format!("{backend}/state = 4"), Duration::from_secs(180))
        .unwrap_or_else(|e| fail(TEST, e));
    report(
        TEST,
        &format!(
            "xl create guest to vif Connected: {:.1} s",
            connected
                .arrived
                .saturating_duration_since(guest.started)
                .as_secs_f64()
        ),
    );

    let started = Instant::now();
    let verdict = loop {
        let out = bed
            .run(
                &format!("grep -o 'NC2DD_GUEST_[A-Z_]*' {GUEST_LOG} | tr '\\n' ' '; echo"),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        if out.contains("NC2DD_GUEST_PING_OK") {
            break Ok(());
        }
        if out.contains("NC2DD_GUEST_PING_LOST") || out.contains("NC2DD_GUEST_INSMOD_FAILED") {
            break Err(out);
        }
        if started.elapsed() > Duration::from_secs(240) {
            break Err(format!("no verdict from the guest in 240 s: {out}"));
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    let console = bed
        .run(&format!("tail -n 30 {GUEST_LOG}"), Duration::from_secs(60))
        .unwrap_or_else(|e| fail(TEST, e));
    if let Err(why) = verdict {
        panic!("the guest's ping failed ({why}); its console ends:\n{console}");
    }
    assert!(
        console.contains(" 0% packet loss"),
        "no 0% loss line on the guest's console:\n{console}"
    );
    let frontend = format!("/local/domain/{}/device/vif/0", guest.domid);
    let read_key = |bed: &mut XenBed, key: &str| -> String {
        let out = bed
            .run(&format!("xenstore-read {key}"), Duration::from_secs(60))
            .unwrap_or_else(|e| fail(TEST, e));
        // The output holds the echoed command first; the value is the last line.
        out.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        read_key(&mut bed, &format!("{backend}/state")),
        "4",
        "backend state"
    );
    assert_eq!(
        read_key(&mut bed, &format!("{frontend}/state")),
        "4",
        "frontend state"
    );
    let stats = read_key(&mut bed, &format!("{backend}/statistics"));
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
    bed.run(
        &format!("xl network-detach {GUEST_NAME} 0"),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| fail(TEST, e));
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
        &format!(
            "xl create guest to 0% loss read: {:.1} s; whole bed run {:.1} s",
            guest.started.elapsed().as_secs_f64(),
            bed.elapsed().as_secs_f64()
        ),
    );
}
