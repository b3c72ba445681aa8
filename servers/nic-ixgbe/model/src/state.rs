//! The device state and its register, receive, transmit and interrupt behaviour.
//!
//! Registers live in a flat array indexed by canonical offset (aliases folded by
//! `map::*::canon`); behaviour hangs off the few offsets that have side effects. Queue enable
//! state is kept apart from the RXDCTL/TXDCTL words so the one-poll handshake can be modelled:
//! a write records the wanted state, and it takes effect at the next read of that register or
//! when time advances.

use std::collections::{HashMap, VecDeque};

use crate::map::{self, i, x};
use crate::mem::BusMemory;
use crate::{Chip, PoolCounters};

const REG_SPACE: usize = 0x20000 / 4;
/// Frames the receive packet buffer holds.
const FIFO_FRAMES: usize = 256;
/// Largest frame accepted (1518 + VLAN tag), without FCS.
const MAX_FRAME: usize = 1522 - 4;
const MIN_FRAME: usize = 14;

pub struct Pending {
    frame: Vec<u8>,
    /// Queues still to receive this frame (bit q).
    queues: u128,
}

enum Deliver {
    Done,
    Dropped,
    Blocked,
}

pub struct State {
    pub chip: Chip,
    mac: [u8; 6],
    regs: Vec<u32>,
    pub mem: BusMemory,
    pub now_us: u64,
    link_up: bool,
    link_up_at: Option<u64>,
    ctrl_rst_reads: u32,
    ard_reads: u32,
    dmaidone_reads: u32,
    mdic_reads: u32,
    /// Wanted queue-enable state waiting for the handshake: register offset -> wanted.
    handshake: HashMap<u32, bool>,
    rx_on: Vec<bool>,
    tx_on: Vec<bool>,
    /// Partial frame being gathered per TX queue (multi-descriptor frames).
    tx_partial: Vec<Vec<u8>>,
    /// A descriptor of the frame being gathered pointed at unmapped memory: drop it at EOP.
    tx_partial_bad: Vec<bool>,
    counters: HashMap<u32, u64>,
    latch_hi: HashMap<u32, u32>,
    pub fifo: VecDeque<Pending>,
    pub wire_out: Vec<Vec<u8>>,
    pub pools: Vec<PoolCounters>,
    pub unmatched: u64,
    pub defer_tx: bool,
    // Interrupts: vectors (MSI-X) or EICR bits (legacy).
    vec_mask: u64,
    vec_pending: u64,
    eiam: u64,
    eiac: u64,
    /// 82599: the EICR bits 16..31; 82576: ICR.
    other_cause: u32,
    /// 82599: the EIMS bits 16..31; 82576: IMS (only ICR & IMS reaches the "other" vector).
    other_mask: u32,
    pub fired: Vec<u32>,
    pub violations: Vec<String>,
    pub resets: u32,
}

impl State {
    pub fn new(chip: Chip, mac: [u8; 6]) -> Self {
        let (queues, pools) = match chip {
            Chip::X82599 => (x::QUEUES, x::POOLS),
            Chip::I82576 => (i::QUEUES, i::POOLS),
        };
        let mut s = State {
            chip,
            mac,
            regs: vec![0; REG_SPACE],
            mem: BusMemory::new(),
            now_us: 0,
            link_up: false,
            link_up_at: None,
            ctrl_rst_reads: 0,
            ard_reads: 0,
            dmaidone_reads: 0,
            mdic_reads: 0,
            handshake: HashMap::new(),
            rx_on: vec![false; queues as usize],
            tx_on: vec![false; queues as usize],
            tx_partial: vec![Vec::new(); queues as usize],
            tx_partial_bad: vec![false; queues as usize],
            counters: HashMap::new(),
            latch_hi: HashMap::new(),
            fifo: VecDeque::new(),
            wire_out: Vec::new(),
            pools: vec![PoolCounters::default(); pools as usize],
            unmatched: 0,
            defer_tx: false,
            vec_mask: 0,
            vec_pending: 0,
            eiam: 0,
            eiac: 0,
            other_cause: 0,
            other_mask: 0,
            fired: Vec::new(),
            violations: Vec::new(),
            resets: 0,
        };
        s.reset();
        s.resets = 0;
        s
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn queues(&self) -> u32 {
        self.rx_on.len() as u32
    }

    fn rxq(&self, q: u32) -> u32 {
        match self.chip {
            Chip::X82599 => x::rxq(q),
            Chip::I82576 => i::rxq(q),
        }
    }

    fn txq(&self, q: u32) -> u32 {
        match self.chip {
            Chip::X82599 => x::txq(q),
            Chip::I82576 => i::txq(q),
        }
    }

    fn r(&self, off: u32) -> u32 {
        self.regs[(off / 4) as usize]
    }

    fn w(&mut self, off: u32, v: u32) {
        self.regs[(off / 4) as usize] = v;
    }

    // ---------------------------------------------------------------- reset and time

    fn reset(&mut self) {
        self.regs.iter_mut().for_each(|r| *r = 0);
        let m = self.mac;
        let lo = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
        let hi = u32::from(u16::from_le_bytes([m[4], m[5]])) | map::RAH_AV;
        match self.chip {
            Chip::X82599 => {
                self.w(x::RAL, lo);
                self.w(x::RAL + 4, hi);
                for q in 0..x::QUEUES {
                    // BSIZEPACKET 2 KiB, BSIZEHEADER 256 B; DCA_RXCTRL bit 12 set.
                    self.w(x::rxq(q) + x::SRRCTL_OFF, 0x402);
                    self.w(x::rxq(q) + 0x0C, 1 << 12);
                }
                self.w(0x3C00, 0x80000); // RXPBSIZE0: 512 KiB
                self.w(0xCC00, 0x28000); // TXPBSIZE0: 160 KiB
                self.w(x::HLREG0, 0x2FFF);
                self.w(x::AUTOC, 1 << 13); // LMS = 1G, no AN restart pending
                self.ard_reads = 3;
                self.dmaidone_reads = 3;
            }
            Chip::I82576 => {
                self.w(i::ral(0), lo);
                self.w(i::ral(0) + 4, hi);
                for q in 0..i::QUEUES {
                    self.w(i::rxq(q) + i::SRRCTL_OFF, 2);
                }
                // QEMU: queue 0 is enabled at reset, every pool enabled.
                self.w(i::rxq(0) + map::RXDCTL, map::QUEUE_ENABLE);
                self.w(i::txq(0) + map::TXDCTL, map::QUEUE_ENABLE);
                self.w(i::VFRE, 0xFF);
                self.w(i::RXCSUM, i::RXCSUM_RESET);
                self.w(i::VFTE, 0xFF);
                for p in 0..i::POOLS {
                    self.w(i::VMOLR + 4 * p, 0x2600 | (1 << 31));
                }
            }
        }
        self.handshake.clear();
        self.rx_on.iter_mut().for_each(|q| *q = false);
        self.tx_on.iter_mut().for_each(|q| *q = false);
        if self.chip == Chip::I82576 {
            self.rx_on[0] = true;
            self.tx_on[0] = true;
        }
        self.tx_partial.iter_mut().for_each(Vec::clear);
        self.tx_partial_bad.iter_mut().for_each(|b| *b = false);
        self.counters.clear();
        self.latch_hi.clear();
        self.fifo.clear();
        self.wire_out.clear();
        self.pools
            .iter_mut()
            .for_each(|p| *p = PoolCounters::default());
        self.unmatched = 0;
        self.link_up = false;
        self.link_up_at = None;
        self.vec_mask = 0;
        self.vec_pending = 0;
        self.eiam = 0;
        self.eiac = 0;
        self.other_cause = 0;
        self.other_mask = 0;
        self.resets += 1;
    }

    pub fn advance(&mut self, us: u64) {
        self.now_us += us;
        self.ctrl_rst_reads = 0;
        self.ard_reads = 0;
        self.dmaidone_reads = 0;
        self.mdic_reads = 0;
        let pending: Vec<(u32, bool)> = self.handshake.drain().collect();
        for (off, want) in pending {
            self.apply_enable(off, want);
        }
        self.tick_link();
    }

    fn tick_link(&mut self) {
        if !self.link_up && self.link_up_at.is_some_and(|t| self.now_us >= t) {
            self.link_up = true;
            self.raise_other();
        }
    }

    // ---------------------------------------------------------------- register access

    fn canon(&mut self, off: u32) -> Option<u32> {
        if !off.is_multiple_of(4) || off as usize / 4 >= REG_SPACE {
            self.violation(format!("register access at bad offset {off:#x}"));
            return None;
        }
        Some(match self.chip {
            Chip::X82599 => x::canon(off),
            Chip::I82576 => i::canon(off),
        })
    }

    /// RX or TX queue whose RXDCTL/TXDCTL is at `off`.
    fn dctl_queue(&self, off: u32) -> Option<(u32, bool)> {
        let (rx_ranges, tx_base): (&[(u32, u32)], u32) = match self.chip {
            Chip::X82599 => (&[(0x1000, 0), (0xD000, 64)], 0x6000),
            Chip::I82576 => (&[(0xC000, 0)], 0xE000),
        };
        let nq = self.queues();
        for &(base, first) in rx_ranges {
            if off >= base && (off - base) % 0x40 == map::RXDCTL {
                let q = first + (off - base) / 0x40;
                let per_range = if self.chip == Chip::X82599 { 64 } else { nq };
                if (off - base) / 0x40 < per_range && q < nq {
                    return Some((q, false));
                }
            }
        }
        if off >= tx_base && (off - tx_base) % 0x40 == map::TXDCTL && (off - tx_base) / 0x40 < nq {
            return Some(((off - tx_base) / 0x40, true));
        }
        None
    }

    fn is_counter(&self, off: u32) -> bool {
        match off {
            map::GPRC | map::GPTC | map::GORCL | map::GOTCL => true,
            _ => match self.chip {
                Chip::X82599 => {
                    (x::MPC..x::MPC + 32).contains(&off)
                        || off == x::SSVPC
                        || ((x::QPRC..x::QPRC + 16 * 0x40).contains(&off)
                            && (off - x::QPRC).is_multiple_of(0x40))
                        || ((x::QPRDC..x::QPRDC + 16 * 0x40).contains(&off)
                            && (off - x::QPRDC).is_multiple_of(0x40))
                }
                Chip::I82576 => {
                    off == i::MPC
                        || (off >= i::rxq(0) + i::RQDPC_OFF
                            && off < i::rxq(i::QUEUES)
                            && (off - i::rxq(0)) % 0x40 == i::RQDPC_OFF)
                }
            },
        }
    }

    fn count(&mut self, off: u32, n: u64) {
        *self.counters.entry(off).or_insert(0) += n;
    }

    pub fn read32(&mut self, off: u32) -> u32 {
        let Some(off) = self.canon(off) else { return 0 };
        if off == map::GORCH || off == map::GOTCH {
            return self.latch_hi.remove(&(off - 4)).unwrap_or(0);
        }
        if self.is_counter(off) {
            let v = self.counters.remove(&off).unwrap_or(0);
            if off == map::GORCL || off == map::GOTCL {
                let hi = (v >> 32) as u32;
                self.latch_hi.insert(
                    off,
                    if self.chip == Chip::X82599 {
                        hi & 0xF
                    } else {
                        hi
                    },
                );
            }
            return v as u32;
        }
        if let Some((q, tx)) = self.dctl_queue(off) {
            if let Some(want) = self.handshake.remove(&off) {
                // This read still sees the old state; the change lands right after it.
                let v = self.dctl_value(off, q, tx);
                self.apply_enable(off, want);
                return v;
            }
            return self.dctl_value(off, q, tx);
        }
        match (self.chip, off) {
            (_, 0) => {
                let v = self.r(0);
                if self.ctrl_rst_reads > 0 {
                    self.ctrl_rst_reads -= 1;
                    return v;
                }
                let cleared = v & !(x::CTRL_RST | x::CTRL_LNK_RST);
                self.w(0, cleared);
                cleared
            }
            (Chip::X82599, x::EEC) => {
                if self.ard_reads > 0 {
                    self.ard_reads -= 1;
                    return 0;
                }
                x::EEC_ARD
            }
            (Chip::X82599, x::RDRXCTL) => {
                let v = self.r(off) & !x::RDRXCTL_DMAIDONE;
                if self.dmaidone_reads > 0 {
                    self.dmaidone_reads -= 1;
                    return v;
                }
                v | x::RDRXCTL_DMAIDONE
            }
            (Chip::X82599, x::LINKS) => {
                self.tick_link();
                if self.link_up {
                    (1 << 30) | (3 << 28) | (1 << 31)
                } else {
                    0
                }
            }
            (Chip::X82599, x::EICR) => {
                let v = (self.vec_pending as u32 & 0xFFFF) | self.other_cause;
                if !self.msix() {
                    self.vec_pending &= !0xFFFF;
                    self.other_cause = 0;
                }
                v
            }
            (Chip::X82599, x::EIMS) => (self.vec_mask as u32 & 0xFFFF) | self.other_mask,
            (Chip::X82599, o) if o == x::EIMS_EX || o == x::EIMS_EX + 4 => {
                (self.vec_mask >> (8 * (o - x::EIMS_EX))) as u32
            }
            (Chip::I82576, i::STATUS) => {
                self.tick_link();
                if self.link_up {
                    i::STATUS_LU | (2 << 6) | 1
                } else {
                    0
                }
            }
            (Chip::I82576, i::MDIC) => {
                let v = self.r(off);
                if self.mdic_reads > 0 {
                    self.mdic_reads -= 1;
                    return v & !(1 << 28);
                }
                v
            }
            (Chip::I82576, i::EICR) => {
                let v = self.vec_pending as u32;
                if !self.msix() {
                    self.vec_pending = 0;
                }
                v
            }
            (Chip::I82576, i::ICR) => std::mem::take(&mut self.other_cause),
            (Chip::I82576, i::IMS) => self.other_mask,
            (Chip::I82576, i::EIMS) => self.vec_mask as u32,
            _ => self.r(off),
        }
    }

    fn dctl_value(&self, off: u32, q: u32, tx: bool) -> u32 {
        let on = if tx {
            self.tx_on[q as usize]
        } else {
            self.rx_on[q as usize]
        };
        (self.r(off) & !map::QUEUE_ENABLE) | if on { map::QUEUE_ENABLE } else { 0 }
    }

    fn apply_enable(&mut self, off: u32, want: bool) {
        let Some((q, tx)) = self.dctl_queue(off) else {
            return;
        };
        if tx {
            let was = self.tx_on[q as usize];
            self.tx_on[q as usize] = want;
            if want && !was {
                self.tx_partial[q as usize].clear();
                self.tx_partial_bad[q as usize] = false;
                self.run_tx(q);
            }
        } else {
            self.rx_on[q as usize] = want;
            if want {
                self.drain_fifo();
            }
        }
    }

    pub fn write32(&mut self, off: u32, v: u32) {
        let Some(off) = self.canon(off) else { return };
        if let Some((q, tx)) = self.dctl_queue(off) {
            self.w(off, v);
            let mut want = v & map::QUEUE_ENABLE != 0;
            if want && !self.queue_enable_ok(q, tx) {
                want = false;
            }
            self.handshake.insert(off, want);
            return;
        }
        match (self.chip, off) {
            (_, 0) => {
                self.w(0, v);
                if v & x::CTRL_RST != 0 {
                    self.reset();
                    self.w(0, v);
                    self.ctrl_rst_reads = 2;
                    if self.chip == Chip::I82576 {
                        // QEMU resets at once.
                        self.ctrl_rst_reads = 0;
                    }
                } else if self.chip == Chip::X82599 && v & x::CTRL_LNK_RST != 0 {
                    self.link_up = false;
                    self.link_up_at = None;
                    self.ctrl_rst_reads = 2;
                }
            }
            (Chip::X82599, x::AUTOC) => {
                self.w(off, v & !x::AUTOC_AN_RESTART);
                if v & x::AUTOC_AN_RESTART != 0 {
                    self.link_up = false;
                    self.link_up_at = Some(self.now_us + 10_000);
                }
            }
            (Chip::X82599, x::MTQC) => {
                if self.r(x::RTTDCS) & x::RTTDCS_ARBDIS == 0 {
                    self.violation("MTQC written while RTTDCS.ARBDIS is clear".into());
                    return;
                }
                self.w(off, v);
            }
            (Chip::X82599, o) if (x::RAL..x::RAL + 8 * x::RARS).contains(&o) && o % 8 == 4 => {
                let n = (o - x::RAL) / 8;
                let pools =
                    self.r(x::MPSAR + 8 * n) as u64 | (self.r(x::MPSAR + 8 * n + 4) as u64) << 32;
                if v & map::RAH_AV != 0 && pools == 0 && self.vmdq() {
                    self.violation(format!("RAH({n}).AV set before its MPSAR pool bits"));
                }
                self.w(o, v);
            }
            (Chip::X82599, x::PFQDE) => {
                if v & (1 << 16) != 0 {
                    let q = (v >> 8) & 0x7F;
                    // One QDE bit per queue, kept in a private shadow at the top of the space.
                    let shadow = 0x1F000 + 4 * (q / 32);
                    let bit = 1 << (q % 32);
                    let cur = self.r(shadow);
                    self.w(shadow, if v & 1 != 0 { cur | bit } else { cur & !bit });
                }
            }
            (Chip::X82599, x::EICR) | (Chip::I82576, i::EICR) => {
                self.vec_pending &= !u64::from(v & self.cause_vector_bits());
                if self.chip == Chip::X82599 {
                    self.other_cause &= !(v & 0xFFFF_0000);
                }
            }
            (Chip::I82576, i::ICR) => self.other_cause &= !v,
            // QEMU: unmasking a pending cause raises it now.
            (Chip::I82576, i::IMS) => {
                let before = self.other_cause & self.other_mask;
                self.other_mask |= v;
                self.raise_icr(before);
            }
            (Chip::I82576, i::IMC) => self.other_mask &= !v,
            (Chip::X82599, x::EICS) | (Chip::I82576, i::EICS) => {
                let bits = u64::from(v & self.cause_vector_bits());
                self.vec_pending |= bits;
                self.signal(bits);
            }
            (Chip::X82599, x::EIMS) => {
                self.other_mask |= v & 0xFFFF_0000;
                self.unmask(u64::from(v & 0xFFFF));
            }
            (Chip::X82599, x::EIMC) => {
                self.vec_mask &= !u64::from(v & 0xFFFF);
                self.other_mask &= !(v & 0xFFFF_0000);
            }
            (Chip::X82599, o) if o == x::EIMS_EX || o == x::EIMS_EX + 4 => {
                self.unmask(u64::from(v) << (8 * (o - x::EIMS_EX)));
            }
            (Chip::X82599, o) if o == x::EIMC_EX || o == x::EIMC_EX + 4 => {
                self.vec_mask &= !(u64::from(v) << (8 * (o - x::EIMC_EX)));
            }
            (Chip::X82599, o) if o == x::EICS_EX || o == x::EICS_EX + 4 => {
                let bits = u64::from(v) << (8 * (o - x::EICS_EX));
                self.vec_pending |= bits;
                self.signal(bits);
            }
            (Chip::X82599, o) if o == x::EIAM_EX || o == x::EIAM_EX + 4 => {
                let sh = 8 * (o - x::EIAM_EX);
                self.eiam = (self.eiam & !(0xFFFF_FFFF << sh)) | (u64::from(v) << sh);
            }
            (Chip::X82599, x::EIAM) => {
                self.eiam = (self.eiam & !0xFFFF) | u64::from(v & 0xFFFF);
            }
            (Chip::X82599, x::EIAC) => {
                // EIAC covers the queue vectors 0..15; above that bit 15 stands for the rest
                // (model simplification).
                let low = u64::from(v & 0xFFFF);
                self.eiac = if v & 0x8000 != 0 { low | !0xFFFF } else { low };
            }
            (Chip::I82576, i::EIMS) => self.unmask(u64::from(v)),
            (Chip::I82576, i::EIMC) => self.vec_mask &= !u64::from(v),
            // QEMU: EIAC writes only OR bits in.
            (Chip::I82576, i::EIAC) => self.eiac |= u64::from(v),
            (Chip::I82576, i::EIAM) => self.eiam = u64::from(v),
            (Chip::I82576, i::MDIC) => {
                let phy = (v >> 21) & 0x1F;
                let reg = (v >> 16) & 0x1F;
                let op = (v >> 26) & 3;
                if phy != 1 {
                    self.w(off, v | (1 << 28) | (1 << 30));
                    return;
                }
                if op == 1 && reg == 0 && v & (1 << 9) != 0 {
                    self.link_up = false;
                    // QEMU: auto-negotiation completes 500 ms later.
                    self.link_up_at = Some(self.now_us + 500_000);
                }
                self.w(off, (v & !(1 << 30)) | (1 << 28));
                self.mdic_reads = 1;
            }
            _ => {
                self.w(off, v);
                if self.is_tdt(off) && !self.defer_tx {
                    let q = self.tdt_queue(off);
                    self.run_tx(q);
                } else if self.is_rdt(off) {
                    self.drain_fifo();
                }
            }
        }
    }

    fn cause_vector_bits(&self) -> u32 {
        match self.chip {
            Chip::X82599 => 0xFFFF,
            Chip::I82576 => 0x1FF_FFFF,
        }
    }

    fn is_rdt(&self, off: u32) -> bool {
        let in_block = |base: u32, n: u32| {
            off >= base && off < base + 0x40 * n && (off - base) % 0x40 == map::RDT
        };
        match self.chip {
            Chip::X82599 => in_block(x::rxq(0), 64) || in_block(x::rxq(64), 64),
            Chip::I82576 => in_block(i::rxq(0), i::QUEUES),
        }
    }

    fn is_tdt(&self, off: u32) -> bool {
        let base = self.txq(0);
        off >= base && off < self.txq(self.queues()) && (off - base) % 0x40 == map::TDT
    }

    fn tdt_queue(&self, off: u32) -> u32 {
        (off - self.txq(0)) / 0x40
    }

    fn queue_enable_ok(&mut self, q: u32, tx: bool) -> bool {
        let (base, what) = if tx {
            (self.txq(q), "TX")
        } else {
            (self.rxq(q), "RX")
        };
        let len = self.r(base + map::RDLEN);
        if len == 0 || !len.is_multiple_of(128) {
            self.violation(format!("{what} queue {q} enabled with ring length {len}"));
            return false;
        }
        if tx && self.chip == Chip::X82599 && self.r(x::DMATXCTL) & 1 == 0 {
            self.violation(format!("TXDCTL({q}).ENABLE set while DMATXCTL.TE is clear"));
            return false;
        }
        true
    }

    fn vmdq(&self) -> bool {
        match self.chip {
            Chip::X82599 => self.r(x::MRQC) & 0xF == 0x8 && self.r(x::PFVTCTL) & 1 != 0,
            Chip::I82576 => matches!(self.r(i::MRQC) & 7, 3 | 5),
        }
    }

    fn msix(&self) -> bool {
        let gpie = match self.chip {
            Chip::X82599 => x::GPIE,
            Chip::I82576 => i::GPIE,
        };
        self.r(gpie) & map::GPIE_MSIX != 0
    }

    // ---------------------------------------------------------------- interrupts

    /// IVAR entry for queue `q` (`tx` selects the TX byte): Some(vector) if valid.
    fn ivar_vector(&self, q: u32, tx: bool) -> Option<u32> {
        let (off, shift) = match self.chip {
            Chip::X82599 => (
                x::IVAR + 4 * (q >> 1),
                16 * (q & 1) + if tx { 8 } else { 0 },
            ),
            Chip::I82576 => (
                i::IVAR0 + 4 * (q & 7),
                if q & 8 != 0 { 16 } else { 0 } + if tx { 8 } else { 0 },
            ),
        };
        let e = (self.r(off) >> shift) & 0xFF;
        (e & map::IVAR_VALID != 0).then_some(e & 0x3F)
    }

    fn queue_event(&mut self, q: u32, tx: bool) {
        let Some(v) = self.ivar_vector(q, tx) else {
            return;
        };
        if v >= 64 {
            return;
        }
        self.assert_causes(1 << v);
    }

    fn raise_other(&mut self) {
        match self.chip {
            Chip::X82599 => {
                self.other_cause |= x::EICR_LSC;
                if self.msix() && self.other_mask & x::EICR_LSC != 0 {
                    let e = (self.r(x::IVAR_MISC) >> 8) & 0xFF;
                    if e & map::IVAR_VALID != 0 {
                        self.fired.push(e & 0x3F);
                    }
                }
            }
            Chip::I82576 => {
                let before = self.other_cause & self.other_mask;
                self.other_cause |= i::ICR_LSC;
                self.raise_icr(before);
            }
        }
    }

    /// 82576 (QEMU's igb_raise_interrupts): in MSI-X mode, ICR causes that are enabled in IMS
    /// and were not already raised (`before` = ICR & IMS earlier) set the EICR bit of the
    /// IVAR_MISC "other" vector. A cause masked in IMS stays in ICR and raises nothing.
    fn raise_icr(&mut self, before: u32) {
        let raised = self.other_cause & self.other_mask & !before;
        let e = (self.r(i::IVAR_MISC) >> 8) & 0xFF;
        if raised != 0 && self.msix() && e & map::IVAR_VALID != 0 {
            self.assert_causes(1 << (e & 0x1F));
        }
    }

    /// Sends one message for each vector in `bits` that is unmasked, applying auto-mask and
    /// auto-clear. Messages are edge-triggered: callers pass only causes that just became
    /// pending, or pending causes that were just unmasked.
    fn signal(&mut self, bits: u64) {
        if !self.msix() {
            return;
        }
        let ready = bits & self.vec_pending & self.vec_mask;
        if ready == 0 {
            return;
        }
        let eiame = match self.chip {
            Chip::X82599 => self.r(x::GPIE),
            Chip::I82576 => self.r(i::GPIE),
        } & map::GPIE_EIAME
            != 0;
        for v in 0..64 {
            let bit = 1u64 << v;
            if ready & bit == 0 {
                continue;
            }
            self.fired.push(v);
            if eiame && self.eiam & bit != 0 {
                self.vec_mask &= !bit;
            }
            if self.eiac & bit != 0 {
                self.vec_pending &= !bit;
            }
        }
    }

    /// Causes `bits` become pending; those that were not already pending signal.
    fn assert_causes(&mut self, bits: u64) {
        let newly = bits & !self.vec_pending;
        self.vec_pending |= bits;
        self.signal(newly);
    }

    /// Unmasks `bits`; causes already pending on them signal now.
    fn unmask(&mut self, bits: u64) {
        let newly = bits & !self.vec_mask;
        self.vec_mask |= bits;
        self.signal(newly);
    }

    // ---------------------------------------------------------------- receive

    /// 82576 with RXCSUM.TUOFLD (QEMU's reset value): an IPv4 UDP frame's checksum is checked
    /// and reported as UDPCS | L4CS, plus TCPE when it is wrong; the frame is still written.
    /// (The 82599 variant does not model checksum offload.)
    fn rx_checksum_status(&self, frame: &[u8]) -> u32 {
        if self.chip != Chip::I82576 || self.r(i::RXCSUM) & i::RXCSUM_TUOFLD == 0 {
            return 0;
        }
        match udp_checksum_ok(frame) {
            Some(true) => i::RXD_UDPCS | i::RXD_L4CS,
            Some(false) => i::RXD_UDPCS | i::RXD_L4CS | i::RXD_TCPE,
            None => 0,
        }
    }

    pub fn inject(&mut self, frame: &[u8]) {
        let rx_enabled = match self.chip {
            Chip::X82599 => self.r(x::RXCTRL) & 1 != 0,
            Chip::I82576 => self.r(i::RCTL) & i::RCTL_EN != 0,
        };
        if !self.link_up || !rx_enabled || frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            self.unmatched += 1;
            return;
        }
        let queues = self.steer(frame);
        if queues == 0 {
            self.unmatched += 1;
            return;
        }
        if self.fifo.len() >= FIFO_FRAMES {
            let mpc = match self.chip {
                Chip::X82599 => x::MPC,
                Chip::I82576 => i::MPC,
            };
            self.count(mpc, 1);
            return;
        }
        self.count(map::GPRC, 1);
        self.count(map::GORCL, frame.len() as u64);
        self.fifo.push_back(Pending {
            frame: frame.to_vec(),
            queues,
        });
        self.drain_fifo();
    }

    /// Queues (bit q) that receive `frame`.
    fn steer(&self, frame: &[u8]) -> u128 {
        let dst: [u8; 6] = frame[..6].try_into().unwrap_or([0; 6]);
        let bcast = dst == [0xFF; 6];
        let mcast = dst[0] & 1 != 0 && !bcast;
        match self.chip {
            Chip::X82599 => {
                if !self.vmdq() {
                    let fctrl = self.r(x::FCTRL);
                    let hit = (bcast && fctrl & x::FCTRL_BAM != 0)
                        || (mcast && fctrl & x::FCTRL_MPE != 0)
                        || fctrl & x::FCTRL_UPE != 0
                        || self.rar_match(&dst).is_some();
                    return u128::from(hit);
                }
                let vt = self.r(x::PFVTCTL);
                let l2 = |p: u32| self.r(x::PFVML2FLT + 4 * p);
                let mut pools = 0u64;
                if bcast {
                    if self.r(x::FCTRL) & x::FCTRL_BAM != 0 {
                        pools = (0..x::POOLS)
                            .filter(|&p| l2(p) & (1 << 27) != 0)
                            .fold(0, |a, p| a | 1 << p);
                        if vt & (1 << 30) == 0 {
                            // No replication: only the lowest accepting pool.
                            pools &= pools.wrapping_neg();
                        }
                    }
                } else if mcast {
                    pools = (0..x::POOLS)
                        .filter(|&p| l2(p) & (1 << 28) != 0)
                        .fold(0, |a, p| a | 1 << p);
                } else if let Some(n) = self.rar_match(&dst) {
                    pools = self.r(x::MPSAR + 8 * n) as u64
                        | (self.r(x::MPSAR + 8 * n + 4) as u64) << 32;
                } else if vt & (1 << 29) == 0 {
                    pools = 1 << ((vt >> 7) & 0x3F);
                }
                // Untagged frames need AUPE; the pool must be receive-enabled.
                pools &= (0..x::POOLS)
                    .filter(|&p| l2(p) & (1 << 24) != 0)
                    .fold(0, |a, p| a | 1 << p);
                pools &= self.r(x::PFVFRE) as u64 | (self.r(x::PFVFRE + 4) as u64) << 32;
                // 64-pool mode: pool p's traffic lands in its first queue, 2p.
                (0..64)
                    .filter(|p| pools & (1 << p) != 0)
                    .fold(0u128, |a, p| a | 1 << (2 * p))
            }
            Chip::I82576 => {
                if !self.vmdq() {
                    let hit = bcast || self.rar_match(&dst).is_some();
                    return u128::from(hit);
                }
                let vmolr = |p: u32| self.r(i::VMOLR + 4 * p);
                let vt = self.r(i::VT_CTL);
                let mut pools = 0u32;
                if bcast {
                    pools = (0..i::POOLS)
                        .filter(|&p| vmolr(p) & (1 << 27) != 0)
                        .fold(0, |a, p| a | 1 << p);
                } else if mcast {
                    pools = (0..i::POOLS)
                        .filter(|&p| vmolr(p) & (1 << 28) != 0)
                        .fold(0, |a, p| a | 1 << p);
                } else if let Some(n) = self.rar_match(&dst) {
                    pools = (self.r(i::ral(n) + 4) >> 18) & 0xFF;
                } else if vt & (1 << 29) == 0 {
                    pools = 1 << ((vt >> 7) & 7);
                }
                pools &= (0..i::POOLS)
                    .filter(|&p| vmolr(p) & (1 << 24) != 0)
                    .fold(0, |a, p| a | 1 << p);
                pools &= self.r(i::VFRE);
                u128::from(pools)
            }
        }
    }

    /// First valid receive-address entry holding `mac`.
    fn rar_match(&self, mac: &[u8; 6]) -> Option<u32> {
        let (n, ral): (u32, fn(u32) -> u32) = match self.chip {
            Chip::X82599 => (x::RARS, |n| x::RAL + 8 * n),
            Chip::I82576 => (i::RARS, i::ral),
        };
        let lo = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let hi = u32::from(u16::from_le_bytes([mac[4], mac[5]]));
        (0..n).find(|&k| {
            let h = self.r(ral(k) + 4);
            h & map::RAH_AV != 0 && h & 0xFFFF == hi && self.r(ral(k)) == lo
        })
    }

    fn pool_of_rx_queue(&self, q: u32) -> u32 {
        match self.chip {
            Chip::X82599 => q / 2,
            Chip::I82576 => q % 8,
        }
    }

    /// Moves frames from the packet buffer into queues, in order, until one blocks.
    fn drain_fifo(&mut self) {
        while let Some(mut head) = self.fifo.pop_front() {
            let mut blocked = false;
            let mut rest = head.queues;
            while rest != 0 {
                let q = rest.trailing_zeros();
                rest &= rest - 1;
                match self.deliver(q, &head.frame) {
                    Deliver::Done | Deliver::Dropped => head.queues &= !(1 << q),
                    Deliver::Blocked => blocked = true,
                }
            }
            if blocked {
                self.fifo.push_front(head);
                return;
            }
        }
    }

    fn drop_enabled(&self, q: u32) -> bool {
        match self.chip {
            Chip::X82599 => {
                self.r(x::rxq(q) + x::SRRCTL_OFF) & x::SRRCTL_DROP_EN != 0
                    || self.r(0x1F000 + 4 * (q / 32)) & (1 << (q % 32)) != 0
            }
            Chip::I82576 => {
                self.r(i::rxq(q) + i::SRRCTL_OFF) & i::SRRCTL_DROP_EN != 0
                    || self.r(i::QDE) & (1 << q) != 0
            }
        }
    }

    fn count_rx_drop(&mut self, q: u32) {
        let pool = self.pool_of_rx_queue(q) as usize;
        self.pools[pool].rx_dropped += 1;
        match self.chip {
            Chip::X82599 => {
                let idx = (self.r(x::RQSMR + 4 * (q / 4)) >> (8 * (q % 4))) & 0xF;
                self.count(x::QPRDC + 0x40 * idx, 1);
            }
            Chip::I82576 => self.count(i::rxq(q) + i::RQDPC_OFF, 1),
        }
    }

    fn deliver(&mut self, q: u32, frame: &[u8]) -> Deliver {
        let base = self.rxq(q);
        if !self.rx_on[q as usize] {
            self.count_rx_drop(q);
            return Deliver::Dropped;
        }
        let n = self.r(base + map::RDLEN) / 16;
        let head = self.r(base + map::RDH);
        let tail = self.r(base + map::RDT);
        if head >= n || tail >= n {
            self.violation(format!(
                "RX queue {q}: head {head} or tail {tail} outside ring of {n}"
            ));
            self.count_rx_drop(q);
            return Deliver::Dropped;
        }
        if head == tail {
            if self.drop_enabled(q) {
                self.count_rx_drop(q);
                return Deliver::Dropped;
            }
            return Deliver::Blocked;
        }
        let ring =
            u64::from(self.r(base + map::RDBAL)) | u64::from(self.r(base + map::RDBAH)) << 32;
        let desc = ring + 16 * u64::from(head);
        let Some(buf) = self.mem.read_u64(desc) else {
            self.violation(format!(
                "RX queue {q}: descriptor {head} at unmapped bus address {desc:#x}"
            ));
            self.count_rx_drop(q);
            return Deliver::Dropped;
        };
        let srrctl_off = match self.chip {
            Chip::X82599 => x::SRRCTL_OFF,
            Chip::I82576 => i::SRRCTL_OFF,
        };
        let kb = self.r(base + srrctl_off) & 0x7F;
        let bsize = if kb == 0 { 2048 } else { kb as usize * 1024 };
        let fits = frame.len() <= bsize;
        let written = fits && self.mem.write(buf, frame);
        if fits && !written {
            self.violation(format!(
                "RX queue {q}: buffer at unmapped bus address {buf:#x}"
            ));
        }
        // Write-back: everything else first, the status word with DD last.
        let (status, len) = if written {
            (
                map::RXD_DD | map::RXD_EOP | self.rx_checksum_status(frame),
                frame.len() as u16,
            )
        } else {
            let rxe = match self.chip {
                Chip::X82599 => 1 << 29,
                Chip::I82576 => i::RXD_RXE,
            };
            (map::RXD_DD | map::RXD_EOP | rxe, 0)
        };
        self.mem.write(desc, &0u64.to_le_bytes());
        self.mem.write(desc + 12, &u32::from(len).to_le_bytes());
        self.mem.write(desc + 8, &status.to_le_bytes());
        self.w(base + map::RDH, (head + 1) % n);
        let pool = self.pool_of_rx_queue(q) as usize;
        if written {
            self.pools[pool].rx_frames += 1;
            self.pools[pool].rx_bytes += frame.len() as u64;
            if self.chip == Chip::X82599 {
                let idx = (self.r(x::RQSMR + 4 * (q / 4)) >> (8 * (q % 4))) & 0xF;
                self.count(x::QPRC + 0x40 * idx, 1);
            }
        }
        self.queue_event(q, false);
        Deliver::Done
    }

    // ---------------------------------------------------------------- transmit

    pub fn run_all_tx(&mut self) {
        for q in 0..self.queues() {
            if self.tx_on[q as usize] {
                self.run_tx(q);
            }
        }
    }

    fn tx_allowed(&self, q: u32) -> bool {
        if !self.tx_on[q as usize] {
            return false;
        }
        match self.chip {
            Chip::X82599 => {
                if self.r(x::DMATXCTL) & 1 == 0 {
                    return false;
                }
                if self.r(x::MTQC) & 2 != 0 {
                    let p = q / 2;
                    return self.r(x::PFVFTE + 4 * (p / 32)) & (1 << (p % 32)) != 0;
                }
                true
            }
            Chip::I82576 => {
                if self.r(i::TCTL) & i::TCTL_EN == 0 {
                    return false;
                }
                !self.vmdq() || self.r(i::VFTE) & (1 << (q % 8)) != 0
            }
        }
    }

    fn tx_pool(&self, q: u32) -> Option<u32> {
        match self.chip {
            Chip::X82599 => (self.r(x::MTQC) & 2 != 0).then_some(q / 2),
            Chip::I82576 => self.vmdq().then_some(q % 8),
        }
    }

    fn run_tx(&mut self, q: u32) {
        if !self.tx_allowed(q) {
            return;
        }
        let base = self.txq(q);
        let n = self.r(base + map::TDLEN) / 16;
        let ring =
            u64::from(self.r(base + map::TDBAL)) | u64::from(self.r(base + map::TDBAH)) << 32;
        let tail = self.r(base + map::TDT);
        let mut head = self.r(base + map::TDH);
        if n == 0 || tail >= n || head >= n {
            self.violation(format!(
                "TX queue {q}: head {head} or tail {tail} outside ring of {n}"
            ));
            return;
        }
        let mut any = false;
        while head != tail {
            let desc = ring + 16 * u64::from(head);
            let (Some(addr), Some(cmd)) = (self.mem.read_u64(desc), self.mem.read_u32(desc + 8))
            else {
                self.violation(format!(
                    "TX queue {q}: descriptor {head} at unmapped bus address {desc:#x}"
                ));
                return;
            };
            if cmd & map::TXD_DEXT == 0 || cmd & map::TXD_DTYP_MASK != map::TXD_DTYP_DATA {
                self.violation(format!(
                    "TX queue {q}: descriptor {head} is not an advanced data descriptor"
                ));
            } else {
                let len = (cmd & 0xFFFF) as usize;
                let mut chunk = vec![0u8; len];
                if self.mem.read(addr, &mut chunk) {
                    self.tx_partial[q as usize].extend_from_slice(&chunk);
                } else {
                    self.violation(format!(
                        "TX queue {q}: buffer at unmapped bus address {addr:#x}"
                    ));
                    self.tx_partial_bad[q as usize] = true;
                }
                if cmd & map::TXD_EOP != 0 {
                    let frame = std::mem::take(&mut self.tx_partial[q as usize]);
                    if !std::mem::take(&mut self.tx_partial_bad[q as usize]) {
                        self.transmit(q, frame);
                    }
                }
            }
            if cmd & map::TXD_RS != 0 {
                // Write-back: DD in the status word.
                self.mem.write(desc + 12, &1u32.to_le_bytes());
            }
            head = (head + 1) % n;
            self.w(base + map::TDH, head);
            any = true;
        }
        if any {
            self.queue_event(q, true);
        }
    }

    fn transmit(&mut self, q: u32, mut frame: Vec<u8>) {
        let pool = self.tx_pool(q);
        if let Some(p) = pool
            && self.spoof_check_on(p)
            && !self.source_allowed(p, &frame)
        {
            self.pools[p as usize].tx_spoofed += 1;
            if self.chip == Chip::X82599 {
                self.count(x::SSVPC, 1);
            }
            return;
        }
        let pad = match self.chip {
            Chip::X82599 => self.r(x::HLREG0) & x::HLREG0_TXPADEN != 0,
            Chip::I82576 => self.r(i::TCTL) & i::TCTL_PSP != 0,
        };
        if pad && frame.len() < 60 {
            frame.resize(60, 0);
        }
        self.count(map::GPTC, 1);
        self.count(map::GOTCL, frame.len() as u64);
        if let Some(p) = pool {
            self.pools[p as usize].tx_frames += 1;
            self.pools[p as usize].tx_bytes += frame.len() as u64;
        }
        self.wire_out.push(frame);
    }

    fn spoof_check_on(&self, p: u32) -> bool {
        match self.chip {
            Chip::X82599 => self.r(x::PFVFSPOOF + 4 * (p / 8)) & (1 << (p % 8)) != 0,
            Chip::I82576 => self.r(i::DTXSWC) & (1 << p) != 0,
        }
    }

    /// The frame's source MAC is one of pool `p`'s receive addresses.
    fn source_allowed(&self, p: u32, frame: &[u8]) -> bool {
        let Some(src) = frame.get(6..12) else {
            return false;
        };
        let src: [u8; 6] = src.try_into().unwrap_or([0; 6]);
        let lo = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        let hi = u32::from(u16::from_le_bytes([src[4], src[5]]));
        match self.chip {
            Chip::X82599 => (0..x::RARS).any(|n| {
                let h = self.r(x::RAL + 8 * n + 4);
                let pools =
                    self.r(x::MPSAR + 8 * n) as u64 | (self.r(x::MPSAR + 8 * n + 4) as u64) << 32;
                h & map::RAH_AV != 0
                    && h & 0xFFFF == hi
                    && self.r(x::RAL + 8 * n) == lo
                    && pools & (1 << p) != 0
            }),
            Chip::I82576 => (0..i::RARS).any(|n| {
                let h = self.r(i::ral(n) + 4);
                h & map::RAH_AV != 0
                    && h & 0xFFFF == hi
                    && self.r(i::ral(n)) == lo
                    && h & (1 << (18 + p)) != 0
            }),
        }
    }
}

/// For an unfragmented IPv4 UDP frame with a checksum (non-zero field): whether the UDP
/// checksum over the pseudo-header, header and data is right; `None` for anything else.
fn udp_checksum_ok(frame: &[u8]) -> Option<bool> {
    let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    if frame.len() < 14 + 20 + 8 || be16(frame, 12) != 0x0800 {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0xF) * 4;
    let total = usize::from(be16(ip, 2));
    let fragment = be16(ip, 6) & 0x3FFF != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || total > ip.len() || total < ihl + 8 || ip[9] != 17 || fragment
    {
        return None;
    }
    let udp = &ip[ihl..total];
    if be16(udp, 6) == 0 {
        return None;
    }
    let mut sum: u32 = 0;
    for pair in ip[12..20].chunks(2) {
        sum += u32::from(be16(pair, 0));
    }
    sum += 17 + udp.len() as u32;
    for w in udp.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    Some(sum == 0xFFFF)
}
