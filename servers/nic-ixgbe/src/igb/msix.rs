//! 82576 MSI-X: vector 0 for "other" causes, vectors 1..9 for pools. QEMU ORs EIAC writes in
//! and treats EIAM oddly, so both are written exactly once, in `setup`.
//!
//! The "other" vector fires only for ICR causes enabled in IMS (ICR & IMS, routed through
//! IVAR_MISC): without IMS.LSC a link change stays silent in ICR, so `setup` enables it. A
//! message is sent only when a vector's EICR bit newly becomes set, so the "other" vector is
//! auto-cleared (EIAC) like the queue vectors: otherwise its EICR bit would stay set after the
//! first link change and swallow every later one. It is not auto-masked (EIAM).

use crate::hw::RegisterAccess;
use crate::regs::igb::*;

pub const MISC_VECTOR: u32 = 0;

pub fn setup<R: RegisterAccess>(regs: &R) {
    regs.write32(GPIE, GPIE_MSIX_MODE | GPIE_PBA | GPIE_EIAME | GPIE_NSICR);
    regs.write32(IVAR_MISC, (MISC_VECTOR | IVAR_VALID) << 8);
    let queue_vectors = ((1 << super::MSIX_VECTORS) - 1) & !(1 << MISC_VECTOR);
    regs.write32(EIAC, queue_vectors | (1 << MISC_VECTOR));
    regs.write32(EIAM, queue_vectors);
    regs.write32(IMS, ICR_LSC);
    regs.write32(EIMS, 1 << MISC_VECTOR);
}

pub fn eitr_value(us: u32) -> u32 {
    (us.min(EITR_INTERVAL_MAX) << EITR_INTERVAL_SHIFT) | EITR_CNT_IGNR
}

/// IVAR0(q & 7): byte 0 RX q, byte 1 TX q, bytes 2/3 the same for q + 8.
fn ivar_slot(q: u32, tx: bool) -> (u32, u32) {
    let shift = if q & 8 != 0 { 16 } else { 0 } + if tx { 8 } else { 0 };
    (ivar0(q & 7), shift)
}

fn set_ivar<R: RegisterAccess>(regs: &R, q: u32, tx: bool, vector: u32) {
    let (off, shift) = ivar_slot(q, tx);
    let v = regs.read32(off) & !(0xFF << shift);
    regs.write32(off, v | ((vector | IVAR_VALID) << shift));
}

fn clear_ivar<R: RegisterAccess>(regs: &R, q: u32, tx: bool) {
    let (off, shift) = ivar_slot(q, tx);
    regs.clear32(off, 0xFF << shift);
}

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
    regs.write32(EIMS, 1 << vector);
}

pub fn mask<R: RegisterAccess>(regs: &R, vector: u32) {
    regs.write32(EIMC, 1 << vector);
}
