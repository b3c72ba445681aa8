//! QEMU tests of device access for user-mode drivers: a task gets its claimed igb (config space
//! through the kernel's checks, BAR0, DMA memory, MSI-X interrupts masked until acknowledged) and
//! nothing else; a task touching what it was not given is stopped and restarted.

use std::time::Duration;

use image::qemu::QemuConfig;
use nc2dd_tests::qemu::{self, Expect, Outcome};

const DEADLINE: Duration = Duration::from_secs(300);

fn boot(name: &str, cmdline: &str) -> Outcome {
    boot_expecting(name, cmdline, Expect::pass())
}

fn boot_expecting(name: &str, cmdline: &str, expect: Expect) -> Outcome {
    let a = qemu::system_artefacts("devices");
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    cfg.cmdline = format!("nc2dd.shutdown=allow {cmdline}");
    // The igb at 00:04.0, on a network backend that goes nowhere.
    cfg.extra = [
        "-netdev",
        "user,id=n0,restrict=on",
        "-device",
        "igb,netdev=n0,addr=04.0",
    ]
    .map(String::from)
    .to_vec();
    qemu::run(name, &cfg, DEADLINE, &expect).unwrap_or_else(|e| panic!("{e}"))
}

fn has(out: &Outcome, needle: &str) {
    assert!(
        out.line_with(needle).is_some(),
        "no line with {needle:?} (log {})",
        out.log_path.display()
    );
}

fn intruder_case(mode: &str, report: &str) {
    let out = boot(
        &format!("devices-{mode}"),
        &format!("nc2dd.intruder.mode={mode}"),
    );
    has(&out, "probe: device checks passed");
    has(&out, &format!("intruder: generation 0 misbehaving: {mode}"));
    has(&out, &format!("supervisor: task 2 generation 0 {report}"));
    has(
        &out,
        "intruder: generation 1 running normally after restart",
    );
    has(&out, "supervisor: all tasks exited normally");
}

#[test]
fn a_driver_task_uses_its_device_config_bar_dma_and_msix() {
    let out = boot("devices-probe", "nc2dd.intruder.mode=same-device");
    has(&out, "acpi: ACPI rev");
    has(&out, "pci: ECAM at 0xb0000000");
    has(&out, "clock: TSC at");
    has(&out, "00:04.0 8086:10c9");
    has(&out, "nic -> task 1 (probe): MSI-X vectors");
    has(&out, "probe: config space: vendor 0x8086 device 0x10c9");
    has(&out, "probe: BAR0 at 0x450000000000 (128 KiB): STATUS");
    has(&out, "probe: DMA: 8192 bytes at 0x460000000000");
    has(&out, "probe: MSI-X vector 0 interrupt 1 received on bit 4");
    has(&out, "probe: MSI-X vector 0 interrupt 2 received on bit 4");
    has(&out, "probe: device checks passed");
}

#[test]
fn another_task_cannot_read_the_claimed_devices_config_space() {
    intruder_case(
        "same-device",
        "faulted: malformed system call 13 (config read: ",
    );
}

#[test]
fn a_task_cannot_read_another_functions_config_space() {
    intruder_case(
        "other-function",
        "faulted: malformed system call 13 (config read: ",
    );
}

#[test]
fn a_task_cannot_touch_memory_outside_its_grants() {
    intruder_case(
        "outside-grants",
        "faulted: CPU exception 14 (page fault (read of a non-present page))",
    );
}

#[test]
fn a_restarted_driver_gets_its_dma_memory_back_and_its_interrupts_rearmed() {
    // The probe's deliberate panic is expected here; faults and failures are not.
    let mut expect = Expect::pass();
    expect.fail_on = vec!["NC2DD_FAIL", "NC2DD_FAULT"];
    let out = boot_expecting(
        "devices-probe-restart",
        "nc2dd.probe.crash=1 nc2dd.intruder.mode=same-device",
        expect,
    );
    let bus_of = |generation: u32| {
        let line = out
            .line_with(&format!(
                "probe: generation {generation} holds 48 KiB of DMA at bus address"
            ))
            .unwrap_or_else(|| panic!("generation {generation} DMA line missing"));
        line.rsplit(' ').next().unwrap().to_string()
    };
    assert_eq!(
        bus_of(0),
        bus_of(1),
        "the restarted probe did not get its own memory back"
    );
    has(&out, "supervisor: task 1 generation 0 panicked");
    has(&out, "probe: MSI-X vector 0 interrupt 2 received on bit 4");
    has(&out, "probe: device checks passed");
}
