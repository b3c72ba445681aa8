//! Console output: the `console_io` hypercall (18) and the PV console ring page.
//!
//! `CONSOLEIO_write` from a domU reaches the Xen console only on debug-policy builds; the ring at
//! `HVM_PARAM_CONSOLE_PFN` (read by xenconsoled in dom0) always works.

use super::assert_layout;

pub const CONSOLEIO_WRITE: u32 = 0;
pub const CONSOLEIO_READ: u32 = 1;

/// Bytes of the input ring (dom0 -> us).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Bytes of the output ring (us -> dom0).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `xencons_interface`: the shared console page. Indices run freely and are masked by the size.
#[repr(C)]
pub struct XenconsInterface {
    pub input: [u8; XENCONS_IN_SIZE],
    pub output: [u8; XENCONS_OUT_SIZE],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}
assert_layout!(
    XenconsInterface,
    size = 3088,
    input = 0,
    output = 1024,
    in_cons = 3072,
    in_prod = 3076,
    out_cons = 3080,
    out_prod = 3084,
);

/// The HVM debug console port: bytes written here are logged by Xen with a domain prefix.
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;
