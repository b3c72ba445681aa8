//! The Xen ABI as the kernel uses it.
