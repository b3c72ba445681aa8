//! 82599 link: start 10G serial auto-negotiation through AUTOC, read state from LINKS.

use crate::hw::RegisterAccess;
use crate::regs::ixgbe::*;

/// Link state as the NIC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    /// 0 when down.
    pub mbps: u32,
}

pub fn start<R: RegisterAccess>(regs: &R) {
    let autoc = regs.read32(AUTOC) & !AUTOC_LMS_MASK & !AUTOC_10G_PMA_PMD_MASK;
    regs.write32(AUTOC, autoc | AUTOC_LMS_10G_SERIAL);
    regs.set32(AUTOC, AUTOC_AN_RESTART);
}

pub fn status<R: RegisterAccess>(regs: &R) -> Link {
    let links = regs.read32(LINKS);
    if links & LINKS_UP == 0 {
        return Link { up: false, mbps: 0 };
    }
    let mbps = match (links >> LINKS_SPEED_SHIFT) & 3 {
        1 => 100,
        2 => 1000,
        3 => 10_000,
        _ => 0,
    };
    Link { up: true, mbps }
}
