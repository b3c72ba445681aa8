//! The driver core's error values. Each names what went wrong, so the server can log it and
//! turn it into a channel reply.

use crate::hw::DmaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A register handshake did not complete in time; the string names the register.
    Timeout(&'static str),
    /// DMA memory could not be had.
    Dma(DmaError),
    /// Every pool or every receive-address entry is in use.
    NoFreePool,
    /// Another pool already receives this MAC.
    MacInUse,
    /// The MAC is multicast or zero.
    BadMac,
    /// The pool number is out of range or the pool is not allocated.
    NoSuchPool(u8),
    /// A configuration value is out of range (ring size not a power of two, and so on).
    BadConfig(&'static str),
}

impl From<DmaError> for Error {
    fn from(e: DmaError) -> Self {
        Error::Dma(e)
    }
}
