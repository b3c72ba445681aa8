//! Advanced RX and TX descriptors (16 bytes, identical layout on the 82599 and the 82576).
//!
//! The structs document the layouts and pin them with compile-time size/offset checks; the
//! queues access the fields through the `*_OFF` constants on device-shared memory.

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
/// RXE: any MAC-level receive error (the 82599 frame-error mask).
pub const RXD_ERR_RXE: u32 = 1 << 29;

pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
pub const TXD_DTYP_DATA: u32 = 0x0030_0000;
pub const TXD_CMD_EOP: u32 = 1 << 24;
pub const TXD_CMD_IFCS: u32 = 1 << 25;
pub const TXD_CMD_RS: u32 = 1 << 27;
pub const TXD_CMD_DEXT: u32 = 1 << 29;
pub const TXD_PAYLEN_SHIFT: u32 = 14;
pub const TXD_STAT_DD: u32 = 1 << 0;
