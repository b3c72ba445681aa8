//! The boot sequence: what `kernel_main` does, in order, and the kernel's fatal paths.
//!
//! 1. console and logging;
//! 2. GDT/TSS and IDT, so every later fault gets a dump;
//! 3. start info;
//! 4. frame allocator over the memory map minus everything the loader and the kernel occupy;
//! 5. kernel heap;
//! 6. the kernel's own W^X page tables;
//! 7. the boot module;
//! 8. self-tests asked for on the command line;
//! 9. the tasks of the system table (if the module has one) and the APIC tick, then the first
//!    task; without a system table, the pass marker.

extern crate alloc;

use alloc::vec::Vec;
use core::panic::PanicInfo;
use log::{error, info};
use nc2dd_abi::bootmodule::{BootModule, EntryKind};
use nc2dd_abi::markers;
use nc2dd_abi::system_table::Table;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{OffsetPageTable, PageTable, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::x86_64::idt::TrapFrame;
use crate::arch::x86_64::{console, cpu, entry, gdt, idt, lapic, phys, syscall};
use crate::devices::{DEVICES, Devices};
use crate::tasks::{FRAMES, KERNEL, Kernel};
use kernel::boot::cmdline;
use kernel::boot::start_info::MemoryType;
use kernel::boot::start_info::StartInfo;
use kernel::mem::frame::{FRAME_SIZE, FrameAllocator, bitmap_words};
use kernel::mem::paging;

#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// Physical memory the frame allocator covers; a driver domain has far less.
const PHYS_CEILING: u64 = 16 << 30;
const HEAP_MAX: u64 = 8 << 20;

static mut FRAME_BITMAP: [u64; bitmap_words(PHYS_CEILING)] = [0; bitmap_words(PHYS_CEILING)];

/// Adapts the frame allocator to the `x86_64` crate's mapper.
struct Frames<'a, 'b>(&'a mut FrameAllocator<'b>);

// SAFETY: the allocator hands out each free frame once; frames are identity-mapped RAM that the
// mapper zeroes before use as tables.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for Frames<'_, '_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0
            .alloc()
            .map(|a| PhysFrame::containing_address(PhysAddr::new(a)))
    }
}

static START_INFO: spin::Once<StartInfo> = spin::Once::new();
/// A boot module built into the kernel (empty unless the image tool embedded one): used when the
/// loader passes no module, as Xen's HVM `firmware_override` cannot.
static EMBEDDED_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded-module.bin"));
/// Physical address of the kernel's PML4, for mappings made after boot.
static KERNEL_L4: spin::Once<u64> = spin::Once::new();

/// Identity-maps `[phys, phys + len)` uncached in kernel space (device registers). Kernel
/// mappings below 512 GiB live under the PML4 slot every task shares, so all see them.
pub fn map_kernel_mmio(phys: u64, len: u64) {
    let Some(&l4) = KERNEL_L4.get() else { return };
    // SAFETY: the kernel PML4 is identity-mapped; offset 0 translates every table frame.
    let mut mapper =
        unsafe { OffsetPageTable::new(&mut *(l4 as *mut PageTable), VirtAddr::new(0)) };
    let region = paging::Region {
        start: phys & !0xfff,
        end: (phys + len).div_ceil(4096) * 4096,
        flags: PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | PageTableFlags::NO_EXECUTE
            | PageTableFlags::NO_CACHE
            | PageTableFlags::WRITE_THROUGH,
    };
    let mut frames = FRAMES.lock();
    let Some(frames) = frames.as_mut() else {
        return;
    };
    // SAFETY: device registers are not RAM, so the mapping aliases nothing the kernel uses.
    match unsafe { paging::map_region(&mut mapper, &region, &mut Frames(frames)) } {
        Ok(()) | Err(x86_64::structures::paging::mapper::MapToError::PageAlreadyMapped(_)) => {}
        Err(e) => fail(format_args!("mapping device registers at {phys:#x}: {e:?}")),
    }
}

pub fn fail(what: core::fmt::Arguments<'_>) -> ! {
    error!("{what}");
    console::print(format_args!("{}: {what}\n", markers::FAIL));
    cpu::exit(false)
}

#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info_paddr: u64) -> ! {
    let xen = cpu::running_on_xen();
    console::init(xen);
    info!(
        "nc2dd kernel {} starting ({})",
        env!("CARGO_PKG_VERSION"),
        if xen { "Xen PVH entry" } else { "PVH entry" }
    );
    gdt::init(syscall::trap_stack_top_addr());
    idt::init();

    let si = START_INFO.call_once(|| {
        StartInfo::parse(&phys::IdentityMap, start_info_paddr)
            .or_else(|e| match e {
                kernel::boot::start_info::Error::NoMemoryMap if xen => {
                    crate::gateway::start_info_v0(start_info_paddr)
                }
                e => Err(e),
            })
            .unwrap_or_else(|e| fail(format_args!("{e}")))
    });
    info!(
        "start info: version {} flags {:#x} modules {} memmap entries {} rsdp {:#x}",
        si.version,
        si.flags,
        si.modules().len(),
        si.memory_map().len(),
        si.rsdp_paddr
    );
    info!("command line: \"{}\"", si.cmdline());
    for r in si.memory_map() {
        info!("  memory {:#014x}-{:#014x} {:?}", r.start, r.end(), r.kind);
    }
    info!("memory: {} KiB RAM", si.ram_bytes() / 1024);

    // SAFETY: the bitmap is used only here, once, on the boot CPU.
    let bits = unsafe {
        (&raw mut FRAME_BITMAP)
            .as_mut()
            .expect("static is non-null")
    };
    let mut frames = FrameAllocator::new(bits);
    for r in si.memory_map().iter().filter(|r| r.kind == MemoryType::Ram) {
        frames.add_free_range(r.start, r.end());
    }
    let image = entry::kernel_image();
    frames.reserve_range(0, 0x10_0000);
    frames.reserve_range(image.start, image.end);
    frames.reserve_range(si.paddr, si.paddr + 64);
    frames.reserve_range(
        si.memmap_paddr,
        si.memmap_paddr + 24 * si.memory_map().len() as u64,
    );
    frames.reserve_range(
        si.modlist_paddr,
        si.modlist_paddr + 32 * si.modules().len() as u64,
    );
    if si.cmdline_paddr != 0 {
        frames.reserve_range(
            si.cmdline_paddr,
            si.cmdline_paddr + si.cmdline().len() as u64 + 1,
        );
    }
    for m in si.modules() {
        frames.reserve_range(m.paddr, m.paddr + m.size);
    }
    info!(
        "frames: {} free of 4 KiB ({} MiB)",
        frames.free_frames(),
        frames.free_frames() * 4 / 1024
    );

    let heap_bytes =
        (frames.free_frames() * FRAME_SIZE / 4).min(HEAP_MAX) / FRAME_SIZE * FRAME_SIZE;
    let heap_start = frames
        .alloc_contiguous(heap_bytes / FRAME_SIZE, FRAME_SIZE)
        .unwrap_or_else(|| {
            fail(format_args!(
                "no {heap_bytes} contiguous bytes for the kernel heap"
            ))
        });
    // SAFETY: the frames were just taken from the allocator, are identity-mapped RAM and belong
    // to the heap from now on.
    unsafe { HEAP.lock().init(heap_start as *mut u8, heap_bytes as usize) };
    info!("heap: {} KiB at {:#x}", heap_bytes / 1024, heap_start);

    let mut plan = paging::plan(si.memory_map(), &image);
    let mut loader = alloc::vec![
        (si.paddr, 64),
        (si.memmap_paddr, 24 * si.memory_map().len() as u64),
        (si.modlist_paddr, 32 * si.modules().len() as u64),
        (si.cmdline_paddr, si.cmdline().len() as u64 + 1),
    ];
    loader.extend(si.modules().iter().map(|m| (m.paddr, m.size)));
    paging::add_loader_ranges(&mut plan, &loader);
    let l4_paddr = frames
        .alloc()
        .unwrap_or_else(|| fail(format_args!("no frame for the PML4")));
    // SAFETY: a fresh frame, identity-mapped, used only as the new PML4.
    let l4 = unsafe {
        let p = l4_paddr as *mut PageTable;
        p.write(PageTable::new());
        &mut *p
    };
    // SAFETY: the current tables identity-map all RAM, so offset 0 translates frames correctly.
    let mut mapper = unsafe { OffsetPageTable::new(l4, VirtAddr::new(0)) };
    for r in &plan {
        // SAFETY: the new table is not active yet; it maps RAM to itself.
        unsafe { paging::map_region(&mut mapper, r, &mut Frames(&mut frames)) }
            .unwrap_or_else(|e| fail(format_args!("mapping {r:?}: {e:?}")));
    }
    // The local APIC's registers: uncached, kernel only.
    let apic = paging::Region {
        start: lapic::LAPIC_BASE,
        end: lapic::LAPIC_BASE + 4096,
        flags: PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | PageTableFlags::NO_EXECUTE
            | PageTableFlags::NO_CACHE
            | PageTableFlags::WRITE_THROUGH,
    };
    // SAFETY: the APIC page is MMIO, not RAM, so the mapping aliases nothing.
    unsafe { paging::map_region(&mut mapper, &apic, &mut Frames(&mut frames)) }
        .unwrap_or_else(|e| fail(format_args!("mapping the local APIC: {e:?}")));
    // SAFETY: the new tables map the kernel image (text executable), its stack (in .bss), the
    // heap and all RAM exactly as the boot tables did, minus page 0 and non-RAM holes.
    unsafe {
        Cr3::write(
            PhysFrame::containing_address(PhysAddr::new(l4_paddr)),
            Cr3Flags::empty(),
        )
    };
    info!(
        "paging: kernel page tables active ({} regions, W^X, page 0 unmapped)",
        plan.len()
    );

    // The loader's first module that is an nc2dd boot module, else the built-in one. (Xen's HVM
    // `firmware_override` path reports a module of its own at physical address 0.)
    let loader_module = si.modules().iter().enumerate().find_map(|(i, m)| {
        info!("  module {i}: {:#x}, {} bytes", m.paddr, m.size);
        if m.paddr == 0 || m.size < 8 {
            info!("  module {i}: unusable, ignored");
            return None;
        }
        // SAFETY: modules were reserved above and are mapped (as RAM or read-only loader data);
        // nothing writes them.
        let bytes = unsafe { phys::slice(m.paddr, m.size as usize) };
        if bytes[..8] != nc2dd_abi::bootmodule::MAGIC {
            info!("  module {i}: not an nc2dd boot module, ignored");
            return None;
        }
        Some(bytes)
    });
    let module_bytes = match loader_module {
        Some(bytes) => Some(bytes),
        None if !EMBEDDED_MODULE.is_empty() => {
            info!("boot module: using the one built into the kernel");
            Some(EMBEDDED_MODULE)
        }
        None => {
            info!("boot module: none (no servers to start)");
            None
        }
    };
    let module = module_bytes.map(|bytes| {
        let bm =
            BootModule::parse(bytes).unwrap_or_else(|e| fail(format_args!("boot module: {e}")));
        let servers: Vec<_> = bm
            .entries()
            .filter(|e| e.kind == EntryKind::Server)
            .collect();
        info!(
            "boot module: {} bytes, {} servers",
            bytes.len(),
            servers.len()
        );
        for e in &servers {
            info!("  server {} ({} bytes)", e.name, e.data.len());
        }
        bm
    });

    // The loader's command line, else the default packed in the boot module.
    let packed = module
        .and_then(|bm| bm.entries().find(|e| e.kind == EntryKind::CommandLine))
        .and_then(|e| core::str::from_utf8(e.data).ok());
    let command_line: &'static str = match packed {
        Some(c) if si.cmdline().trim().is_empty() => {
            info!("command line (from the boot module): \"{c}\"");
            c
        }
        _ => si.cmdline(),
    };
    check_memory(&mut frames);
    if let Some(test) = cmdline::option(command_line, "selftest") {
        selftest(test);
    }
    let table_entry = module.and_then(|bm| bm.entries().find(|e| e.kind == EntryKind::SystemTable));
    let (Some(bm), Some(table_entry)) = (module, table_entry) else {
        info!("boot complete; no system table, so no tasks to run");
        console::print(format_args!("{}: nc2dd kernel booted\n", markers::PASS));
        cpu::exit(true)
    };
    let table =
        Table::decode(table_entry.data).unwrap_or_else(|e| fail(format_args!("system table: {e}")));
    info!(
        "system {:?}: {} tasks, {} channels",
        table.name(),
        table.task_count(),
        table.channel_count()
    );
    *FRAMES.lock() = Some(frames);
    KERNEL_L4.call_once(|| l4_paddr);
    let platform = crate::platform::discover(si.rsdp_paddr);
    let access = crate::platform::config_access(&platform);
    let devices = Devices::init(&table, access, lapic::id(), &mut |phys, len| {
        map_kernel_mmio(phys, len)
    });
    *DEVICES.lock() = Some(devices);
    let servers = |name: &str| bm.find(EntryKind::Server, name).map(|e| e.data);
    let k =
        Kernel::new(table, &servers, command_line).unwrap_or_else(|e| fail(format_args!("{e}")));
    for (i, t) in k.tasks.iter().enumerate() {
        info!("  task {i}: {}", t.name);
    }
    // The footprint figure: what the kernel and every task hold once all are loaded (images,
    // stacks, heaps, DMA budgets, page tables, channels).
    let free = FRAMES.lock().as_ref().map_or(0, |f| f.free_frames()) * FRAME_SIZE;
    let ram = si.ram_bytes();
    info!(
        "memory in use with all tasks loaded: {} KiB of {} KiB RAM ({} KiB free)",
        ram.saturating_sub(free) / 1024,
        ram / 1024,
        free / 1024
    );
    *KERNEL.lock() = Some(k);
    crate::gateway::init(xen, si.memory_map(), command_line);
    let (per_tick, tsc_hz) = lapic::init(xen);
    crate::platform::init_clock(&platform, tsc_hz);
    info!(
        "timer: local APIC tick every {} ms ({} counts)",
        lapic::TICK_MS,
        per_tick
    );
    info!("boot complete; starting tasks");
    start_first_task()
}

/// Enters the first task through the trap-return path, on the trap stack.
fn start_first_task() -> ! {
    let mut frame = TrapFrame::default();
    crate::trap::schedule(&mut frame);
    let top = syscall::trap_stack_top_addr();
    let at = (top - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: the trap stack is unused until the first trap; the frame sits at its top, where
    // `enter` pops it and `iretq`s into the task whose address space `schedule` made current.
    unsafe {
        at.write(frame);
        idt::enter(at)
    }
}

/// Exercises the heap and the frame allocator once, so a broken memory setup fails the boot.
fn check_memory(frames: &mut FrameAllocator<'_>) {
    let mut v: Vec<u64> = Vec::with_capacity(128 * 1024);
    v.extend(0..128 * 1024);
    let sum: u64 = v.iter().sum();
    let before = frames.free_frames();
    let f = frames
        .alloc()
        .unwrap_or_else(|| fail(format_args!("frame allocation failed")));
    let freed = frames.free(f);
    if sum != (128 * 1024) * (128 * 1024 - 1) / 2
        || freed.is_err()
        || frames.free_frames() != before
    {
        fail(format_args!("memory self-check failed"));
    }
    let (used, size) = {
        let h = HEAP.lock();
        (h.used(), h.size())
    };
    info!(
        "memory check: heap {} of {} KiB used, frame alloc/free ok",
        used / 1024,
        size / 1024
    );
}

/// Deliberate faults, for the tests that prove the exception path and the kernel's protections.
fn selftest(name: &str) {
    info!("self-test: {name}");
    match name {
        // An unmapped canonical address.
        "pagefault" => {
            // SAFETY: deliberately faults; the exception handler ends the run.
            unsafe { core::ptr::write_volatile(0x7fff_dead_0000 as *mut u64, 1) }
        }
        // Page 0 is never mapped.
        "null" => {
            // SAFETY: deliberately faults, as above.
            let v = unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) };
            info!("read {v} from address 0");
        }
        // Kernel text is read-only (W^X).
        "write-text" => {
            let text = entry::kernel_image().text_start as *mut u8;
            // SAFETY: deliberately faults, as above.
            unsafe { core::ptr::write_volatile(text, 0xcc) }
        }
        // The heap is not executable (W^X).
        "exec-heap" => {
            let code = alloc::boxed::Box::new([0xc3u8; 16]);
            // SAFETY: deliberately faults on the instruction fetch.
            let f: extern "C" fn() = unsafe { core::mem::transmute(code.as_ptr()) };
            f();
        }
        "ud" => {
            // SAFETY: deliberately raises #UD.
            unsafe { core::arch::asm!("ud2") }
        }
        "panic" => panic!("self-test panic"),
        other => fail(format_args!("unknown self-test {other:?}")),
    }
    fail(format_args!("self-test {name} did not fault"));
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    console::print_emergency(format_args!("\n{}: {info}\n", markers::PANIC));
    cpu::exit(false)
}
