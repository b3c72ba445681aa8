//! The `nc2dd` kernel binary: the boot sequence from PVH entry to a running system.
//!
//! Built for x86_64-unknown-none by the image tool. On the host this file compiles to a stub that
//! explains how to build the real thing, so `cargo build --workspace` and `cargo test` work.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the nc2dd kernel runs on x86_64-unknown-none: build it with `cargo run -p image -- build`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot_sequence;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod gateway;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod tasks;
#[cfg(target_os = "none")]
mod trap;
