//! System-call wrappers (see `nc2dd_abi::syscall` for the ABI).

pub use nc2dd_abi::syscall::*;

#[cfg(target_os = "none")]
fn raw2(n: u64, a: u64, b: u64) -> u64 {
    let ret: u64;
    // SAFETY: `syscall` transfers to the kernel, which validates every argument; per the ABI it
    // clobbers only rcx, r11 and the result register.
    unsafe {
        core::arch::asm!(
            "syscall",
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

/// Writes a line to the kernel console.
#[cfg(target_os = "none")]
pub fn debug_log(s: &str) {
    raw2(SYS_DEBUG_LOG, s.as_ptr() as u64, s.len() as u64);
}

/// Ends this task.
#[cfg(target_os = "none")]
pub fn exit(status: u64) -> ! {
    raw2(SYS_EXIT, status, 0);
    // The kernel never returns from SYS_EXIT; a return means the ABI is broken, so fault.
    loop {
        core::hint::spin_loop();
    }
}

/// Ends this task as failed after a panic.
#[cfg(target_os = "none")]
pub fn panic_exit(msg: &str) -> ! {
    raw2(SYS_PANIC, msg.as_ptr() as u64, msg.len() as u64);
    loop {
        core::hint::spin_loop();
    }
}
