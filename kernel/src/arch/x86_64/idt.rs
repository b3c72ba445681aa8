//! The IDT, the trap stubs and the kernel's fatal-exception dump.
//!
//! Owns: all 256 vectors. Each has a small assembly stub (stable Rust has no
//! `extern "x86-interrupt"`) that pushes a uniform [`TrapFrame`] and jumps to `isr_common`, which
//! saves the registers and calls `trap_entry` (in `crate::trap`); system calls come through
//! vector 0x80 the same way. `trap_entry` may rewrite the frame (to switch tasks) before `isr_common` restores
//! it with `iretq`. A CPU exception in kernel mode is fatal: [`fatal`] prints a readable dump
//! (vector, error code, RIP, CR2, every register) behind the FAULT marker and ends the run with
//! the failure status, never a hang and never a silent reboot.

use x86_64::VirtAddr;
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::structures::idt::InterruptDescriptorTable;

use super::{console, cpu, gdt};

/// Registers as the stubs leave them on the stack, lowest address first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

// Vectors 8, 10-14, 17, 21, 29 and 30 push an error code; the others get a zero so the frame
// has one shape.
core::arch::global_asm!(
    r#"
    .macro isr_noerr n
    .p2align 4
isr_\n:
    pushq $0
    pushq $\n
    jmp isr_common
    .endm
    .macro isr_err n
    .p2align 4
isr_\n:
    pushq $\n
    jmp isr_common
    .endm

    .pushsection .text.isr, "ax"
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    isr_noerr \n
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    isr_err \n
    .endr

    /* Vectors 32..255: fixed 16-byte stubs, so stub v is at isr_irq_base + (v - 32) * 16. */
    .p2align 4
    .global isr_irq_base
isr_irq_base:
    .set vec, 32
    .rept 224
    .p2align 4
    pushq $0
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

    .global isr_common
isr_common:
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax
    movq %rsp, %rdi
    cld
    call trap_entry
    .global trap_restore
trap_restore:
    popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    addq $16, %rsp
    iretq
    .popsection

    .pushsection .rodata.isr, "a"
    .p2align 3
    .global isr_table
isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_\n
    .endr
    .popsection
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static isr_table: [u64; 32];
    static isr_irq_base: u8;
    fn trap_restore() -> !;
}

/// Starts executing the state in `frame` (a user task) by the same path a trap returns by.
///
/// # Safety
/// `frame` must describe a valid user context of the address space that is active, and lie at
/// the top of the trap stack (the restore path pops it and `iretq`s).
pub unsafe fn enter(frame: *const TrapFrame) -> ! {
    // SAFETY: forwarded from the caller; `trap_restore` pops the frame and returns to user mode.
    unsafe {
        core::arch::asm!(
            "mov rsp, {f}",
            "jmp {r}",
            f = in(reg) frame,
            r = sym trap_restore,
            options(noreturn),
        )
    }
}

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: isr_table is a constant table of 32 stub addresses emitted above.
        let stubs = unsafe { &isr_table };
        macro_rules! install {
            ($($v:literal => $field:ident),* $(,)?) => {$(
                // SAFETY: each stub builds a TrapFrame and calls `exception_entry`, which
                // matches the stub's expectations; the stubs end in iretq with the frame popped.
                let opts = unsafe { idt.$field.set_handler_addr(VirtAddr::new(stubs[$v])) };
                if $v == 8 {
                    // SAFETY: the IST slot holds a dedicated stack set up by `gdt::init`.
                    unsafe { opts.set_stack_index(gdt::DOUBLE_FAULT_IST) };
                }
            )*};
        }
        // Vectors 15, 22-27 and 31 are reserved by the architecture and never raised.
        install!(
            0 => divide_error, 1 => debug, 2 => non_maskable_interrupt, 3 => breakpoint,
            4 => overflow, 5 => bound_range_exceeded, 6 => invalid_opcode,
            7 => device_not_available, 8 => double_fault, 10 => invalid_tss,
            11 => segment_not_present, 12 => stack_segment_fault,
            13 => general_protection_fault, 14 => page_fault, 16 => x87_floating_point,
            17 => alignment_check, 18 => machine_check, 19 => simd_floating_point,
            20 => virtualization, 21 => cp_protection_exception, 28 => hv_injection_exception,
            29 => vmm_communication_exception, 30 => security_exception,
        );
        // SAFETY: only the address of the stub block is taken.
        let base = (&raw const isr_irq_base) as u64;
        for v in 32u8..=255 {
            let stub = VirtAddr::new(base + (u64::from(v) - 32) * 16);
            // SAFETY: as above: the stub builds a TrapFrame for `trap_entry`.
            let opts = unsafe { idt[v].set_handler_addr(stub) };
            if v == super::syscall::SYSCALL_VECTOR {
                // The system-call gate is the only one ring 3 may invoke with `int`.
                opts.set_privilege_level(x86_64::PrivilegeLevel::Ring3);
            }
        }
        idt
    });
    idt.load();
}

pub fn exception_name(vector: u64) -> &'static str {
    EXCEPTION_NAMES
        .get(vector as usize)
        .copied()
        .unwrap_or("interrupt")
}

pub const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved",
];

/// A CPU exception in kernel mode: dump and end the run.
pub fn fatal(frame: &TrapFrame) -> ! {
    let f = frame;
    let name = EXCEPTION_NAMES
        .get(f.vector as usize)
        .copied()
        .unwrap_or("unknown");
    let cr2 = Cr2::read_raw();
    let (cr3, _) = Cr3::read();
    console::print_emergency(format_args!(
        "\n{marker}: CPU exception {v} ({name}) in kernel mode\n\
         error code {err:#x}{pf}\n\
         rip {rip:#018x}  cs {cs:#06x}  rflags {rfl:#010x}\n\
         rsp {rsp:#018x}  ss {ss:#06x}\n\
         cr2 {cr2:#018x}  cr3 {cr3:#018x}\n\
         rax {rax:#018x}  rbx {rbx:#018x}  rcx {rcx:#018x}\n\
         rdx {rdx:#018x}  rsi {rsi:#018x}  rdi {rdi:#018x}\n\
         rbp {rbp:#018x}  r8  {r8:#018x}  r9  {r9:#018x}\n\
         r10 {r10:#018x}  r11 {r11:#018x}  r12 {r12:#018x}\n\
         r13 {r13:#018x}  r14 {r14:#018x}  r15 {r15:#018x}\n",
        marker = nc2dd_abi::markers::FAULT,
        v = f.vector,
        err = f.error_code,
        pf = if f.vector == 14 {
            page_fault_reason(f.error_code)
        } else {
            ""
        },
        rip = f.rip,
        cs = f.cs,
        rfl = f.rflags,
        rsp = f.rsp,
        ss = f.ss,
        cr3 = cr3.start_address().as_u64(),
        rax = f.rax,
        rbx = f.rbx,
        rcx = f.rcx,
        rdx = f.rdx,
        rsi = f.rsi,
        rdi = f.rdi,
        rbp = f.rbp,
        r8 = f.r8,
        r9 = f.r9,
        r10 = f.r10,
        r11 = f.r11,
        r12 = f.r12,
        r13 = f.r13,
        r14 = f.r14,
        r15 = f.r15,
    ));
    cpu::exit(false)
}

pub fn page_fault_reason(code: u64) -> &'static str {
    match (code & 1 != 0, code & 2 != 0, code & 16 != 0) {
        (_, _, true) => " (instruction fetch)",
        (false, false, _) => " (read of a non-present page)",
        (false, true, _) => " (write to a non-present page)",
        (true, false, _) => " (read: protection violation)",
        (true, true, _) => " (write: protection violation)",
    }
}
