//! The image tool as a library: the `image` binary and the QEMU tests both call it.
pub mod system;
