//! x86-64: PVH entry, descriptor tables, exceptions, console, CPU helpers.
pub mod console;
pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod phys;
