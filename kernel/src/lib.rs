//! The nc2dd microkernel.
//!
//! Hardware-independent logic (start-info parsing, the frame allocator, the page-table plan) is
//! plain Rust tested on the host with `cargo test`; the x86-64 specifics (PVH entry, GDT, IDT,
//! port I/O, control registers) live in the `nc2dd` binary's `arch` module (src/arch), which is
//! compiled only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod dev;
pub mod mem;
pub mod task;
pub mod xen;
