//! Programming one RX or TX descriptor queue, for both chips: ring base and length, buffer size
//! and drop-enable, and the enable handshakes. The 82576 and the 82599 lay a queue's registers
//! out the same way apart from where the queue blocks sit, where SRRCTL is, the width of the
//! buffer-size field, the drop-enable bit and a few chip-specific bits; [`QueueRegs`] holds
//! exactly those differences, one constant per chip.
//!
//! Invariants: a queue is always disabled (and the disable seen) before it is reprogrammed; the
//! tail stays 0 until buffers are posted; SRRCTL always sets drop-enable, so a pool without
//! buffers drops its own frames instead of blocking the shared packet buffer.

use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};
use crate::poll::wait_for;
use crate::regs::{igb, ixgbe};

/// Offsets inside a queue's register block (the same on both chips).
const BAL: u32 = 0x00;
const BAH: u32 = 0x04;
const LEN: u32 = 0x08;
const HEAD: u32 = 0x10;
const TAIL: u32 = 0x18;
const CTL: u32 = 0x28;
/// RXDCTL / TXDCTL enable (both chips).
const ENABLE: u32 = 1 << 25;
/// SRRCTL: advanced one-buffer descriptors (both chips).
const DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// How long an enable or disable may take to be seen, in 1 us polls.
const HANDSHAKE_POLLS: u32 = 10_000;

/// What differs between the chips' queue registers.
pub struct QueueRegs {
    /// Register `reg` of RX queue `n`.
    pub rxq: fn(u32, u32) -> u32,
    /// Register `reg` of TX queue `n`.
    pub txq: fn(u32, u32) -> u32,
    srrctl: u32,
    srrctl_drop_en: u32,
    bsizepkt_mask: u32,
    /// Bits cleared in a register of the RX block before enabling (offset, bits).
    rx_clear: Option<(u32, u32)>,
    /// Bits cleared in a register of the TX block before enabling (offset, bits).
    tx_clear: Option<(u32, u32)>,
    /// RXDCTL is written whole (thresholds 0) rather than having ENABLE set on its reset value.
    rxdctl_overwrite: bool,
    /// TXDCTL thresholds written with ENABLE.
    txdctl_thresholds: u32,
}

/// 82576 (QEMU's igb).
pub const IGB: QueueRegs = QueueRegs {
    rxq: igb::rxq,
    txq: igb::txq,
    srrctl: igb::SRRCTL,
    srrctl_drop_en: igb::SRRCTL_DROP_EN,
    bsizepkt_mask: igb::SRRCTL_BSIZEPKT_MASK,
    rx_clear: None,
    tx_clear: None,
    rxdctl_overwrite: true,
    // Linux igb with MSI-X: PTHRESH 8, HTHRESH 1, WTHRESH 1.
    txdctl_thresholds: 8 | (1 << 8) | (1 << 16),
};

/// 82599.
pub const IXGBE: QueueRegs = QueueRegs {
    rxq: ixgbe::rxq,
    txq: ixgbe::txq,
    srrctl: ixgbe::SRRCTL,
    srrctl_drop_en: ixgbe::SRRCTL_DROP_EN,
    bsizepkt_mask: ixgbe::SRRCTL_BSIZEPKT_MASK,
    // DCA_RXCTRL's reset value has bit 12 set; the datasheet wants it clear.
    rx_clear: Some((ixgbe::DCA_RXCTRL, ixgbe::DCA_RXCTRL_DESC_DCA_EN_BIT12)),
    // Descriptor write-back relaxed ordering: Linux, DPDK and FreeBSD clear it.
    tx_clear: Some((ixgbe::DCA_TXCTRL, ixgbe::DCA_TXCTRL_DESC_WRO_EN)),
    rxdctl_overwrite: false,
    // Linux's thresholds: prefetch 32, host 1, write-back 1 (PTHRESH + WTHRESH <= 40).
    txdctl_thresholds: (32 << ixgbe::TXDCTL_PTHRESH_SHIFT)
        | (1 << ixgbe::TXDCTL_HTHRESH_SHIFT)
        | (1 << ixgbe::TXDCTL_WTHRESH_SHIFT),
};

impl QueueRegs {
    /// RX queue `q`'s tail register.
    pub fn rdt(&self, q: u32) -> u32 {
        (self.rxq)(q, TAIL)
    }

    /// TX queue `q`'s tail register.
    pub fn tdt(&self, q: u32) -> u32 {
        (self.txq)(q, TAIL)
    }

    pub fn disable_rx<R: RegisterAccess, T: Delay>(
        &self,
        regs: &R,
        delay: &mut T,
        q: u32,
    ) -> Result<(), Error> {
        let ctl = (self.rxq)(q, CTL);
        regs.clear32(ctl, ENABLE);
        wait_for(
            regs,
            delay,
            ctl,
            ENABLE,
            0,
            HANDSHAKE_POLLS,
            "RXDCTL.ENABLE clear",
        )
    }

    pub fn disable_tx<R: RegisterAccess, T: Delay>(
        &self,
        regs: &R,
        delay: &mut T,
        q: u32,
    ) -> Result<(), Error> {
        let ctl = (self.txq)(q, CTL);
        regs.clear32(ctl, ENABLE);
        wait_for(
            regs,
            delay,
            ctl,
            ENABLE,
            0,
            HANDSHAKE_POLLS,
            "TXDCTL.ENABLE clear",
        )
    }

    /// Programs and enables RX queue `q`: `n` descriptors at `bus`, buffers of `buf_kb` KiB.
    pub fn setup_rx<R: RegisterAccess, T: Delay>(
        &self,
        regs: &R,
        delay: &mut T,
        q: u32,
        bus: u64,
        n: u32,
        buf_kb: u32,
    ) -> Result<(), Error> {
        self.disable_rx(regs, delay, q)?;
        let r = |reg| (self.rxq)(q, reg);
        regs.write32(r(BAL), bus as u32);
        regs.write32(r(BAH), (bus >> 32) as u32);
        regs.write32(r(LEN), n * 16);
        regs.write32(
            r(self.srrctl),
            DESCTYPE_ADV_ONEBUF | self.srrctl_drop_en | (buf_kb & self.bsizepkt_mask),
        );
        regs.write32(r(HEAD), 0);
        regs.write32(r(TAIL), 0);
        if let Some((reg, bits)) = self.rx_clear {
            regs.clear32(r(reg), bits);
        }
        if self.rxdctl_overwrite {
            regs.write32(r(CTL), ENABLE);
        } else {
            regs.set32(r(CTL), ENABLE);
        }
        wait_for(
            regs,
            delay,
            r(CTL),
            ENABLE,
            ENABLE,
            HANDSHAKE_POLLS,
            "RXDCTL.ENABLE",
        )
    }

    /// Programs and enables TX queue `q`: `n` descriptors at `bus`.
    pub fn setup_tx<R: RegisterAccess, T: Delay>(
        &self,
        regs: &R,
        delay: &mut T,
        q: u32,
        bus: u64,
        n: u32,
    ) -> Result<(), Error> {
        self.disable_tx(regs, delay, q)?;
        let t = |reg| (self.txq)(q, reg);
        regs.write32(t(BAL), bus as u32);
        regs.write32(t(BAH), (bus >> 32) as u32);
        regs.write32(t(LEN), n * 16);
        regs.write32(t(HEAD), 0);
        regs.write32(t(TAIL), 0);
        if let Some((reg, bits)) = self.tx_clear {
            regs.clear32(t(reg), bits);
        }
        regs.write32(t(CTL), self.txdctl_thresholds | ENABLE);
        wait_for(
            regs,
            delay,
            t(CTL),
            ENABLE,
            ENABLE,
            HANDSHAKE_POLLS,
            "TXDCTL.ENABLE",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared offsets are the ones both register maps name.
    #[test]
    fn shared_offsets_match_both_register_maps() {
        for (bal, bah, len, head, tail, ctl, en) in [
            (
                igb::RDBAL,
                igb::RDBAH,
                igb::RDLEN,
                igb::RDH,
                igb::RDT,
                igb::RXDCTL,
                igb::RXDCTL_ENABLE,
            ),
            (
                igb::TDBAL,
                igb::TDBAH,
                igb::TDLEN,
                igb::TDH,
                igb::TDT,
                igb::TXDCTL,
                igb::TXDCTL_ENABLE,
            ),
            (
                ixgbe::RDBAL,
                ixgbe::RDBAH,
                ixgbe::RDLEN,
                ixgbe::RDH,
                ixgbe::RDT,
                ixgbe::RXDCTL,
                ixgbe::RXDCTL_ENABLE,
            ),
            (
                ixgbe::TDBAL,
                ixgbe::TDBAH,
                ixgbe::TDLEN,
                ixgbe::TDH,
                ixgbe::TDT,
                ixgbe::TXDCTL,
                ixgbe::TXDCTL_ENABLE,
            ),
        ] {
            assert_eq!(
                (bal, bah, len, head, tail, ctl, en),
                (BAL, BAH, LEN, HEAD, TAIL, CTL, ENABLE)
            );
        }
        assert_eq!(igb::SRRCTL_DESCTYPE_ADV_ONEBUF, DESCTYPE_ADV_ONEBUF);
        assert_eq!(ixgbe::SRRCTL_DESCTYPE_ADV_ONEBUF, DESCTYPE_ADV_ONEBUF);
    }
}
