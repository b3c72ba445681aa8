//! PVH entry: the Xen ELF note and the 32-bit to 64-bit trampoline.
//!
//! Owns: the first instructions the kernel executes. Xen and QEMU enter at `pvh_start32` in 32-bit
//! protected mode, paging off, interrupts off, EBX = physical address of `hvm_start_info`, and an
//! undefined stack pointer (Xen leaves it unmapped), so the very first thing loaded is our own
//! stack. The trampoline identity-maps the first 4 GiB with 2 MiB pages (enough for the kernel,
//! the start info and the boot module), enables PAE, long mode and NX, and jumps to `kernel_main`
//! with the start-info address as its argument. The Rust side replaces these tables and this GDT.

/// Bytes of the boot stack (also the kernel stack until tasks exist).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

// The note is 4-byte aligned inside its own PT_NOTE segment (see link.ld): QEMU pads the name to
// the segment alignment and reads the descriptor as a 64-bit value, so the entry is a `.quad`.
#[cfg(not(feature = "omit-pvh-note"))]
core::arch::global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4            /* namesz: "Xen\0" */
    .long 8            /* descsz */
    .long 18           /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .popsection
    "#,
    options(att_syntax)
);

core::arch::global_asm!(
    r#"
    .pushsection .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
    .p2align 4
boot_stack_bottom:
    .skip {stack_size}
boot_stack_top:
    .popsection

    .pushsection .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff   /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff   /* 0x10: data */
boot_gdt_end:
    .p2align 2
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %ebx, %esi             /* start info, kept in esi across the setup */

    /* Zero the boot tables: a loader is not trusted to have cleared bss. */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $(4096 * 6 / 4), %ecx
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages (0..4 GiB). */
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax             /* present, writable, 2 MiB page */
    movl %eax, boot_pd(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax              /* bits 32.. of the frame address: i >> 11 */
    movl %eax, boot_pd+4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    movl %cr4, %eax
    orl $(1 << 5), %eax         /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER */
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax   /* LME, NXE */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax  /* PG, WP, PE */
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movl $boot_stack_top, %esp
    movl %esi, %edi             /* zero-extends: kernel_main(start_info_paddr) */
    xorl %ebp, %ebp
    call kernel_main
3:  cli
    hlt
    jmp 3b
    .popsection
    "#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __kernel_end: u8;
}

/// The kernel image's section boundaries, from the linker script.
pub fn kernel_image() -> kernel::mem::paging::KernelImage {
    // Only the addresses of the linker-defined symbols are taken, never their contents.
    kernel::mem::paging::KernelImage {
        start: &raw const __kernel_start as u64,
        text_start: &raw const __text_start as u64,
        text_end: &raw const __text_end as u64,
        end: &raw const __kernel_end as u64,
    }
}
