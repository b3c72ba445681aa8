//! The kernel's GDT and TSS.
//!
//! Owns: segment descriptors (kernel and user code/data) and the TSS: its RSP0 is the trap stack
//! every interrupt and exception from user mode lands on, and its interrupt stack table gives
//! double faults a known-good stack, so even a kernel stack overflow produces a readable dump.
//! The selector values are fixed by the order below and used by the syscall and trap code.

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot used by the double-fault handler.
pub const DOUBLE_FAULT_IST: u16 = 0;
const IST_STACK_SIZE: usize = 16 * 1024;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
/// User selectors with RPL 3, as they appear in a user trap frame.
pub const USER_DS: u64 = 0x18 | 3;
pub const USER_CS: u64 = 0x20 | 3;

#[repr(align(16))]
#[expect(dead_code, reason = "only the stack's address is used")]
struct Stack([u8; IST_STACK_SIZE]);
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; IST_STACK_SIZE]);

static TSS: spin::Once<TaskStateSegment> = spin::Once::new();
static GDT: spin::Once<GlobalDescriptorTable> = spin::Once::new();

/// Loads the GDT and TSS; `trap_stack_top` becomes RSP0.
pub fn init(trap_stack_top: u64) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let top = VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK) + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = top;
        tss.privilege_stack_table[0] = VirtAddr::new(trap_stack_top);
        tss
    });
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let sels = [
            gdt.append(Descriptor::kernel_code_segment()),
            gdt.append(Descriptor::kernel_data_segment()),
            gdt.append(Descriptor::user_data_segment()),
            gdt.append(Descriptor::user_code_segment()),
        ];
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        // The syscall path and trap frames rely on these exact values.
        debug_assert_eq!(sels[0].0, KERNEL_CS);
        debug_assert_eq!(sels[1].0, KERNEL_DS);
        debug_assert_eq!(u64::from(sels[2].0), USER_DS);
        debug_assert_eq!(u64::from(sels[3].0), USER_CS);
        debug_assert_eq!(tss_sel.0, 0x28);
        gdt
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CS));
        DS::set_reg(SegmentSelector(KERNEL_DS));
        ES::set_reg(SegmentSelector(KERNEL_DS));
        SS::set_reg(SegmentSelector(KERNEL_DS));
        load_tss(SegmentSelector(0x28));
    }
}
