//! QEMU boot tests: the kernel boots through PVH, reports the start-info facts the harness
//! gave it, and every CPU exception ends the run with a dump and the failure status.

use std::time::Duration;

use image::qemu::QemuConfig;
use nc2dd_tests::qemu::{self, Expect};

const DEADLINE: Duration = Duration::from_secs(120);

fn config(cmdline: &str, memory_mib: u32) -> QemuConfig {
    let a = qemu::artefacts();
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    cfg.cmdline = cmdline.into();
    cfg.memory_mib = memory_mib;
    cfg
}

/// Parses "memory: N KiB RAM".
fn reported_ram_kib(out: &qemu::Outcome) -> u64 {
    let line = out
        .line_with("memory: ")
        .expect("kernel printed its RAM size");
    line.split("memory: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn boots_and_reports_the_start_info_it_was_given() {
    let cmdline = "console=com1 nc2dd.tag=harness-7f3a nc2dd.shutdown=allow";
    for mem in [128u32, 256] {
        let out = qemu::run(
            &format!("boot-{mem}m"),
            &config(cmdline, mem),
            DEADLINE,
            &Expect::pass(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ram = reported_ram_kib(&out);
        let given = mem as u64 * 1024;
        // The firmware keeps a little (low-memory hole, ACPI tables) for itself.
        assert!(
            ram <= given && ram >= given * 95 / 100,
            "{ram} KiB RAM for -m {mem}M"
        );
        assert!(
            out.line_with("modules 1 ").is_some(),
            "one boot module expected"
        );
        assert!(
            out.line_with(&format!("command line: \"{cmdline}\""))
                .is_some()
        );
        for (name, size) in &qemu::artefacts().servers {
            assert!(
                out.line_with(&format!("server {name} ({size} bytes)"))
                    .is_some(),
                "server {name} not reported"
            );
        }
        assert!(out.line_with("W^X").is_some());
        // The real system's servers run as tasks and the supervisor sees them finish.
        for task in ["nic-ixgbe", "netback"] {
            assert!(
                out.line_with(&format!("{task}: {task} ")).is_some(),
                "{task} did not run"
            );
        }
        assert!(
            out.line_with("supervisor: all tasks exited normally")
                .is_some()
        );
        eprintln!(
            "boot with {mem} MiB under {} took {:?}",
            out.accel, out.elapsed
        );
    }
}

#[test]
fn boots_without_a_module() {
    let a = qemu::artefacts();
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.cmdline = "nc2dd.tag=bare".into();
    let out = qemu::run("boot-no-module", &cfg, DEADLINE, &Expect::pass())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.line_with("modules 0 ").is_some());
    assert!(out.line_with("boot module: none").is_some());
}

fn expect_fault(test: &str, vector: u32, detail: &str) {
    let cfg = config(&format!("nc2dd.selftest={test}"), 128);
    let out = qemu::run(&format!("fault-{test}"), &cfg, DEADLINE, &Expect::fault())
        .unwrap_or_else(|e| panic!("{e}"));
    let head = out.line_with("NC2DD_FAULT").unwrap();
    assert!(head.contains(&format!("CPU exception {vector} ")), "{head}");
    for field in ["error code", "rip 0x", "cr2 0x", "rax 0x", "r15 0x"] {
        assert!(out.line_with(field).is_some(), "dump lacks {field}");
    }
    assert!(out.line_with(detail).is_some(), "dump lacks {detail:?}");
}

#[test]
fn page_fault_dumps_and_fails() {
    expect_fault("pagefault", 14, "cr2 0x00007fffdead0000");
}

#[test]
fn null_dereference_faults() {
    expect_fault("null", 14, "cr2 0x0000000000000000");
}

#[test]
fn kernel_text_is_not_writable() {
    expect_fault("write-text", 14, "write: protection violation");
}

#[test]
fn kernel_heap_is_not_executable() {
    expect_fault("exec-heap", 14, "instruction fetch");
}

#[test]
fn invalid_opcode_dumps_and_fails() {
    expect_fault("ud", 6, "invalid opcode");
}

#[test]
fn panic_is_reported_and_fails() {
    let cfg = config("nc2dd.selftest=panic", 128);
    let expect = Expect {
        marker: "NC2DD_PANIC",
        fail_on: vec!["NC2DD_PASS", "NC2DD_FAULT"],
        status: nc2dd_abi::debug_exit::qemu_status(nc2dd_abi::debug_exit::FAILURE),
    };
    let out = qemu::run("panic", &cfg, DEADLINE, &expect).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.line_with("self-test panic").is_some());
}
