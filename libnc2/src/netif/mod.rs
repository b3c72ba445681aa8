//! netif: the standard Xen PV network rings (`io/netif.h` over `io/ring.h`),
//! byte compatible. `sring` is the shared page layout, `ring` the generic
//! front/back ring, `tx`/`rx`/`ctrl` the three netif rings (both ends each),
//! `extra` the extra-info slots.

pub mod ctrl;
pub mod extra;
pub mod ring;
pub mod rx;
pub mod sring;
pub mod tx;

pub use ctrl::{CtrlBackend, CtrlFrontend, CtrlOp, CtrlRequest, CtrlResponse};
pub use extra::{ExtraInfo, Extras};
pub use ring::{BackRing, FrontRing};
pub use rx::{RxBackend, RxBuffer, RxFrag, RxFrontend, RxPacket, RxRequest, RxResponse};
pub use tx::{TxBackend, TxFrag, TxFrontend, TxPacket, TxRequest, TxResponse, TxSlot};
