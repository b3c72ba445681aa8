//! The nic-ixgbe server: owns the NIC and gives each guest a VMDq queue pair.
//!
//! The driver core lives in the library (src/lib.rs); this entry wires it to the kernel's device
//! access, which arrives with the device-access issue.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

userland::entry!(server_main);

fn server_main() {
    log::info!("nic-ixgbe {} started", env!("CARGO_PKG_VERSION"));
}
