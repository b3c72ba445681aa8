//! x86-64: PVH entry, descriptor tables, traps, syscalls, the local APIC, console, CPU helpers.
pub mod console;
pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod lapic;
pub mod phys;
pub mod syscall;
