//! `memory_op` (hypercall 12): placing Xen-owned frames (shared info, grant table) into our
//! physmap, and the memory map for loaders that give no map in the start info.

use super::{DOMID_SELF, DomId, assert_layout};

pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// The domain's own E820-style memory map (used when start info version 0 has none).
pub const XENMEM_MEMORY_MAP: u32 = 9;

/// `xen_add_to_physmap.space` values.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// With `XENMAPSPACE_grant_table`: the index names a v2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `xen_add_to_physmap`: map Xen's frame `idx` of `space` at our guest frame `gpfn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    pub domid: DomId,
    /// Number of pages, only for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}
assert_layout!(
    XenAddToPhysmap,
    size = 24,
    domid = 0,
    size = 2,
    space = 4,
    idx = 8,
    gpfn = 16
);

impl XenAddToPhysmap {
    pub fn shared_info(gpfn: u64) -> Self {
        Self {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn,
        }
    }

    /// Grant table frame `index` (v1 or v2 shared frame) at `gpfn`.
    pub fn grant_table(index: u32, gpfn: u64) -> Self {
        Self {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: u64::from(index),
            gpfn,
        }
    }
}

/// `xen_memory_map`: in, the capacity of `buffer` in entries; out, the entries Xen wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenMemoryMap {
    pub nr_entries: u32,
    pub _pad: u32,
    /// Guest address of an array of [`E820Entry`].
    pub buffer: u64,
}
assert_layout!(XenMemoryMap, size = 16, nr_entries = 0, buffer = 8);

/// One entry of the map `XENMEM_memory_map` returns: the BIOS E820 layout, packed to 20 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}
assert_layout!(E820Entry, size = 20, addr = 0, size = 8, kind = 16);

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;
pub const E820_UNUSABLE: u32 = 5;

/// Why a map returned by `XENMEM_memory_map` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMapError {
    /// Xen claims more entries than the buffer we gave it holds.
    TooManyEntries { claimed: u32, capacity: usize },
    /// An entry whose end overflows 64 bits.
    Wraps { index: usize },
}

/// Validates the reply of `XENMEM_memory_map`: `claimed` entries of `buffer` were written.
/// Returns the valid prefix; never indexes past `buffer`.
pub fn checked_memory_map(
    claimed: u32,
    buffer: &[E820Entry],
) -> Result<&[E820Entry], MemoryMapError> {
    let n = claimed as usize;
    if n > buffer.len() {
        return Err(MemoryMapError::TooManyEntries {
            claimed,
            capacity: buffer.len(),
        });
    }
    let map = &buffer[..n];
    for (index, e) in map.iter().enumerate() {
        let (addr, size) = (e.addr, e.size);
        if addr.checked_add(size).is_none() {
            return Err(MemoryMapError::Wraps { index });
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(addr: u64, size: u64, kind: u32) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    #[test]
    fn memory_map_reply_is_bounded_by_the_buffer() {
        let buf = [e(0, 0x9f000, E820_RAM), e(0x100000, 0x1000_0000, E820_RAM)];
        assert_eq!(checked_memory_map(2, &buf).unwrap().len(), 2);
        assert_eq!(checked_memory_map(1, &buf).unwrap().len(), 1);
        assert_eq!(
            checked_memory_map(3, &buf),
            Err(MemoryMapError::TooManyEntries {
                claimed: 3,
                capacity: 2
            })
        );
        let bad = [e(u64::MAX - 10, 100, E820_RAM)];
        assert_eq!(
            checked_memory_map(1, &bad),
            Err(MemoryMapError::Wraps { index: 0 })
        );
    }
}
