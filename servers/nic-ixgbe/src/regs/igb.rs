//! Intel 82576 (QEMU "igb") register offsets and bits used by the driver core. Differences
//! from the 82599 that matter: no FCTRL (RCTL holds the filter bits), SRRCTL at queue offset
//! 0x0C with DROP_EN in bit 31, pool select bits in RAH instead of MPSAR, VMOLR instead of
//! PFVML2FLT, 8 pools with pool p on queue p.

pub const CTRL: u32 = 0x00000;
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_RST: u32 = 1 << 26;
pub const STATUS: u32 = 0x00008;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_SHIFT: u32 = 6;
pub const CTRL_EXT: u32 = 0x00018;
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
pub const MDIC: u32 = 0x00020;
pub const MDIC_REG_SHIFT: u32 = 16;
pub const MDIC_PHY_SHIFT: u32 = 21;
pub const MDIC_OP_WRITE: u32 = 1 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_ERROR: u32 = 1 << 30;
/// PHY register 0 (BMCR): auto-negotiation enable and restart.
pub const PHY_BMCR_AUTOEN_RESTART: u32 = (1 << 12) | (1 << 9);

pub const ICR: u32 = 0x000C0;
pub const ICR_LSC: u32 = 1 << 2;
/// Which ICR causes interrupt; under MSI-X, ICR & IMS raise the IVAR_MISC "other" vector.
pub const IMS: u32 = 0x000D0;
pub const IMC: u32 = 0x000D8;
pub const GPIE: u32 = 0x01514;
pub const GPIE_NSICR: u32 = 1 << 0;
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
pub const GPIE_EIAME: u32 = 1 << 30;
pub const GPIE_PBA: u32 = 1 << 31;
pub const EICS: u32 = 0x01520;
pub const EIMS: u32 = 0x01524;
pub const EIMC: u32 = 0x01528;
pub const EIAC: u32 = 0x0152C;
pub const EIAM: u32 = 0x01530;
pub const EICR: u32 = 0x01580;
pub const fn eitr(v: u32) -> u32 {
    0x01680 + 4 * v
}
/// EITR interval field: bits 14:2, 1 us units.
pub const EITR_INTERVAL_SHIFT: u32 = 2;
pub const EITR_INTERVAL_MAX: u32 = 0x1FFF;
pub const EITR_CNT_IGNR: u32 = 1 << 31;
pub const fn ivar0(n: u32) -> u32 {
    0x01700 + 4 * n
}
pub const IVAR_MISC: u32 = 0x01740;
pub const IVAR_VALID: u32 = 0x80;

pub const RCTL: u32 = 0x00100;
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_SECRC: u32 = 1 << 26;
pub const TCTL: u32 = 0x00400;
pub const TCTL_EN: u32 = 1 << 1;
pub const TCTL_PSP: u32 = 1 << 3;
pub const QDE: u32 = 0x02408;
pub const DTXSWC: u32 = 0x03500;
/// DTXSWC bits 7:0: MAC anti-spoofing per pool.
pub const DTXSWC_MAC_SPOOF_SHIFT: u32 = 0;
pub const RXCSUM: u32 = 0x05000;

pub const fn rxq(n: u32, reg: u32) -> u32 {
    0x0C000 + 0x40 * n + reg
}
pub const RDBAL: u32 = 0x00;
pub const RDBAH: u32 = 0x04;
pub const RDLEN: u32 = 0x08;
pub const SRRCTL: u32 = 0x0C;
pub const RDH: u32 = 0x10;
pub const RDT: u32 = 0x18;
pub const RXDCTL: u32 = 0x28;
pub const fn rqdpc(n: u32) -> u32 {
    0x0C030 + 0x40 * n
}
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
pub const SRRCTL_DROP_EN: u32 = 1 << 31;
pub const RXDCTL_ENABLE: u32 = 1 << 25;

pub const fn txq(n: u32, reg: u32) -> u32 {
    0x0E000 + 0x40 * n + reg
}
pub const TDBAL: u32 = 0x00;
pub const TDBAH: u32 = 0x04;
pub const TDLEN: u32 = 0x08;
pub const TDH: u32 = 0x10;
pub const TDT: u32 = 0x18;
pub const TXDCTL: u32 = 0x28;
pub const TXDCTL_ENABLE: u32 = 1 << 25;

pub const fn ral(n: u32) -> u32 {
    if n < 16 {
        0x05400 + 8 * n
    } else {
        0x054E0 + 8 * (n - 16)
    }
}
pub const fn rah(n: u32) -> u32 {
    ral(n) + 4
}
pub const RAH_AV: u32 = 1 << 31;
pub const RAH_POOLSEL_SHIFT: u32 = 18;
pub const RAH_POOLSEL_MASK: u32 = 0xFF << RAH_POOLSEL_SHIFT;
pub const MRQC: u32 = 0x05818;
pub const MRQC_VMDQ: u32 = 0x3;
pub const VT_CTL: u32 = 0x0581C;
pub const VT_CTL_DIS_DEF_POOL: u32 = 1 << 29;
pub const VT_CTL_VM_REPL_EN: u32 = 1 << 30;
pub const fn vmolr(p: u32) -> u32 {
    0x05AD0 + 4 * p
}
pub const VMOLR_RLPML_MASK: u32 = 0x3FFF;
pub const VMOLR_LPE: u32 = 1 << 16;
pub const VMOLR_AUPE: u32 = 1 << 24;
pub const VMOLR_BAM: u32 = 1 << 27;
pub const VMOLR_MPME: u32 = 1 << 28;
pub const VMOLR_STRCRC: u32 = 1 << 31;
pub const VFRE: u32 = 0x00C8C;
pub const VFTE: u32 = 0x00C90;

pub const GPRC: u32 = 0x04074;
pub const GPTC: u32 = 0x04080;
pub const GORCL: u32 = 0x04088;
pub const GORCH: u32 = 0x0408C;
pub const GOTCL: u32 = 0x04090;
pub const GOTCH: u32 = 0x04094;
pub const MPC: u32 = 0x04010;
