//! The running system: every task's state, its address space, and what the kernel does for it.
//!
//! Owns: the task table built from the system table at boot, each task's page tables and frames,
//! the syscalls, faults, restarts and the choice of the next task. One CPU runs tasks and the
//! kernel runs with interrupts off, so the table sits behind one lock that is never held while
//! the CPU idles. Invariants: a task's saved registers are only ever user-mode state (CS/SS with
//! RPL 3); a stopped task never runs until the supervisor restarts it; every user pointer is
//! checked against the task's own regions before the kernel reads or writes through it.

extern crate alloc;

use alloc::vec::Vec;
use log::{info, warn};
use nc2dd_abi::layout::{IMAGE_BASE, TaskInfo};
use nc2dd_abi::syscall::{self as sys, REPORT_MESSAGE_LEN, StopKind, TaskReport};
use nc2dd_abi::system_table::Table;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::x86_64::idt::{self, TrapFrame};
use crate::arch::x86_64::{console, cpu, gdt, lapic};
use kernel::mem::frame::FrameAllocator;
use kernel::task::elf::{self, LoadPlan};
use kernel::task::notify::Notifications;
use kernel::task::sched::{self, Candidate};
use kernel::task::space::{self, Kind};
use kernel::task::uaccess::UserRegions;

const PAGE: u64 = 4096;
/// The image window: PML4 slot 128.
const IMAGE_END: u64 = IMAGE_BASE + (512 << 30);
/// How often the kernel restarts a supervisor that keeps stopping before it fails the system.
const SUPERVISOR_RESTARTS: u32 = 3;
/// Longest `debug_log` line.
const MAX_LOG: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Runnable,
    Blocked,
    Stopped,
}

pub struct Task {
    pub name: &'static str,
    priority: u8,
    state: State,
    notes: Notifications,
    regs: TrapFrame,
    pub generation: u32,
    last_ran: u64,
    pml4: u64,
    regions: UserRegions,
    report: TaskReport,
    plan: LoadPlan,
    image: &'static [u8],
    /// (first page address, frames) of each ELF segment, for reloading on restart.
    segment_frames: Vec<Vec<u64>>,
    /// Stack and heap frames, zeroed on restart.
    scratch_frames: Vec<u64>,
    info_frame: u64,
    /// Per channel of this task (its index in the info page): (peer task, peer's kick bit).
    channels: Vec<(usize, u8)>,
    timer_bit: Option<u8>,
    /// Tick at which the timer bit is posted.
    deadline: Option<u64>,
    supervisor: bool,
    /// Supervisor: the bit task stops are posted on.
    fault_bit: Option<u8>,
    /// Bytes of DMA memory mapped so far (the next one goes at DMA_BASE + this).
    dma_next: u64,
}

pub struct Kernel {
    pub tasks: Vec<Task>,
    current: usize,
    /// Set when the running task must give way (it blocked, stopped, yielded, its slice ended,
    /// or a higher-priority task woke).
    need_resched: bool,
    clock: u64,
    pub ticks: u64,
    table: Table<'static>,
    cmdline: &'static str,
    shutdown_allowed: bool,
}

pub static KERNEL: spin::Mutex<Option<Kernel>> = spin::Mutex::new(None);
pub static FRAMES: spin::Mutex<Option<FrameAllocator<'static>>> = spin::Mutex::new(None);

fn alloc_zeroed_frame() -> u64 {
    let f = FRAMES.lock().as_mut().and_then(FrameAllocator::alloc);
    let Some(f) = f else {
        crate::boot_sequence::fail(format_args!("out of physical memory"))
    };
    zero_frame(f);
    f
}

fn zero_frame(f: u64) {
    // SAFETY: `f` is a RAM frame owned by the kernel, identity-mapped writable.
    unsafe { core::ptr::write_bytes(f as *mut u8, 0, PAGE as usize) }
}

struct Frames;

// SAFETY: hands out distinct zeroed frames from the global allocator.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        Some(PhysFrame::containing_address(PhysAddr::new(
            alloc_zeroed_frame(),
        )))
    }
}

fn user_flags(writable: bool, executable: bool) -> F {
    let mut f = F::PRESENT | F::USER_ACCESSIBLE;
    if writable {
        f |= F::WRITABLE;
    }
    if !executable {
        f |= F::NO_EXECUTE;
    }
    f
}

/// Maps one user page in the address space rooted at `pml4`.
fn map_user(pml4: u64, vaddr: u64, frame: u64, flags: F) {
    // SAFETY: `pml4` is a task's own table; the kernel's identity map makes every table frame
    // reachable at its physical address, so offset 0 is right.
    let table = unsafe { &mut *(pml4 as *mut PageTable) };
    // SAFETY: as above.
    let mut mapper = unsafe { OffsetPageTable::new(table, VirtAddr::new(0)) };
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
    let frame = PhysFrame::containing_address(PhysAddr::new(frame));
    let parent = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
    // SAFETY: user pages never alias kernel memory: the frame is fresh or a channel frame.
    match unsafe { mapper.map_to_with_table_flags(page, frame, flags, parent, &mut Frames) } {
        Ok(flush) => flush.ignore(),
        Err(e) => crate::boot_sequence::fail(format_args!("mapping user page {vaddr:#x}: {e:?}")),
    }
}

fn initial_regs(entry: u64) -> TrapFrame {
    TrapFrame {
        rip: entry,
        cs: gdt::USER_CS,
        // Interrupts on; bit 1 is reserved and always set.
        rflags: 0x202,
        // `_start` is entered as if called: the stack is 16-byte aligned minus the return slot.
        rsp: nc2dd_abi::layout::STACK_TOP - 8,
        ss: gdt::USER_DS,
        ..TrapFrame::default()
    }
}

impl Task {
    fn candidate(&self) -> Candidate {
        Candidate {
            runnable: self.state == State::Runnable,
            priority: self.priority,
            last_ran: self.last_ran,
        }
    }

    /// Copies the image into its frames again and clears stack and heap.
    fn load_image(&self) {
        for (seg, frames) in self.plan.segments.iter().zip(&self.segment_frames) {
            for (i, &frame) in frames.iter().enumerate() {
                zero_frame(frame);
                let page = seg.page_start + i as u64 * PAGE;
                let from = seg.vaddr.max(page);
                let to = (seg.vaddr + seg.file_size).min(page + PAGE);
                if from < to {
                    let file_at = (seg.file_offset + (from - seg.vaddr)) as usize;
                    let len = (to - from) as usize;
                    // SAFETY: the frame is the task's, identity-mapped; `file_at + len` lies
                    // inside the image (checked by the load plan).
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            self.image.as_ptr().add(file_at),
                            (frame + (from - page)) as *mut u8,
                            len,
                        );
                    }
                }
            }
        }
        for &f in &self.scratch_frames {
            zero_frame(f);
        }
    }

    fn write_info(&self, info: &TaskInfo) {
        // SAFETY: the info frame is the task's (mapped read-only to it); the kernel writes it
        // through the identity map. TaskInfo fits a page (asserted in the ABI crate).
        unsafe { core::ptr::write_volatile(self.info_frame as *mut TaskInfo, *info) }
    }
}

impl Kernel {
    /// Builds every task of `table` from the servers in the boot module.
    pub fn new(
        table: Table<'static>,
        servers: &dyn Fn(&str) -> Option<&'static [u8]>,
        cmdline: &'static str,
    ) -> Result<Self, alloc::string::String> {
        use alloc::format;
        let (kernel_pml4, _) = Cr3::read();
        let kernel_pml4 = kernel_pml4.start_address().as_u64();
        // One frame set per channel, shared by its two ends.
        let channel_frames: Vec<Vec<u64>> = table
            .channels()
            .map(|c| (0..c.size / PAGE).map(|_| alloc_zeroed_frame()).collect())
            .collect();
        let mut tasks = Vec::new();
        for t in table.tasks() {
            let image = servers(t.server).ok_or_else(|| {
                format!(
                    "task {}: server {} is not in the boot module",
                    t.name, t.server
                )
            })?;
            let plan = elf::plan(image, IMAGE_BASE, IMAGE_END)
                .map_err(|e| format!("task {} ({}): {e}", t.name, t.server))?;
            let pml4 = alloc_zeroed_frame();
            // The kernel's identity map (PML4 slot 0, supervisor-only) is shared by every task.
            // SAFETY: both are page-table frames; copying one entry shares the lower tables.
            unsafe {
                let k = &*(kernel_pml4 as *const PageTable);
                let u = &mut *(pml4 as *mut PageTable);
                u[0] = k[0].clone();
            }
            let mut regions = UserRegions::default();
            let mut segment_frames = Vec::new();
            for seg in &plan.segments {
                let frames: Vec<u64> = (0..seg.pages).map(|_| alloc_zeroed_frame()).collect();
                for (i, &f) in frames.iter().enumerate() {
                    map_user(
                        pml4,
                        seg.page_start + i as u64 * PAGE,
                        f,
                        user_flags(seg.writable, seg.executable),
                    );
                }
                regions.add(seg.page_start, seg.pages * PAGE, seg.writable);
                segment_frames.push(frames);
            }
            let mut scratch_frames = Vec::new();
            let mut info_frame = 0;
            let mut channels = Vec::new();
            let mappings =
                space::plan(&table, t.index).map_err(|e| format!("task {}: {e:?}", t.name))?;
            for m in &mappings {
                regions.add(m.start, m.pages * PAGE, m.writable);
                for p in 0..m.pages {
                    let frame = match m.kind {
                        Kind::Channel(ci) => channel_frames[ci][p as usize],
                        Kind::Info => {
                            info_frame = alloc_zeroed_frame();
                            info_frame
                        }
                        Kind::Stack | Kind::Heap => {
                            let f = alloc_zeroed_frame();
                            scratch_frames.push(f);
                            f
                        }
                    };
                    map_user(
                        pml4,
                        m.start + p * PAGE,
                        frame,
                        user_flags(m.writable, false),
                    );
                }
                if let Kind::Channel(ci) = m.kind {
                    let ch = table.channels().nth(ci).expect("channel index from plan");
                    let me = ch
                        .ends
                        .iter()
                        .position(|e| e.task == t.index)
                        .expect("an end");
                    let peer = ch.ends[1 - me];
                    channels.push((peer.task, peer.kick_bit));
                }
            }
            // Device registers the task claimed: uncached, never executable.
            if let Some(devs) = crate::devices::DEVICES.lock().as_ref() {
                for dev in devs.task_devices(t.index) {
                    for &(user, phys, len) in &dev.mappings {
                        for off in (0..len).step_by(PAGE as usize) {
                            let flags = user_flags(true, false) | F::NO_CACHE | F::WRITE_THROUGH;
                            map_user(pml4, user + off, phys + off, flags);
                        }
                    }
                }
            }
            let task = Task {
                name: t.name,
                dma_next: 0,
                priority: t.priority,
                state: State::Runnable,
                notes: Notifications::default(),
                regs: initial_regs(plan.entry),
                generation: 0,
                last_ran: 0,
                pml4,
                regions,
                report: TaskReport::empty(),
                plan,
                image,
                segment_frames,
                scratch_frames,
                info_frame,
                channels,
                timer_bit: t.timer_bit,
                deadline: None,
                supervisor: t.supervisor,
                fault_bit: t.fault_bit,
            };
            task.load_image();
            tasks.push(task);
        }
        let shutdown_allowed = kernel::boot::cmdline::option(cmdline, "shutdown") == Some("allow");
        let k = Kernel {
            tasks,
            current: 0,
            need_resched: true,
            clock: 0,
            ticks: 0,
            table,
            cmdline,
            shutdown_allowed,
        };
        for i in 0..k.tasks.len() {
            k.refresh_info(i);
        }
        Ok(k)
    }

    fn generations(&self) -> Vec<u32> {
        self.tasks.iter().map(|t| t.generation).collect()
    }

    /// Rewrites task `i`'s info page (its generation and its peers').
    fn refresh_info(&self, i: usize) {
        match space::info(&self.table, i, &self.generations(), self.cmdline) {
            Ok(mut info) => {
                if let Some(devs) = crate::devices::DEVICES.lock().as_ref() {
                    let list = devs.task_devices(i);
                    for (slot, d) in info.devices.iter_mut().zip(list) {
                        *slot = d.info;
                    }
                    info.device_count = list.len().min(info.devices.len()) as u32;
                }
                self.tasks[i].write_info(&info)
            }
            Err(e) => warn!("info page of task {i}: {e:?}"),
        }
    }

    /// Posts `bits` to task `t`, waking it when it waits for one of them.
    pub fn post(&mut self, t: usize, bits: u64) {
        let task = &mut self.tasks[t];
        task.notes.post(bits);
        if task.state == State::Blocked
            && let Some(got) = task.notes.wake()
        {
            task.regs.rax = got;
            task.state = State::Runnable;
            if task.priority < self.tasks[self.current].priority {
                self.need_resched = true;
            }
        }
    }

    /// The timer tick: deadlines, and the end of the running task's slice.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let now = self.ticks;
        for i in 0..self.tasks.len() {
            if let (Some(d), Some(bit)) = (self.tasks[i].deadline, self.tasks[i].timer_bit)
                && d <= now
            {
                self.tasks[i].deadline = None;
                self.post(i, 1 << bit);
            }
        }
        self.need_resched = true;
    }

    /// Stops the current task and tells the supervisor.
    fn stop_current(&mut self, frame: &TrapFrame, kind: StopKind, code: u32, message: &str) {
        let cur = self.current;
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        let t = &mut self.tasks[cur];
        let mut r = TaskReport::empty();
        r.index = cur as u32;
        r.generation = t.generation;
        r.kind = kind as u32;
        r.code = code;
        r.error_code = frame.error_code;
        r.rip = frame.rip;
        r.rsp = frame.rsp;
        r.rflags = frame.rflags;
        r.cr2 = if kind == StopKind::Exception && frame.vector == 14 {
            cr2
        } else {
            0
        };
        r.regs = [
            frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.r8,
            frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
        ];
        let n = message.len().min(REPORT_MESSAGE_LEN);
        r.message[..n].copy_from_slice(&message.as_bytes()[..n]);
        r.message_len = n as u32;
        t.report = r;
        t.state = State::Stopped;
        t.deadline = None;
        self.need_resched = true;
        if kind != StopKind::Exit {
            info!(
                "task {} ({}) generation {} stopped: {:?} {} (rip {:#x}, cs {:#x}, rsp {:#x}, cr2 {:#x}, error {:#x})",
                cur,
                t.name,
                t.generation,
                kind,
                message,
                frame.rip,
                frame.cs,
                frame.rsp,
                r.cr2,
                frame.error_code
            );
        }
        if cur == 0 {
            // Nobody supervises the supervisor: restart it directly, a few times.
            if self.tasks[0].generation >= SUPERVISOR_RESTARTS {
                crate::boot_sequence::fail(format_args!(
                    "the supervisor stopped {} times; giving up",
                    SUPERVISOR_RESTARTS + 1
                ));
            }
            warn!("the supervisor stopped; restarting it");
            self.restart(0);
            return;
        }
        if let Some(bit) = self.tasks[0].fault_bit {
            self.post(0, 1 << bit);
        }
    }

    /// A CPU exception in user mode.
    pub fn fault_current(&mut self, frame: &TrapFrame) {
        let name = idt::exception_name(frame.vector);
        let detail = if frame.vector == 14 {
            idt::page_fault_reason(frame.error_code)
        } else {
            ""
        };
        let mut msg = heapless_msg();
        let _ = core::fmt::write(&mut msg, format_args!("{name}{detail}"));
        self.stop_current(
            frame,
            StopKind::Exception,
            frame.vector as u32,
            msg.as_str(),
        );
    }

    fn bad_syscall(&mut self, frame: &TrapFrame, why: core::fmt::Arguments<'_>) {
        let mut msg = heapless_msg();
        let _ = core::fmt::write(&mut msg, why);
        self.stop_current(frame, StopKind::BadSyscall, frame.rax as u32, msg.as_str());
    }

    /// Reloads task `i` from its image with the next generation.
    fn restart(&mut self, i: usize) {
        crate::gateway::task_restarted(i, self.tasks[i].pml4);
        if let Some(d) = crate::devices::DEVICES.lock().as_mut() {
            d.task_restarted(i);
        }
        let t = &mut self.tasks[i];
        t.generation = t.generation.wrapping_add(1);
        t.load_image();
        t.regs = initial_regs(t.plan.entry);
        t.notes.reset();
        t.deadline = None;
        t.report = TaskReport::empty();
        t.state = State::Runnable;
        info!(
            "task {} ({}) restarted as generation {}",
            i, t.name, t.generation
        );
        // Peers learn of the new generation through their info pages.
        for j in 0..self.tasks.len() {
            self.refresh_info(j);
        }
        self.need_resched = true;
    }

    /// Handles the system call in `frame` for the current task.
    pub fn syscall(&mut self, frame: &mut TrapFrame) {
        let cur = self.current;
        let (a0, a1) = (frame.rdi, frame.rsi);
        match frame.rax {
            sys::SYS_DEBUG_LOG => {
                if a1 > MAX_LOG {
                    return self.bad_syscall(frame, format_args!("debug_log of {a1} bytes"));
                }
                if let Err(e) = self.tasks[cur].regions.check(a0, a1, false) {
                    return self.bad_syscall(frame, format_args!("debug_log: {e}"));
                }
                // SAFETY: the range was checked against the task's mapped regions, and its
                // address space is the active one.
                let bytes = unsafe { core::slice::from_raw_parts(a0 as *const u8, a1 as usize) };
                let text = core::str::from_utf8(bytes).unwrap_or("<not UTF-8>");
                console::print(format_args!("{text}\n"));
                frame.rax = 0;
            }
            sys::SYS_EXIT => self.stop_current(frame, StopKind::Exit, a0 as u32, ""),
            sys::SYS_PANIC => {
                let msg = if a1 <= REPORT_MESSAGE_LEN as u64 * 4
                    && self.tasks[cur].regions.check(a0, a1, false).is_ok()
                {
                    // SAFETY: checked as for debug_log.
                    let b = unsafe { core::slice::from_raw_parts(a0 as *const u8, a1 as usize) };
                    core::str::from_utf8(b).unwrap_or("<not UTF-8>")
                } else {
                    "<message outside the task's memory>"
                };
                console::print(format_args!("{msg}\n"));
                self.stop_current(frame, StopKind::Panic, 0, msg);
            }
            sys::SYS_WAIT | sys::SYS_POLL => {
                if a0 == 0 {
                    return self.bad_syscall(frame, format_args!("wait on an empty mask"));
                }
                if frame.rax == sys::SYS_POLL {
                    frame.rax = self.tasks[cur].notes.take(a0);
                } else if let Some(bits) = self.tasks[cur].notes.wait(a0) {
                    frame.rax = bits;
                } else {
                    self.tasks[cur].state = State::Blocked;
                    self.need_resched = true;
                }
            }
            sys::SYS_NOTIFY => match self.tasks[cur].channels.get(a0 as usize) {
                Some(&(peer, bit)) => {
                    self.post(peer, 1 << bit);
                    frame.rax = 0;
                }
                None => self.bad_syscall(
                    frame,
                    format_args!("notify on channel {a0}, which it lacks"),
                ),
            },
            sys::SYS_YIELD => {
                self.need_resched = true;
                frame.rax = 0;
            }
            sys::SYS_TASK_REPORT | sys::SYS_TASK_RESTART if !self.tasks[cur].supervisor => self
                .bad_syscall(
                    frame,
                    format_args!("supervisor call from a task that is not"),
                ),
            sys::SYS_TASK_REPORT => {
                let size = core::mem::size_of::<TaskReport>() as u64;
                let Some(t) = self.tasks.get(a0 as usize) else {
                    return self.bad_syscall(frame, format_args!("task_report of task {a0}"));
                };
                if let Err(e) = self.tasks[cur].regions.check(a1, size, true) {
                    return self.bad_syscall(frame, format_args!("task_report: {e}"));
                }
                if t.state == State::Stopped {
                    // SAFETY: `a1` was checked writable for a whole TaskReport; unaligned
                    // writes are allowed for a plain-data struct.
                    unsafe { core::ptr::write_unaligned(a1 as *mut TaskReport, t.report) };
                    frame.rax = 1;
                } else {
                    frame.rax = 0;
                }
            }
            sys::SYS_TASK_RESTART => match self.tasks.get(a0 as usize) {
                Some(t) if a0 != 0 && t.state == State::Stopped => {
                    self.restart(a0 as usize);
                    frame.rax = 0;
                }
                _ => self.bad_syscall(
                    frame,
                    format_args!("restart of task {a0}, which is not stopped"),
                ),
            },
            sys::SYS_SHUTDOWN => {
                if self.shutdown_allowed {
                    let ok = a0 != 0;
                    info!(
                        "shutdown requested by {} ({})",
                        self.tasks[cur].name,
                        if ok { "success" } else { "failure" }
                    );
                    if ok {
                        console::print(format_args!(
                            "{}: system shut down cleanly\n",
                            nc2dd_abi::markers::PASS
                        ));
                    } else {
                        console::print(format_args!(
                            "{}: system shut down with failure\n",
                            nc2dd_abi::markers::FAIL
                        ));
                    }
                    cpu::exit(ok);
                }
                frame.rax = 0;
            }
            sys::SYS_SET_TIMER => match self.tasks[cur].timer_bit {
                Some(_) => {
                    let ms = a0;
                    self.tasks[cur].deadline =
                        (ms != 0).then(|| self.ticks + ms.div_ceil(lapic::TICK_MS).max(1));
                    frame.rax = 0;
                }
                None => self.bad_syscall(frame, format_args!("set_timer without a timer bit")),
            },
            sys::SYS_UPTIME => {
                let ns = crate::platform::now_ns();
                frame.rax = if ns > 0 {
                    ns / 1_000_000
                } else {
                    self.ticks * lapic::TICK_MS
                };
            }
            sys::SYS_NOW_NS => frame.rax = crate::platform::now_ns(),
            sys::SYS_DEV_CONFIG_READ
            | sys::SYS_DEV_CONFIG_WRITE
            | sys::SYS_DMA_ALLOC
            | sys::SYS_IRQ_ACK => self.device_call(frame),
            n if crate::gateway::handles(n) => {
                let rights = self.table.task(cur).and_then(|t| t.xen);
                let t = &self.tasks[cur];
                if let Err(why) = crate::gateway::syscall(cur, rights, t.pml4, &t.regions, frame) {
                    self.bad_syscall(frame, format_args!("{why}"));
                }
            }
            n => self.bad_syscall(frame, format_args!("unknown system call {n}")),
        }
    }

    /// The device system calls (config space, DMA, interrupt acknowledgement).
    fn device_call(&mut self, frame: &mut TrapFrame) {
        let cur = self.current;
        let (a0, a1, a2) = (frame.rdi, frame.rsi, frame.rdx);
        let mut guard = crate::devices::DEVICES.lock();
        let Some(devs) = guard.as_mut() else {
            drop(guard);
            return self.bad_syscall(frame, format_args!("device call without devices"));
        };
        match frame.rax {
            sys::SYS_DEV_CONFIG_READ => match devs.config_read(cur, a0, a1) {
                Ok(v) => frame.rax = u64::from(v),
                Err(e) => {
                    drop(guard);
                    self.bad_syscall(frame, format_args!("config read: {e}"))
                }
            },
            sys::SYS_DEV_CONFIG_WRITE => match devs.config_write(cur, a0, a1, a2) {
                Ok(()) => frame.rax = 0,
                Err(e) => {
                    drop(guard);
                    self.bad_syscall(frame, format_args!("config write: {e}"))
                }
            },
            sys::SYS_DMA_ALLOC => {
                let grant = if a0 == 0 || a0 > (1 << 30) {
                    None
                } else {
                    devs.dma_alloc(cur, a0)
                };
                match grant {
                    Some(crate::devices::DmaGrant::Reused { vaddr, bus }) => {
                        drop(guard);
                        frame.rax = vaddr;
                        frame.rdx = bus;
                    }
                    Some(crate::devices::DmaGrant::New(r)) => {
                        let vaddr = nc2dd_abi::layout::DMA_BASE + self.tasks[cur].dma_next;
                        devs.record(cur, r, vaddr);
                        drop(guard);
                        for off in (0..r.len).step_by(PAGE as usize) {
                            map_user(
                                self.tasks[cur].pml4,
                                vaddr + off,
                                r.phys + off,
                                user_flags(true, false),
                            );
                        }
                        self.tasks[cur].dma_next += r.len;
                        self.tasks[cur].regions.add(vaddr, r.len, true);
                        frame.rax = vaddr;
                        frame.rdx = r.bus;
                    }
                    None => {
                        frame.rax = 0;
                        frame.rdx = 0;
                    }
                }
            }
            _ => match devs.acknowledge(cur, a0, a1) {
                Ok(repost) => {
                    drop(guard);
                    frame.rax = 0;
                    if let Some(bit) = repost {
                        self.post(cur, 1 << bit);
                    }
                }
                Err(e) => {
                    drop(guard);
                    self.bad_syscall(frame, format_args!("irq_ack: {e}"))
                }
            },
        }
    }

    /// Saves the running task's registers from `frame` and loads the next task's, switching
    /// address spaces. Returns `false` when nothing is runnable (the frame is then untouched).
    pub fn switch(&mut self, frame: &mut TrapFrame) -> bool {
        let cur = self.current;
        let from_user = frame.cs & 3 == 3;
        if from_user && self.tasks[cur].state == State::Runnable && !self.need_resched {
            return true;
        }
        let cands: Vec<Candidate> = self.tasks.iter().map(Task::candidate).collect();
        let Some(next) = sched::pick(&cands) else {
            if from_user {
                self.tasks[cur].regs = *frame;
                // The frame no longer belongs to a runnable task.
                frame.cs = 0;
            }
            return false;
        };
        self.need_resched = false;
        if from_user && next == cur {
            return true;
        }
        if from_user {
            self.tasks[cur].regs = *frame;
        }
        self.clock += 1;
        self.tasks[cur].last_ran = self.clock;
        *frame = self.tasks[next].regs;
        self.current = next;
        let pml4 = self.tasks[next].pml4;
        if Cr3::read().0.start_address().as_u64() != pml4 {
            // SAFETY: every task's PML4 maps the kernel (slot 0) exactly like the kernel's own.
            unsafe {
                Cr3::write(
                    PhysFrame::containing_address(PhysAddr::new(pml4)),
                    Cr3Flags::empty(),
                )
            };
        }
        true
    }
}

/// A small on-stack text buffer for report messages.
struct Msg {
    buf: [u8; REPORT_MESSAGE_LEN],
    len: usize,
}

fn heapless_msg() -> Msg {
    Msg {
        buf: [0; REPORT_MESSAGE_LEN],
        len: 0,
    }
}

impl core::fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Msg {
    fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}
