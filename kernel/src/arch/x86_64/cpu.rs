//! CPU-level helpers: hypervisor detection, halting, and ending a run under QEMU.

use nc2dd_abi::debug_exit;
use x86_64::instructions::port::Port;

/// True when CPUID's hypervisor leaves carry Xen's signature "XenVMMXenVMM".
pub fn running_on_xen() -> bool {
    // Xen may place its leaves at any 0x100 step from 0x40000000 (when Viridian is enabled).
    (0x4000_0000u32..0x4001_0000).step_by(0x100).any(|leaf| {
        let r = core::arch::x86_64::__cpuid(leaf);
        [r.ebx, r.ecx, r.edx] == [0x566e_6558, 0x65584d4d, 0x4d4d566e]
    })
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
