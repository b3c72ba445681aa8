//! What the loader hands the kernel at entry: the PVH start info and the command line.
pub mod cmdline;
pub mod start_info;
