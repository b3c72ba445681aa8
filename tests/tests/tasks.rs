//! QEMU tests of the kernel's task machinery: user-mode tasks in their own address spaces,
//! channels with notifications, and faults that the supervisor reports and repairs while the
//! other tasks keep running.

use std::time::Duration;

use image::qemu::QemuConfig;
use nc2dd_tests::qemu::{self, Expect, Outcome};

const DEADLINE: Duration = Duration::from_secs(300);

fn boot(system: &str, name: &str, cmdline: &str) -> Outcome {
    let a = qemu::system_artefacts(system);
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    cfg.cmdline = format!("nc2dd.shutdown=allow {cmdline}");
    let mut expect = Expect::pass();
    // Task panics are failures here; the faults these tests provoke are reported by the
    // supervisor (not the kernel's fatal FAULT marker).
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
fn two_tasks_exchange_a_million_messages() {
    let out = boot("pingpong", "tasks-pingpong", "nc2dd.ping.rounds=500000");
    has(
        &out,
        "ping: 500000 round trips (1000000 messages) over channel \"pp\" checked, generation 0",
    );
    has(&out, "pong: answered 500000 messages, generation 0");
    has(&out, "supervisor: task 1 exited with status 0");
    has(&out, "supervisor: task 2 exited with status 0");
    let bench = out
        .line_with("notify/wait round trip:")
        .expect("benchmark line");
    eprintln!("benchmark ({}): {bench}", out.accel);
}

/// Boots the fault system with the faulter in `mode` and checks that the supervisor reported
/// `report`, restarted the faulter, and that the bystanders finished untouched.
fn fault_case(mode: &str, report: &str) -> Outcome {
    let out = boot(
        "faults",
        &format!("tasks-fault-{mode}"),
        &format!("nc2dd.faulter.mode={mode}"),
    );
    has(&out, &format!("faulter: generation 0 misbehaving: {mode}"));
    has(&out, &format!("supervisor: task 3 generation 0 {report}"));
    has(&out, "supervisor: restarting task 3");
    has(&out, "task 3 (faulter) restarted as generation 1");
    has(&out, "faulter: generation 1 running normally after restart");
    has(
        &out,
        "bystander-a: 100000 round trips (200000 messages) over channel \"pair\" checked, generation 0",
    );
    has(&out, "bystander-b: answered 100000 messages, generation 0");
    has(&out, "supervisor: all tasks exited normally");
    out
}

#[test]
fn writing_kernel_memory_faults_and_restarts_the_task() {
    let out = fault_case(
        "kernel-write",
        "faulted: CPU exception 14 (page fault (write: protection violation))",
    );
    has(&out, "cr2 0x100000");
}

#[test]
fn writing_another_tasks_memory_faults_and_restarts_the_task() {
    let out = fault_case(
        "peer-write",
        "faulted: CPU exception 14 (page fault (write to a non-present page))",
    );
    has(&out, "cr2 0x440000000000");
}

#[test]
fn executing_the_stack_faults_and_restarts_the_task() {
    fault_case(
        "exec-stack",
        "faulted: CPU exception 14 (page fault (instruction fetch))",
    );
}

#[test]
fn a_bad_syscall_pointer_faults_the_caller_not_the_kernel() {
    fault_case(
        "bad-pointer",
        "faulted: malformed system call 1 (debug_log: read of 16 bytes at 0x100000 is outside the task's memory)",
    );
}
