//! Advanced RX and TX descriptors (16 bytes, identical layout on the 82599 and the 82576).
//!
//! The structs document the layouts and pin them with compile-time size/offset checks; the
//! queues access the fields through the `*_OFF` constants on device-shared memory.
//!
//! The layout is shared, the meaning of the RX write-back's error bits (31:29) is not: the
//! 82599 puts the MAC receive error at bit 29 and the TCP/UDP checksum error at 30, the 82576
//! (and QEMU's igb) the TCP/UDP checksum error at 29 and the receive error at 31. [`RxErrorBits`]
//! holds one chip's assignment; only a receive error makes a frame unusable, a checksum error
//! is a flag on an intact frame (the NIC checked a checksum and found it wrong; the frame is
//! delivered as received and the consumer decides).

use core::mem::{offset_of, size_of};

/// RX descriptor as the driver writes it.
#[repr(C)]
pub struct AdvRxRead {
    pub pkt_addr: u64,
    /// Bit 0 overlaps the write-back DD bit: always written as 0 when a buffer is posted.
    pub hdr_addr: u64,
}

/// RX descriptor as the NIC writes it back.
#[repr(C)]
pub struct AdvRxWb {
    pub pkt_info: u16,
    pub hdr_info: u16,
    pub rss_or_csum: u32,
    pub status_error: u32,
    pub length: u16,
    pub vlan: u16,
}

/// TX data descriptor as the driver writes it.
#[repr(C)]
pub struct AdvTxRead {
    pub buffer_addr: u64,
    pub cmd_type_len: u32,
    pub olinfo_status: u32,
}

/// TX descriptor as the NIC writes it back.
#[repr(C)]
pub struct AdvTxWb {
    pub rsvd: u64,
    pub nxtseq_seed: u32,
    pub status: u32,
}

const _: () = assert!(size_of::<AdvRxRead>() == 16);
const _: () = assert!(size_of::<AdvRxWb>() == 16);
const _: () = assert!(size_of::<AdvTxRead>() == 16);
const _: () = assert!(size_of::<AdvTxWb>() == 16);
const _: () = assert!(offset_of!(AdvRxWb, status_error) == 8);
const _: () = assert!(offset_of!(AdvRxWb, length) == 12);
const _: () = assert!(offset_of!(AdvTxRead, cmd_type_len) == 8);
const _: () = assert!(offset_of!(AdvTxWb, status) == 12);

pub const DESC_SIZE: usize = 16;
pub const RX_PKT_ADDR_OFF: usize = offset_of!(AdvRxRead, pkt_addr);
pub const RX_HDR_ADDR_OFF: usize = offset_of!(AdvRxRead, hdr_addr);
pub const RX_STATUS_OFF: usize = offset_of!(AdvRxWb, status_error);
pub const RX_LENGTH_OFF: usize = offset_of!(AdvRxWb, length);
pub const TX_ADDR_OFF: usize = offset_of!(AdvTxRead, buffer_addr);
pub const TX_CMD_OFF: usize = offset_of!(AdvTxRead, cmd_type_len);
pub const TX_STATUS_OFF: usize = offset_of!(AdvTxWb, status);

pub const RXD_STAT_DD: u32 = 1 << 0;
pub const RXD_STAT_EOP: u32 = 1 << 1;

/// One chip's error bits in the RX write-back status/error word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxErrorBits {
    /// RXE: a MAC-level receive error (CRC, symbol, length): the frame must not be used.
    pub receive: u32,
    /// TCPE / L4E: the TCP or UDP checksum the NIC verified is wrong.
    pub l4_checksum: u32,
    /// IPE: the IPv4 header checksum the NIC verified is wrong.
    pub ip_checksum: u32,
}

/// 82599: RXE bit 29, L4E bit 30, IPE bit 31.
pub const RX_ERRORS_82599: RxErrorBits = RxErrorBits {
    receive: 1 << 29,
    l4_checksum: 1 << 30,
    ip_checksum: 1 << 31,
};

/// 82576 (QEMU's igb): TCPE bit 29, IPE bit 30, RXE bit 31.
pub const RX_ERRORS_82576: RxErrorBits = RxErrorBits {
    receive: 1 << 31,
    l4_checksum: 1 << 29,
    ip_checksum: 1 << 30,
};

/// What a completed RX descriptor's status/error word says about its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxStatus {
    /// The frame is whole in this buffer (EOP) and the NIC reported no receive error.
    pub usable: bool,
    /// The NIC found a wrong IPv4, TCP or UDP checksum (meaningful only when `usable`).
    pub checksum_error: bool,
}

impl RxErrorBits {
    /// Decodes a write-back status/error word whose DD bit is set.
    ///
    /// Written without short-circuit operators on purpose: the `&&` form of this function
    /// (`usable = eop && !rxe; checksum_error = usable && csum`) is miscompiled by rustc 1.95.0
    /// in release builds when the bits are opaque and the status is a constant (`usable` comes
    /// out false for a good frame); the unit tests below catch it in `--release`.
    pub const fn decode(&self, status: u32) -> RxStatus {
        let whole = status & RXD_STAT_EOP != 0;
        let receive_error = status & self.receive != 0;
        let checksum = status & (self.l4_checksum | self.ip_checksum) != 0;
        let usable = whole & !receive_error;
        RxStatus {
            usable,
            checksum_error: usable & checksum,
        }
    }
}

pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
pub const TXD_DTYP_DATA: u32 = 0x0030_0000;
pub const TXD_CMD_EOP: u32 = 1 << 24;
pub const TXD_CMD_IFCS: u32 = 1 << 25;
pub const TXD_CMD_RS: u32 = 1 << 27;
pub const TXD_CMD_DEXT: u32 = 1 << 29;
pub const TXD_PAYLEN_SHIFT: u32 = 14;
pub const TXD_STAT_DD: u32 = 1 << 0;

#[cfg(test)]
mod tests {
    use super::*;

    const DONE: u32 = RXD_STAT_DD | RXD_STAT_EOP;

    /// The chips' bits as the optimiser cannot see them, as in the driver (where they sit in
    /// the ring); constant-folded bits would hide a miscompile of `decode`.
    fn opaque(bits: RxErrorBits) -> RxErrorBits {
        core::hint::black_box(bits)
    }

    #[test]
    fn bit_29_is_a_receive_error_on_the_82599_and_a_checksum_flag_on_the_82576() {
        let bit29 = DONE | (1 << 29);
        assert_eq!(
            opaque(RX_ERRORS_82599).decode(bit29),
            RxStatus {
                usable: false,
                checksum_error: false
            }
        );
        assert_eq!(
            opaque(RX_ERRORS_82576).decode(bit29),
            RxStatus {
                usable: true,
                checksum_error: true
            }
        );
    }

    #[test]
    fn each_chip_drops_only_its_own_receive_error_and_flags_its_checksum_errors() {
        for (bits, other) in [
            (opaque(RX_ERRORS_82599), RX_ERRORS_82576),
            (opaque(RX_ERRORS_82576), RX_ERRORS_82599),
        ] {
            assert_eq!(
                bits.decode(DONE),
                RxStatus {
                    usable: true,
                    checksum_error: false
                }
            );
            assert!(!bits.decode(DONE | bits.receive).usable);
            // A receive error wins over any checksum flag: the frame is not used at all.
            let broken = bits.decode(DONE | bits.receive | bits.l4_checksum);
            assert!(!broken.usable && !broken.checksum_error);
            for flag in [bits.l4_checksum, bits.ip_checksum] {
                assert_eq!(
                    bits.decode(DONE | flag),
                    RxStatus {
                        usable: true,
                        checksum_error: true
                    }
                );
            }
            // The three bits are distinct and the chips disagree on the receive error.
            assert_eq!(
                (bits.receive | bits.l4_checksum | bits.ip_checksum).count_ones(),
                3
            );
            assert_ne!(bits.receive, other.receive);
        }
        // A frame spread over several buffers (no EOP) is never usable.
        assert!(!RX_ERRORS_82576.decode(RXD_STAT_DD).usable);
    }
}
