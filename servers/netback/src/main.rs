//! The netback server: serves guests' virtual interfaces and binds each to a NIC queue pair.
//!
//! Runs as an nc2dd user task. Inside nc2dd it serves guests' vifs over the Xen gateway
//! ([`serve`], [`gateway_hv`]), or runs the Xen self-test ([`xen_selftest`]) when the command
//! line asks for it (`nc2dd.netback.xen-selftest=1`). Built for the host it only says so and
//! exits: the core is tested there as a library, over the simulated hypervisor.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

extern crate alloc;

#[cfg(target_os = "none")]
mod gateway_hv;
#[cfg(target_os = "none")]
mod serve;
mod xen_selftest;

userland::entry!(server_main);

fn server_main() {
    log::info!("netback {} started", env!("CARGO_PKG_VERSION"));
    if userland::info().arg("xen-selftest") == Some("1") {
        match xen_selftest::run() {
            Ok(()) => {}
            Err(e) => {
                log::error!("xen self-test failed: {e}");
                userland::syscall::exit(1);
            }
        }
        return;
    }
    #[cfg(target_os = "none")]
    if let Err(e) = serve::run() {
        log::error!("{e}");
        userland::syscall::exit(1);
    }
    #[cfg(not(target_os = "none"))]
    {
        log::error!("netback serves guests only inside nc2dd");
        userland::syscall::exit(1);
    }
}
