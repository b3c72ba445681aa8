//! The shared info page (x86-64) with the 2-level event channel arrays.
//!
//! Mapped into our physmap with `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`. Xen writes it
//! concurrently, so the kernel never forms references to these structs over the live page: the
//! structs only pin the layout, and [`crate::xen::shared`] accesses the page as atomic words at
//! the offsets below.

use super::assert_layout;

/// vCPUs with a `vcpu_info` slot in the shared info page.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// Bits in an event-channel word (`xen_ulong_t` on x86-64).
pub const BITS_PER_EVTCHN_WORD: usize = 64;
/// Words of `evtchn_pending` / `evtchn_mask`.
pub const EVTCHN_WORDS: usize = 64;
/// Ports the 2-level ABI can address.
pub const EVTCHN_2L_NR_CHANNELS: usize = EVTCHN_WORDS * BITS_PER_EVTCHN_WORD;

/// `vcpu_time_info`: the per-vCPU clock parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}
assert_layout!(
    VcpuTimeInfo,
    size = 32,
    tsc_timestamp = 8,
    system_time = 16,
    tsc_to_system_mul = 24,
    tsc_shift = 28,
    flags = 29,
);

/// `arch_vcpu_info` on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}

/// `vcpu_info`: 64 bytes per vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU; the guest clears it before scanning.
    pub evtchn_upcall_pending: u8,
    /// Non-zero masks upcalls to this vCPU.
    pub evtchn_upcall_mask: u8,
    pub pad: [u8; 6],
    /// One bit per word of `evtchn_pending` that may hold pending events.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}
assert_layout!(
    VcpuInfo,
    size = 64,
    evtchn_upcall_pending = 0,
    evtchn_upcall_mask = 1,
    evtchn_pending_sel = 8,
    arch = 16,
    time = 32,
);

/// `arch_shared_info` on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `shared_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}
assert_layout!(
    SharedInfo,
    size = 0xc40,
    vcpu_info = 0,
    evtchn_pending = 0x800,
    evtchn_mask = 0xa00,
    wc_version = 0xc00,
    wc_sec = 0xc04,
    wc_nsec = 0xc08,
    wc_sec_hi = 0xc0c,
    arch = 0xc10,
);
const _: () = assert!(core::mem::size_of::<SharedInfo>() <= super::PAGE_SIZE);

/// Byte offset of `vcpu_info[vcpu]`.
pub const fn vcpu_info_offset(vcpu: usize) -> usize {
    vcpu * core::mem::size_of::<VcpuInfo>()
}
pub const EVTCHN_PENDING_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
pub const EVTCHN_MASK_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);
pub const PENDING_SEL_OFFSET_IN_VCPU: usize = core::mem::offset_of!(VcpuInfo, evtchn_pending_sel);
