//! userland: the runtime every nc2dd server links against.
//!
//! Owns: the task entry point (`entry!`), system-call wrappers, the `log` backend (lines go to
//! the kernel console through `SYS_DEBUG_LOG`) and the panic handler (reports and ends the task
//! through `SYS_PANIC`, so the supervisor sees a fault, not a silent exit).
#![cfg_attr(not(test), no_std)]

pub mod syscall;
pub mod xenstore;

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
            $crate::init(env!("CARGO_PKG_NAME"));
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
