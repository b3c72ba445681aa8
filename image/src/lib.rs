//! The image tool as a library: the `image` binary and the QEMU tests both call it.
//!
//! - [`assemble`]: cross-build the kernel and servers, check, pack the boot module.
//! - [`bundle`]: the deployable driver-domain bundle (kernel, xl configs).
//! - [`elfnote`]: the PVH note check.
//! - [`qemu`]: the QEMU command line for a run.
//! - [`system`]: the static system description (`image/system.toml`).
pub mod assemble;
pub mod bundle;
pub mod elfnote;
pub mod qemu;
pub mod system;
