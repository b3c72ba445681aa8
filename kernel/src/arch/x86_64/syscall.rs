//! The system-call gate and the trap stack.
//!
//! Owns: the software-interrupt gate [`SYSCALL_VECTOR`] (`int 0xfd`, the one IDT gate user mode
//! may invoke) and the trap stack every trap from user mode lands on (TSS.RSP0). A system call
//! then produces exactly the [`TrapFrame`](super::idt::TrapFrame) an interrupt does, so one Rust
//! entry (`trap_entry`) and one return path (`iretq` in `isr_common`) serve both.
//!
//! Why not `syscall`/`sysret`: on the project's machines (KVM nested on AMD) a `syscall` from
//! ring 3 arrived at LSTAR still at CPL 3, with STAR, LSTAR and EFER.SCE read back correct, and
//! faulted on the kernel's own entry code; under TCG it worked. A gate behaves the same under
//! TCG, KVM and Xen, and its cost is noise beside the task switch that follows most calls.
//! The kernel runs with interrupts off (it is an interrupt gate) on one trap stack: nc2dd runs
//! tasks on one CPU today.

/// The gate's vector; `int 0xfd` in user mode. Above the range handed to devices (64..=191,
/// `kernel::dev::msix`) and apart from the timer (0xf0) and spurious (0xff) vectors.
pub const SYSCALL_VECTOR: u8 = 0xfd;
/// Bytes of the trap stack.
pub const TRAP_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .pushsection .bss.trap, "aw", @nobits
    .p2align 12
trap_stack_bottom:
    .skip {size}
    .global trap_stack_top
trap_stack_top:
    .popsection
    "#,
    size = const TRAP_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static trap_stack_top: u8;
}

/// Top of the trap stack (also TSS.RSP0).
pub fn trap_stack_top_addr() -> u64 {
    (&raw const trap_stack_top) as u64
}
