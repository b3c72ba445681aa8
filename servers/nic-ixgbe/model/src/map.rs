//! Register offsets and bits the model decodes, written down independently of the driver's
//! tables (a model that shared the driver's constants could not catch a wrong one).

pub mod x {
    //! 82599.
    pub const CTRL_LNK_RST: u32 = 1 << 3;
    pub const CTRL_RST: u32 = 1 << 26;
    pub const EEC: u32 = 0x10010;
    pub const EEC_ARD: u32 = 1 << 9;
    pub const EICR: u32 = 0x800;
    pub const EICS: u32 = 0x808;
    pub const EIAC: u32 = 0x810;
    pub const EIMS: u32 = 0x880;
    pub const EIMC: u32 = 0x888;
    pub const EIAM: u32 = 0x890;
    pub const GPIE: u32 = 0x898;
    pub const EICS_EX: u32 = 0xA90;
    pub const EIMS_EX: u32 = 0xAA0;
    pub const EIMC_EX: u32 = 0xAB0;
    pub const EIAM_EX: u32 = 0xAD0;
    pub const IVAR: u32 = 0x900;
    pub const IVAR_MISC: u32 = 0xA00;
    pub const EICR_LSC: u32 = 1 << 20;
    pub const RDRXCTL: u32 = 0x2F00;
    pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
    pub const PFQDE: u32 = 0x2F04;
    pub const RXCTRL: u32 = 0x3000;
    pub const HLREG0: u32 = 0x4240;
    pub const HLREG0_TXPADEN: u32 = 1 << 10;
    pub const AUTOC: u32 = 0x42A0;
    pub const AUTOC_AN_RESTART: u32 = 1 << 12;
    pub const LINKS: u32 = 0x42A4;
    pub const RTTDCS: u32 = 0x4900;
    pub const RTTDCS_ARBDIS: u32 = 1 << 6;
    pub const DMATXCTL: u32 = 0x4A80;
    pub const FCTRL: u32 = 0x5080;
    pub const FCTRL_MPE: u32 = 1 << 8;
    pub const FCTRL_UPE: u32 = 1 << 9;
    pub const FCTRL_BAM: u32 = 1 << 10;
    pub const PFVTCTL: u32 = 0x51B0;
    pub const PFVFRE: u32 = 0x51E0;
    pub const PFVFTE: u32 = 0x8110;
    pub const MTQC: u32 = 0x8120;
    pub const PFVFSPOOF: u32 = 0x8200;
    pub const SSVPC: u32 = 0x8780;
    pub const RAL: u32 = 0xA200;
    pub const MPSAR: u32 = 0xA600;
    pub const MRQC: u32 = 0xEC80;
    pub const PFVML2FLT: u32 = 0xF000;
    pub const RQSMR: u32 = 0x2300;
    pub const QPRC: u32 = 0x1030;
    pub const QPRDC: u32 = 0x1430;
    pub const MPC: u32 = 0x3FA0;
    pub const SRRCTL_DROP_EN: u32 = 1 << 28;
    pub const SRRCTL_OFF: u32 = 0x14;
    pub const QUEUES: u32 = 128;
    pub const POOLS: u32 = 64;
    pub const RARS: u32 = 128;

    pub const fn rxq(q: u32) -> u32 {
        if q < 64 {
            0x1000 + 0x40 * q
        } else {
            0xD000 + 0x40 * (q - 64)
        }
    }
    pub const fn txq(q: u32) -> u32 {
        0x6000 + 0x40 * q
    }
    /// Maps the 82598-compatible aliases onto the canonical 82599 offsets.
    pub fn canon(off: u32) -> u32 {
        match off {
            0x5400..=0x547F => off - 0x5400 + RAL,
            0x5818 => MRQC,
            0x5480..=0x54BF => off - 0x5480 + 0xEA00,
            0x2100..=0x213F => rxq((off - 0x2100) / 4) + SRRCTL_OFF,
            0x2200..=0x223F => rxq((off - 0x2200) / 4) + 0x0C,
            _ => off,
        }
    }
}

pub mod i {
    //! 82576.
    pub const STATUS: u32 = 0x8;
    pub const STATUS_LU: u32 = 1 << 1;
    pub const MDIC: u32 = 0x20;
    pub const ICR: u32 = 0xC0;
    pub const ICR_LSC: u32 = 1 << 2;
    pub const IMS: u32 = 0xD0;
    pub const IMC: u32 = 0xD8;
    /// RX checksum offload control; QEMU resets it to IPOFLD | TUOFLD.
    pub const RXCSUM: u32 = 0x5000;
    pub const RXCSUM_TUOFLD: u32 = 1 << 9;
    pub const RXCSUM_RESET: u32 = (1 << 8) | RXCSUM_TUOFLD;
    /// Write-back status: UDP checksum checked (UDPCS), TCP/UDP checksum checked (L4CS).
    pub const RXD_UDPCS: u32 = 1 << 4;
    pub const RXD_L4CS: u32 = 1 << 5;
    /// Write-back errors: TCP/UDP checksum wrong (TCPE), MAC receive error (RXE).
    pub const RXD_TCPE: u32 = 1 << 29;
    pub const RXD_RXE: u32 = 1 << 31;
    pub const RCTL: u32 = 0x100;
    pub const RCTL_EN: u32 = 1 << 1;
    pub const TCTL: u32 = 0x400;
    pub const TCTL_EN: u32 = 1 << 1;
    pub const TCTL_PSP: u32 = 1 << 3;
    pub const GPIE: u32 = 0x1514;
    pub const EICS: u32 = 0x1520;
    pub const EIMS: u32 = 0x1524;
    pub const EIMC: u32 = 0x1528;
    pub const EIAC: u32 = 0x152C;
    pub const EIAM: u32 = 0x1530;
    pub const EICR: u32 = 0x1580;
    pub const IVAR0: u32 = 0x1700;
    pub const IVAR_MISC: u32 = 0x1740;
    pub const QDE: u32 = 0x2408;
    pub const DTXSWC: u32 = 0x3500;
    pub const MRQC: u32 = 0x5818;
    pub const VT_CTL: u32 = 0x581C;
    pub const VMOLR: u32 = 0x5AD0;
    pub const VFRE: u32 = 0xC8C;
    pub const VFTE: u32 = 0xC90;
    pub const MPC: u32 = 0x4010;
    pub const RQDPC_OFF: u32 = 0x30;
    pub const SRRCTL_DROP_EN: u32 = 1 << 31;
    pub const SRRCTL_OFF: u32 = 0x0C;
    pub const QUEUES: u32 = 16;
    pub const POOLS: u32 = 8;
    pub const RARS: u32 = 24;

    pub const fn rxq(q: u32) -> u32 {
        0xC000 + 0x40 * q
    }
    pub const fn txq(q: u32) -> u32 {
        0xE000 + 0x40 * q
    }
    pub const fn ral(n: u32) -> u32 {
        if n < 16 {
            0x5400 + 8 * n
        } else {
            0x54E0 + 8 * (n - 16)
        }
    }

    /// Maps the legacy per-queue aliases (queues 0..3 at 0x2800/0x3800 + 0x100n).
    pub fn canon(off: u32) -> u32 {
        match off {
            0x2800..=0x2BFF if (off & 0xFF) < 0x40 => rxq((off - 0x2800) / 0x100) + (off & 0x3F),
            0x3800..=0x3BFF if (off & 0xFF) < 0x40 => txq((off - 0x3800) / 0x100) + (off & 0x3F),
            _ => off,
        }
    }
}

// Shared by both chips.
pub const RDBAL: u32 = 0x00;
pub const RDBAH: u32 = 0x04;
pub const RDLEN: u32 = 0x08;
pub const RDH: u32 = 0x10;
pub const RDT: u32 = 0x18;
pub const RXDCTL: u32 = 0x28;
pub const TDBAL: u32 = 0x00;
pub const TDBAH: u32 = 0x04;
pub const TDLEN: u32 = 0x08;
pub const TDH: u32 = 0x10;
pub const TDT: u32 = 0x18;
pub const TXDCTL: u32 = 0x28;
pub const QUEUE_ENABLE: u32 = 1 << 25;
pub const RAH_AV: u32 = 1 << 31;
pub const GPIE_MSIX: u32 = 1 << 4;
pub const GPIE_EIAME: u32 = 1 << 30;
pub const IVAR_VALID: u32 = 0x80;
pub const GPRC: u32 = 0x4074;
pub const GPTC: u32 = 0x4080;
pub const GORCL: u32 = 0x4088;
pub const GORCH: u32 = 0x408C;
pub const GOTCL: u32 = 0x4090;
pub const GOTCH: u32 = 0x4094;

// Descriptor bits.
pub const RXD_DD: u32 = 1;
pub const RXD_EOP: u32 = 2;
pub const TXD_EOP: u32 = 1 << 24;
pub const TXD_RS: u32 = 1 << 27;
pub const TXD_DEXT: u32 = 1 << 29;
pub const TXD_DTYP_MASK: u32 = 0xF << 20;
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
