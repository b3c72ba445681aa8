//! System-call wrappers (see `nc2dd_abi::syscall` for the ABI).
//!
//! On the host these functions exist so servers type-check and unit-test there, but a host
//! program never reaches them: `entry!` gives the host build a `main` that does not run the
//! server, and calling one anyway panics with a message saying so.

pub use nc2dd_abi::syscall::*;

#[cfg(target_os = "none")]
fn raw(n: u64, a: u64, b: u64) -> u64 {
    raw3(n, a, b, 0).0
}

/// A call with three arguments; returns `rax` and `rdx`.
#[cfg(target_os = "none")]
fn raw3(n: u64, a: u64, b: u64, c: u64) -> (u64, u64) {
    let ret: u64;
    let ret2: u64;
    // SAFETY: the system-call gate transfers to the kernel, which validates every argument; per
    // the ABI it clobbers only rcx, r11 and the result register.
    unsafe {
        core::arch::asm!(
            "int 0xfd",
            inlateout("rax") n => ret,
            in("rdi") a,
            in("rsi") b,
            inlateout("rdx") c => ret2,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (ret, ret2)
}

#[cfg(not(target_os = "none"))]
fn raw(n: u64, a: u64, b: u64) -> u64 {
    raw3(n, a, b, 0).0
}

#[cfg(not(target_os = "none"))]
fn raw3(n: u64, _a: u64, _b: u64, _c: u64) -> (u64, u64) {
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

/// Nanoseconds of the kernel's monotonic clock (0 if it has none).
pub fn now_ns() -> u64 {
    raw(SYS_NOW_NS, 0, 0)
}

/// Milliseconds since the kernel started its clock.
pub fn uptime_ms() -> u64 {
    raw(SYS_UPTIME, 0, 0)
}

/// Reads `width` (1, 2 or 4) bytes at `offset` of the config space of claimed function `bdf`
/// (`nc2dd_abi::syscall::pack_bdf`).
pub fn dev_config_read(bdf: u64, offset: u16, width: u8) -> u32 {
    raw(SYS_DEV_CONFIG_READ, bdf, config_offset(offset, width)) as u32
}

/// Writes config space of claimed function `bdf` (the kernel refuses what it owns).
pub fn dev_config_write(bdf: u64, offset: u16, width: u8, value: u32) {
    raw3(
        SYS_DEV_CONFIG_WRITE,
        bdf,
        config_offset(offset, width),
        u64::from(value),
    );
}

/// DMA memory: `(vaddr, bus address)` of `len` zeroed, contiguous bytes, or `None` when the
/// task's DMA budget cannot cover it.
pub fn dma_alloc(len: usize) -> Option<(*mut u8, u64)> {
    let (vaddr, bus) = raw3(SYS_DMA_ALLOC, len as u64, 0, 0);
    (vaddr != 0).then_some((vaddr as *mut u8, bus))
}

/// Unmasks MSI-X vector `vector` of this task's device `device` after servicing it.
pub fn irq_ack(device: usize, vector: usize) {
    raw(SYS_IRQ_ACK, device as u64, vector as u64);
}

// ---- The Xen gateway (tasks with Xen rights only; see `nc2dd_abi::syscall`) ----
// Each returns `Err(negative errno)` when Xen refuses, or `Err(XEN_ENODEV)` without Xen.

/// Maps the xenstore ring into this task: `(ring address, store event channel port)`.
pub fn xen_store_attach() -> Result<(*mut u8, u32), i64> {
    let (va, port) = raw3(SYS_XEN_STORE_ATTACH, 0, 0, 0);
    xen_result(va).map(|va| (va as *mut u8, port as u32))
}

/// An unbound port that domain `remote` may bind to.
pub fn xen_evtchn_alloc_unbound(remote: u16) -> Result<u32, i64> {
    xen_result(raw(SYS_XEN_EVTCHN_ALLOC_UNBOUND, u64::from(remote), 0)).map(|p| p as u32)
}

/// Binds to port `remote_port` of domain `remote`; returns our end.
pub fn xen_evtchn_bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, i64> {
    xen_result(raw(
        SYS_XEN_EVTCHN_BIND_INTERDOMAIN,
        u64::from(remote),
        u64::from(remote_port),
    ))
    .map(|p| p as u32)
}

pub fn xen_evtchn_send(port: u32) -> Result<(), i64> {
    xen_result(raw(SYS_XEN_EVTCHN_SEND, u64::from(port), 0)).map(|_| ())
}

pub fn xen_evtchn_close(port: u32) -> Result<(), i64> {
    xen_result(raw(SYS_XEN_EVTCHN_CLOSE, u64::from(port), 0)).map(|_| ())
}

pub fn xen_evtchn_unmask(port: u32) -> Result<(), i64> {
    xen_result(raw(SYS_XEN_EVTCHN_UNMASK, u64::from(port), 0)).map(|_| ())
}

/// Grants domain `domid` the page of this task's own memory at page-aligned `page`.
pub fn xen_grant_access(page: *const u8, domid: u16, readonly: bool) -> Result<u32, i64> {
    let arg = u64::from(domid) | (u64::from(readonly) << 16);
    xen_result(raw(SYS_XEN_GRANT_ACCESS, page as u64, arg)).map(|r| r as u32)
}

/// Revokes grant `gref`; `Err(XEN_EBUSY)` while the grantee still uses it.
pub fn xen_grant_end(gref: u32) -> Result<(), i64> {
    xen_result(raw(SYS_XEN_GRANT_END, u64::from(gref), 0)).map(|_| ())
}

/// The bus address (guest-physical address) of the grant mapped at window page `vaddr`, for a
/// device to DMA to (see `SYS_XEN_GRANT_BUS`).
pub fn xen_grant_bus(vaddr: u64) -> Result<u64, i64> {
    xen_result(raw(SYS_XEN_GRANT_BUS, vaddr, 0))
}

/// Maps a batch of foreign grants into the grant window; `out[i]` is the page's address or
/// Xen's negative status for `reqs[i]`. `out` must be as long as `reqs`.
pub fn xen_grant_map(reqs: &[XenMapRequest], out: &mut [i64]) -> Result<(), i64> {
    assert_eq!(reqs.len(), out.len(), "xen_grant_map: result slice length");
    xen_result(
        raw3(
            SYS_XEN_GRANT_MAP,
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            out.as_mut_ptr() as u64,
        )
        .0,
    )
    .map(|_| ())
}

/// Unmaps grant window pages; `out[i]` is Xen's status for `vaddrs[i]` (0 = unmapped).
pub fn xen_grant_unmap(vaddrs: &[u64], out: &mut [i64]) -> Result<(), i64> {
    assert_eq!(
        vaddrs.len(),
        out.len(),
        "xen_grant_unmap: result slice length"
    );
    xen_result(
        raw3(
            SYS_XEN_GRANT_UNMAP,
            vaddrs.as_ptr() as u64,
            vaddrs.len() as u64,
            out.as_mut_ptr() as u64,
        )
        .0,
    )
    .map(|_| ())
}

/// One batched grant copy; `out[i]` is Xen's status for `segs[i]`.
pub fn xen_grant_copy(segs: &[XenCopySegment], out: &mut [i64]) -> Result<(), i64> {
    assert_eq!(segs.len(), out.len(), "xen_grant_copy: result slice length");
    xen_result(
        raw3(
            SYS_XEN_GRANT_COPY,
            segs.as_ptr() as u64,
            segs.len() as u64,
            out.as_mut_ptr() as u64,
        )
        .0,
    )
    .map(|_| ())
}
