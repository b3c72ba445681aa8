//! Descriptor rings shared by both chips. A ring carries *external* buffers: netback's memory,
//! named by bus address and an opaque 32-bit id that comes back in the completion. The driver
//! never touches frame bytes. [`program`] sets a queue's registers up on either chip.

pub mod program;
pub mod rx;
pub mod tx;

pub use rx::{RxBuf, RxCompletion, RxRing};
pub use tx::{TxBuf, TxRing};
