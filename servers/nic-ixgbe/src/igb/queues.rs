//! 82576 per-queue programming (SRRCTL at +0x0C with DROP_EN in bit 31).

use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};
use crate::poll::wait_for;
use crate::regs::igb::*;

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
    regs.write32(rxq(q, RXDCTL), RXDCTL_ENABLE);
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
    // Linux igb with MSI-X: PTHRESH 8, HTHRESH 1, WTHRESH 1.
    regs.write32(txq(q, TXDCTL), 8 | (1 << 8) | (1 << 16) | TXDCTL_ENABLE);
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
