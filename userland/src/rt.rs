//! Bare-metal runtime pieces: the heap, the `log` backend and the panic handler.

use core::fmt::Write;

use crate::syscall;

/// A line buffer on the stack: log lines longer than this are cut, never allocated.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Line {
    fn as_str(&self) -> &str {
        // Cutting may split a UTF-8 sequence; keep the valid prefix.
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// Gives the allocator the heap region the kernel mapped (its size comes from the system
/// description; a task with no heap gets allocation failures, reported as panics).
fn init_heap() {
    let info = crate::info();
    if info.heap_size > 0 {
        // SAFETY: called once from the entry point before any allocation; the kernel mapped
        // `heap_size` writable bytes at `heap_base` for this task alone.
        unsafe {
            HEAP.lock()
                .init(info.heap_base as *mut u8, info.heap_size as usize)
        };
    }
}

struct Logger;
static LOGGER: Logger = Logger;
static NAME: spin::Once<&'static str> = spin::Once::new();

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        let mut line = Line {
            buf: [0; 256],
            len: 0,
        };
        let name = NAME.get().copied().unwrap_or("?");
        let _ = write!(line, "[{:<5}] {name}: {}", r.level(), r.args());
        syscall::debug_log(line.as_str());
    }

    fn flush(&self) {}
}

/// Sets up the heap and the console logger; the task's name prefixes every line.
pub fn init_log() {
    init_heap();
    NAME.call_once(|| crate::info().name());
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = write!(line, "{}: {info}", nc2dd_abi::markers::PANIC);
    syscall::panic_exit(line.as_str())
}
