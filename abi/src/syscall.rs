//! The kernel's system-call ABI as seen from both sides: numbers and register conventions.
//!
//! Arguments travel only in registers: number in `rax`, arguments in `rdi`, `rsi`, `rdx`, `r10`,
//! `r8`, `r9` (as the Linux x86-64 convention, because `syscall` clobbers `rcx` and `r11`);
//! result in `rax`. A malformed call (bad number, a pointer outside the caller's memory) faults
//! the caller; it never returns an error the caller could ignore.

/// Bumped whenever a number or convention changes; the image tool refuses mismatched servers.
pub const ABI_VERSION: u32 = 1;

/// Writes `len` bytes at `ptr` (UTF-8) to the kernel console, prefixed with the task name.
pub const SYS_DEBUG_LOG: u64 = 1;
/// Ends the calling task with a status (0 = finished normally).
pub const SYS_EXIT: u64 = 2;
/// Ends the calling task after a panic; the supervisor treats it as a fault.
pub const SYS_PANIC: u64 = 3;
