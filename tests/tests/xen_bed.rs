//! nc2dd inside real Xen: boots the nested test bed (Xen 4.17 + Debian dom0 in QEMU/TCG), checks
//! that Xen offers HVM, then has dom0 `xl create` the nc2dd kernel as a PVH domU and waits for its
//! pass marker, which Xen relays from the guest's port 0xE9 as a `(dN) ...` console line.
//!
//! A second test runs netback's Xen self-test (xenstore read/write/watch, then grants and event
//! channels both ways with `xenpeer`, a host-built program run in dom0: nc2dd grants dom0 a page
//! and offers a port; dom0 grants nc2dd a page, which it maps, writes, copies and unmaps through
//! the gateway, and offers a port nc2dd binds to).
//!
//! Fails, saying what is missing, when QEMU, the bed or the nc2dd ELF is absent. Prints the wall
//! time of each stage and keeps the serial log in `target/xenbed-logs/<test>.log`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nc2dd_tests::xenbed::{self, BedConfig, BedError, Flavour, XenBed};

// The serial markers of `nc2dd_abi::markers` (this crate does not depend on the ABI crate).
const PASS: &str = "NC2DD_PASS";
const GUEST_FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    // Xen's report of a guest triple fault (the domain is then destroyed: on_reboot="destroy").
    "Triple fault",
];

/// The PVH domU: no devices, so no backend or hotplug script is involved. A `ramdisk` line is
/// added when there is a boot module.
const XL_PVH_CFG: &str = r#"name = "nc2dd"
type = "pvh"
kernel = "/nc2dd/nc2dd.elf"
# The demo system ends itself (and prints the pass marker) once its servers have finished
# (netback would serve vifs until stopped, so it is told not to).
cmdline = "nc2dd.shutdown=allow nc2dd.netback.serve=0"
memory = 64
vcpus = 2
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

/// An HVM guest owning the outer igb (00:04.0), booted by Xen's own firmware (no disk: SeaBIOS
/// starts and finds nothing to boot).
const XL_HVM_PASSTHROUGH_CFG: &str = r#"name = "hvm-passthrough"
type = "hvm"
memory = 64
vcpus = 2
pci = [ "0000:00:04.0" ]
vnc = 0
sdl = 0
serial = "none"
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

/// `NC2DD_KERNEL_ELF` if set, else the image of the real system, built now if need be.
fn kernel_elf() -> PathBuf {
    match std::env::var_os("NC2DD_KERNEL_ELF") {
        Some(p) => PathBuf::from(p),
        None => nc2dd_tests::qemu::artefacts().kernel.clone(),
    }
}

/// Stage times go straight to the process's stderr (not through the test harness's capture, so
/// they show on passing runs too) and into `<test>.times` next to the log.
fn report(test: &str, line: &str) {
    let _ = writeln!(std::io::stderr(), "[{test}] {line}");
    let path = xenbed::log_dir().join(format!("{test}.times"));
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn fail(test: &str, e: BedError) -> ! {
    match e {
        // Nothing booted: there is no serial log of this run to point at.
        BedError::QemuMissing(_) | BedError::BedBuild(_) | BedError::Missing(_) => panic!("{e}"),
        _ => panic!(
            "{e}\nserial log: {}",
            xenbed::log_dir().join(format!("{test}.log")).display()
        ),
    }
}

/// The boot module (the packed servers) the image tool writes next to the kernel: from
/// `NC2DD_KERNEL_MODULE` if set (then it must exist), else `nc2dd-modules.bin` beside the ELF if
/// present. nc2dd boots without one (it then starts no servers).
fn load_module() -> Option<Vec<u8>> {
    match std::env::var_os("NC2DD_KERNEL_MODULE") {
        Some(p) => Some(fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "NC2DD_KERNEL_MODULE names {} but it cannot be read ({e})",
                PathBuf::from(&p).display()
            )
        })),
        None => {
            let sibling = kernel_elf().with_file_name("nc2dd-modules.bin");
            fs::read(sibling).ok()
        }
    }
}

/// Reads the nc2dd kernel, failing with what is missing and how to make it.
fn load_elf() -> Vec<u8> {
    let elf_path = kernel_elf();
    let elf = fs::read(&elf_path).unwrap_or_else(|e| {
        panic!(
            "the nc2dd kernel ELF is missing at {} ({e}): build it with `cargo run -p image -- build`, \
             or point NC2DD_KERNEL_ELF at it",
            elf_path.display()
        )
    });
    assert!(
        elf.starts_with(b"\x7fELF"),
        "{} is not an ELF file",
        elf_path.display()
    );
    elf
}

/// Boots a bed of `flavour` with `files` under /nc2dd in dom0, reports the first two stage times,
/// and checks that Xen offers HVM (which PVH and HVM guests both need).
fn boot(test: &str, flavour: Flavour, files: Vec<(String, Vec<u8>)>) -> XenBed {
    let _ = fs::create_dir_all(xenbed::log_dir());
    let _ = fs::remove_file(xenbed::log_dir().join(format!("{test}.times")));
    if let Err(e) = xenbed::check_qemu() {
        fail(test, e);
    }
    let mut cfg = BedConfig::new(test);
    cfg.flavour = flavour;
    cfg.dom0_files = files;
    let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| fail(test, e));
    report(
        test,
        &format!(
            "bed assembly (build-bed.sh, cached or cold): {:.1} s",
            bed.files.assembly_time.as_secs_f64()
        ),
    );
    report(
        test,
        &format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ),
    );
    let info = bed
        .run("xl info", Duration::from_secs(60))
        .unwrap_or_else(|e| fail(test, e));
    let caps = info
        .lines()
        .find_map(|l| l.strip_prefix("virt_caps"))
        .unwrap_or_else(|| panic!("`xl info` printed no virt_caps line:\n{info}"));
    assert!(
        caps.split_whitespace().any(|c| c == "hvm"),
        "Xen offers no HVM (virt_caps{caps}); the outer QEMU must emulate SVM"
    );
    // The harness must see a failing command's status, not only that it finished.
    let (status, _) = bed
        .run_status("test -e /nc2dd/no-such-file", Duration::from_secs(30))
        .unwrap_or_else(|e| fail(test, e));
    assert_eq!(status, 1, "a failing dom0 command did not report status 1");
    bed
}

/// `xl create`s the domain `name` from `cfg_path` in dom0 and waits for nc2dd's pass marker on
/// its console lines, reporting when the first of them and the marker arrived.
fn create_and_pass(bed: &mut XenBed, test: &str, name: &str, cfg_path: &str) {
    for m in GUEST_FAIL_MARKERS {
        bed.add_fail_marker(m);
    }
    let dom = bed
        .xl_create(cfg_path, name, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    let first = bed
        .wait_for(&dom.console_prefix, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    report(
        test,
        &format!(
            "xl create to first {name} log line: {:.1} s ({})",
            first
                .arrived
                .saturating_duration_since(dom.started)
                .as_secs_f64(),
            first.line.trim()
        ),
    );
    let pass = bed
        .wait_for(PASS, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    assert!(
        pass.line.contains(&dom.console_prefix),
        "the pass marker came from another console than {name}'s {:?}: {}",
        dom.console_prefix,
        pass.line
    );
    report(
        test,
        &format!(
            "xl create to {PASS}: {:.1} s; whole bed run {:.1} s",
            pass.arrived
                .saturating_duration_since(dom.started)
                .as_secs_f64(),
            bed.elapsed().as_secs_f64()
        ),
    );
}

#[test]
fn nc2dd_runs_as_pvh_domu_in_nested_xen() {
    xenbed::retry_on_bed_fault("nc2dd_runs_as_pvh_domu_in_nested_xen", || {
        const TEST: &str = "nc2dd_pvh_domu";
        let mut files = vec![("nc2dd.elf".to_string(), load_elf())];
        let mut xl_cfg = XL_PVH_CFG.to_string();
        if let Some(module) = load_module() {
            report(TEST, &format!("boot module: {} bytes", module.len()));
            files.push(("nc2dd-modules.bin".to_string(), module));
            xl_cfg.push_str("ramdisk = \"/nc2dd/nc2dd-modules.bin\"\n");
        }
        files.push(("nc2dd-pvh.cfg".to_string(), xl_cfg.into_bytes()));
        let mut bed = boot(TEST, Flavour::Pvh, files);
        create_and_pass(&mut bed, TEST, "nc2dd", "/nc2dd/nc2dd-pvh.cfg");
    });
}

#[test]
fn hvm_guest_gets_the_passed_through_igb() {
    xenbed::retry_on_bed_fault("hvm_guest_gets_the_passed_through_igb", || {
        // The bed for the NIC-owning driver domain: dom0 with the device model, the outer igb handed to
        // an HVM guest through the emulated VT-d. Stock firmware (hvmloader + SeaBIOS) proves it without
        // depending on nc2dd's own HVM entry.
        const TEST: &str = "hvm_guest_igb_passthrough";
        let mut bed = boot(
            TEST,
            Flavour::Hvm,
            vec![(
                "hvm-passthrough.cfg".to_string(),
                XL_HVM_PASSTHROUGH_CFG.as_bytes().to_vec(),
            )],
        );
        // dom0 has no igb driver, so nothing is unbound: pciback just takes the device.
        let assignable = bed
            .run(
                "xl pci-assignable-add 0000:00:04.0 && xl pci-assignable-list",
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        assert!(
            assignable.contains("0000:00:04.0"),
            "the igb is not assignable:\n{assignable}"
        );
        let dom = bed
            .xl_create(
                "/nc2dd/hvm-passthrough.cfg",
                "hvm-passthrough",
                Duration::from_secs(120),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        let t_create = dom.started;
        // hvmloader lists the guest's PCI devices with their BARs: the igb sits at guest 04.0.
        let igb = bed
            .wait_for(
                &format!("{}pci dev 04:0", dom.console_prefix),
                Duration::from_secs(120),
            )
            .unwrap_or_else(|e| fail(TEST, e));
        let bios = bed
            .wait_for("SeaBIOS (version", Duration::from_secs(120))
            .unwrap_or_else(|e| fail(TEST, e));
        report(
            TEST,
            &format!(
                "xl create to hvmloader's igb line: {:.1} s ({}); to SeaBIOS: {:.1} s",
                igb.arrived
                    .saturating_duration_since(t_create)
                    .as_secs_f64(),
                igb.line.trim(),
                bios.arrived
                    .saturating_duration_since(t_create)
                    .as_secs_f64()
            ),
        );
    });
}

/// Builds the dom0 peer (`tests/xenpeer`) for the host, which the bed's glibc runs, and reads it.
fn build_xenpeer() -> Vec<u8> {
    let root = image::assemble::workspace_root();
    let target = root.join("target").join("xenpeer");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "xenpeer", "--target-dir"])
        .arg(&target)
        .current_dir(&root)
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build xenpeer: {e}"));
    assert!(status.success(), "building xenpeer failed ({status})");
    let bin = target.join("debug").join("xenpeer");
    fs::read(&bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()))
}

/// The value of a `xenstore-read` of one key, from the command's console output (the last line
/// that is a number: the echoed command and guest lines may surround it).
fn xenstore_number(bed: &mut XenBed, test: &str, path: &str) -> u32 {
    let out = bed
        .run(&format!("xenstore-read {path}"), Duration::from_secs(60))
        .unwrap_or_else(|e| fail(test, e));
    out.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no number in `xenstore-read {path}`:\n{out}"))
}

#[test]
fn netback_exchanges_xenstore_grant_and_event_with_dom0() {
    xenbed::retry_on_bed_fault(
        "netback_exchanges_xenstore_grant_and_event_with_dom0",
        || {
            xen_selftest("nc2dd_xen_selftest", false);
        },
    );
}

/// The same on 2-level event channels, with netback's generation 0 stopping on purpose while it
/// holds a grant and a port for dom0: the kernel must release them on restart, and generation 1
/// passes the whole test.
#[test]
fn a_restarted_netback_gets_its_xen_resources_released() {
    xenbed::retry_on_bed_fault(
        "a_restarted_netback_gets_its_xen_resources_released",
        || {
            xen_selftest("nc2dd_xen_selftest_restart", true);
        },
    );
}

fn xen_selftest(test: &'static str, restart: bool) {
    let args = if restart {
        "nc2dd.netback.xen-selftest=1 nc2dd.netback.xen-restart=1 nc2dd.xen-evtchn=2l"
    } else {
        "nc2dd.netback.xen-selftest=1"
    };
    let mut files = vec![
        ("nc2dd.elf".to_string(), load_elf()),
        ("xenpeer".to_string(), build_xenpeer()),
    ];
    let module = load_module().unwrap_or_else(|| {
        panic!("the self-test needs the boot module with netback: build it with `cargo run -p image -- build`")
    });
    files.push(("nc2dd-modules.bin".to_string(), module));
    let cfg = XL_PVH_CFG.replace(
        "cmdline = \"nc2dd.shutdown=allow nc2dd.netback.serve=0\"",
        &format!("cmdline = \"nc2dd.shutdown=allow {args}\""),
    ) + "ramdisk = \"/nc2dd/nc2dd-modules.bin\"\n";
    assert!(
        cfg.contains("xen-selftest=1"),
        "the xl config has no cmdline line to extend"
    );
    files.push(("nc2dd-selftest.cfg".to_string(), cfg.into_bytes()));
    let mut bed = boot(test, Flavour::Pvh, files);
    for m in GUEST_FAIL_MARKERS {
        bed.add_fail_marker(m);
    }
    bed.add_fail_marker("xen self-test failed");
    bed.add_fail_marker("xen gateway: bring-up failed");
    let dom = bed
        .xl_create(
            "/nc2dd/nc2dd-selftest.cfg",
            "nc2dd",
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| fail(test, e));
    let first = bed
        .wait_for(&dom.console_prefix, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    report(
        test,
        &format!(
            "xl create to first nc2dd log line: {:.1} s",
            first
                .arrived
                .saturating_duration_since(dom.started)
                .as_secs_f64()
        ),
    );
    let expect = |bed: &mut XenBed, needle: &str| {
        let m = bed
            .wait_for(needle, Duration::from_secs(180))
            .unwrap_or_else(|e| fail(test, e));
        assert!(
            m.line.contains(&dom.console_prefix),
            "{needle:?} came from another console than nc2dd's: {}",
            m.line
        );
        m
    };
    let gateway = expect(&mut bed, "xen gateway: Xen 4.");
    // Xen 4.17 offers FIFO event channels; the restart variant asks for 2-level, so both ABIs
    // carry the whole exchange.
    let abi = if restart { "2-level" } else { "FIFO" };
    expect(
        &mut bed,
        &format!("upcall vector 0xf3, {abi} event channels"),
    );
    let home = format!("/local/domain/{}", dom.domid);
    expect(&mut bed, &format!("domain id {}, home {home}", dom.domid));
    expect(
        &mut bed,
        &format!("wrote and read back {home}/data/nc2dd-selftest"),
    );
    expect(&mut bed, "(set)");
    let watched = expect(&mut bed, "(write)");
    let mut published = expect(&mut bed, "granted a page to dom0 as ref");
    if restart {
        expect(&mut bed, "stopping on purpose (generation 0)");
        expect(
            &mut bed,
            "restarted: closed 1 of 1 ports, unmapped 0 window pages, ended 1 of 1 grants",
        );
        expect(&mut bed, "task 2 (netback) restarted as generation 1");
        // Generation 1 runs the self-test from the start on the same xenstore ring.
        expect(&mut bed, "(write)");
        published = expect(&mut bed, "granted a page to dom0 as ref");
    }
    report(
        test,
        &format!(
            "xenstore stage (gateway up to grant published: domid, write/read back, watch): {:.1} s",
            published
                .arrived
                .saturating_duration_since(gateway.arrived)
                .as_secs_f64()
        ),
    );
    assert!(watched.arrived <= published.arrived);
    // dom0 sees what nc2dd wrote.
    let value = bed
        .run(
            &format!("xenstore-read {home}/data/nc2dd-selftest"),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| fail(test, e));
    assert!(
        value.contains(&format!("written by nc2dd domain {}", dom.domid)),
        "dom0 reads another value:\n{value}"
    );
    let gref = xenstore_number(&mut bed, test, &format!("{home}/data/nc2dd-gref"));
    let port = xenstore_number(&mut bed, test, &format!("{home}/data/nc2dd-port"));
    // nc2dd's lines during the peer's run land in its output: look for them from here.
    let before_peer = bed.cursor();
    let peer = bed
        .run(
            &format!("/nc2dd/xenpeer {} {gref} {port}", dom.domid),
            Duration::from_secs(240),
        )
        .unwrap_or_else(|e| fail(test, e));
    assert!(peer.contains("XENPEER_OK"), "the dom0 peer failed:\n{peer}");
    assert!(
        peer.contains("its mapped write and grant copy are in our page"),
        "the dom0 peer did not check nc2dd's map and copy:\n{peer}"
    );
    bed.rewind(before_peer);
    expect(
        &mut bed,
        "peer replied \"nc2dd peer reply\" and notified us",
    );
    expect(&mut bed, "grant ended and port closed");
    expect(&mut bed, ": pattern found, wrote through the mapping");
    expect(&mut bed, "with one batched copy; unmapped");
    expect(&mut bed, "and notified it");
    let passed = expect(&mut bed, "xen self-test passed");
    report(
        test,
        &format!(
            "grant/event exchange both ways (grant published to self-test passed, peer included): {:.1} s",
            passed
                .arrived
                .saturating_duration_since(published.arrived)
                .as_secs_f64()
        ),
    );
    let pass = bed
        .wait_for(PASS, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(test, e));
    assert!(pass.line.contains(&dom.console_prefix));
    report(
        test,
        &format!(
            "xl create to {PASS}: {:.1} s; whole bed run {:.1} s",
            pass.arrived
                .saturating_duration_since(dom.started)
                .as_secs_f64(),
            bed.elapsed().as_secs_f64()
        ),
    );
}
