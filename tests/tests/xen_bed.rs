//! nc2dd inside real Xen: boots the nested test bed (Xen 4.17 + Debian dom0 in QEMU/TCG), checks
//! that Xen offers HVM, then has dom0 `xl create` the nc2dd kernel as a PVH domU and waits for its
//! pass marker, which Xen relays from the guest's port 0xE9 as a `(dN) ...` console line.
//!
//! Fails, saying what is missing, when QEMU, the bed or the nc2dd ELF is absent. Prints the wall
//! time of each stage and keeps the serial log in `target/xenbed-logs/<test>.log`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nc2dd_tests::xenbed::{self, BedConfig, BedError, XenBed};

// The serial markers of `nc2dd_abi::markers` (this crate does not depend on the ABI crate).
const PASS: &str = "NC2DD_PASS";
const GUEST_FAIL_MARKERS: &[&str] = &[
    "NC2DD_FAIL",
    "NC2DD_PANIC",
    "NC2DD_FAULT",
    // Xen's report of a guest triple fault (the domain is then destroyed: on_reboot="destroy").
    "Triple fault",
];

/// The PVH domU: no devices, so no backend or hotplug script is involved.
const XL_PVH_CFG: &str = r#"name = "nc2dd"
type = "pvh"
kernel = "/nc2dd/nc2dd.elf"
memory = 64
vcpus = 2
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

fn kernel_elf() -> PathBuf {
    match std::env::var_os("NC2DD_KERNEL_ELF") {
        Some(p) => PathBuf::from(p),
        None => xenbed::workspace_root().join("target/nc2dd/nc2dd.elf"),
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
    panic!(
        "{e}\nserial log: {}",
        xenbed::log_dir().join(format!("{test}.log")).display()
    )
}

#[test]
fn nc2dd_runs_as_pvh_domu_in_nested_xen() {
    const TEST: &str = "nc2dd_pvh_domu";
    let _ = fs::create_dir_all(xenbed::log_dir());
    let _ = fs::remove_file(xenbed::log_dir().join(format!("{TEST}.times")));

    if let Err(e) = xenbed::check_qemu() {
        fail(TEST, e);
    }
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

    let mut cfg = BedConfig::new(TEST);
    cfg.dom0_files = vec![
        ("nc2dd.elf".to_string(), elf),
        ("nc2dd-pvh.cfg".to_string(), XL_PVH_CFG.as_bytes().to_vec()),
    ];
    let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| fail(TEST, e));
    report(
        TEST,
        &format!(
            "bed assembly (build-bed.sh, cached or cold): {:.1} s",
            bed.files.assembly_time.as_secs_f64()
        ),
    );
    report(
        TEST,
        &format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ),
    );

    let info = bed
        .run("xl info", Duration::from_secs(60))
        .unwrap_or_else(|e| fail(TEST, e));
    let caps = info
        .lines()
        .find_map(|l| l.strip_prefix("virt_caps"))
        .unwrap_or_else(|| panic!("`xl info` printed no virt_caps line:\n{info}"));
    assert!(
        caps.split_whitespace().any(|c| c == "hvm"),
        "Xen offers no HVM (virt_caps{caps}); the outer QEMU must emulate SVM"
    );

    for m in GUEST_FAIL_MARKERS {
        bed.add_fail_marker(m);
    }
    let before_create = bed.cursor();
    let t_create = Instant::now();
    bed.run("xl create /nc2dd/nc2dd-pvh.cfg", Duration::from_secs(120))
        .unwrap_or_else(|e| fail(TEST, e));
    let domid = bed
        .run("xl domid nc2dd", Duration::from_secs(30))
        .ok()
        .and_then(|out| {
            out.lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .next_back()
        });
    // The guest may have printed while xl create was still running, and it may already be gone
    // (it powers off after passing) when `xl domid` runs: then the first guest domain, d1.
    let guest = format!("(d{}) ", domid.unwrap_or(1));
    bed.rewind(before_create);
    let first = bed
        .wait_for(&guest, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(TEST, e));
    report(
        TEST,
        &format!(
            "xl create to first nc2dd log line: {:.1} s ({})",
            first
                .arrived
                .saturating_duration_since(t_create)
                .as_secs_f64(),
            first.line.trim()
        ),
    );
    let pass = bed
        .wait_for(PASS, Duration::from_secs(120))
        .unwrap_or_else(|e| fail(TEST, e));
    assert!(
        pass.line.contains(&guest),
        "the pass marker came from another console than nc2dd's {guest:?}: {}",
        pass.line
    );
    report(
        TEST,
        &format!(
            "xl create to {PASS}: {:.1} s; whole bed run {:.1} s",
            pass.arrived
                .saturating_duration_since(t_create)
                .as_secs_f64(),
            bed.elapsed().as_secs_f64()
        ),
    );
}
