//! 82576 pool filters: the RAR entry carries the pool in RAH.POOLSEL (written together with
//! AV, after RAL), VMOLR holds the accept flags, VFRE/VFTE enable the pool, DTXSWC bits 7:0
//! enable MAC anti-spoofing.

use crate::hw::RegisterAccess;
use crate::pool::PoolFlags;
use crate::regs::igb::*;

/// Largest frame a pool accepts (1518 + one VLAN tag).
const RLPML: u32 = 1522;

pub fn enable_pool<R: RegisterAccess>(
    regs: &R,
    p: u8,
    rar: u32,
    mac: [u8; 6],
    flags: PoolFlags,
    anti_spoof: bool,
) {
    let p = u32::from(p);
    let mut vmolr_v = VMOLR_AUPE | VMOLR_STRCRC | (RLPML & VMOLR_RLPML_MASK);
    if flags.broadcast {
        vmolr_v |= VMOLR_BAM;
    }
    if flags.multicast {
        vmolr_v |= VMOLR_MPME;
    }
    regs.write32(vmolr(p), vmolr_v);
    regs.write32(
        ral(rar),
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    regs.write32(
        rah(rar),
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | (1 << (RAH_POOLSEL_SHIFT + p)) | RAH_AV,
    );
    if anti_spoof {
        regs.set32(DTXSWC, 1 << (DTXSWC_MAC_SPOOF_SHIFT + p));
    }
    regs.set32(VFTE, 1 << p);
    regs.set32(VFRE, 1 << p);
}

pub fn disable_pool_rx<R: RegisterAccess>(regs: &R, p: u8, rar: u32) {
    let p = u32::from(p);
    regs.clear32(VFRE, 1 << p);
    regs.write32(rah(rar), 0);
    regs.write32(ral(rar), 0);
    regs.write32(vmolr(p), 0);
}

pub fn disable_pool_tx<R: RegisterAccess>(regs: &R, p: u8) {
    let p = u32::from(p);
    regs.clear32(VFTE, 1 << p);
    regs.clear32(DTXSWC, 1 << (DTXSWC_MAC_SPOOF_SHIFT + p));
}
