//! The kernel's system-call ABI as seen from both sides: numbers, register conventions, and the
//! records the kernel writes into task memory.
//!
//! A task enters the kernel with `int 0xfd` (the kernel's one ring-3 gate). Arguments travel only in registers: number in `rax`,
//! arguments in `rdi`, `rsi`, `rdx`, `r10`; the result comes back in `rax`; `rcx` and `r11` may
//! be clobbered (kept free so a `syscall` entry can return later without an ABI change). A
//! malformed call (unknown number, a pointer outside the caller's memory, a channel or task index
//! the caller has no right to) faults the caller: the kernel stops it and tells the supervisor.
//! It never returns an error code that the caller could ignore.

/// Bumped whenever a number, a convention or a record layout changes.
pub const ABI_VERSION: u32 = 1;

/// `debug_log(ptr, len)`: writes `len` bytes of UTF-8 at `ptr` to the console as one line.
pub const SYS_DEBUG_LOG: u64 = 1;
/// `exit(status)`: ends the calling task; the supervisor is told.
pub const SYS_EXIT: u64 = 2;
/// `panic(ptr, len)`: ends the calling task as faulted, with a message.
pub const SYS_PANIC: u64 = 3;
/// `wait(mask) -> bits`: blocks until a notification bit in `mask` is pending, then returns and
/// clears the pending bits in `mask`. `mask == 0` is malformed.
pub const SYS_WAIT: u64 = 4;
/// `poll(mask) -> bits`: as `wait` but returns 0 at once when nothing is pending.
pub const SYS_POLL: u64 = 5;
/// `notify(channel)`: posts the other end's kick bit of the caller's channel `channel`.
pub const SYS_NOTIFY: u64 = 6;
/// `yield()`: lets other tasks of the same priority run.
pub const SYS_YIELD: u64 = 7;
/// Supervisor only. `task_report(index, out) -> 0 | 1`: when task `index` has stopped (fault or
/// exit) writes a [`TaskReport`] to `out` and returns 1; returns 0 for a running task.
pub const SYS_TASK_REPORT: u64 = 8;
/// Supervisor only. `task_restart(index)`: reloads a stopped task from its image and starts it
/// with the next generation.
pub const SYS_TASK_RESTART: u64 = 9;
/// `shutdown(success) -> 0`: ends the whole system (under QEMU: the debug-exit device). Only when
/// the kernel command line has `nc2dd.shutdown=allow` (tests, the demo run); otherwise it is a
/// policy refusal, not a malformed call, and returns 0.
pub const SYS_SHUTDOWN: u64 = 10;
/// `set_timer(ms)`: posts the caller's timer bit once `ms` milliseconds have passed (0 cancels).
/// A task without a timer bit in the system description faults.
pub const SYS_SET_TIMER: u64 = 11;
/// `uptime() -> ms`: milliseconds since the kernel started its clock.
pub const SYS_UPTIME: u64 = 12;
/// `dev_config_read(bdf, offset | width << 16) -> value`: reads 1, 2 or 4 bytes of the config
/// space of a PCI function the caller claimed (`bdf` packed by [`pack_bdf`]). Another function,
/// a misaligned or out-of-range offset is malformed.
pub const SYS_DEV_CONFIG_READ: u64 = 13;
/// `dev_config_write(bdf, offset | width << 16, value)`: writes config space; writes to what the
/// kernel owns (BARs, MSI/MSI-X capabilities, memory/bus-master enables) are malformed.
pub const SYS_DEV_CONFIG_WRITE: u64 = 14;
/// `dma_alloc(len) -> vaddr` (and the bus address in `rdx`): physically contiguous, zeroed,
/// pinned memory from the caller's DMA budget, mapped into it; 0 when the budget is used up.
pub const SYS_DMA_ALLOC: u64 = 15;
/// `irq_ack(device, vector)`: unmasks MSI-X vector `vector` of the caller's device `device` (its
/// index in the task info) after the task has serviced it. Until then the vector stays masked.
pub const SYS_IRQ_ACK: u64 = 16;

/// `now_ns() -> ns`: the monotonic clock (the TSC, calibrated at boot), nanoseconds since boot;
/// 0 when the kernel could not calibrate it.
pub const SYS_NOW_NS: u64 = 17;

/// Packs a PCI address for the device calls.
pub const fn pack_bdf(segment: u16, bus: u8, device: u8, function: u8) -> u64 {
    ((segment as u64) << 16)
        | ((bus as u64) << 8)
        | (((device & 0x1f) as u64) << 3)
        | (function & 7) as u64
}

/// Packs the offset and width argument of the config calls.
pub const fn config_offset(offset: u16, width: u8) -> u64 {
    offset as u64 | ((width as u64) << 16)
}

/// Why a task stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StopKind {
    /// Still running (never written in a report).
    Running = 0,
    /// A CPU exception in user mode.
    Exception = 1,
    /// A malformed system call.
    BadSyscall = 2,
    /// `SYS_PANIC`.
    Panic = 3,
    /// `SYS_EXIT`.
    Exit = 4,
}

impl StopKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Running,
            1 => Self::Exception,
            2 => Self::BadSyscall,
            3 => Self::Panic,
            4 => Self::Exit,
            _ => return None,
        })
    }
}

/// Longest panic or bad-syscall message kept in a report.
pub const REPORT_MESSAGE_LEN: usize = 120;

/// What the kernel tells the supervisor about a stopped task (written by `SYS_TASK_REPORT`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TaskReport {
    pub index: u32,
    pub generation: u32,
    /// A `StopKind` value.
    pub kind: u32,
    /// CPU vector for exceptions, syscall number for bad syscalls, exit status for exits.
    pub code: u32,
    pub error_code: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    /// Faulting address of a page fault.
    pub cr2: u64,
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8 .. r15.
    pub regs: [u64; 15],
    pub message_len: u32,
    pub message: [u8; REPORT_MESSAGE_LEN],
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<TaskReport>() == 304);

impl TaskReport {
    pub const fn empty() -> Self {
        Self {
            index: 0,
            generation: 0,
            kind: 0,
            code: 0,
            error_code: 0,
            rip: 0,
            rsp: 0,
            rflags: 0,
            cr2: 0,
            regs: [0; 15],
            message_len: 0,
            message: [0; REPORT_MESSAGE_LEN],
            _pad: 0,
        }
    }

    pub fn message(&self) -> &str {
        let n = (self.message_len as usize).min(REPORT_MESSAGE_LEN);
        core::str::from_utf8(&self.message[..n]).unwrap_or("<not UTF-8>")
    }
}
