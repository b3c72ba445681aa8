//! System-call wrappers (see `nc2dd_abi::syscall` for the ABI).
//!
//! On the host these functions exist so servers type-check and unit-test there, but a host
//! program never reaches them: `entry!` gives the host build a `main` that does not run the
//! server, and calling one anyway panics with a message saying so.

pub use nc2dd_abi::syscall::*;

#[cfg(target_os = "none")]
fn raw(n: u64, a: u64, b: u64) -> u64 {
    let ret: u64;
    // SAFETY: the system-call gate transfers to the kernel, which validates every argument; per
    // the ABI it clobbers only rcx, r11 and the result register.
    unsafe {
        core::arch::asm!(
            "int 0xfd",
            inlateout("rax") n => ret,
            in("rdi") a,
            in("rsi") b,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_os = "none"))]
fn raw(n: u64, _a: u64, _b: u64) -> u64 {
    panic!("nc2dd system call {n} made outside nc2dd")
}

/// Writes a line to the kernel console.
pub fn debug_log(s: &str) {
    raw(SYS_DEBUG_LOG, s.as_ptr() as u64, s.len() as u64);
}

/// Ends this task; `status` 0 means it finished its work.
pub fn exit(status: u64) -> ! {
    raw(SYS_EXIT, status, 0);
    // The kernel never returns from SYS_EXIT.
    unreachable!("SYS_EXIT returned")
}

/// Ends this task as failed after a panic.
pub fn panic_exit(msg: &str) -> ! {
    raw(SYS_PANIC, msg.as_ptr() as u64, msg.len() as u64);
    unreachable!("SYS_PANIC returned")
}

/// Blocks until a bit of `mask` is pending; returns (and clears) the pending bits of `mask`.
pub fn wait(mask: u64) -> u64 {
    raw(SYS_WAIT, mask, 0)
}

/// The pending bits of `mask`, cleared; 0 at once when none.
pub fn poll(mask: u64) -> u64 {
    raw(SYS_POLL, mask, 0)
}

/// Kicks the other end of this task's channel `channel` (its index in the task info).
pub fn notify(channel: usize) {
    raw(SYS_NOTIFY, channel as u64, 0);
}

pub fn yield_now() {
    raw(SYS_YIELD, 0, 0);
}

/// Supervisor: the report of task `index` if it has stopped.
pub fn task_report(index: usize) -> Option<TaskReport> {
    let mut r = TaskReport::empty();
    (raw(SYS_TASK_REPORT, index as u64, &raw mut r as u64) == 1).then_some(r)
}

/// Supervisor: restarts stopped task `index` with its next generation.
pub fn task_restart(index: usize) {
    raw(SYS_TASK_RESTART, index as u64, 0);
}

/// Ends the whole system if the kernel allows it (tests and demo runs); returns if not.
pub fn shutdown(success: bool) {
    raw(SYS_SHUTDOWN, u64::from(success), 0);
}

/// Posts this task's timer bit after `ms` milliseconds (0 cancels).
pub fn set_timer(ms: u64) {
    raw(SYS_SET_TIMER, ms, 0);
}

/// Milliseconds since the kernel started its clock.
pub fn uptime_ms() -> u64 {
    raw(SYS_UPTIME, 0, 0)
}
