//! 82599 global reset and initialisation, in the order of the datasheet (as ixy and Linux do
//! it): mask interrupts, reset, wait for EEPROM auto-read and DMA init, link, statistics,
//! receive unit, transmit unit, VMDq globals. Per-pool state is left empty: every RAR but 0,
//! every pool enable and every queue is off until a pool is allocated.

use super::{RAR_ENTRIES, link, stats};
use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};
use crate::poll::wait_for;
use crate::regs::ixgbe::*;

pub fn disable_interrupts<R: RegisterAccess>(regs: &R) {
    regs.write32(EIMC, 0x7FFF_FFFF);
    regs.write32(eimc_ex(0), !0);
    regs.write32(eimc_ex(1), !0);
    regs.read32(EICR);
}

/// Resets the chip and brings it to "VMDq on, no pools"; returns the permanent MAC (RAR 0).
pub fn reset_and_init<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
) -> Result<[u8; 6], Error> {
    disable_interrupts(regs);
    regs.write32(CTRL, CTRL_RST_MASK);
    wait_for(regs, delay, CTRL, CTRL_RST_MASK, 0, 10_000, "CTRL.RST")?;
    delay.delay_us(10_000);
    // The reset re-enabled the defaults.
    disable_interrupts(regs);

    let lo = regs.read32(ral(0)).to_le_bytes();
    let hi = regs.read32(rah(0)).to_le_bytes();
    let mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];

    wait_for(regs, delay, EEC, EEC_ARD, EEC_ARD, 1_000_000, "EEC.ARD")?;
    wait_for(
        regs,
        delay,
        RDRXCTL,
        RDRXCTL_DMAIDONE,
        RDRXCTL_DMAIDONE,
        1_000_000,
        "RDRXCTL.DMAIDONE",
    )?;

    link::start(regs);
    stats::clear(regs);
    init_rx(regs);
    init_tx(regs);
    regs.set32(CTRL_EXT, CTRL_EXT_NS_DIS | CTRL_EXT_DRV_LOAD);
    regs.set32(RXCTRL, RXCTRL_RXEN);
    Ok(mac)
}

fn init_rx<R: RegisterAccess>(regs: &R) {
    regs.clear32(RXCTRL, RXCTRL_RXEN);
    regs.set32(HLREG0, HLREG0_RXCRCSTRP);
    let rdrxctl = regs.read32(RDRXCTL) & !RDRXCTL_RSCFRSTSIZE;
    regs.write32(
        RDRXCTL,
        rdrxctl | RDRXCTL_CRCSTRIP | RDRXCTL_RSCACKC | RDRXCTL_FCOE_WRFIX,
    );
    // Broadcast accepted globally, then filtered per pool by PFVML2FLT.BAM; no promiscuous
    // bits in VMDq mode.
    regs.write32(FCTRL, FCTRL_BAM);
    regs.clear32(VLNCTRL, VLNCTRL_VFE);

    // VMDq, 64 pools x 2 queues, no RSS; unmatched unicast is dropped, not sent to a
    // default pool; broadcast is replicated to every pool that accepts it.
    regs.write32(MRQC, MRQC_VMDQ_64);
    regs.write32(PFVTCTL, PFVTCTL_VT_ENA | PFVTCTL_RPL_EN | PFVTCTL_DIS_DEFPL);
    regs.write32(pfvfre(0), 0);
    regs.write32(pfvfre(1), 0);
    regs.write32(RTRUP2TC, 0);
    for p in 0..64 {
        regs.write32(psrtype(p), 0);
        regs.write32(pfvml2flt(p), 0);
    }
    // RAR 0 keeps the permanent MAC but steers to no pool: the driver domain has no stack.
    for n in 0..RAR_ENTRIES {
        if n != 0 {
            regs.write32(rah(n), 0);
            regs.write32(ral(n), 0);
        }
        regs.write32(mpsar_lo(n), 0);
        regs.write32(mpsar_hi(n), 0);
    }
    // Per-queue drop control is SRRCTL.DROP_EN; keep the global PFQDE bits clear.
    for q in 0..128 {
        regs.write32(PFQDE, PFQDE_WE | (q << PFQDE_IDX_SHIFT));
    }
}

fn init_tx<R: RegisterAccess>(regs: &R) {
    regs.set32(HLREG0, HLREG0_TXCRCEN | HLREG0_TXPADEN);
    regs.write32(DTXMXSZRQ, 0xFFF);
    // MTQC may only change while the descriptor arbiter is off.
    regs.set32(RTTDCS, RTTDCS_ARBDIS);
    regs.write32(MTQC, MTQC_VT_ENA | MTQC_64VF);
    regs.clear32(RTTDCS, RTTDCS_ARBDIS);
    regs.write32(RTTUP2TC, 0);
    regs.write32(pfvfte(0), 0);
    regs.write32(pfvfte(1), 0);
    // VEPA: no internal VM-to-VM switch; guest-to-guest frames go out to the wire.
    regs.write32(PFDTXGSWC, 0);
    for i in 0..8 {
        regs.write32(pfvfspoof(i), 0);
    }
    // Must be on before any TXDCTL.ENABLE.
    regs.write32(DMATXCTL, DMATXCTL_TE);
}
