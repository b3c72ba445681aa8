//! 82599 per-queue programming: ring base/length, buffer size and drop-enable, the enable
//! handshakes. A queue is always disabled (and the disable seen) before it is reprogrammed.

use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};
use crate::poll::wait_for;
use crate::regs::ixgbe::*;

pub fn rdt(q: u32) -> u32 {
    rxq(q, RDT)
}

pub fn tdt(q: u32) -> u32 {
    txq(q, TDT)
}

pub fn disable_rx<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
    q: u32,
) -> Result<(), Error> {
    regs.clear32(rxq(q, RXDCTL), RXDCTL_ENABLE);
    wait_for(
        regs,
        delay,
        rxq(q, RXDCTL),
        RXDCTL_ENABLE,
        0,
        10_000,
        "RXDCTL.ENABLE clear",
    )
}

pub fn disable_tx<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
    q: u32,
) -> Result<(), Error> {
    regs.clear32(txq(q, TXDCTL), TXDCTL_ENABLE);
    wait_for(
        regs,
        delay,
        txq(q, TXDCTL),
        TXDCTL_ENABLE,
        0,
        10_000,
        "TXDCTL.ENABLE clear",
    )
}

/// Programs and enables RX queue `q`: `n` descriptors at `bus`, buffers of `buf_kb` KiB,
/// drop-enable on (a pool without buffers drops its own frames instead of blocking the
/// shared packet buffer). The tail stays 0 until buffers are posted.
pub fn setup_rx<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
    q: u32,
    bus: u64,
    n: u32,
    buf_kb: u32,
) -> Result<(), Error> {
    disable_rx(regs, delay, q)?;
    regs.write32(rxq(q, RDBAL), bus as u32);
    regs.write32(rxq(q, RDBAH), (bus >> 32) as u32);
    regs.write32(rxq(q, RDLEN), n * 16);
    regs.write32(
        rxq(q, SRRCTL),
        SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN | (buf_kb & SRRCTL_BSIZEPKT_MASK),
    );
    regs.write32(rxq(q, RDH), 0);
    regs.write32(rxq(q, RDT), 0);
    // Reset value has bit 12 set; the datasheet wants it clear.
    regs.clear32(rxq(q, DCA_RXCTRL), DCA_RXCTRL_DESC_DCA_EN_BIT12);
    regs.set32(rxq(q, RXDCTL), RXDCTL_ENABLE);
    wait_for(
        regs,
        delay,
        rxq(q, RXDCTL),
        RXDCTL_ENABLE,
        RXDCTL_ENABLE,
        10_000,
        "RXDCTL.ENABLE",
    )
}

/// Programs and enables TX queue `q`.
pub fn setup_tx<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
    q: u32,
    bus: u64,
    n: u32,
) -> Result<(), Error> {
    disable_tx(regs, delay, q)?;
    regs.write32(txq(q, TDBAL), bus as u32);
    regs.write32(txq(q, TDBAH), (bus >> 32) as u32);
    regs.write32(txq(q, TDLEN), n * 16);
    regs.write32(txq(q, TDH), 0);
    regs.write32(txq(q, TDT), 0);
    regs.clear32(txq(q, DCA_TXCTRL), DCA_TXCTRL_DESC_WRO_EN);
    // Linux's thresholds: prefetch 32, host 1, write-back 1 (PTHRESH + WTHRESH <= 40).
    let thresholds =
        (32 << TXDCTL_PTHRESH_SHIFT) | (1 << TXDCTL_HTHRESH_SHIFT) | (1 << TXDCTL_WTHRESH_SHIFT);
    regs.write32(txq(q, TXDCTL), thresholds | TXDCTL_ENABLE);
    wait_for(
        regs,
        delay,
        txq(q, TXDCTL),
        TXDCTL_ENABLE,
        TXDCTL_ENABLE,
        10_000,
        "TXDCTL.ENABLE",
    )
}
