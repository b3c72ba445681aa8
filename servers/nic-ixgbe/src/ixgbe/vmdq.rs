//! 82599 VMDq pool filters: one RAR entry per pool MAC with the pool's MPSAR bit, the pool's
//! PFVML2FLT accept flags, its RX/TX enable bits and MAC anti-spoofing.
//!
//! Order matters: MPSAR before RAH.AV (a valid entry never points at the wrong pool), and on
//! teardown the RX enable bit goes first so no frame lands in a queue being dismantled.

use crate::hw::RegisterAccess;
use crate::pool::PoolFlags;
use crate::regs::ixgbe::*;

fn bit(p: u8) -> (u32, u32) {
    (u32::from(p) / 32, 1 << (u32::from(p) % 32))
}

/// Steers `mac` to pool `p` through RAR entry `rar` and enables the pool.
pub fn enable_pool<R: RegisterAccess>(
    regs: &R,
    p: u8,
    rar: u32,
    mac: [u8; 6],
    flags: PoolFlags,
    anti_spoof: bool,
) {
    let mut l2 = PFVML2FLT_AUPE;
    if flags.broadcast {
        l2 |= PFVML2FLT_BAM;
    }
    if flags.multicast {
        l2 |= PFVML2FLT_MPE;
    }
    regs.write32(pfvml2flt(u32::from(p)), l2);
    let (idx, b) = bit(p);
    regs.write32(mpsar_lo(rar), if idx == 0 { b } else { 0 });
    regs.write32(mpsar_hi(rar), if idx == 1 { b } else { 0 });
    regs.write32(
        ral(rar),
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    regs.write32(
        rah(rar),
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV,
    );
    if anti_spoof {
        let p = u32::from(p);
        regs.set32(pfvfspoof(p / 8), 1 << (p % 8));
    }
    regs.set32(pfvfte(idx), b);
    regs.set32(pfvfre(idx), b);
}

/// Stops receiving for pool `p` and removes its MAC filter.
pub fn disable_pool_rx<R: RegisterAccess>(regs: &R, p: u8, rar: u32) {
    let (idx, b) = bit(p);
    regs.clear32(pfvfre(idx), b);
    regs.write32(rah(rar), 0);
    regs.write32(ral(rar), 0);
    regs.write32(mpsar_lo(rar), 0);
    regs.write32(mpsar_hi(rar), 0);
    regs.write32(pfvml2flt(u32::from(p)), 0);
}

/// Stops transmitting for pool `p` (after its queue drained).
pub fn disable_pool_tx<R: RegisterAccess>(regs: &R, p: u8) {
    let (idx, b) = bit(p);
    regs.clear32(pfvfte(idx), b);
    let p = u32::from(p);
    regs.clear32(pfvfspoof(p / 8), 1 << (p % 8));
}
