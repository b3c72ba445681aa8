//! The kernel console: COM1 (16550 UART) and, under Xen or QEMU's debugcon, port 0xE9.
//!
//! Owns: the two output ports and the `log` backend. Output is best effort and never blocks
//! forever: the wait for the transmitter is bounded. Where there is no UART (a PVH domU or a
//! driver domain without an emulated serial port) COM1 is left alone after the probe: every
//! access there would be a trip to the hypervisor for nothing.

use core::fmt::{self, Write};
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const DEBUGCON: u16 = 0xe9;

struct Console {
    uart: bool,
    debugcon: bool,
}

// Until `init` probes, COM1 is assumed present: a panic before then should still reach it.
static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: true,
    debugcon: false,
});

fn outb(port: u16, v: u8) {
    // SAFETY: writes to the UART and debug-console ports have no memory effects.
    unsafe { Port::new(port).write(v) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: reading the UART and debug-console ports has no memory effects.
    unsafe { Port::new(port).read() }
}

impl Console {
    fn put(&mut self, b: u8) {
        if self.uart {
            for _ in 0..100_000 {
                if inb(COM1 + 5) & 0x20 != 0 {
                    break;
                }
            }
            outb(COM1, b);
        }
        if self.debugcon {
            outb(DEBUGCON, b);
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// Programs COM1 for 115200 8N1 if there is one and decides whether to mirror output to port
/// 0xE9.
pub fn init(xen: bool) {
    // A 16550 keeps what is written to its scratch register; without a UART reads float high.
    outb(COM1 + 7, 0x5a);
    let uart = inb(COM1 + 7) == 0x5a;
    CONSOLE.lock().uart = uart;
    if uart {
        for (off, v) in [
            (1, 0x00),
            (3, 0x80),
            (0, 0x01),
            (1, 0x00),
            (3, 0x03),
            (2, 0xc7),
            (4, 0x0b),
        ] {
            outb(COM1 + off, v);
        }
    }
    // Xen shows guest writes to 0xE9 on its console; QEMU's debugcon answers reads with 0xE9.
    CONSOLE.lock().debugcon = xen || inb(DEBUGCON) == 0xe9;
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text to the console.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Like `print`, for the fault and panic paths: takes the lock even if the faulting code held it,
/// because a dump that deadlocks is worse than one interleaved with a half-written line.
pub fn print_emergency(args: fmt::Arguments<'_>) {
    // SAFETY: see above; the interrupted holder never runs again on this CPU.
    unsafe { CONSOLE.force_unlock() };
    print(args);
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            print(format_args!("[{:<5}] {}\n", r.level(), r.args()));
        }
    }

    fn flush(&self) {}
}
