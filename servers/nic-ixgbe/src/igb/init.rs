//! 82576 reset and initialisation: reset, PHY auto-negotiation through MDIC, VMDq (MRQC = 3)
//! with no default pool, receive and transmit units on, every pool and queue off.

use super::RAR_ENTRIES;
use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};
use crate::ixgbe::link::Link;
use crate::poll::wait_for;
use crate::regs::igb::*;
use crate::stats::HwStats;

pub fn disable_interrupts<R: RegisterAccess>(regs: &R) {
    regs.write32(IMC, !0);
    regs.write32(EIMC, !0);
    regs.read32(ICR);
    regs.read32(EICR);
}

pub fn reset_and_init<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
) -> Result<[u8; 6], Error> {
    disable_interrupts(regs);
    regs.set32(CTRL, CTRL_RST);
    wait_for(regs, delay, CTRL, CTRL_RST, 0, 10_000, "CTRL.RST")?;
    delay.delay_us(10_000);
    disable_interrupts(regs);

    let lo = regs.read32(ral(0)).to_le_bytes();
    let hi = regs.read32(rah(0)).to_le_bytes();
    let mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];

    // Link: set link up and restart auto-negotiation on PHY 1.
    regs.set32(CTRL, CTRL_SLU);
    regs.write32(
        MDIC,
        PHY_BMCR_AUTOEN_RESTART | (1 << MDIC_PHY_SHIFT) | MDIC_OP_WRITE,
    );
    wait_for(
        regs,
        delay,
        MDIC,
        MDIC_READY,
        MDIC_READY,
        10_000,
        "MDIC.READY",
    )?;
    if regs.read32(MDIC) & MDIC_ERROR != 0 {
        return Err(Error::Timeout("MDIC write failed"));
    }
    let mut scratch = HwStats::default();
    accumulate_stats(regs, &mut scratch);

    // Receive: off while configuring.
    regs.write32(RCTL, 0);
    regs.clear32(rxq(0, RXDCTL), RXDCTL_ENABLE);
    regs.write32(MRQC, MRQC_VMDQ);
    regs.write32(VT_CTL, VT_CTL_DIS_DEF_POOL | VT_CTL_VM_REPL_EN);
    regs.write32(VFRE, 0);
    for p in 0..u32::from(super::MAX_POOLS) {
        regs.write32(vmolr(p), 0);
    }
    for n in 1..RAR_ENTRIES {
        regs.write32(rah(n), 0);
        regs.write32(ral(n), 0);
    }
    // RAR 0 keeps the permanent MAC but selects no pool.
    regs.clear32(rah(0), RAH_POOLSEL_MASK);
    regs.write32(QDE, 0);
    regs.write32(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);

    // Transmit.
    regs.clear32(txq(0, TXDCTL), TXDCTL_ENABLE);
    regs.write32(VFTE, 0);
    regs.write32(DTXSWC, 0);
    regs.write32(TCTL, TCTL_EN | TCTL_PSP);
    regs.set32(CTRL_EXT, CTRL_EXT_DRV_LOAD);
    Ok(mac)
}

pub fn link_status<R: RegisterAccess>(regs: &R) -> Link {
    let s = regs.read32(STATUS);
    if s & STATUS_LU == 0 {
        return Link { up: false, mbps: 0 };
    }
    let mbps = match (s >> STATUS_SPEED_SHIFT) & 3 {
        0 => 10,
        1 => 100,
        _ => 1000,
    };
    Link { up: true, mbps }
}

pub fn accumulate_stats<R: RegisterAccess>(regs: &R, s: &mut HwStats) {
    s.rx_frames += u64::from(regs.read32(GPRC));
    s.tx_frames += u64::from(regs.read32(GPTC));
    let lo = u64::from(regs.read32(GORCL));
    s.rx_bytes += lo | (u64::from(regs.read32(GORCH)) << 32);
    let lo = u64::from(regs.read32(GOTCL));
    s.tx_bytes += lo | (u64::from(regs.read32(GOTCH)) << 32);
    s.rx_missed += u64::from(regs.read32(MPC));
}

pub fn rx_drops<R: RegisterAccess>(regs: &R, q: u32) -> u64 {
    u64::from(regs.read32(rqdpc(q)))
}
