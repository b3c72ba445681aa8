//! The hypervisor as netback sees it: xenstore, event channels and grant operations, behind
//! one trait, so the same core runs over the kernel's Xen gateway in the image and over
//! [`crate::sim::SimHypervisor`] on the host.
//!
//! Invariants every implementation keeps:
//! - batched calls are one hypercall each (`grant_map`, `grant_unmap`, `grant_copy` take
//!   slices and report per-operation status), so the core's batching is visible in counts;
//! - a [`Mapping`]'s memory stays valid until `grant_unmap` of its handle; the core drops every
//!   ring view over it before unmapping;
//! - nothing a guest controls (grant references, ports, offsets) is trusted by the
//!   implementation: a bad one is a per-operation status, never a fault of the caller.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use libnc2::shm::SharedMem;
pub use userland::xenstore::{Error as XsError, WatchEvent};

/// A Xen domain id.
pub type DomId = u16;
/// A local event-channel port.
pub type Port = u32;

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -4;
/// `GNTST_bad_copy_arg`: an offset or length beyond the page.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_permission_denied`: e.g. a write through a read-only grant.
pub const GNTST_PERMISSION_DENIED: i16 = -8;

/// Page size of grants and of the local copy region's slots.
pub const PAGE: usize = 4096;

/// A failed hypervisor call as a whole (per-operation failures are statuses instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// A xenstore request failed.
    Xs(XsError),
    /// An event-channel operation failed (Xen errno, negative).
    Evtchn(i32),
    /// A grant operation failed as a whole (Xen errno, negative).
    Grant(i32),
    /// Local memory for copies could not be had.
    NoMemory,
}

impl From<XsError> for HvError {
    fn from(e: XsError) -> Self {
        HvError::Xs(e)
    }
}

impl core::fmt::Display for HvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HvError::Xs(e) => write!(f, "{e}"),
            HvError::Evtchn(e) => write!(f, "event channel error {e}"),
            HvError::Grant(e) => write!(f, "grant table error {e}"),
            HvError::NoMemory => write!(f, "out of local copy memory"),
        }
    }
}

/// A foreign page mapped into netback's grant window.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    /// Handle for `grant_unmap`.
    pub handle: u32,
    /// The page (may be written by the guest at any time).
    pub mem: SharedMem<'static>,
    /// Where a device (the NIC) reaches the page, if it can: the bus address the IOMMU
    /// translates to this frame. `None` when the implementation cannot say (no DMA to it).
    pub bus: Option<u64>,
}

/// Local memory that grant copies can reach (the real gateway knows its frames).
#[derive(Clone, Copy, Debug)]
pub struct LocalRegion {
    /// Names the region in [`CopyPtr::Local`].
    pub id: u32,
    /// The memory (whole pages).
    pub mem: SharedMem<'static>,
}

/// One end of a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyPtr {
    /// `offset` bytes into the page a domain granted us under `gref`.
    Grant {
        /// The granting domain.
        dom: DomId,
        /// Its grant reference (untrusted).
        gref: u32,
        /// Offset in the page.
        offset: u16,
    },
    /// `offset` bytes into a [`LocalRegion`].
    Local {
        /// The region's id.
        region: u32,
        /// Offset in the region.
        offset: u32,
    },
}

/// One `GNTTABOP_copy` operation; `status` is filled in by the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    /// Source.
    pub src: CopyPtr,
    /// Destination.
    pub dst: CopyPtr,
    /// Bytes (a grant end must stay inside its page).
    pub len: u16,
    /// `GNTST_*` after the call.
    pub status: i16,
}

impl CopyOp {
    /// A copy not yet performed.
    pub fn new(src: CopyPtr, dst: CopyPtr, len: u16) -> Self {
        CopyOp {
            src,
            dst,
            len,
            status: GNTST_GENERAL_ERROR,
        }
    }
}

/// What netback needs from Xen.
pub trait Hypervisor {
    /// This domain's id (the backend's).
    fn domid(&self) -> DomId;

    /// Reads a xenstore key.
    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, HvError>;
    /// Writes a xenstore key.
    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), HvError>;
    /// Lists a directory's children.
    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, HvError>;
    /// Removes a key and everything below it.
    fn xs_rm(&mut self, path: &str) -> Result<(), HvError>;
    /// Watches `path` and everything below it.
    fn xs_watch(&mut self, path: &str, token: &str) -> Result<(), HvError>;
    /// Stops a watch.
    fn xs_unwatch(&mut self, path: &str, token: &str) -> Result<(), HvError>;
    /// The next fired watch, if any (never blocks).
    fn xs_poll_watch(&mut self) -> Result<Option<WatchEvent>, HvError>;

    /// `EVTCHNOP_bind_interdomain`: a local port connected to `remote_port` of `dom`.
    fn evtchn_bind(&mut self, dom: DomId, remote_port: Port) -> Result<Port, HvError>;
    /// `EVTCHNOP_send`.
    fn evtchn_notify(&mut self, port: Port);
    /// `EVTCHNOP_unmask` (re-enables delivery after a pending event was taken).
    fn evtchn_unmask(&mut self, port: Port);
    /// `EVTCHNOP_close`.
    fn evtchn_close(&mut self, port: Port);
    /// Takes the pending local ports (clearing them) into `out`.
    fn evtchn_take_pending(&mut self, out: &mut Vec<Port>);

    /// `GNTTABOP_map_grant_ref` for every reference of `dom` in one call; `out[i]` gets the
    /// mapping or the `GNTST_*` status of `grefs[i]`.
    fn grant_map(
        &mut self,
        dom: DomId,
        grefs: &[u32],
        readonly: bool,
        out: &mut Vec<Result<Mapping, i16>>,
    ) -> Result<(), HvError>;
    /// `GNTTABOP_unmap_grant_ref` for every handle in one call.
    fn grant_unmap(&mut self, handles: &[u32]) -> Result<(), HvError>;
    /// `GNTTABOP_copy` for every op in one call; each op's `status` is set.
    fn grant_copy(&mut self, ops: &mut [CopyOp]) -> Result<(), HvError>;
    /// Monotonic time in nanoseconds (for rate limits).
    fn now_ns(&mut self) -> u64;
    /// Local memory of `pages` pages usable as a copy end.
    fn alloc_local(&mut self, pages: usize) -> Result<LocalRegion, HvError>;
    /// Returns a region from [`Hypervisor::alloc_local`]; its memory (and id) may be reused at
    /// once, so the caller holds no view of it any more.
    fn free_local(&mut self, region: LocalRegion);
}

/// Reads `out.len()` bytes at any byte offset of `mem` (word copies for the aligned middle).
pub fn read_bytes(mem: SharedMem<'_>, off: usize, out: &mut [u8]) {
    let head = ((4 - off % 4) % 4).min(out.len());
    for (k, b) in out[..head].iter_mut().enumerate() {
        *b = mem.read_u8(off + k);
    }
    let mid = (out.len() - head) & !3;
    if mid > 0 {
        mem.read_into(off + head, &mut out[head..head + mid]);
    }
    for (k, b) in out.iter_mut().enumerate().skip(head + mid) {
        *b = mem.read_u8(off + k);
    }
}

/// Writes `data` at any byte offset of `mem`. The partial words at either end are
/// read-modify-written, so this is only for memory no one else writes meanwhile: netback's
/// own local regions, or a simulated guest's pages.
pub fn write_bytes(mem: SharedMem<'_>, off: usize, data: &[u8]) {
    let head = ((4 - off % 4) % 4).min(data.len());
    let put = |at: usize, b: u8| {
        let w = at & !3;
        let mut v = mem.load_u32(w, Ordering::Relaxed).to_ne_bytes();
        v[at & 3] = b;
        mem.store_u32(w, u32::from_ne_bytes(v), Ordering::Relaxed);
    };
    for (k, &b) in data[..head].iter().enumerate() {
        put(off + k, b);
    }
    let mid = (data.len() - head) & !3;
    if mid > 0 {
        mem.write_from(off + head, &data[head..head + mid]);
    }
    for (k, &b) in data.iter().enumerate().skip(head + mid) {
        put(off + k, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libnc2::shm::OwnedRegion;

    #[test]
    fn byte_copies_at_every_alignment() {
        let r = OwnedRegion::new(64);
        for off in 0..9 {
            for len in 0..20 {
                r.mem().zero(0, 64);
                let data: Vec<u8> = (0..len).map(|i| i as u8 + 1).collect();
                write_bytes(r.mem(), off, &data);
                let mut all = [0u8; 64];
                r.mem().read_into(0, &mut all);
                assert!(all[..off].iter().all(|&b| b == 0), "{off} {len}");
                assert_eq!(&all[off..off + len], &data[..]);
                assert!(all[off + len..].iter().all(|&b| b == 0), "{off} {len}");
                let mut back = vec![0u8; len];
                read_bytes(r.mem(), off, &mut back);
                assert_eq!(back, data);
            }
        }
    }
}
