//! userland: the runtime every nc2dd server links against.
//!
//! Owns: the task entry point (`entry!`), system-call wrappers, the `log` backend (lines go to
//! the kernel console through `SYS_DEBUG_LOG`) and the panic handler (reports and ends the task
//! through `SYS_PANIC`, so the supervisor sees a fault, not a silent exit).
#![cfg_attr(not(test), no_std)]

pub mod syscall;
pub mod xen;
pub mod xenstore;

pub use nc2dd_abi::layout::TaskInfo;

/// This task's info page (name, generation, channels, bits, arguments), mapped read-only by the
/// kernel at `nc2dd_abi::layout::INFO_BASE`. Fields the kernel updates while the task runs (a
/// peer's generation) are read with [`peer_generation`].
#[cfg(target_os = "none")]
pub fn info() -> &'static TaskInfo {
    // SAFETY: the kernel maps a valid TaskInfo at INFO_BASE in every task before it starts.
    unsafe { &*(nc2dd_abi::layout::INFO_BASE as *const TaskInfo) }
}

/// On the host there is no task: see `syscall` for why this exists.
#[cfg(not(target_os = "none"))]
pub fn info() -> &'static TaskInfo {
    panic!("nc2dd task info read outside nc2dd")
}

/// The current generation of the peer at the other end of channel `channel`.
pub fn peer_generation(channel: usize) -> u32 {
    let c = &info().channels[channel];
    // SAFETY: the kernel rewrites this field when the peer restarts; read it fresh.
    unsafe { core::ptr::read_volatile(&raw const c.peer_generation) }
}

/// A channel's shared memory as a raw pointer and length (accessed with volatile or atomic
/// operations only: the peer writes it concurrently).
pub fn channel_memory(channel: usize) -> (*mut u8, usize) {
    let c = &info().channels[channel];
    (c.base as *mut u8, c.size as usize)
}

#[cfg(target_os = "none")]
mod rt;

#[cfg(target_os = "none")]
pub use rt::init_log as init;

/// Declares a server's entry: `userland::entry!(main);` with `fn main()`.
///
/// On the bare-metal target it emits `_start`, which sets up logging, calls `main`, and exits
/// the task with status 0 when `main` returns. On the host it emits an ordinary `main` that says
/// the server only runs inside nc2dd, so `cargo build --workspace` works.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        extern "C" fn _start() -> ! {
            $crate::init();
            $main();
            $crate::syscall::exit(0)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            // Named so the host build type-checks the server's entry too.
            let _entry: fn() = $main;
            eprintln!(
                "{} is an nc2dd server: it runs inside the nc2dd image (cargo run -p image -- run)",
                env!("CARGO_PKG_NAME")
            );
            std::process::exit(2);
        }
    };
}
