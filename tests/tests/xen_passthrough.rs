//! nc2dd as an HVM driver domain owning a passed-through NIC, in the nested Xen test bed.
//!
//! dom0 hands the outer igb to pciback; xl creates nc2dd with `firmware_override` (the PVH-entry
//! ELF runs as the HVM guest's firmware, so no hvmloader places the BARs and there is no ACPI)
//! and `pci = [...]`. The probe task must find the igb, read it through its BAR, get DMA memory
//! and receive MSI-X interrupts delivered through Xen's interrupt remapping.

use std::fs;
use std::time::Duration;

use nc2dd_tests::qemu;
use nc2dd_tests::xenbed::{self, BedConfig, Flavour, XenBed};

const TEST: &str = "nc2dd_hvm_passthrough";

const XL_CFG: &str = r#"name = "nc2dd"
type = "hvm"
# firmware_override takes no ramdisk: the standalone kernel carries its boot module.
firmware_override = "/nc2dd/nc2dd.elf"
memory = 64
vcpus = 2
pci = [ "0000:00:04.0" ]
driver_domain = 1
vnc = 0
sdl = 0
serial = "none"
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
"#;

fn report(line: &str) {
    eprintln!("[{TEST}] {line}");
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(xenbed::log_dir().join(format!("{TEST}.times")))
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
}

#[test]
fn nc2dd_drives_a_passed_through_nic_as_an_hvm_driver_domain() {
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
        ("nc2dd-hvm.cfg".into(), XL_CFG.as_bytes().to_vec()),
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
}
