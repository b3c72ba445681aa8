//! The supervisor: task 0, highest priority. It sleeps until the kernel reports that a task
//! stopped, logs a readable report, and restarts failed tasks from their images with back-off.
//! Only an exit with status 0 is normal: that task stays stopped. A fault, a panic or an exit with
//! any other status is a failure, reported (with the status) and restarted like a fault. When
//! every other task has exited normally (a test or demo system that has finished its work) it
//! asks the kernel to shut the system down.
//!
//! Back-off: a task that faults again within `STABLE_MS` of its last restart waits twice as long
//! as the previous time before the next one (from `FIRST_DELAY_MS` up to `MAX_DELAY_MS`), so a
//! task that dies at once does not monopolise the CPU with restarts.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use log::{error, info};
use nc2dd_abi::syscall::{StopKind, TaskReport};
use nc2dd_abi::system_table::{MAX_TASKS, NO_BIT};
use userland::syscall;

userland::entry!(supervise);

const STABLE_MS: u64 = 1000;
const FIRST_DELAY_MS: u64 = 10;
const MAX_DELAY_MS: u64 = 2000;

#[derive(Clone, Copy, Default)]
struct Watch {
    exited: bool,
    /// A restart is due at this uptime.
    restart_at: Option<u64>,
    last_restart: Option<u64>,
    delay_ms: u64,
    restarts: u32,
}

const REG_NAMES: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

fn describe(r: &TaskReport) {
    let kind = StopKind::from_u32(r.kind);
    match kind {
        Some(StopKind::Exception) => error!(
            "task {} generation {} faulted: CPU exception {} ({}), error code {:#x}, rip {:#x}, \
             rsp {:#x}, cr2 {:#x}",
            r.index,
            r.generation,
            r.code,
            r.message(),
            r.error_code,
            r.rip,
            r.rsp,
            r.cr2
        ),
        Some(StopKind::BadSyscall) => error!(
            "task {} generation {} faulted: malformed system call {} ({}), rip {:#x}",
            r.index,
            r.generation,
            r.code,
            r.message(),
            r.rip
        ),
        Some(StopKind::Exit) => error!(
            "task {} generation {} failed: exited with status {}",
            r.index, r.generation, r.code
        ),
        Some(StopKind::Panic) => {
            error!(
                "task {} generation {} panicked: {}",
                r.index,
                r.generation,
                r.message()
            )
        }
        _ => error!(
            "task {} generation {} stopped (kind {})",
            r.index, r.generation, r.kind
        ),
    }
    // A panic or an exit says why itself; registers only help with CPU and system-call faults.
    if !matches!(kind, Some(StopKind::Panic | StopKind::Exit)) {
        for (i, chunk) in REG_NAMES.chunks(5).enumerate() {
            let v = &r.regs[i * 5..i * 5 + chunk.len()];
            error!(
                "  {} {:#x}  {} {:#x}  {} {:#x}  {} {:#x}  {} {:#x}",
                chunk[0], v[0], chunk[1], v[1], chunk[2], v[2], chunk[3], v[3], chunk[4], v[4]
            );
        }
    }
}

fn supervise() {
    let me = userland::info();
    let tasks = (me.task_count as usize).min(MAX_TASKS);
    let fault_mask = if me.fault_bit == NO_BIT {
        0
    } else {
        1u64 << me.fault_bit
    };
    let timer_mask = if me.timer_bit == NO_BIT {
        0
    } else {
        1u64 << me.timer_bit
    };
    if fault_mask == 0 {
        error!("no fault notification bit: cannot supervise");
        return;
    }
    info!("supervising {} tasks", tasks - 1);
    let mut watch = [Watch::default(); MAX_TASKS];
    loop {
        let now = syscall::uptime_ms();
        for (i, w) in watch.iter_mut().enumerate().take(tasks).skip(1) {
            if w.exited || w.restart_at.is_some() {
                continue;
            }
            let Some(r) = syscall::task_report(i) else {
                continue;
            };
            if r.kind == StopKind::Exit as u32 && r.code == 0 {
                info!("task {} exited with status 0", i);
                w.exited = true;
                continue;
            }
            describe(&r);
            let quick = w
                .last_restart
                .is_some_and(|t| now.saturating_sub(t) < STABLE_MS);
            w.delay_ms = if quick {
                (w.delay_ms * 2).clamp(FIRST_DELAY_MS, MAX_DELAY_MS)
            } else {
                0
            };
            info!(
                "restarting task {} in {} ms (restart {})",
                i,
                w.delay_ms,
                w.restarts + 1
            );
            w.restart_at = Some(now + w.delay_ms);
        }
        let mut next_due: Option<u64> = None;
        for (i, w) in watch.iter_mut().enumerate().take(tasks).skip(1) {
            let Some(at) = w.restart_at else { continue };
            if at <= now || timer_mask == 0 {
                syscall::task_restart(i);
                w.restart_at = None;
                w.last_restart = Some(now);
                w.restarts += 1;
            } else {
                next_due = Some(next_due.map_or(at, |d: u64| d.min(at)));
            }
        }
        if watch[1..tasks].iter().all(|w| w.exited) {
            info!("all tasks exited normally");
            syscall::shutdown(true);
            // Shutdown not allowed here: nothing left to supervise, so stay idle.
            syscall::wait(fault_mask);
            continue;
        }
        if let Some(at) = next_due {
            syscall::set_timer(at.saturating_sub(now).max(1));
        }
        syscall::wait(fault_mask | timer_mask);
    }
}
