//! The nic-ixgbe server: owns the NIC the kernel let it claim and gives each configured MAC a
//! VMDq pool of its own, answering ARP and ping for the pools' addresses (see `server`).
//!
//! It ends with status 0 after a peer's "done" frame or the configured number of frames, or at
//! once when the kernel bound none of its device claims (a system booted without the NIC: there
//! is nothing to drive, and restarting cannot make a device appear). It ends with status 1 when
//! the device is there but cannot be brought up (the log line says why), which the supervisor
//! treats as a failure.
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
        Err(e @ server::run::StartError::Device(server::platform::DeviceError::NotPresent)) => {
            log::info!("{e}; nothing to drive, stopping");
            return;
        }
        Err(e) => {
            log::error!("cannot start: {e}");
            syscall::exit(1);
        }
    };
    server.serve();
    server.finish();
}
