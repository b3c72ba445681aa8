//! `xen_version` (hypercall 17): the version number and the feature bitmap.

use super::assert_layout;

pub const XENVER_VERSION: u32 = 0;
pub const XENVER_GET_FEATURES: u32 = 6;

/// `XENVER_get_features` argument: one 32-bit word of the feature bitmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatureInfo {
    pub submap_idx: u32,
    pub submap: u32,
}
assert_layout!(XenFeatureInfo, size = 8, submap_idx = 0, submap = 4);

/// The guest's physmap is translated by Xen (true for HVM and PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `HVM_PARAM_CALLBACK_IRQ` may name an IDT vector.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;

/// Splits the `XENVER_version` result into (major, minor).
pub fn split_version(v: u32) -> (u16, u16) {
    ((v >> 16) as u16, v as u16)
}
