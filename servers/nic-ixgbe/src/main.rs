//! The nic-ixgbe server: owns the NIC the kernel let it claim and gives each configured MAC a
//! VMDq pool of its own, answering ARP and ping for the pools' addresses (see `server`).
//!
//! It ends with status 0 after a peer's "done" frame or the configured number of frames, and
//! with status 1 when the device cannot be brought up (the log line says why).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

extern crate alloc;

mod server;

use userland::syscall;

userland::entry!(server_main);

fn server_main() {
    log::info!("nic-ixgbe {} started", env!("CARGO_PKG_VERSION"));
    let mut server = match server::run::Server::start() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start: {e}");
            syscall::exit(1);
        }
    };
    server.serve();
    server.finish();
}
