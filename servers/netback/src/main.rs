//! The netback server: serves guests' virtual interfaces and binds each to a NIC queue pair.
//!
//! Runs as an nc2dd user task; everything it does beyond announcing itself arrives with the Xen
//! platform and netback issues.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

userland::entry!(server_main);

fn server_main() {
    log::info!("netback {} started", env!("CARGO_PKG_VERSION"));
}
