//! The netback server: serves guests' virtual interfaces and binds each to a NIC queue pair.
//!
//! Runs as an nc2dd user task. Serving guests arrives with the netback issue; what runs today is
//! the Xen self-test ([`xen_selftest`]) when the command line asks for it
//! (`nc2dd.netback.xen-selftest=1`).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

extern crate alloc;

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
    }
}
