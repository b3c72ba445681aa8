//! CPU-level helpers: hypervisor detection, halting, and ending a run under QEMU.

use nc2dd_abi::debug_exit;
use x86_64::instructions::port::Port;

/// True when CPUID's hypervisor leaves carry Xen's signature "XenVMMXenVMM".
pub fn running_on_xen() -> bool {
    kernel::xen::cpuid::find_leaves(&kernel::xen::cpuid::NativeCpuid).is_some()
}

/// Ends the run: under QEMU with `isa-debug-exit` this exits the emulator with the matching
/// status; elsewhere (real Xen) the write is ignored and the CPU idles with interrupts enabled,
/// because `cli; hlt` takes a Xen vCPU down and Xen then powers the domain off.
pub fn exit(success: bool) -> ! {
    let v = if success {
        debug_exit::SUCCESS
    } else {
        debug_exit::FAILURE
    };
    // SAFETY: the debug-exit port has no memory effects.
    unsafe { Port::<u32>::new(debug_exit::PORT).write(v) };
    // QEMU processes the exit asynchronously under TCG: never fall through to another write.
    if success { idle() } else { halt_forever() }
}

/// Waits for interrupts forever with interrupts enabled.
pub fn idle() -> ! {
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
