//! Stock Debian Linux PV guests with xen-netfront, for the nested-Xen tests whose guests name
//! nc2dd as their vif backend: their xl configs, their initramfs (made from the bed's own
//! busybox and `xen-netfront.ko`, so guest kernel and module always match), and reading their
//! verdicts from xenconsoled's log files in dom0.
//!
//! The guest's init configures `eth0` from `nc2dd.ip` and then acts by `nc2dd.role` (see
//! [`guest_init`]); every outcome is a `NC2DD_GUEST_*` line on its console, optionally
//! followed by digits or a hex checksum, which [`guest_verdict`] collects.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::xenbed::{self, BedError, CpioEntry, XenBed};

/// A Linux PV guest whose vif names nc2dd as backend; `args` go to its kernel command line
/// (the init reads `nc2dd.*` from there). `quiet` keeps the kernel's informational messages
/// off the console, where one landing mid-line once cut a result line (a SHA-256) in two.
pub fn guest_cfg(name: &str, mac: &str, ip: &str, args: &str) -> String {
    format!(
        r#"name = "{name}"
type = "pv"
kernel = "/nc2dd/vmlinuz"
ramdisk = "/nc2dd/guest-initrd.cpio"
extra = "console=hvc0 quiet nc2dd.ip={ip} {args}"
memory = 256
vcpus = 1
vif = [ "backend=nc2dd,mac={mac},ip={ip}" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#
    )
}

/// Where xenconsoled keeps guest `name`'s console in dom0.
pub fn guest_log(name: &str) -> String {
    format!("/var/log/xen/console/guest-{name}.log")
}

/// The guest's init: netfront and the address from `nc2dd.ip` (a /24), then by `nc2dd.role`:
/// - `ping` (default): five pings of `nc2dd.peer`, then `NC2DD_GUEST_PING_OK` on 0% loss
///   (`NC2DD_GUEST_PING_LOST` otherwise);
/// - `server`: a 2 MiB random file, its SHA-256 as `NC2DD_GUEST_SHA <sum>`, served by busybox
///   httpd, then `NC2DD_GUEST_SERVING`;
/// - `client`: pings `nc2dd.peer`, fetches `http://<nc2dd.peer>/f` with wget, prints
///   `NC2DD_GUEST_GOT <sum>` and `NC2DD_GUEST_FETCH_OK` (or `NC2DD_GUEST_FETCH_FAILED`);
/// - `wire`: a warm-up echo (up to three tries: ARP and the vif's NIC pool may still be on
///   their way), five pings of `nc2dd.peer` (verdict as for `ping`), then fetches
///   `http://<nc2dd.server>/f` and prints `NC2DD_GUEST_GOT <sum>`, `NC2DD_GUEST_FETCH_MS <ms>`
///   and `NC2DD_GUEST_FETCH_OK`; then fetches it again every ten seconds, printing
///   `NC2DD_GUEST_AGAIN <sum>` after each success.
/// - `sink`: `NC2DD_GUEST_LISTENING`, then `nc -l` on port 5000 into a file until the sender
///   closes, `NC2DD_GUEST_GOT <sum>` and `NC2DD_GUEST_RECEIVED <bytes>`; then five pings of
///   `nc2dd.peer` (`NC2DD_GUEST_PEER_PING_OK <answered>` when any is answered); then the same on
///   port 5001: `NC2DD_GUEST_NETIF_GOT <sum>`, `NC2DD_GUEST_NETIF_RECEIVED <bytes>`. (The
///   bed's busybox `nc` has no UDP mode.)
pub fn guest_init() -> String {
    r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /www
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
role=ping
for w in $(cat /proc/cmdline); do
    case "$w" in
        nc2dd.role=*) role=${w#nc2dd.role=} ;;
        nc2dd.ip=*) myip=${w#nc2dd.ip=} ;;
        nc2dd.peer=*) peer=${w#nc2dd.peer=} ;;
        nc2dd.server=*) server=${w#nc2dd.server=} ;;
    esac
done
echo NC2DD_GUEST_UP
insmod /xen-netfront.ko || echo NC2DD_GUEST_INSMOD_FAILED
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
ip addr add $myip/24 dev eth0
ip addr show eth0
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
pings() {
    ping -c 5 -W 5 $peer > /tmp/ping.out 2>&1
    cat /tmp/ping.out
    if grep -q ' 0% packet loss' /tmp/ping.out; then echo NC2DD_GUEST_PING_OK; else echo NC2DD_GUEST_PING_LOST; fi
}
case "$role" in
ping)
    pings
    ;;
server)
    dd if=/dev/urandom of=/www/f bs=1024 count=2048 2>/dev/null
    echo "NC2DD_GUEST_SHA $(sha256sum /www/f | cut -d' ' -f1)"
    httpd -p 80 -h /www
    echo NC2DD_GUEST_SERVING
    ;;
client)
    ping -c 3 -W 5 $peer
    if wget -q -O /tmp/f http://$peer/f; then
        echo "NC2DD_GUEST_GOT $(sha256sum /tmp/f | cut -d' ' -f1)"
        echo NC2DD_GUEST_FETCH_OK
    else
        echo NC2DD_GUEST_FETCH_FAILED
    fi
    ;;
wire)
    # Warm-up: the first echo waits for ARP and for the vif's NIC pool, which the guest may
    # start pinging before it exists; up to three tries, then the measured five.
    for i in 1 2 3; do ping -c 1 -W 10 $peer > /dev/null 2>&1 && break; done
    pings
    t0=$(ms)
    if wget -q -O /tmp/f http://$server/f; then
        t1=$(ms)
        echo "NC2DD_GUEST_GOT $(sha256sum /tmp/f | cut -d' ' -f1)"
        echo "NC2DD_GUEST_FETCH_MS $((t1 - t0))"
        echo NC2DD_GUEST_FETCH_OK
    else
        echo NC2DD_GUEST_FETCH_FAILED
    fi
    while true; do
        sleep 10
        rm -f /tmp/g
        if wget -q -O /tmp/g http://$server/f; then
            echo "NC2DD_GUEST_AGAIN $(sha256sum /tmp/g | cut -d' ' -f1)"
        fi
    done
    ;;
sink)
    echo NC2DD_GUEST_LISTENING
    nc -l -p 5000 > /tmp/f
    echo "NC2DD_GUEST_GOT $(sha256sum /tmp/f | cut -d' ' -f1)"
    echo "NC2DD_GUEST_RECEIVED $(wc -c < /tmp/f)"
    ping -c 5 -w 60 $peer > /tmp/p 2>&1
    cat /tmp/p
    n=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/p)
    if [ "${n:-0}" -gt 0 ]; then echo "NC2DD_GUEST_PEER_PING_OK $n"; else echo NC2DD_GUEST_PEER_PING_LOST; fi
    nc -l -p 5001 > /tmp/g
    echo "NC2DD_GUEST_NETIF_GOT $(sha256sum /tmp/g | cut -d' ' -f1)"
    echo "NC2DD_GUEST_NETIF_RECEIVED $(wc -c < /tmp/g)"
    ;;
esac
while true; do sleep 1000; done
"#
    .to_string()
}

/// Prints `line` tagged with the test's name and appends it to `<log_dir>/<test>.times`.
pub fn report(test: &str, line: &str) {
    let _ = writeln!(std::io::stderr(), "[{test}] {line}");
    let path = xenbed::log_dir().join(format!("{test}.times"));
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// Ends the test with the bed's error and where its serial log is.
pub fn fail(test: &str, e: BedError) -> ! {
    panic!(
        "{e}\nserial log: {}",
        xenbed::log_dir().join(format!("{test}.log")).display()
    )
}

/// One member of the bed's gzipped dom0 initramfs (a shell glob naming exactly one file).
pub fn from_initramfs(initramfs: &Path, glob: &str) -> Vec<u8> {
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
pub fn guest_initramfs(bed_initramfs: &Path) -> Vec<u8> {
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

/// Waits for `needle` on the bed's console and returns its whole line (the console streams:
/// the line may still be arriving when the needle matches).
pub fn wait_line(bed: &mut XenBed, test: &str, needle: &str, timeout: Duration) -> xenbed::Match {
    bed.wait_for(needle, timeout)
        .unwrap_or_else(|e| fail(test, e));
    bed.wait_for("\n", Duration::from_secs(60))
        .unwrap_or_else(|e| fail(test, e))
}

/// The address netback's responder answers on in the PVH driver-domain beds.
pub const PVH_NC2DD_IP: &str = "192.0.2.2";

/// nc2dd as a PVH driver domain; netback serves until the domain is destroyed.
fn pvh_nc2dd_cfg() -> String {
    format!(
        r#"name = "nc2dd"
type = "pvh"
kernel = "/nc2dd/nc2dd.elf"
ramdisk = "/nc2dd/nc2dd-modules.bin"
cmdline = "nc2dd.netback.ip={PVH_NC2DD_IP}"
memory = 64
vcpus = 2
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#
    )
}

/// Boots the PVH bed with nc2dd, the Linux guests' kernel and initramfs, `extra` files and the
/// guest configs `cfgs` (name, config) under /nc2dd, starts nc2dd and waits until netback
/// serves. `fail_markers` end the test at once; `overall` bounds the whole bed run. Returns the
/// bed and nc2dd's domain id.
pub fn start_pvh_nc2dd(
    test: &str,
    extra: Vec<(String, Vec<u8>)>,
    cfgs: &[(&str, String)],
    fail_markers: &[&str],
    overall: Duration,
) -> (XenBed, u32) {
    let _ = fs::create_dir_all(xenbed::log_dir());
    let _ = fs::remove_file(xenbed::log_dir().join(format!("{test}.times")));
    if let Err(e) = xenbed::check_qemu() {
        panic!("{e}");
    }
    let bed_files = xenbed::build_bed(xenbed::Flavour::Pvh).unwrap_or_else(|e| panic!("{e}"));
    let art = crate::qemu::artefacts();
    let read = |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let mut files = vec![
        ("nc2dd.elf".to_string(), read(&art.kernel)),
        ("nc2dd-modules.bin".to_string(), read(&art.module)),
        ("nc2dd.cfg".to_string(), pvh_nc2dd_cfg().into_bytes()),
        ("vmlinuz".to_string(), read(&bed_files.vmlinuz)),
        (
            "guest-initrd.cpio".to_string(),
            guest_initramfs(&bed_files.initramfs),
        ),
    ];
    files.extend(extra);
    for (name, cfg) in cfgs {
        files.push((format!("{name}.cfg"), cfg.clone().into_bytes()));
    }
    let mut cfg = xenbed::BedConfig::new(test);
    cfg.dom0_files = files;
    cfg.overall_timeout = overall;
    let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| fail(test, e));
    report(
        test,
        &format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ),
    );
    for m in fail_markers {
        bed.add_fail_marker(m);
    }
    let dd = bed
        .xl_create("/nc2dd/nc2dd.cfg", "nc2dd", Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    let serving = bed
        .wait_for("netback: serving vifs of domain", Duration::from_secs(180))
        .unwrap_or_else(|e| fail(test, e));
    assert!(
        serving.line.contains(&dd.console_prefix),
        "netback's line came from another console: {}",
        serving.line
    );
    report(
        test,
        &format!(
            "xl create nc2dd to netback serving: {:.1} s",
            serving
                .arrived
                .saturating_duration_since(dd.started)
                .as_secs_f64()
        ),
    );
    (bed, dd.domid)
}

/// What Xen says about nc2dd when it stalls: its vCPU times a few seconds apart (spinning or
/// blocked) and the event channels (`xl debug-keys e`).
pub fn diagnose_nc2dd(bed: &mut XenBed) -> String {
    bed.run(
        "xl vcpu-list nc2dd; sleep 5; xl vcpu-list nc2dd; xl debug-keys e; xl dmesg | tail -n 60",
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| format!("(no answer: {e})"))
}

/// Boots the HVM bed with QEMU's NIC on `netdev`, nc2dd's standalone image, the bundle's
/// driver-domain config (`nc2dd-hvm.cfg`), the Linux guests' kernel and initramfs and `extra`
/// files under /nc2dd; dom0 gets 1 GiB (nc2dd's device model and unpacked guest kernels live in
/// its RAM next to the initramfs: at 512 MiB xl once failed to decompress a guest kernel).
/// Hides the igb with `xl pci-assignable-add`, creates nc2dd with it passed through and waits
/// for each of `steps` on nc2dd's console (the servers' lines interleave in any order, so each
/// is looked for from the start), reporting its time. A step that does not come ends the test
/// with what Xen says about nc2dd. Returns the bed and nc2dd's domain.
pub fn start_hvm_nc2dd(
    test: &str,
    netdev: xenbed::Netdev,
    extra: Vec<(String, Vec<u8>)>,
    fail_markers: &[&str],
    steps: &[&str],
) -> (XenBed, xenbed::Domain) {
    let _ = fs::create_dir_all(xenbed::log_dir());
    let _ = fs::remove_file(xenbed::log_dir().join(format!("{test}.times")));
    if let Err(e) = xenbed::check_qemu() {
        panic!("{e}");
    }
    let bed_files = xenbed::build_bed(xenbed::Flavour::Hvm).unwrap_or_else(|e| panic!("{e}"));
    let art = crate::qemu::artefacts();
    let read = |p: &Path| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let mut files = vec![
        ("nc2dd.elf".to_string(), read(&art.standalone)),
        (
            "nc2dd-hvm.cfg".to_string(),
            hvm_driver_domain_cfg().into_bytes(),
        ),
        ("vmlinuz".to_string(), read(&bed_files.vmlinuz)),
        (
            "guest-initrd.cpio".to_string(),
            guest_initramfs(&bed_files.initramfs),
        ),
    ];
    files.extend(extra);
    let mut cfg = xenbed::BedConfig::new(test);
    cfg.flavour = xenbed::Flavour::Hvm;
    cfg.netdev = netdev;
    cfg.dom0_files = files;
    cfg.overall_timeout = Duration::from_secs(1200);
    // The later option wins on Xen's command line.
    cfg.xen_cmdline_extra = "dom0_mem=1024M".into();
    let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| fail(test, e));
    for m in fail_markers {
        bed.add_fail_marker(m);
    }
    report(
        test,
        &format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ),
    );
    bed.run(
        "xl pci-assignable-add 0000:00:04.0",
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| fail(test, e));
    let dd = bed
        .xl_create("/nc2dd/nc2dd-hvm.cfg", "nc2dd", Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    let from = bed.cursor();
    for step in steps {
        bed.rewind(from);
        let m = bed
            .wait_for(step, Duration::from_secs(240))
            .unwrap_or_else(|e| {
                let diag = diagnose_nc2dd(&mut bed);
                panic!(
                    "{e}\nwhat Xen says about nc2dd:\n{diag}\nserial log: {}",
                    xenbed::log_dir().join(format!("{test}.log")).display()
                )
            });
        assert!(
            m.line.contains(&dd.console_prefix),
            "{step:?} came from another console: {}",
            m.line
        );
        report(
            test,
            &format!(
                "xl create nc2dd to {step:?}: {:.1} s",
                m.arrived
                    .saturating_duration_since(dd.started)
                    .as_secs_f64()
            ),
        );
    }
    (bed, dd)
}

/// The NIC pool netback logged for vif MAC `mac` (its "NIC pool N for vif MAC m" line after
/// console position `from`).
pub fn nic_pool_of(bed: &mut XenBed, test: &str, from: usize, mac: &str, timeout: Duration) -> u32 {
    bed.rewind(from);
    let m = bed
        .wait_for(&format!("for vif MAC {mac}"), timeout)
        .unwrap_or_else(|e| fail(test, e));
    m.line
        .split("NIC pool ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pool number in {:?}", m.line))
}

/// The igb the HVM beds pass through to nc2dd.
pub const BED_NIC: &str = "0000:00:04.0";

/// nc2dd as the HVM driver domain owning the bed's igb: the deployable bundle's own xl config
/// (`image::bundle`), with the kernel under /nc2dd and a crash or reboot ending the domain, so
/// a test sees it instead of a restarted nc2dd.
pub fn hvm_driver_domain_cfg() -> String {
    let d = image::bundle::Deployment {
        pci: vec![BED_NIC.into()],
        install_dir: "/nc2dd".into(),
        ..image::bundle::Deployment::default()
    };
    let pci = d
        .check(0)
        .unwrap_or_else(|e| panic!("the bed's deployment: {e}"));
    d.driver_domain_cfg(&pci)
        .replace("on_reboot = \"restart\"", "on_reboot = \"destroy\"")
        .replace("on_crash = \"restart\"", "on_crash = \"destroy\"")
}

/// nc2dd's kernel as a guest (`guests/nc2-guest`), built once per test process into
/// `target/nc2-guest/`: the kernel and its boot module.
pub fn nc2_guest_image() -> &'static image::assemble::Artefacts {
    static BUILT: std::sync::OnceLock<image::assemble::Artefacts> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = image::assemble::workspace_root();
        let opts = image::assemble::Options {
            out_dir: root.join("target").join("nc2-guest"),
            system: root.join("guests").join("nc2-guest").join("system.toml"),
            ..image::assemble::Options::default()
        };
        image::assemble::build(&opts)
            .unwrap_or_else(|e| panic!("nc2-guest image build failed: {e}"))
    })
}

/// An nc2-guest's xl config (PVH, kernel and module under /nc2dd as `nc2-guest.elf` and
/// `nc2-guest-modules.bin`); `args` are its task arguments (`key=value`, space separated).
pub fn nc2_guest_cfg(name: &str, mac: &str, args: &str) -> String {
    let cmdline: Vec<String> = args
        .split_whitespace()
        .map(|a| format!("nc2dd.nc2-guest.{a}"))
        .collect();
    format!(
        r#"name = "{name}"
type = "pvh"
kernel = "/nc2dd/nc2-guest.elf"
ramdisk = "/nc2dd/nc2-guest-modules.bin"
cmdline = "{}"
memory = 48
vcpus = 1
vif = [ "backend=nc2dd,mac={mac}" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#,
        cmdline.join(" ")
    )
}

/// Creates guest `name` from `/nc2dd/<name>.cfg` and waits until its vif on driver domain `dd`
/// is Connected (InitWait came within libxl's 10 s, else `xl create` had failed). Returns the
/// guest's id, the backend path and the time from `xl create` to Connected.
pub fn start_guest(bed: &mut XenBed, test: &str, dd: u32, name: &str) -> (u32, String, Duration) {
    let cfg = format!("/nc2dd/{name}.cfg");
    let guest = match bed.xl_create(&cfg, name, Duration::from_secs(180)) {
        // dom0's libxenguest now and then fails to unpack the guest's XZ kernel ("Invalid
        // kernel"; the same file boots on the next try): a toolstack flake, retried once.
        Err(BedError::CommandFailed { output, .. }) if output.contains("Invalid kernel") => {
            report(
                test,
                &format!("xl create {name}: dom0 failed to unpack the kernel, retrying once"),
            );
            bed.xl_create(&cfg, name, Duration::from_secs(180))
        }
        other => other,
    }
    .unwrap_or_else(|e| fail(test, e));
    let backend = format!("/local/domain/{dd}/backend/vif/{}/0", guest.domid);
    let connected = bed
        .wait_for(&format!("{backend}/state = 4"), Duration::from_secs(180))
        .unwrap_or_else(|e| fail(test, e));
    let took = connected.arrived.saturating_duration_since(guest.started);
    report(
        test,
        &format!(
            "xl create {name} to vif Connected: {:.1} s",
            took.as_secs_f64()
        ),
    );
    (guest.domid, backend, took)
}

/// Reads guest `name`'s console log every few seconds until one of its `NC2DD_GUEST_*` markers
/// is `ok` (returns the markers with their words) or one of `bad` (panics with the console);
/// gives up after 360 s.
pub fn guest_verdict(bed: &mut XenBed, test: &str, name: &str, ok: &str, bad: &[&str]) -> String {
    guest_verdict_within(
        bed,
        test,
        name,
        (ok, bad),
        Duration::from_secs(60),
        Duration::from_secs(360),
    )
}

/// [`guest_verdict`] with `cmd` for each dom0 command and `within` for the whole wait.
pub fn guest_verdict_within(
    bed: &mut XenBed,
    test: &str,
    name: &str,
    (ok, bad): (&str, &[&str]),
    cmd: Duration,
    within: Duration,
) -> String {
    let log = guest_log(name);
    let started = Instant::now();
    let verdict = loop {
        let out = bed
            .run(
                &format!("grep -o 'NC2DD_GUEST_[A-Z_]*[ 0-9a-f]*' {log} | tr '\\n' ' '; echo"),
                cmd,
            )
            .unwrap_or_else(|e| fail(test, e));
        if out.contains(ok) {
            break Ok(out);
        }
        if bad.iter().any(|b| out.contains(b)) {
            break Err(out);
        }
        if started.elapsed() > within {
            break Err(format!(
                "no verdict from {name} in {} s: {out}",
                within.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    match verdict {
        Ok(out) => out,
        Err(why) => {
            let console = bed
                .run(&format!("tail -n 40 {log}"), cmd)
                .unwrap_or_else(|e| fail(test, e));
            panic!("{name} failed ({why}); its console ends:\n{console}");
        }
    }
}

/// The first 64-digit hex word after each `marker` in a verdict.
pub fn sums_after(out: &str, marker: &str) -> Vec<String> {
    out.split(marker)
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// The value of a xenstore key (the last non-empty line of `xenstore-read`'s output, guests'
/// console lines taken out).
pub fn read_key(bed: &mut XenBed, test: &str, key: &str) -> String {
    read_key_within(bed, test, key, Duration::from_secs(60))
}

/// [`read_key`] with `cmd` for the dom0 command.
pub fn read_key_within(bed: &mut XenBed, test: &str, key: &str, cmd: Duration) -> String {
    let out = bed
        .run(&format!("xenstore-read {key}"), cmd)
        .unwrap_or_else(|e| fail(test, e));
    without_guest_lines(&out)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// dom0's output with the guests' console lines taken out: Xen inserts a whole `(dN) ...` line
/// wherever it happens to be in dom0's output, even in the middle of a value.
pub fn without_guest_lines(out: &str) -> String {
    let mut rest = out;
    let mut kept = String::new();
    while let Some(at) = rest.find("(d") {
        let tail = &rest[at + 2..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(") ") {
            kept.push_str(&rest[..at]);
            rest = match tail.find('\n') {
                Some(nl) => &tail[nl + 1..],
                None => "",
            };
        } else {
            kept.push_str(&rest[..at + 2]);
            rest = tail;
        }
    }
    kept.push_str(rest);
    kept
}

/// The number after `word ` in netback's statistics line (`tx 12 pkts ...`), if any.
pub fn vif_counter(stats: &str, word: &str) -> Option<u64> {
    stats
        .split_once(&format!("{word} "))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The `statistics` key of the vif backend at `backend`, once `done` holds for it. netback
/// publishes its counters once a second, so right after a transfer the key may still hold the
/// counts from before it: this reads again for up to ten seconds, then returns the last value
/// for the caller's assertions to judge.
pub fn vif_stats_when(
    bed: &mut XenBed,
    test: &str,
    backend: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = read_key(bed, test, &format!("{backend}/statistics"));
        if done(&stats) || Instant::now() >= until {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Reports the `statistics` key of each vif backend in `backends` and asserts that netback
/// counted no protocol error on any of them.
pub fn report_vif_stats_without_errors(bed: &mut XenBed, test: &str, backends: &[&str]) {
    for b in backends {
        let stats = read_key(bed, test, &format!("{b}/statistics"));
        report(test, &format!("{b}: {stats}"));
        assert!(
            stats.contains(" 0 proto-err"),
            "protocol errors counted: {stats}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_found_after_their_marker_only() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let out = format!(
            "NC2DD_GUEST_UP NC2DD_GUEST_GOT {a} NC2DD_GUEST_FETCH_MS 812 NC2DD_GUEST_AGAIN {b} \
             NC2DD_GUEST_AGAIN 12"
        );
        assert_eq!(sums_after(&out, "NC2DD_GUEST_GOT "), vec![a]);
        assert_eq!(sums_after(&out, "NC2DD_GUEST_AGAIN "), vec![b]);
        assert!(sums_after(&out, "NC2DD_GUEST_SHA ").is_empty());
    }

    #[test]
    fn guest_console_lines_are_taken_out_of_dom0_output() {
        let out = "xenstore-read k\n5(d1) [INFO ] netback: x/state = 6\n(d12) y\nlast (d) (dx) z\n";
        assert_eq!(
            without_guest_lines(out),
            "xenstore-read k\n5last (d) (dx) z\n"
        );
    }

    #[test]
    fn vif_counters_are_read_by_name() {
        let stats = "tx 1234 pkts 1609682 B 0 err, rx 96 pkts 8838 B 0 drop, grant 103 calls";
        assert_eq!(vif_counter(stats, "tx"), Some(1234));
        assert_eq!(vif_counter(stats, "rx"), Some(96));
        assert_eq!(vif_counter(stats, "grant"), Some(103));
        assert_eq!(vif_counter(stats, "notify"), None);
        assert_eq!(vif_counter("", "tx"), None);
    }

    #[test]
    fn a_guest_config_names_nc2dd_as_backend_and_passes_its_role() {
        let cfg = guest_cfg("g", "00:16:3e:00:00:0a", "10.0.2.15", "nc2dd.role=wire");
        assert!(cfg.contains(r#"vif = [ "backend=nc2dd,mac=00:16:3e:00:00:0a,ip=10.0.2.15" ]"#));
        assert!(cfg.contains("extra = \"console=hvc0 quiet nc2dd.ip=10.0.2.15 nc2dd.role=wire\""));
        assert!(guest_init().contains("wire)"));
    }
}
