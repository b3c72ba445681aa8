//! The local APIC: the kernel's periodic tick and interrupt acknowledgement.
//!
//! Owns: the xAPIC registers at the architectural address (mapped uncached by the boot
//! sequence), the timer (periodic, [`TIMER_VECTOR`]) and EOI. The tick is calibrated against the
//! PIT where there is one (QEMU); a Xen PVH domain has no PIT, and Xen's emulated APIC timer
//! runs at a fixed 100 MHz bus clock, which is used there instead.

use x86_64::instructions::port::Port;

pub const LAPIC_BASE: u64 = 0xfee0_0000;
pub const TIMER_VECTOR: u8 = 0xf0;
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Milliseconds per tick.
pub const TICK_MS: u64 = 1;

const SVR: u64 = 0xf0;
const EOI: u64 = 0xb0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INIT: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;

fn write(reg: u64, v: u32) {
    // SAFETY: the LAPIC page is identity-mapped uncached; registers are 32-bit aligned.
    unsafe { core::ptr::write_volatile((LAPIC_BASE + reg) as *mut u32, v) }
}

fn read(reg: u64) -> u32 {
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile((LAPIC_BASE + reg) as *const u32) }
}

/// LAPIC timer counts (divide by 16) and TSC ticks in 10 ms, measured with PIT channel 2.
fn calibrate_with_pit() -> (u32, u64) {
    // SAFETY: PIT and port 0x61 accesses have no memory effects.
    unsafe {
        let mut p61 = Port::<u8>::new(0x61);
        let gate = p61.read();
        p61.write((gate & !0x02) | 0x01);
        Port::<u8>::new(0x43).write(0xb0);
        let count: u16 = 11_932; // 10 ms at 1.193182 MHz
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8);
        write(TIMER_INIT, u32::MAX);
        let tsc0 = core::arch::x86_64::_rdtsc();
        let mut spins = 0u64;
        while p61.read() & 0x20 == 0 && spins < 100_000_000 {
            spins += 1;
        }
        let elapsed = u32::MAX - read(TIMER_CURRENT);
        let tsc = core::arch::x86_64::_rdtsc() - tsc0;
        write(TIMER_INIT, 0);
        p61.write(gate);
        (elapsed, tsc)
    }
}

/// Enables the APIC and starts the periodic tick; returns the counts per tick and the TSC
/// frequency the PIT measurement implies (0 where there is no PIT).
pub fn init(xen: bool) -> (u32, u64) {
    // SAFETY: masks the legacy PICs so only the APIC delivers interrupts (absent under PVH:
    // writes to missing ports are ignored).
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
    write(SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(TIMER_DIVIDE, 0x3);
    let (per_10ms, tsc_10ms) = if xen {
        (100_000_000 / 16 / 100, 0)
    } else {
        calibrate_with_pit()
    };
    let per_tick = (per_10ms / 10).max(1000) * TICK_MS as u32;
    write(LVT_TIMER, (1 << 17) | u32::from(TIMER_VECTOR));
    write(TIMER_INIT, per_tick);
    (per_tick, tsc_10ms * 100)
}

/// This CPU's local APIC id (where device interrupts are sent).
pub fn id() -> u8 {
    (read(0x20) >> 24) as u8
}

pub fn eoi() {
    write(EOI, 0);
}
