//! The Xen gateway: bringing up the Xen platform at boot and the system calls through which a
//! task with Xen rights reaches the hypervisor (xenstore ring, event channels, grant table).
//!
//! Owns: the hypercall page (a page of kernel text, so W^X holds: Xen writes it through its
//! guest-physical address, the kernel only ever executes it), the shared info page and our grant
//! table frames (placed with `XENMEM_add_to_physmap` in a hole above everything the memory map
//! names, mapped into the kernel's half only), the port -> (task, bit) table, each task's grant
//! window, and the upcall vector's handler.
//!
//! Invariants:
//! - every gateway call comes from a task whose system-table record grants Xen rights; a call
//!   from any other task, a port, grant or window page the caller does not own, a pointer outside
//!   its memory or an oversized batch is malformed (the caller is faulted);
//! - what the hypervisor refuses comes back as a negative errno, and without Xen every call
//!   returns `XEN_ENODEV`: the kernel never faults because Xen is missing or unwilling;
//! - a window page is in the task's page tables exactly while Xen maps a foreign frame behind it:
//!   it is mapped after a successful map and unmapped (TLB flushed) before the unmap hypercall;
//! - lock order: the kernel lock, then this one (system calls); the upcall takes this one alone,
//!   releases it, then posts through the kernel lock.
//!
//! When a task restarts, its ports, window mappings and grants are released
//! ([`task_restarted`]).
//!
//! Event channels use the FIFO ABI when Xen offers it (one event array page: 1024 ports), else
//! 2-level; `nc2dd.xen-evtchn=2l` forces 2-level.
//!
//! Left out: growing the FIFO event array beyond one page, and the PV console ring (output goes
//! to port 0xE9, which Xen logs).

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use log::{info, warn};
use nc2dd_abi::syscall::{self as sys, XenCopySegment, XenMapRequest};
use nc2dd_abi::system_table::XenRights;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame,
    Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::x86_64::idt::TrapFrame;
use crate::arch::x86_64::phys::IdentityMap;
use crate::tasks::{FRAMES, KERNEL};
use kernel::boot::start_info::{
    Error as StartInfoError, MAX_MEMMAP, MemoryRegion, MemoryType, StartInfo,
};
use kernel::task::uaccess::UserRegions;
use kernel::xen::abi::DOMID_FIRST_RESERVED;
use kernel::xen::abi::grant_table::GnttabStatus;
use kernel::xen::abi::memory::E820Entry;
use kernel::xen::cpuid;
use kernel::xen::evtchn::fifo::{FifoConsumer, FifoView};
use kernel::xen::evtchn::{EventChannels, EvtchnError, SharedInfo2L};
use kernel::xen::grant::XenGrantOps;
use kernel::xen::grant::table::{GrantTable, TableError};
use kernel::xen::grant::window::{
    CopySegment, CopySide, GrantWindow, MAX_BATCH, MapOutcome, MapRequest, TaskMemory, WindowError,
    WindowLayout,
};
use kernel::xen::hypercall::{self, Errno, HypercallPage};
use kernel::xen::platform::{self, Platform};
use kernel::xen::shared::SharedPage;

/// The IDT vector Xen raises for event channel upcalls (`HVM_PARAM_CALLBACK_IRQ`, vector type).
pub const UPCALL_VECTOR: u8 = 0xf3;
/// Grant table frames asked for: 2048 refs.
const GRANT_FRAMES: u32 = 4;
const PAGE: u64 = 4096;
/// The first task grant window starts this far into the hole (shared info and grant frames
/// come first).
const WINDOWS_OFFSET: u64 = 2 << 20;

// The hypercall page lives in kernel text: mapped read-only and executable like the rest of it.
// It starts filled with the poison (`ret`) so an unwritten page is detected.
core::arch::global_asm!(
    ".pushsection .text.xen_hypercall_page, \"ax\"",
    ".balign 4096",
    ".global xen_hypercall_page",
    "xen_hypercall_page:",
    ".fill 4096, 1, 0xc3",
    ".popsection",
);

unsafe extern "C" {
    static xen_hypercall_page: u8;
}

struct Window {
    task: usize,
    window: GrantWindow,
}

/// The event channel ABI in force.
enum Events {
    TwoLevel,
    Fifo(FifoView<'static>, FifoConsumer),
}

struct Gateway {
    hc: HypercallPage,
    si: SharedInfo2L<'static>,
    events: Events,
    ports: EventChannels<usize>,
    grants: GrantTable<'static, usize>,
    windows: Vec<Window>,
    platform: Platform,
    store_owner: Option<usize>,
    /// Next guest-physical address free for a grant window.
    next_window_gpa: u64,
}

static GATEWAY: spin::Mutex<Option<Gateway>> = spin::Mutex::new(None);

/// Who took [`GATEWAY`] last: a [`Holder`] code, and for a system call its number and task
/// (`code | n << 8 | task << 32`). Kept for the upcall's report when it waits too long for the
/// lock, because no context should be holding it then (the upcall runs with interrupts off and
/// every other holder runs to completion with interrupts off too).
static HOLDER: AtomicU64 = AtomicU64::new(0);

/// The places that take [`GATEWAY`].
#[derive(Clone, Copy)]
enum Holder {
    BringUp = 1,
    Upcall = 2,
    TaskRestarted = 3,
    Syscall = 4,
}

/// Takes the gateway lock and records who holds it.
fn lock(holder: Holder, detail: u64) -> spin::MutexGuard<'static, Option<Gateway>> {
    let guard = GATEWAY.lock();
    HOLDER.store(holder as u64 | detail << 8, Ordering::Relaxed);
    guard
}

/// Spins this many times on a busy lock before the upcall reports who holds it.
const UPCALL_PATIENCE: u32 = 1 << 24;

/// The upcall's lock: like [`lock`], but after [`UPCALL_PATIENCE`] spins it logs (once per
/// boot) the last holder, then keeps waiting.
fn lock_for_upcall() -> spin::MutexGuard<'static, Option<Gateway>> {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let mut spins = 0u32;
    loop {
        if let Some(guard) = GATEWAY.try_lock() {
            HOLDER.store(Holder::Upcall as u64, Ordering::Relaxed);
            return guard;
        }
        spins = spins.saturating_add(1);
        if spins == UPCALL_PATIENCE && !REPORTED.swap(true, Ordering::Relaxed) {
            let h = HOLDER.load(Ordering::Relaxed);
            let site = match h & 0xff {
                x if x == Holder::BringUp as u64 => "bring-up",
                x if x == Holder::Upcall as u64 => "the upcall",
                x if x == Holder::TaskRestarted as u64 => "a task restart",
                x if x == Holder::Syscall as u64 => "a system call",
                _ => "nobody",
            };
            warn!(
                "xen gateway: the upcall has waited {UPCALL_PATIENCE} spins for the gateway lock, last taken by {site} (call {}, task {})",
                (h >> 8) & 0xff_ffff,
                h >> 32
            );
        }
        core::hint::spin_loop();
    }
}

/// The kernel lock for the upcall's posts: after [`UPCALL_PATIENCE`] spins it logs (once per
/// boot) that the upcall is waiting for it, then keeps waiting. Like the gateway lock, nothing
/// should hold it while an upcall runs.
fn kernel_for_upcall() -> spin::MutexGuard<'static, Option<crate::tasks::Kernel>> {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let mut spins = 0u32;
    loop {
        if let Some(guard) = KERNEL.try_lock() {
            return guard;
        }
        spins = spins.saturating_add(1);
        if spins == UPCALL_PATIENCE && !REPORTED.swap(true, Ordering::Relaxed) {
            warn!("xen gateway: the upcall has waited {UPCALL_PATIENCE} spins for the kernel lock");
        }
        core::hint::spin_loop();
    }
}

/// Why a gateway call is refused.
enum Fail {
    /// Returned to the task as a negative errno.
    Errno(i64),
    /// The call is malformed: the task is faulted with this message.
    Malformed(String),
}

fn errno(e: Errno) -> Fail {
    Fail::Errno(-i64::from(e.0))
}

fn malformed(why: String) -> Fail {
    Fail::Malformed(why)
}

/// Hands out zeroed frames for page tables.
struct Frames;

// SAFETY: hands out distinct frames from the global allocator, zeroed through the identity map.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = FRAMES.lock().as_mut().and_then(|a| a.alloc())?;
        // SAFETY: a free RAM frame, identity-mapped writable, now ours.
        unsafe { core::ptr::write_bytes(f as *mut u8, 0, PAGE as usize) };
        Some(PhysFrame::containing_address(PhysAddr::new(f)))
    }
}

/// The page tables rooted at `pml4`.
///
/// # Safety
/// `pml4` must be a live PML4 (the kernel's or a task's); the kernel runs on one CPU with
/// interrupts off, so nothing else walks or edits the tables meanwhile.
unsafe fn tables(pml4: u64) -> OffsetPageTable<'static> {
    // SAFETY: per the contract; all page-table frames are RAM, identity-mapped (offset 0).
    unsafe { OffsetPageTable::new(&mut *(pml4 as *mut PageTable), VirtAddr::new(0)) }
}

/// Maps `va` -> `pa` in the tables rooted at `pml4` with `flags`; user mappings get user-visible
/// parents.
fn map_page(pml4: u64, va: u64, pa: u64, flags: F) -> Result<(), String> {
    // SAFETY: see `tables`; the frame is a hypervisor-provided page (shared info, grant frame,
    // store ring, foreign grant) that aliases no kernel data.
    let mut t = unsafe { tables(pml4) };
    let parent = F::PRESENT | F::WRITABLE | (flags & F::USER_ACCESSIBLE);
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    let frame = PhysFrame::containing_address(PhysAddr::new(pa));
    // SAFETY: as above.
    match unsafe { t.map_to_with_table_flags(page, frame, flags, parent, &mut Frames) } {
        Ok(flush) => {
            flush.flush();
            Ok(())
        }
        Err(e) => Err(format!("mapping {va:#x}: {e:?}")),
    }
}

fn unmap_page(pml4: u64, va: u64) {
    // SAFETY: see `tables`.
    let mut t = unsafe { tables(pml4) };
    if let Ok((_, flush)) = t.unmap(Page::<Size4KiB>::containing_address(VirtAddr::new(va))) {
        flush.flush();
    }
}

fn user_flags(writable: bool) -> F {
    let f = F::PRESENT | F::USER_ACCESSIBLE | F::NO_EXECUTE;
    if writable { f | F::WRITABLE } else { f }
}

/// Brings the Xen platform up when running on Xen. Called once at boot, after the kernel's page
/// tables and the frame allocator are in place and before interrupts are enabled.
///
/// Event channels use the FIFO ABI when Xen offers it, unless the command line says
/// `nc2dd.xen-evtchn=2l`.
pub fn init(xen: bool, memory_map: &[MemoryRegion], cmdline: &str) {
    if !xen {
        info!("xen gateway: no hypervisor; gateway calls return ENODEV");
        return;
    }
    // The hole starts above everything the memory map names (RAM, ACPI, the special pages).
    let top = memory_map.iter().map(|r| r.end()).max().unwrap_or(0);
    let hole = top.next_multiple_of(1 << 30).max(1 << 32);
    let want_fifo = kernel::boot::cmdline::option(cmdline, "xen-evtchn") != Some("2l");
    match bring_up(hole, want_fifo) {
        Ok(g) => {
            let p = g.platform;
            info!(
                "xen gateway: Xen {}.{}, shared info at {:#x}, {} grant frames (max {}), xenstore gfn {:#x} port {}, upcall vector {:#x}, {} event channels ({} ports)",
                p.version.0,
                p.version.1,
                p.shared_info_gfn * PAGE,
                p.grant_frames,
                p.max_grant_frames,
                p.store.gfn,
                p.store.evtchn,
                UPCALL_VECTOR,
                match g.events {
                    Events::TwoLevel => "2-level",
                    Events::Fifo(..) => "FIFO",
                },
                g.ports.ports()
            );
            *lock(Holder::BringUp, 0) = Some(g);
        }
        Err(e) => warn!("xen gateway: bring-up failed ({e}); gateway calls return ENODEV"),
    }
}

/// The boot path for a version 0 start info, which has no memory map: asks Xen for it with
/// `XENMEM_memory_map` (installing the hypercall page early; bring-up installs it again) and
/// parses the start info with it. Runs on the loader's identity map, before the kernel heap.
pub fn start_info_v0(paddr: u64) -> Result<StartInfo, StartInfoError> {
    let map = match hypervisor_memory_map() {
        Ok(m) => m,
        Err(e) => {
            warn!("XENMEM_memory_map fallback: {e}");
            return Err(StartInfoError::NoMemoryMap);
        }
    };
    info!(
        "start info version 0: memory map from XENMEM_memory_map ({} entries)",
        map.1
    );
    StartInfo::parse_with_memory_map(&IdentityMap, paddr, &map.0[..map.1])
}

fn hypervisor_memory_map() -> Result<([MemoryRegion; MAX_MEMMAP], usize), String> {
    let xen = cpuid::detect(&cpuid::NativeCpuid).map_err(|e| format!("cpuid: {e}"))?;
    let page = &raw const xen_hypercall_page;
    // SAFETY: as in `bring_up`: kernel text at its physical address, holding the poison (or
    // already Xen's stubs, which Xen then rewrites identically).
    let hc = unsafe { HypercallPage::install_read_only(page, page as u64, xen.hypercall_msr) }
        .map_err(|e| format!("hypercall page: {e}"))?;
    let mut buf = [E820Entry::default(); MAX_MEMMAP];
    let entries = hypercall::memory_map(&hc, &mut buf).map_err(|e| format!("{e}"))?;
    let mut out = [MemoryRegion {
        start: 0,
        len: 0,
        kind: MemoryType::Reserved,
    }; MAX_MEMMAP];
    for (o, e) in out.iter_mut().zip(entries) {
        let (start, len, kind) = (e.addr, e.size, e.kind);
        *o = MemoryRegion {
            start,
            len,
            kind: MemoryType::from_raw(kind),
        };
    }
    Ok((out, entries.len()))
}

/// A zeroed RAM frame the kernel keeps for good (FIFO control block, event array page).
fn kernel_frame() -> Result<u64, String> {
    let f = FRAMES
        .lock()
        .as_mut()
        .and_then(|a| a.alloc())
        .ok_or("out of frames")?;
    // SAFETY: a free RAM frame, identity-mapped writable, now the kernel's.
    unsafe { core::ptr::write_bytes(f as *mut u8, 0, PAGE as usize) };
    Ok(f)
}

/// Switches to FIFO event channels if Xen offers them: vCPU 0's control block and one event
/// array page (1024 ports), both RAM frames of the kernel (guest frame = physical address).
fn fifo(hc: &HypercallPage) -> Result<Option<FifoView<'static>>, String> {
    let control = kernel_frame()?;
    let array = kernel_frame()?;
    let on = platform::try_fifo(hc, control / PAGE, 0, array / PAGE)
        .map_err(|e| format!("FIFO event channels: {e:?}"))?;
    if !on {
        let mut frames = FRAMES.lock();
        if let Some(a) = frames.as_mut() {
            let _ = a.free(control);
            let _ = a.free(array);
        }
        return Ok(None);
    }
    // SAFETY: both frames are the kernel's for good, identity-mapped read-write, and shared
    // only with Xen, through atomic views.
    let view = unsafe {
        FifoView::new(
            SharedPage::from_ptr(control as *mut u8),
            0,
            alloc::vec![SharedPage::from_ptr(array as *mut u8)],
        )
    };
    Ok(Some(view))
}

fn bring_up(hole: u64, want_fifo: bool) -> Result<Gateway, String> {
    let xen = cpuid::detect(&cpuid::NativeCpuid).map_err(|e| format!("cpuid: {e}"))?;
    let page = &raw const xen_hypercall_page;
    // SAFETY: the page is kernel text at its physical address (the kernel is identity-mapped),
    // filled with the poison, and used for nothing else.
    let hc = unsafe { HypercallPage::install_read_only(page, page as u64, xen.hypercall_msr) }
        .map_err(|e| format!("hypercall page: {e}"))?;
    let plan = platform::Plan {
        shared_info_gfn: hole / PAGE,
        grant_gfn_base: hole / PAGE + 1,
        grant_frames: GRANT_FRAMES,
        callback_vector: UPCALL_VECTOR,
    };
    // Interrupts stay off until the first task runs, so no upcall arrives before the gateway
    // is stored.
    let p = platform::bring_up(&hc, &plan).map_err(|e| format!("{e:?}"))?;
    let (kernel_pml4, _) = Cr3::read();
    let kernel_pml4 = kernel_pml4.start_address().as_u64();
    let kernel_rw = F::PRESENT | F::WRITABLE | F::NO_EXECUTE;
    for i in 0..=u64::from(p.grant_frames) {
        map_page(kernel_pml4, hole + i * PAGE, hole + i * PAGE, kernel_rw)?;
    }
    // SAFETY: mapped just now, page aligned, read-write for the kernel's life, and touched only
    // through atomic views.
    let si_page = unsafe { SharedPage::from_ptr(hole as *mut u8) };
    let si = SharedInfo2L::new(si_page, 0).map_err(|e| format!("{e:?}"))?;
    let frames = (1..=u64::from(p.grant_frames))
        // SAFETY: as for the shared info page.
        .map(|i| unsafe { SharedPage::from_ptr((hole + i * PAGE) as *mut u8) })
        .collect();
    // Before any port is bound: Xen carries the existing ones (xenstore, console) over.
    let (events, ports) = match if want_fifo { fifo(&hc)? } else { None } {
        Some(view) => {
            let ports = EventChannels::with_ports(view.ports() as usize);
            (Events::Fifo(view, FifoConsumer::default()), ports)
        }
        None => (Events::TwoLevel, EventChannels::new()),
    };
    Ok(Gateway {
        hc,
        si,
        events,
        ports,
        grants: GrantTable::new(frames),
        windows: Vec::new(),
        platform: p,
        store_owner: None,
        next_window_gpa: hole + WINDOWS_OFFSET,
    })
}

/// The upcall vector's handler: delivers pending ports to their tasks' bits.
pub fn upcall() {
    let mut posts: Vec<(usize, u64)> = Vec::new();
    {
        let mut guard = lock_for_upcall();
        let Some(g) = guard.as_mut() else { return };
        // A scan stops after a bounded number of rounds; a few more catch a storm's tail.
        for _ in 0..4 {
            let stats = match &mut g.events {
                Events::TwoLevel => g.ports.upcall(&g.si, |t, bits| posts.push((t, bits))),
                Events::Fifo(view, cons) => {
                    // Cleared first: an event linked from here on sets it again.
                    g.si.clear_upcall_pending();
                    g.ports
                        .upcall_fifo(view, cons, |t, bits| posts.push((t, bits)))
                }
            };
            if !stats.more && !g.si.upcall_pending() {
                break;
            }
        }
    }
    if posts.is_empty() {
        return;
    }
    if let Some(k) = kernel_for_upcall().as_mut() {
        for (t, bits) in posts {
            if t < k.tasks.len() {
                k.post(t, bits);
            }
        }
    }
}

/// Releases what task `task` (page tables at `pml4`) held through the gateway when it restarts:
/// its event channels are closed, its window pages unmapped, its grants ended. A grant the
/// grantee still maps cannot be revoked; it stays (and is logged) until the grantee lets go, and
/// the task's next generation cannot end it. The xenstore ring stays attached (the store port
/// with it): the next generation attaches again and gets the same ring.
pub fn task_restarted(task: usize, pml4: u64) {
    let mut guard = lock(Holder::TaskRestarted, (task as u64) << 24);
    let Some(g) = guard.as_mut() else { return };
    let store = (g.store_owner == Some(task)).then_some(g.platform.store.evtchn);
    let ports: Vec<u32> = g
        .ports
        .ports_of(task)
        .filter(|&p| Some(p) != store)
        .collect();
    let closed = ports
        .iter()
        .filter(|&&p| g.ports.close(&g.hc, task, p).is_ok())
        .count();
    let mut unmapped = 0;
    if let Some(w) = g.windows.iter_mut().find(|w| w.task == task) {
        let vas: Vec<u64> = w.window.mapped_vas().collect();
        for chunk in vas.chunks(MAX_BATCH) {
            for &va in chunk {
                unmap_page(pml4, va);
            }
            let mut st = alloc::vec![Ok(GnttabStatus::Okay); chunk.len()];
            if w.window.unmap(&XenGrantOps(&g.hc), chunk, &mut st).is_ok() {
                unmapped += st.iter().filter(|s| **s == Ok(GnttabStatus::Okay)).count();
            }
        }
    }
    let refs: Vec<u32> = g.grants.refs_of(task).collect();
    let ended = refs
        .iter()
        .filter(|&&r| g.grants.end_access(task, r).is_ok())
        .count();
    if !ports.is_empty() || unmapped > 0 || !refs.is_empty() {
        info!(
            "xen gateway: task {task} restarted: closed {closed} of {} ports, unmapped {unmapped} window pages, ended {ended} of {} grants",
            ports.len(),
            refs.len()
        );
    }
}

/// Whether `n` is a gateway call.
pub fn handles(n: u64) -> bool {
    (sys::SYS_XEN_FIRST..=sys::SYS_XEN_LAST).contains(&n)
}

/// A gateway call from task `task`; `Err` is the reason to fault it as malformed.
pub fn syscall(
    task: usize,
    rights: Option<XenRights>,
    pml4: u64,
    regions: &UserRegions,
    frame: &mut TrapFrame,
) -> Result<(), String> {
    let n = frame.rax;
    let Some(rights) = rights else {
        return Err(format!("Xen gateway call {n} without Xen rights"));
    };
    let mut guard = lock(Holder::Syscall, (n & 0xff_ffff) | (task as u64) << 24);
    let Some(g) = guard.as_mut() else {
        if !handles(n) || n > sys::SYS_XEN_GRANT_BUS {
            return Err(format!("unknown Xen gateway call {n}"));
        }
        frame.rax = sys::XEN_ENODEV as u64;
        return Ok(());
    };
    let cx = Caller {
        task,
        rights,
        pml4,
        regions,
    };
    let (a0, a1, a2) = (frame.rdi, frame.rsi, frame.rdx);
    let r = match n {
        sys::SYS_XEN_STORE_ATTACH => g.store_attach(&cx).map(|(va, port)| {
            frame.rdx = port;
            va
        }),
        sys::SYS_XEN_EVTCHN_ALLOC_UNBOUND => g.alloc_unbound(&cx, a0),
        sys::SYS_XEN_EVTCHN_BIND_INTERDOMAIN => g.bind_interdomain(&cx, a0, a1),
        sys::SYS_XEN_EVTCHN_SEND => g.port_op(&cx, a0, PortOp::Send),
        sys::SYS_XEN_EVTCHN_CLOSE => g.port_op(&cx, a0, PortOp::Close),
        sys::SYS_XEN_EVTCHN_UNMASK => g.port_op(&cx, a0, PortOp::Unmask),
        sys::SYS_XEN_GRANT_ACCESS => g.grant_access(&cx, a0, a1),
        sys::SYS_XEN_GRANT_END => g.grant_end(&cx, a0),
        sys::SYS_XEN_GRANT_MAP => g.grant_map(&cx, a0, a1, a2),
        sys::SYS_XEN_GRANT_UNMAP => g.grant_unmap(&cx, a0, a1, a2),
        sys::SYS_XEN_GRANT_COPY => g.grant_copy(&cx, a0, a1, a2),
        sys::SYS_XEN_GRANT_BUS => g.grant_bus(&cx, a0),
        _ => Err(malformed(format!("unknown Xen gateway call {n}"))),
    };
    match r {
        Ok(v) => frame.rax = v,
        Err(Fail::Errno(e)) => frame.rax = e as u64,
        Err(Fail::Malformed(why)) => return Err(why),
    }
    Ok(())
}

struct Caller<'a> {
    task: usize,
    rights: XenRights,
    pml4: u64,
    regions: &'a UserRegions,
}

impl Caller<'_> {
    /// Reads `count` records of `T` from the task's memory at `ptr`.
    fn read_array<T: Copy>(&self, what: &str, ptr: u64, count: u64) -> Result<Vec<T>, Fail> {
        if count == 0 || count > sys::XEN_MAX_BATCH {
            return Err(malformed(format!("{what}: batch of {count} entries")));
        }
        let size = count * core::mem::size_of::<T>() as u64;
        self.regions
            .check(ptr, size, false)
            .map_err(|e| malformed(format!("{what}: {e}")))?;
        Ok((0..count)
            .map(|i| {
                let at = ptr + i * core::mem::size_of::<T>() as u64;
                // SAFETY: checked readable above; the task's address space is the active one;
                // the records are plain data of any bit pattern.
                unsafe { core::ptr::read_unaligned(at as *const T) }
            })
            .collect())
    }

    /// Checks that `count` i64 results fit writable at `ptr`.
    fn check_out(&self, what: &str, ptr: u64, count: u64) -> Result<(), Fail> {
        self.regions
            .check(ptr, count * 8, true)
            .map_err(|e| malformed(format!("{what} results: {e}")))
    }

    fn write_out(ptr: u64, values: &[i64]) {
        for (i, v) in values.iter().enumerate() {
            // SAFETY: checked writable by `check_out` for the whole array.
            unsafe { core::ptr::write_unaligned((ptr + 8 * i as u64) as *mut i64, *v) };
        }
    }

    /// The physical address behind the task's `va`.
    fn phys_of(&self, va: u64) -> Option<u64> {
        // SAFETY: see `tables`; only read.
        let t = unsafe { tables(self.pml4) };
        t.translate_addr(VirtAddr::new(va)).map(|p| p.as_u64())
    }
}

impl TaskMemory for Caller<'_> {
    fn translate(&self, va: u64, len: u64, write: bool) -> Option<u64> {
        if va % PAGE + len > PAGE || self.regions.check(va, len, write).is_err() {
            return None;
        }
        self.phys_of(va)
    }
}

enum PortOp {
    Send,
    Close,
    Unmask,
}

fn domid(what: &str, d: u64) -> Result<u16, Fail> {
    match u16::try_from(d) {
        Ok(d) if d < DOMID_FIRST_RESERVED => Ok(d),
        _ => Err(malformed(format!("{what}: domain id {d:#x}"))),
    }
}

fn evtchn_fail(what: &str, e: EvtchnError) -> Fail {
    match e {
        EvtchnError::Xen(e) => errno(e),
        // Xen handed out a port the table cannot hold, or one it thinks is bound.
        EvtchnError::PortOutOfRange(_) => errno(Errno::ENOSPC),
        EvtchnError::AlreadyBound(_) => errno(Errno::EEXIST),
        e => malformed(format!("{what}: {e:?}")),
    }
}

impl Gateway {
    /// Unmasks a port the caller just bound: a port number Xen reuses may still carry the mask
    /// the upcall set while nobody owned it.
    fn unmask_new(&self, port: u32) {
        if let Err(e) = hypercall::evtchn_unmask(&self.hc, port) {
            warn!("xen gateway: unmasking new port {port}: {e}");
        }
    }

    fn store_attach(&mut self, cx: &Caller<'_>) -> Result<(u64, u64), Fail> {
        let store = self.platform.store;
        match self.store_owner {
            Some(t) if t == cx.task => return Ok((sys::XEN_STORE_VA, u64::from(store.evtchn))),
            Some(t) => {
                return Err(malformed(format!(
                    "xen_store_attach: the store ring belongs to task {t}"
                )));
            }
            None => {}
        }
        map_page(
            cx.pml4,
            sys::XEN_STORE_VA,
            store.gfn * PAGE,
            user_flags(true),
        )
        .map_err(malformed)?;
        if let Err(e) = self.ports.bind(store.evtchn, cx.task, cx.rights.event_bit) {
            unmap_page(cx.pml4, sys::XEN_STORE_VA);
            return Err(evtchn_fail("xen_store_attach", e));
        }
        self.unmask_new(store.evtchn);
        self.store_owner = Some(cx.task);
        info!(
            "xen gateway: task {} attached to xenstore (port {})",
            cx.task, store.evtchn
        );
        Ok((sys::XEN_STORE_VA, u64::from(store.evtchn)))
    }

    fn alloc_unbound(&mut self, cx: &Caller<'_>, remote: u64) -> Result<u64, Fail> {
        let remote = domid("xen_evtchn_alloc_unbound", remote)?;
        let port = self
            .ports
            .alloc_unbound(&self.hc, cx.task, remote, cx.rights.event_bit)
            .map_err(|e| evtchn_fail("xen_evtchn_alloc_unbound", e))?;
        self.unmask_new(port);
        Ok(u64::from(port))
    }

    fn bind_interdomain(&mut self, cx: &Caller<'_>, remote: u64, rport: u64) -> Result<u64, Fail> {
        let remote = domid("xen_evtchn_bind_interdomain", remote)?;
        let rport = u32::try_from(rport)
            .map_err(|_| malformed(format!("xen_evtchn_bind_interdomain: port {rport}")))?;
        let port = self
            .ports
            .bind_interdomain(&self.hc, cx.task, remote, rport, cx.rights.event_bit)
            .map_err(|e| evtchn_fail("xen_evtchn_bind_interdomain", e))?;
        self.unmask_new(port);
        Ok(u64::from(port))
    }

    fn port_op(&mut self, cx: &Caller<'_>, port: u64, op: PortOp) -> Result<u64, Fail> {
        let what = match op {
            PortOp::Send => "xen_evtchn_send",
            PortOp::Close => "xen_evtchn_close",
            PortOp::Unmask => "xen_evtchn_unmask",
        };
        let port = u32::try_from(port).map_err(|_| malformed(format!("{what}: port {port}")))?;
        self.ports
            .check_owner(port, cx.task)
            .map_err(|e| malformed(format!("{what}: {e:?}")))?;
        match op {
            PortOp::Send => self.ports.send(&self.hc, cx.task, port),
            PortOp::Close => {
                if self.store_owner == Some(cx.task) && port == self.platform.store.evtchn {
                    return Err(malformed(format!("{what}: the xenstore port")));
                }
                self.ports.close(&self.hc, cx.task, port)
            }
            // Through Xen, which re-raises the upcall if the port fired while masked.
            PortOp::Unmask => match &self.events {
                Events::TwoLevel => {
                    hypercall::evtchn_unmask(&self.hc, port).map_err(EvtchnError::Xen)
                }
                Events::Fifo(view, _) => self.ports.unmask_fifo(&self.hc, view, cx.task, port),
            },
        }
        .map_err(|e| evtchn_fail(what, e))?;
        Ok(0)
    }

    fn grant_access(&mut self, cx: &Caller<'_>, va: u64, arg: u64) -> Result<u64, Fail> {
        if !va.is_multiple_of(PAGE) {
            return Err(malformed(format!("xen_grant_access: unaligned {va:#x}")));
        }
        if arg >> 17 != 0 {
            return Err(malformed(format!("xen_grant_access: flags {arg:#x}")));
        }
        let dom = domid("xen_grant_access", arg & 0xffff)?;
        cx.regions
            .check(va, PAGE, true)
            .map_err(|e| malformed(format!("xen_grant_access: {e}")))?;
        let pa = cx
            .phys_of(va)
            .ok_or_else(|| malformed(format!("xen_grant_access: {va:#x} is not mapped")))?;
        match self
            .grants
            .grant_access(cx.task, dom, pa / PAGE, arg >> 16 & 1 == 1)
        {
            Ok(r) => Ok(u64::from(r)),
            Err(TableError::Full) => Err(errno(Errno::ENOSPC)),
            Err(e) => Err(malformed(format!("xen_grant_access: {e:?}"))),
        }
    }

    fn grant_end(&mut self, cx: &Caller<'_>, r: u64) -> Result<u64, Fail> {
        let r = u32::try_from(r).map_err(|_| malformed(format!("xen_grant_end: ref {r}")))?;
        match self.grants.end_access(cx.task, r) {
            Ok(()) => Ok(0),
            Err(TableError::InUse(_)) => Err(Fail::Errno(sys::XEN_EBUSY)),
            Err(e) => Err(malformed(format!("xen_grant_end: {e:?}"))),
        }
    }

    /// The caller's window, created at its first use.
    fn window(&mut self, cx: &Caller<'_>) -> Result<usize, Fail> {
        if let Some(i) = self.windows.iter().position(|w| w.task == cx.task) {
            return Ok(i);
        }
        let slots = u32::try_from(cx.rights.grant_window / PAGE).unwrap_or(0);
        if slots == 0 {
            return Err(malformed("grant call without a grant window".into()));
        }
        let layout = WindowLayout {
            va_base: sys::XEN_GRANT_WINDOW_BASE,
            gpa_base: self.next_window_gpa,
            slots,
        };
        self.next_window_gpa += u64::from(slots) * PAGE;
        self.windows.push(Window {
            task: cx.task,
            window: GrantWindow::new(layout),
        });
        Ok(self.windows.len() - 1)
    }

    fn gpa_of(w: &GrantWindow, va: u64) -> u64 {
        let l = w.layout();
        l.gpa_base + (va - l.va_base)
    }

    fn grant_map(&mut self, cx: &Caller<'_>, reqs: u64, count: u64, out: u64) -> Result<u64, Fail> {
        let raw: Vec<XenMapRequest> = cx.read_array("xen_grant_map", reqs, count)?;
        cx.check_out("xen_grant_map", out, count)?;
        let mut reqs = Vec::with_capacity(raw.len());
        for r in &raw {
            if r.readonly > 1 {
                return Err(malformed(format!("xen_grant_map: flags {}", r.readonly)));
            }
            reqs.push(MapRequest {
                dom: domid("xen_grant_map", u64::from(r.domid))?,
                gref: r.gref,
                readonly: r.readonly == 1,
            });
        }
        let wi = self.window(cx)?;
        let mut outs = alloc::vec![MapOutcome::Failed(Err(0)); reqs.len()];
        let w = &mut self.windows[wi].window;
        match w.map(&XenGrantOps(&self.hc), &reqs, &mut outs) {
            Ok(()) => {}
            Err(WindowError::Xen(e)) => return Err(errno(e)),
            Err(WindowError::NoSpace { .. }) => return Err(errno(Errno::ENOSPC)),
            Err(e) => return Err(malformed(format!("xen_grant_map: {e:?}"))),
        }
        let mut results = Vec::with_capacity(outs.len());
        for (o, r) in outs.iter().zip(&reqs) {
            results.push(match *o {
                MapOutcome::Mapped { va, gpa } => {
                    map_page(cx.pml4, va, gpa, user_flags(!r.readonly)).map_err(malformed)?;
                    va as i64
                }
                MapOutcome::Failed(Ok(st)) => i64::from(st as i16),
                MapOutcome::Failed(Err(raw)) => i64::from(raw),
            });
        }
        Caller::write_out(out, &results);
        Ok(0)
    }

    /// The bus address of a mapped window page: its GPA (the IOMMU under Xen HVM maps nc2dd's
    /// devices through nc2dd's physmap, where Xen put the foreign frame).
    fn grant_bus(&mut self, cx: &Caller<'_>, va: u64) -> Result<u64, Fail> {
        let wi = self.window(cx)?;
        let w = &self.windows[wi].window;
        if !va.is_multiple_of(PAGE) || w.mapping(va).is_none() {
            return Err(malformed(format!(
                "xen_grant_bus: {va:#x} is not a mapped window page"
            )));
        }
        Ok(Self::gpa_of(w, va))
    }

    fn grant_unmap(
        &mut self,
        cx: &Caller<'_>,
        vas: u64,
        count: u64,
        out: u64,
    ) -> Result<u64, Fail> {
        let vas: Vec<u64> = cx.read_array("xen_grant_unmap", vas, count)?;
        cx.check_out("xen_grant_unmap", out, count)?;
        let wi = self.window(cx)?;
        let w = &mut self.windows[wi].window;
        for (i, &va) in vas.iter().enumerate() {
            if !va.is_multiple_of(PAGE) || w.mapping(va).is_none() {
                return Err(malformed(format!(
                    "xen_grant_unmap: entry {i} ({va:#x}) is not a mapped window page"
                )));
            }
            if vas[..i].contains(&va) {
                return Err(malformed(format!(
                    "xen_grant_unmap: entry {i} ({va:#x}) named twice"
                )));
            }
        }
        // The task loses access before Xen takes the frame away.
        for &va in &vas {
            unmap_page(cx.pml4, va);
        }
        let mut st = alloc::vec![Ok(GnttabStatus::Okay); vas.len()];
        let r = w.unmap(&XenGrantOps(&self.hc), &vas, &mut st);
        // What is still mapped (Xen refused, or the call failed) goes back into the task.
        for &va in &vas {
            if let Some(m) = w.mapping(va) {
                map_page(cx.pml4, va, Self::gpa_of(w, va), user_flags(!m.readonly))
                    .map_err(malformed)?;
            }
        }
        match r {
            Ok(()) => {}
            Err(WindowError::Xen(e)) => return Err(errno(e)),
            Err(e) => return Err(malformed(format!("xen_grant_unmap: {e:?}"))),
        }
        let results: Vec<i64> = st
            .iter()
            .map(|s| match *s {
                Ok(s) => i64::from(s as i16),
                Err(raw) => i64::from(raw),
            })
            .collect();
        Caller::write_out(out, &results);
        Ok(0)
    }

    fn grant_copy(
        &mut self,
        cx: &Caller<'_>,
        segs: u64,
        count: u64,
        out: u64,
    ) -> Result<u64, Fail> {
        let raw: Vec<XenCopySegment> = cx.read_array("xen_grant_copy", segs, count)?;
        cx.check_out("xen_grant_copy", out, count)?;
        let side = |s: &nc2dd_abi::syscall::XenCopySide| -> Result<CopySide, Fail> {
            match s.kind {
                sys::XEN_COPY_LOCAL => Ok(CopySide::Local { va: s.vaddr }),
                sys::XEN_COPY_GRANT => Ok(CopySide::Grant {
                    dom: domid("xen_grant_copy", u64::from(s.domid))?,
                    gref: s.gref,
                    offset: s.offset,
                }),
                k => Err(malformed(format!("xen_grant_copy: side kind {k}"))),
            }
        };
        let mut segments = Vec::with_capacity(raw.len());
        for s in &raw {
            segments.push(CopySegment {
                src: side(&s.src)?,
                dst: side(&s.dst)?,
                len: s.len,
            });
        }
        let wi = self.window(cx)?;
        let mut st = alloc::vec![Ok(GnttabStatus::Okay); segments.len()];
        match self.windows[wi]
            .window
            .copy(&XenGrantOps(&self.hc), cx, &segments, &mut st)
        {
            Ok(()) => {}
            Err(WindowError::Xen(e)) => return Err(errno(e)),
            Err(e) => return Err(malformed(format!("xen_grant_copy: {e:?}"))),
        }
        let results: Vec<i64> = st
            .iter()
            .map(|s| match *s {
                Ok(s) => i64::from(s as i16),
                Err(raw) => i64::from(raw),
            })
            .collect();
        Caller::write_out(out, &results);
        Ok(0)
    }
}
