//! 82599 statistics. The counters clear on read, so they are read into 64-bit software
//! accumulators and never read anywhere else. GORC/GOTC are 36 bits: low register first,
//! then the high one (which holds bits 35:32).

use crate::hw::RegisterAccess;
use crate::regs::ixgbe::*;
use crate::stats::HwStats;

/// Per-queue counters exist for 16 queues only; pool p < 16 maps its RX queue onto counter p.
pub const QUEUE_COUNTERS: u8 = 16;

pub fn clear<R: RegisterAccess>(regs: &R) {
    let mut s = HwStats::default();
    accumulate(regs, &mut s);
    for i in 0..u32::from(QUEUE_COUNTERS) {
        regs.read32(qprdc(i));
        regs.read32(qprc(i));
    }
}

pub fn accumulate<R: RegisterAccess>(regs: &R, s: &mut HwStats) {
    s.rx_frames += u64::from(regs.read32(GPRC));
    s.tx_frames += u64::from(regs.read32(GPTC));
    let lo = u64::from(regs.read32(GORCL));
    s.rx_bytes += lo | (u64::from(regs.read32(GORCH) & 0xF) << 32);
    let lo = u64::from(regs.read32(GOTCL));
    s.tx_bytes += lo | (u64::from(regs.read32(GOTCH) & 0xF) << 32);
    for i in 0..8 {
        s.rx_missed += u64::from(regs.read32(mpc(i)));
    }
    s.tx_spoofed += u64::from(regs.read32(SSVPC));
}

/// Points RX queue `q`'s statistics at counter `counter` (RQSMR: one byte per queue).
pub fn map_rx_queue<R: RegisterAccess>(regs: &R, q: u32, counter: u8) {
    let off = rqsmr(q / 4);
    let shift = 8 * (q % 4);
    let v = regs.read32(off) & !(0xFF << shift);
    regs.write32(off, v | (u32::from(counter) << shift));
}

/// Receive drops (no descriptor, DROP_EN) counted on counter `counter` since the last read.
pub fn rx_drops<R: RegisterAccess>(regs: &R, counter: u8) -> u64 {
    u64::from(regs.read32(qprdc(u32::from(counter))))
}
