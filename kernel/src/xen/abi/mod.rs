//! Binary layouts of Xen's public interface (x86-64), as `repr(C)` structs with compile-time size
//! and offset checks against the values in xen/include/public.
//!
//! Owns: the numbers and struct shapes only; no logic. Field names follow Xen's so a reader can
//! find each one in the public headers. Every struct here is plain data that crosses into the
//! hypervisor by pointer; anything read back from it is untrusted until checked by the caller.

pub mod console;
pub mod evtchn;
pub mod grant_table;
pub mod hvm;
pub mod memory;
pub mod sched;
pub mod shared_info;
pub mod version;

/// A domain id. Values from [`DOMID_FIRST_RESERVED`] up name special domains.
pub type DomId = u16;
/// An event channel port number.
pub type EvtchnPort = u32;
/// A grant reference: index into the granting domain's grant table.
pub type GrantRef = u32;
/// A grant mapping handle returned by `GNTTABOP_map_grant_ref`.
pub type GrantHandle = u32;

/// The calling domain, in arguments that take a domain id.
pub const DOMID_SELF: DomId = 0x7ff0;
/// First domain id that does not name an ordinary domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// Xen's page size on x86 (guest frames are 4 KiB whatever the kernel maps them with).
pub const PAGE_SIZE: usize = 4096;

/// Checks a struct's size and field offsets against the C layout at compile time.
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr $(, $field:ident = $off:expr)* $(,)?) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($ty, $field) == $off);)*
    };
}
pub(crate) use assert_layout;
