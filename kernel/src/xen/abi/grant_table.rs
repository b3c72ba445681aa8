//! `grant_table_op` (hypercall 20): grant entry v1, sub-operations, flags and status codes.

use super::{DomId, GrantHandle, GrantRef, assert_layout};

pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_TRANSFER: u32 = 4;
pub const GNTTABOP_COPY: u32 = 5;
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_SET_VERSION: u32 = 8;
pub const GNTTABOP_GET_VERSION: u32 = 10;

/// `grant_entry_v1`: 8 bytes; the granter writes domid and frame, then (after a barrier) flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: DomId,
    pub frame: u32,
}
assert_layout!(GrantEntryV1, size = 8, flags = 0, domid = 2, frame = 4);

/// v1 entries in one 4 KiB grant table frame.
pub const GRANT_ENTRIES_PER_FRAME: u32 = 512;
/// Refs 0..8 are reserved (0: console, 1: xenstore, set up by the toolstack).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;

/// Type field of `flags` (bits 1:0).
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
/// The grantee may only map or copy from the frame.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by Xen while the grantee has the frame mapped or is copying from it.
pub const GTF_READING: u16 = 1 << 3;
/// Set by Xen while the grantee has the frame mapped writable or is copying into it.
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;

/// `GNTMAP_*` flags of `gnttab_map_grant_ref.flags`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// `gnttab_map_grant_ref`. On HVM/PVH `host_addr` is the guest-physical address to map at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    pub host_addr: u64,
    pub flags: u32,
    pub r#ref: GrantRef,
    pub dom: DomId,
    /// Out: a [`GnttabStatus`] code.
    pub status: i16,
    /// Out.
    pub handle: GrantHandle,
    /// Out (only with `GNTMAP_device_map`).
    pub dev_bus_addr: u64,
}
assert_layout!(
    GnttabMapGrantRef,
    size = 32,
    host_addr = 0,
    flags = 8,
    r#ref = 12,
    dom = 16,
    status = 18,
    handle = 20,
    dev_bus_addr = 24,
);

/// `gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: GrantHandle,
    /// Out.
    pub status: i16,
}
assert_layout!(
    GnttabUnmapGrantRef,
    size = 24,
    host_addr = 0,
    dev_bus_addr = 8,
    handle = 16,
    status = 20
);

/// `gnttab_setup_table` (on HVM/PVH, frames are placed with `XENMEM_add_to_physmap` instead).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub nr_frames: u32,
    /// Out.
    pub status: i16,
    /// Guest address of an array of `nr_frames` frame numbers (out).
    pub frame_list: u64,
}
assert_layout!(
    GnttabSetupTable,
    size = 24,
    dom = 0,
    nr_frames = 4,
    status = 8,
    frame_list = 16
);

/// `gnttab_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    /// Out.
    pub nr_frames: u32,
    /// Out.
    pub max_nr_frames: u32,
    /// Out.
    pub status: i16,
}
assert_layout!(
    GnttabQuerySize,
    size = 16,
    dom = 0,
    nr_frames = 4,
    max_nr_frames = 8,
    status = 12
);

/// One side of a `gnttab_copy`: a grant ref (with `GNTCOPY_*_gref`) or a frame of ours.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// Union of `grant_ref_t ref` and `xen_pfn_t gmfn`; a ref uses the low 32 bits.
    pub u: u64,
    pub domid: DomId,
    pub offset: u16,
}
assert_layout!(GnttabCopyPtr, size = 16, u = 0, domid = 8, offset = 10);

/// The source is a grant ref, not a frame of ours.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// The destination is a grant ref, not a frame of ours.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `gnttab_copy`: copy `len` bytes; neither side may cross its page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    pub flags: u16,
    /// Out.
    pub status: i16,
}
assert_layout!(
    GnttabCopy,
    size = 40,
    source = 0,
    dest = 16,
    len = 32,
    flags = 34,
    status = 36
);

/// `GNTST_*`: per-operation status codes of grant table ops.
#[repr(i16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GnttabStatus {
    Okay = 0,
    GeneralError = -1,
    BadDomain = -2,
    BadGntref = -3,
    BadHandle = -4,
    BadVirtAddr = -5,
    BadDevAddr = -6,
    NoDeviceSpace = -7,
    PermissionDenied = -8,
    BadPage = -9,
    BadCopyArg = -10,
    AddressTooBig = -11,
    Eagain = -12,
    NoSpace = -13,
}

impl GnttabStatus {
    /// Decodes a status Xen wrote; unknown values are kept as `Err(raw)`.
    pub fn from_raw(raw: i16) -> Result<Self, i16> {
        use GnttabStatus::*;
        Ok(match raw {
            0 => Okay,
            -1 => GeneralError,
            -2 => BadDomain,
            -3 => BadGntref,
            -4 => BadHandle,
            -5 => BadVirtAddr,
            -6 => BadDevAddr,
            -7 => NoDeviceSpace,
            -8 => PermissionDenied,
            -9 => BadPage,
            -10 => BadCopyArg,
            -11 => AddressTooBig,
            -12 => Eagain,
            -13 => NoSpace,
            _ => return Err(raw),
        })
    }

    pub fn name(self) -> &'static str {
        use GnttabStatus::*;
        match self {
            Okay => "okay",
            GeneralError => "general error",
            BadDomain => "bad domain",
            BadGntref => "bad grant ref",
            BadHandle => "bad handle",
            BadVirtAddr => "bad virtual address",
            BadDevAddr => "bad device address",
            NoDeviceSpace => "no device space",
            PermissionDenied => "permission denied",
            BadPage => "bad page",
            BadCopyArg => "copy arguments cross page boundary",
            AddressTooBig => "page address size too large",
            Eagain => "operation not done; try again",
            NoSpace => "out of space",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips() {
        for raw in -13..=0 {
            let s = GnttabStatus::from_raw(raw).unwrap();
            assert_eq!(s as i16, raw);
            assert!(!s.name().is_empty());
        }
        assert_eq!(GnttabStatus::from_raw(-14), Err(-14));
        assert_eq!(GnttabStatus::from_raw(1), Err(1));
    }
}
