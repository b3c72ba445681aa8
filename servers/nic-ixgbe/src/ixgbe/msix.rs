//! 82599 MSI-X: vector 0 takes the "other" causes (link change), pool vectors follow. Queue
//! causes auto-clear and auto-mask when their message is sent, so the server re-arms a pool's
//! vector (EIMS_EX) only after it has polled the pool's rings.

use crate::hw::RegisterAccess;
use crate::regs::ixgbe::*;

/// Vector for "other" causes.
pub const MISC_VECTOR: u32 = 0;

pub fn setup<R: RegisterAccess>(regs: &R) {
    regs.write32(
        GPIE,
        GPIE_MSIX_MODE | GPIE_PBA_SUPPORT | GPIE_EIAME | GPIE_OCD,
    );
    regs.write32(IVAR_MISC, (MISC_VECTOR | IVAR_ALLOC_VAL) << 8);
    // Auto-clear queue causes; auto-mask every vector on assertion.
    regs.write32(EIAC, 0xFFFF);
    regs.write32(eiam_ex(0), !0);
    regs.write32(eiam_ex(1), !0);
    regs.write32(EIMS, EICR_LSC | EICR_OTHER);
}

/// Converts microseconds to the EITR interval field (2.048 us units), saturating.
pub fn eitr_value(us: u32) -> u32 {
    let units = (us.saturating_mul(1000) / 2048).min(EITR_INTERVAL_MAX);
    (units << EITR_INTERVAL_SHIFT) | EITR_CNT_WDIS
}

fn set_ivar<R: RegisterAccess>(regs: &R, q: u32, tx: bool, vector: u32) {
    let shift = 16 * (q & 1) + if tx { 8 } else { 0 };
    let off = ivar(q >> 1);
    let v = regs.read32(off) & !(0xFF << shift);
    regs.write32(off, v | ((vector | IVAR_ALLOC_VAL) << shift));
}

fn clear_ivar<R: RegisterAccess>(regs: &R, q: u32, tx: bool) {
    let shift = 16 * (q & 1) + if tx { 8 } else { 0 };
    regs.clear32(ivar(q >> 1), 0xFF << shift);
}

/// Routes RX queue `rxq` and TX queue `txq` to `vector`, with moderation `itr_us`, unmasked.
pub fn map_queues<R: RegisterAccess>(regs: &R, rxq: u32, txq: u32, vector: u32, itr_us: u32) {
    set_ivar(regs, rxq, false, vector);
    set_ivar(regs, txq, true, vector);
    regs.write32(eitr(vector), eitr_value(itr_us));
    unmask(regs, vector);
}

pub fn unmap_queues<R: RegisterAccess>(regs: &R, rxq: u32, txq: u32) {
    clear_ivar(regs, rxq, false);
    clear_ivar(regs, txq, true);
}

pub fn unmask<R: RegisterAccess>(regs: &R, vector: u32) {
    regs.write32(eims_ex(vector / 32), 1 << (vector % 32));
}

pub fn mask<R: RegisterAccess>(regs: &R, vector: u32) {
    regs.write32(eimc_ex(vector / 32), 1 << (vector % 32));
}
