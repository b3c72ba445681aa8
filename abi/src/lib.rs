//! nc2dd-abi: formats shared by the kernel, the servers and the host image tool.
//!
//! Everything here is plain data layout plus checked decoders: no OS dependency, so the same
//! definitions compile into the kernel (x86_64-unknown-none) and into host tools and tests.
#![no_std]

extern crate alloc;

pub mod bootmodule;
pub mod elf;
pub mod layout;
pub mod le;
pub mod syscall;
pub mod system_table;

/// Serial markers shared by the kernel and the test harnesses. A harness fails fast on the
/// failure markers and requires the pass marker; keep them distinct from ordinary log text.
pub mod markers {
    /// Printed once when a run has done everything it was asked to do.
    pub const PASS: &str = "NC2DD_PASS";
    /// Printed before an orderly failure exit.
    pub const FAIL: &str = "NC2DD_FAIL";
    /// Printed by the kernel's panic handler.
    pub const PANIC: &str = "NC2DD_PANIC";
    /// Printed at the top of a CPU exception dump.
    pub const FAULT: &str = "NC2DD_FAULT";
}

/// QEMU `isa-debug-exit` protocol: writing `v` to the port makes QEMU exit with `(v << 1) | 1`.
/// The values avoid 0 (exit 1 is also QEMU's own error status).
pub mod debug_exit {
    /// I/O port of the `isa-debug-exit` device the harness adds.
    pub const PORT: u16 = 0xf4;
    /// Value written on success.
    pub const SUCCESS: u32 = 0x10;
    /// Value written on failure (panic, CPU exception, failed self-test).
    pub const FAILURE: u32 = 0x11;
    /// QEMU's process exit status for a value written to the port.
    pub const fn qemu_status(value: u32) -> i32 {
        ((value << 1) | 1) as i32
    }
}
