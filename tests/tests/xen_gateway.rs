//! The Xen gateway on bare QEMU (no hypervisor): the kernel says so at boot, a task with Xen
//! rights gets ENODEV from every gateway call (netback's self-test checks them), and a task
//! without Xen rights that makes one is faulted as malformed while the system carries on.
//! The gateway under real Xen is tested in the nested bed (`xen_bed.rs`).

use std::time::Duration;

use image::qemu::QemuConfig;
use nc2dd_tests::qemu::{self, Expect, Outcome};

const DEADLINE: Duration = Duration::from_secs(300);

fn boot(a: &image::assemble::Artefacts, name: &str, cmdline: &str) -> Outcome {
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    cfg.cmdline = format!("nc2dd.shutdown=allow {cmdline}");
    let mut expect = Expect::pass();
    expect.fail_on = vec!["NC2DD_FAIL", "NC2DD_PANIC", "NC2DD_FAULT"];
    qemu::run(name, &cfg, DEADLINE, &expect).unwrap_or_else(|e| panic!("{e}"))
}

fn has(out: &Outcome, needle: &str) {
    assert!(
        out.line_with(needle).is_some(),
        "no line with {needle:?} (log {})",
        out.log_path.display()
    );
}

#[test]
fn without_xen_gateway_calls_answer_enodev() {
    let out = boot(
        qemu::artefacts(),
        "xen-gateway-no-hypervisor",
        "nc2dd.netback.xen-selftest=1",
    );
    has(
        &out,
        "xen gateway: no hypervisor; gateway calls return ENODEV",
    );
    has(
        &out,
        "netback: xen self-test: no hypervisor: the gateway answers ENODEV",
    );
    has(&out, "supervisor: task 2 exited with status 0");
}

#[test]
fn a_gateway_call_without_xen_rights_faults_the_caller() {
    let out = boot(
        &qemu::system_artefacts("faults"),
        "xen-gateway-no-rights",
        "nc2dd.faulter.mode=xen-call",
    );
    has(
        &out,
        "supervisor: task 3 generation 0 faulted: malformed system call 35 (Xen gateway call 35 without Xen rights)",
    );
    has(&out, "faulter: generation 1 running normally after restart");
    has(&out, "supervisor: all tasks exited normally");
}
