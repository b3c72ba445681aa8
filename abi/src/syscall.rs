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

// ---- The Xen gateway (numbers 32..=47) ----
//
// Only tasks with Xen rights in the system table (`Task.xen`) may make these calls; from any
// other task they are malformed. A call the hypervisor refuses, or any call when nc2dd does not
// run on Xen, returns a negative errno (as `i64`, see [`xen_result`]); [`XEN_ENODEV`] means "no
// hypervisor". Naming a port, grant or window page the caller does not own, a pointer outside its
// memory, or an oversized batch is malformed and faults the caller.
//
// Every event channel a task binds (including the xenstore port) is delivered on the task's one
// Xen event bit: after it fires the task re-examines all its rings.

/// First and last gateway numbers.
pub const SYS_XEN_FIRST: u64 = 32;
pub const SYS_XEN_LAST: u64 = 47;
/// `xen_store_attach() -> vaddr` (port in `rdx`): maps the xenstore ring page read-write into
/// the caller at [`XEN_STORE_VA`] and binds the store event channel to it (unmasked). Calling it
/// again returns the same mapping.
pub const SYS_XEN_STORE_ATTACH: u64 = 32;
/// `xen_evtchn_alloc_unbound(remote_domid) -> port`.
pub const SYS_XEN_EVTCHN_ALLOC_UNBOUND: u64 = 33;
/// `xen_evtchn_bind_interdomain(remote_domid, remote_port) -> port`.
pub const SYS_XEN_EVTCHN_BIND_INTERDOMAIN: u64 = 34;
/// `xen_evtchn_send(port) -> 0`.
pub const SYS_XEN_EVTCHN_SEND: u64 = 35;
/// `xen_evtchn_close(port) -> 0`.
pub const SYS_XEN_EVTCHN_CLOSE: u64 = 36;
/// `xen_evtchn_unmask(port) -> 0`.
pub const SYS_XEN_EVTCHN_UNMASK: u64 = 37;
/// `xen_grant_access(vaddr, domid | readonly << 16) -> gref`: grants `domid` the page of the
/// caller's own writable memory at page-aligned `vaddr`.
pub const SYS_XEN_GRANT_ACCESS: u64 = 38;
/// `xen_grant_end(gref) -> 0`, or `-EBUSY` while the grantee still maps or copies the page (the
/// grant then stays valid: try again later).
pub const SYS_XEN_GRANT_END: u64 = 39;
/// `xen_grant_map(reqs, count, out) -> 0`: maps `count` [`XenMapRequest`]s into the caller's
/// grant window in one hypercall; `out[i]` (an `i64`) is the page's vaddr, or Xen's negative
/// `GNTST_*` status for that entry.
pub const SYS_XEN_GRANT_MAP: u64 = 40;
/// `xen_grant_unmap(vaddrs, count, out) -> 0`: unmaps window pages (`u64` vaddrs); `out[i]` is
/// Xen's status (0 = unmapped).
pub const SYS_XEN_GRANT_UNMAP: u64 = 41;
/// `xen_grant_copy(segs, count, out) -> 0`: one `GNTTABOP_copy` of `count` [`XenCopySegment`]s;
/// `out[i]` is Xen's status.
pub const SYS_XEN_GRANT_COPY: u64 = 42;
/// `xen_grant_bus(vaddr) -> bus address`: where a device reaches the grant mapped at window page
/// `vaddr`: its guest-physical address in nc2dd's physmap. Under Xen HVM with an IOMMU, the
/// IOMMU translates nc2dd's devices through that same physmap (a grant mapped there is
/// device-reachable at its GPA), so the GPA is the bus address to hand a NIC.
pub const SYS_XEN_GRANT_BUS: u64 = 43;

/// "No hypervisor": nc2dd does not run on Xen (or Xen bring-up failed).
pub const XEN_ENODEV: i64 = -19;
/// "Busy": a grant still in use.
pub const XEN_EBUSY: i64 = -16;
/// Entries in one grant batch.
pub const XEN_MAX_BATCH: u64 = 256;
/// Where the xenstore ring is mapped (PML4 slot 143).
pub const XEN_STORE_VA: u64 = 0x4780_0000_0000;
/// Where the task's grant window starts (PML4 slot 142); it is as large as the system
/// description's `grant-window`.
pub const XEN_GRANT_WINDOW_BASE: u64 = 0x4700_0000_0000;

/// A gateway result as `Ok(value)` or `Err(negative errno)`.
pub const fn xen_result(rax: u64) -> Result<u64, i64> {
    let v = rax as i64;
    if v < 0 { Err(v) } else { Ok(rax) }
}

/// One entry of `SYS_XEN_GRANT_MAP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenMapRequest {
    pub gref: u32,
    pub domid: u16,
    /// 1: map read-only.
    pub readonly: u16,
}

/// One side of a grant copy: a grant of another domain, or the caller's own memory (including a
/// page of its grant window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenCopySide {
    /// [`XEN_COPY_LOCAL`] or [`XEN_COPY_GRANT`].
    pub kind: u16,
    pub domid: u16,
    pub gref: u32,
    /// Offset in the granted page (grant side).
    pub offset: u16,
    pub _pad: [u16; 3],
    /// Task address (local side).
    pub vaddr: u64,
}

pub const XEN_COPY_LOCAL: u16 = 0;
pub const XEN_COPY_GRANT: u16 = 1;

/// One entry of `SYS_XEN_GRANT_COPY`; neither side may cross a page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenCopySegment {
    pub src: XenCopySide,
    pub dst: XenCopySide,
    pub len: u16,
    pub _pad: [u16; 3],
}

const _: () = assert!(core::mem::size_of::<XenMapRequest>() == 8);
const _: () = assert!(core::mem::size_of::<XenCopySide>() == 24);
const _: () = assert!(core::mem::size_of::<XenCopySegment>() == 56);
