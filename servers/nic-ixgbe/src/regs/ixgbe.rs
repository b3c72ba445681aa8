//! Intel 82599 register offsets and bits (canonical 82599 locations; where the 82598 alias
//! also exists, the canonical one is used so that per-index formulas hold for every index).

// Global control and status.
pub const CTRL: u32 = 0x00000;
pub const CTRL_LNK_RST: u32 = 1 << 3;
pub const CTRL_RST: u32 = 1 << 26;
pub const CTRL_RST_MASK: u32 = CTRL_LNK_RST | CTRL_RST;
pub const STATUS: u32 = 0x00008;
pub const CTRL_EXT: u32 = 0x00018;
pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
pub const EEC: u32 = 0x10010;
pub const EEC_ARD: u32 = 1 << 9;

// Interrupts.
pub const EICR: u32 = 0x00800;
pub const EICS: u32 = 0x00808;
pub const EIAC: u32 = 0x00810;
pub const EIMS: u32 = 0x00880;
pub const EIMC: u32 = 0x00888;
pub const EIAM: u32 = 0x00890;
pub const GPIE: u32 = 0x00898;
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
pub const GPIE_OCD: u32 = 1 << 5;
pub const GPIE_EIAME: u32 = 1 << 30;
pub const GPIE_PBA_SUPPORT: u32 = 1 << 31;
pub const EICR_LSC: u32 = 1 << 20;
pub const EICR_OTHER: u32 = 1 << 31;
pub const fn eims_ex(i: u32) -> u32 {
    0x00AA0 + 4 * i
}
pub const fn eimc_ex(i: u32) -> u32 {
    0x00AB0 + 4 * i
}
pub const fn eiam_ex(i: u32) -> u32 {
    0x00AD0 + 4 * i
}
pub const fn eitr(v: u32) -> u32 {
    if v <= 23 {
        0x00820 + 4 * v
    } else {
        0x12300 + 4 * (v - 24)
    }
}
/// EITR interval field: bits 11:3, in 2.048 us units.
pub const EITR_INTERVAL_SHIFT: u32 = 3;
pub const EITR_INTERVAL_MAX: u32 = 0x1FF;
pub const EITR_CNT_WDIS: u32 = 1 << 31;
pub const fn ivar(n: u32) -> u32 {
    0x00900 + 4 * n
}
pub const IVAR_MISC: u32 = 0x00A00;
pub const IVAR_ALLOC_VAL: u32 = 0x80;

// Receive.
pub const RDRXCTL: u32 = 0x02F00;
pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
pub const RDRXCTL_RSCFRSTSIZE: u32 = 0x1F << 17;
pub const RDRXCTL_RSCACKC: u32 = 1 << 25;
pub const RDRXCTL_FCOE_WRFIX: u32 = 1 << 26;
pub const PFQDE: u32 = 0x02F04;
pub const PFQDE_WE: u32 = 1 << 16;
pub const PFQDE_IDX_SHIFT: u32 = 8;
pub const RXCTRL: u32 = 0x03000;
pub const RXCTRL_RXEN: u32 = 1 << 0;
pub const fn rxpbsize(i: u32) -> u32 {
    0x03C00 + 4 * i
}
pub const HLREG0: u32 = 0x04240;
pub const HLREG0_TXCRCEN: u32 = 1 << 0;
pub const HLREG0_RXCRCSTRP: u32 = 1 << 1;
pub const HLREG0_TXPADEN: u32 = 1 << 10;
pub const FCTRL: u32 = 0x05080;
pub const FCTRL_BAM: u32 = 1 << 10;
pub const VLNCTRL: u32 = 0x05088;
pub const VLNCTRL_VFE: u32 = 1 << 30;

/// Per-RX-queue register block: 0x01000 + 0x40n (n < 64), 0x0D000 + 0x40(n - 64) above.
pub const fn rxq(n: u32, reg: u32) -> u32 {
    if n < 64 {
        0x01000 + 0x40 * n + reg
    } else {
        0x0D000 + 0x40 * (n - 64) + reg
    }
}
pub const RDBAL: u32 = 0x00;
pub const RDBAH: u32 = 0x04;
pub const RDLEN: u32 = 0x08;
pub const DCA_RXCTRL: u32 = 0x0C;
pub const RDH: u32 = 0x10;
pub const SRRCTL: u32 = 0x14;
pub const RDT: u32 = 0x18;
pub const RXDCTL: u32 = 0x28;
pub const DCA_RXCTRL_DESC_DCA_EN_BIT12: u32 = 1 << 12;
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x1F;
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
pub const SRRCTL_DROP_EN: u32 = 1 << 28;
pub const RXDCTL_ENABLE: u32 = 1 << 25;

// Transmit.
pub const fn txq(n: u32, reg: u32) -> u32 {
    0x06000 + 0x40 * n + reg
}
pub const TDBAL: u32 = 0x00;
pub const TDBAH: u32 = 0x04;
pub const TDLEN: u32 = 0x08;
pub const DCA_TXCTRL: u32 = 0x0C;
/// TX descriptor write-back relaxed ordering: Linux, DPDK and FreeBSD clear it.
pub const DCA_TXCTRL_DESC_WRO_EN: u32 = 1 << 11;
pub const TDH: u32 = 0x10;
pub const TDT: u32 = 0x18;
pub const TXDCTL: u32 = 0x28;
pub const TXDCTL_ENABLE: u32 = 1 << 25;
pub const TXDCTL_PTHRESH_SHIFT: u32 = 0;
pub const TXDCTL_HTHRESH_SHIFT: u32 = 8;
pub const TXDCTL_WTHRESH_SHIFT: u32 = 16;
pub const fn txpbsize(i: u32) -> u32 {
    0x0CC00 + 4 * i
}
pub const DTXMXSZRQ: u32 = 0x08100;
pub const DMATXCTL: u32 = 0x04A80;
pub const DMATXCTL_TE: u32 = 1 << 0;
pub const RTTDCS: u32 = 0x04900;
pub const RTTDCS_ARBDIS: u32 = 1 << 6;
pub const MTQC: u32 = 0x08120;
pub const MTQC_VT_ENA: u32 = 1 << 1;
/// MTQC with VT: NUM_TC_OR_Q = 01, 64 pools x 2 TX queues.
pub const MTQC_64VF: u32 = 1 << 2;

// Link.
pub const AUTOC: u32 = 0x042A0;
pub const AUTOC_AN_RESTART: u32 = 1 << 12;
pub const AUTOC_LMS_SHIFT: u32 = 13;
pub const AUTOC_LMS_MASK: u32 = 0x7 << AUTOC_LMS_SHIFT;
pub const AUTOC_LMS_10G_SERIAL: u32 = 0x3 << AUTOC_LMS_SHIFT;
pub const AUTOC_10G_PMA_PMD_MASK: u32 = 0x3 << 7;
pub const LINKS: u32 = 0x042A4;
pub const LINKS_UP: u32 = 1 << 30;
pub const LINKS_SPEED_SHIFT: u32 = 28;

// VMDq.
pub const MRQC: u32 = 0x0EC80;
pub const MRQC_VMDQ_64: u32 = 0x8;
pub const PFVTCTL: u32 = 0x051B0;
pub const PFVTCTL_VT_ENA: u32 = 1 << 0;
pub const PFVTCTL_DIS_DEFPL: u32 = 1 << 29;
pub const PFVTCTL_RPL_EN: u32 = 1 << 30;
pub const fn pfvfre(i: u32) -> u32 {
    0x051E0 + 4 * i
}
pub const fn pfvfte(i: u32) -> u32 {
    0x08110 + 4 * i
}
pub const fn pfvfspoof(i: u32) -> u32 {
    0x08200 + 4 * i
}
pub const PFDTXGSWC: u32 = 0x08220;
pub const fn psrtype(p: u32) -> u32 {
    0x0EA00 + 4 * p
}
pub const fn ral(n: u32) -> u32 {
    0x0A200 + 8 * n
}
pub const fn rah(n: u32) -> u32 {
    0x0A204 + 8 * n
}
pub const RAH_AV: u32 = 1 << 31;
pub const fn mpsar_lo(n: u32) -> u32 {
    0x0A600 + 8 * n
}
pub const fn mpsar_hi(n: u32) -> u32 {
    0x0A604 + 8 * n
}
pub const fn pfvml2flt(p: u32) -> u32 {
    0x0F000 + 4 * p
}
pub const PFVML2FLT_AUPE: u32 = 1 << 24;
pub const PFVML2FLT_BAM: u32 = 1 << 27;
pub const PFVML2FLT_MPE: u32 = 1 << 28;
pub const RTRUP2TC: u32 = 0x03020;
pub const RTTUP2TC: u32 = 0x0C800;

// Statistics (all clear-on-read).
pub const GPRC: u32 = 0x04074;
pub const GPTC: u32 = 0x04080;
pub const GORCL: u32 = 0x04088;
pub const GORCH: u32 = 0x0408C;
pub const GOTCL: u32 = 0x04090;
pub const GOTCH: u32 = 0x04094;
pub const fn mpc(i: u32) -> u32 {
    0x03FA0 + 4 * i
}
pub const fn qprc(i: u32) -> u32 {
    0x01030 + 0x40 * i
}
pub const fn qprdc(i: u32) -> u32 {
    0x01430 + 0x40 * i
}
pub const fn qptc(i: u32) -> u32 {
    0x08680 + 4 * i
}
/// RX queue -> statistics counter map, four queues per register, one byte each.
pub const fn rqsmr(i: u32) -> u32 {
    0x02300 + 4 * i
}
/// TX queue -> statistics counter map.
pub const fn tqsm(i: u32) -> u32 {
    0x08600 + 4 * i
}
/// Frames dropped by MAC anti-spoofing.
pub const SSVPC: u32 = 0x08780;
