//! Guest receive (`netif_rx_*`): the frontend posts 8-byte requests naming
//! empty granted pages; the backend fills them and answers in the *same
//! slot* (netfront finds the buffer by slot, and extra-info responses carry
//! no id). A packet is a chain of responses linked by `more_data`, with
//! extras after the first.
//!
//! The frontend remembers what it posted in each slot, so every response is
//! checked against the request that slot held.

use alloc::vec;
use alloc::vec::Vec;

use super::extra::{EXTRA_SIZE, ExtraInfo, Extras};
use super::ring::{BackRing, FrontRing};
use super::sring;
use super::tx::{NETIF_RSP_DROPPED, NETIF_RSP_ERROR};
use crate::error::{PeerError, SendError, SetupError};
use crate::grant::{GrantBound, PAGE_SIZE};
use crate::shm::SharedMem;

/// Slot size of the rx ring.
pub const RX_SLOT: usize = 8;
/// `NETRXF_data_validated`.
pub const NETRXF_DATA_VALIDATED: u16 = 1;
/// `NETRXF_csum_blank`.
pub const NETRXF_CSUM_BLANK: u16 = 2;
/// `NETRXF_more_data`.
pub const NETRXF_MORE_DATA: u16 = 4;
/// `NETRXF_extra_info`.
pub const NETRXF_EXTRA_INFO: u16 = 8;
/// `NETRXF_gso_prefix` (deprecated; accepted, never produced).
pub const NETRXF_GSO_PREFIX: u16 = 16;
const RX_KNOWN: u16 = 31;
/// Hard cap on data slots per received packet.
pub const MAX_RX_SLOTS: usize = 32;
/// Longest packet a chain may add up to.
pub const MAX_RX_PACKET: u32 = 65536;

/// `struct netif_rx_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Grant of the empty page.
    pub gref: u32,
}

impl RxRequest {
    /// Wire form.
    pub fn encode(&self) -> [u8; RX_SLOT] {
        let mut b = [0; RX_SLOT];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[4..8].copy_from_slice(&self.gref.to_le_bytes());
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        RxRequest {
            id: u16::from_le_bytes([b[0], b[1]]),
            gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// `struct netif_rx_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxResponse {
    /// The request's id.
    pub id: u16,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes received, or a negative `NETIF_RSP_*`.
    pub status: i16,
}

impl RxResponse {
    /// Wire form.
    pub fn encode(&self) -> [u8; RX_SLOT] {
        let mut b = [0; RX_SLOT];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        RxResponse {
            id: u16::from_le_bytes([b[0], b[1]]),
            offset: u16::from_le_bytes([b[2], b[3]]),
            flags: u16::from_le_bytes([b[4], b[5]]),
            status: i16::from_le_bytes([b[6], b[7]]),
        }
    }
}

/// One filled buffer of a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxFrag {
    /// Buffer id (as posted).
    pub id: u16,
    /// Grant of the buffer (as posted).
    pub gref: u32,
    /// Data offset in the page.
    pub offset: u16,
    /// Data length (0 for an errored slot).
    pub len: u16,
}

/// A whole validated received packet.
#[derive(Clone, Copy, Debug)]
pub struct RxPacket {
    /// Flags of the first response (checksum bits).
    pub flags: u16,
    /// Sum of fragment lengths.
    pub total: u32,
    /// Set if any slot reported `NETIF_RSP_ERROR` or `NETIF_RSP_DROPPED`.
    pub error: Option<i16>,
    frags: [RxFrag; MAX_RX_SLOTS],
    nr_frags: u8,
    /// Extras that followed the first response.
    pub extras: Extras,
    spare: [(u16, u32); 4],
}

impl RxPacket {
    /// Filled buffers in order.
    pub fn frags(&self) -> &[RxFrag] {
        &self.frags[..usize::from(self.nr_frags)]
    }
    /// Buffers `(id, gref)` whose slots carried extras: unused, re-post them.
    pub fn spare_buffers(&self) -> &[(u16, u32)] {
        &self.spare[..self.extras.len()]
    }
}

/// Frontend end of an rx ring.
pub struct RxFrontend<'a> {
    ring: FrontRing<'a>,
    posted: Vec<(u16, u32)>,
    max_slots: u32,
    failed: Option<PeerError>,
}

impl<'a> RxFrontend<'a> {
    /// Initialises the shared ring and takes the front end; `max_slots`
    /// (1..=32) bounds data slots per packet.
    pub fn new(mem: SharedMem<'a>, max_slots: u32) -> Result<Self, SetupError> {
        if !(1..=MAX_RX_SLOTS as u32).contains(&max_slots) {
            return Err(SetupError("max_slots must be in 1..=32"));
        }
        sring::init(&mem)?;
        let ring = FrontRing::new(mem, RX_SLOT)?;
        let n = ring.size() as usize;
        Ok(RxFrontend {
            ring,
            posted: vec![(0, 0); n],
            max_slots,
            failed: None,
        })
    }

    /// The underlying ring.
    pub fn ring(&mut self) -> &mut FrontRing<'a> {
        &mut self.ring
    }

    /// Posts an empty page.
    pub fn post_buffer(&mut self, id: u16, gref: u32) -> Result<(), SendError> {
        let idx = self.ring.push_request(&RxRequest { id, gref }.encode())?;
        let mask = self.posted.len() as u32 - 1;
        self.posted[(idx & mask) as usize] = (id, gref);
        Ok(())
    }

    /// Publishes posted buffers; true means "send the event".
    pub fn flush(&mut self) -> bool {
        self.ring.flush()
    }

    /// The next complete packet, or `None`.
    pub fn poll_packet(&mut self) -> Result<Option<RxPacket>, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.assemble();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn assemble(&mut self) -> Result<Option<RxPacket>, PeerError> {
        let mut avail = self.ring.available_responses()?;
        if avail == 0 {
            return Ok(None);
        }
        let mask = self.posted.len() as u32 - 1;
        let mut pkt = RxPacket {
            flags: 0,
            total: 0,
            error: None,
            frags: [RxFrag::default(); MAX_RX_SLOTS],
            nr_frags: 0,
            extras: Extras::default(),
            spare: [(0, 0); 4],
        };
        let mut i = 0u32;
        let mut more = true;
        let mut first = true;
        while more {
            if pkt.nr_frags as u32 >= self.max_slots {
                return Err(PeerError::TooManySlots {
                    count: u32::from(pkt.nr_frags) + 1,
                    max: self.max_slots,
                });
            }
            if i >= avail {
                avail = self.ring.refresh_responses()?;
                if i >= avail {
                    return Ok(None);
                }
            }
            let (idx, s) = self.ring.read_response(i);
            let r = RxResponse::decode(&s);
            let (id, gref) = self.posted[(idx & mask) as usize];
            if r.id != id {
                return Err(PeerError::RxIdMismatch {
                    slot: idx,
                    expected: id,
                    got: r.id,
                });
            }
            if r.flags & !RX_KNOWN != 0 {
                return Err(PeerError::UnknownNetifFlags { flags: r.flags });
            }
            let len = if r.status < 0 {
                if r.status != NETIF_RSP_ERROR && r.status != NETIF_RSP_DROPPED {
                    return Err(PeerError::BadStatus { status: r.status });
                }
                pkt.error = Some(r.status);
                0
            } else {
                let (offset, size) = (u32::from(r.offset), r.status as u32);
                if offset + size > PAGE_SIZE {
                    return Err(PeerError::FragmentOutsidePage {
                        index: pkt.nr_frags.into(),
                        offset,
                        size,
                    });
                }
                size
            };
            pkt.total += len;
            if pkt.total > MAX_RX_PACKET {
                return Err(PeerError::PacketTooLong {
                    len: pkt.total,
                    max: MAX_RX_PACKET,
                });
            }
            pkt.frags[usize::from(pkt.nr_frags)] = RxFrag {
                id,
                gref,
                offset: r.offset,
                len: len as u16,
            };
            pkt.nr_frags += 1;
            more = r.flags & NETRXF_MORE_DATA != 0;
            if first {
                first = false;
                pkt.flags = r.flags & (NETRXF_DATA_VALIDATED | NETRXF_CSUM_BLANK);
                let mut more_extra = r.flags & NETRXF_EXTRA_INFO != 0;
                while more_extra {
                    i += 1;
                    if i >= avail {
                        avail = self.ring.refresh_responses()?;
                        if i >= avail {
                            return Ok(None);
                        }
                    }
                    let (eidx, es) = self.ring.read_response(i);
                    let (e, m) = ExtraInfo::decode(&es[..EXTRA_SIZE])?;
                    let n = pkt.extras.len();
                    pkt.extras.add(e)?;
                    pkt.spare[n] = self.posted[(eidx & mask) as usize];
                    more_extra = m;
                }
            }
            i += 1;
        }
        self.ring.consume_responses(i);
        Ok(Some(pkt))
    }

    /// Arms the response event and re-checks; true means do not sleep.
    pub fn final_check(&mut self) -> Result<bool, PeerError> {
        self.ring.final_check_for_responses()
    }
}

/// Backend end of an rx ring. Responses always go into the slot of the
/// oldest consumed, unanswered request, so the same-slot rule holds by
/// construction.
pub struct RxBackend<'a> {
    ring: BackRing<'a>,
    grants: GrantBound,
    ids: Vec<u16>,
    failed: Option<PeerError>,
}

/// A buffer the frontend posted, ready to fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxBuffer {
    /// Request id.
    pub id: u16,
    /// Grant of the page (validated).
    pub gref: u32,
}

impl<'a> RxBackend<'a> {
    /// Attaches to a mapped rx ring.
    pub fn attach(mem: SharedMem<'a>, grants: GrantBound) -> Result<Self, SetupError> {
        let ring = BackRing::new(mem, RX_SLOT)?;
        let n = ring.size() as usize;
        Ok(RxBackend {
            ring,
            grants,
            ids: vec![0; n],
            failed: None,
        })
    }

    /// The underlying ring.
    pub fn ring(&mut self) -> &mut BackRing<'a> {
        &mut self.ring
    }

    /// Buffers taken and not yet answered.
    pub fn taken(&self) -> u32 {
        self.ring.unanswered()
    }

    /// Takes the next posted buffer.
    pub fn take_buffer(&mut self) -> Result<Option<RxBuffer>, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let avail = match self.ring.available_requests() {
            Ok(n) => n,
            Err(e) => {
                self.failed = Some(e);
                return Err(e);
            }
        };
        if avail == 0 {
            return Ok(None);
        }
        let (idx, s) = self.ring.read_request(0);
        let r = RxRequest::decode(&s);
        let gref = match self.grants.check(r.gref) {
            Ok(g) => g,
            Err(e) => {
                self.failed = Some(e);
                return Err(e);
            }
        };
        let mask = self.ids.len() as u32 - 1;
        self.ids[(idx & mask) as usize] = r.id;
        self.ring.consume_requests(1);
        Ok(Some(RxBuffer { id: r.id, gref }))
    }

    fn push(&mut self, mut rsp: [u8; RX_SLOT], with_id: bool) -> Result<(), SendError> {
        if self.ring.unanswered() == 0 {
            return Err(SendError::NothingOutstanding);
        }
        if with_id {
            let mask = self.ids.len() as u32 - 1;
            let id = self.ids[(self.ring.rsp_prod_pvt() & mask) as usize];
            rsp[0..2].copy_from_slice(&id.to_le_bytes());
        }
        self.ring.push_response(&rsp).map(|_| ())
    }

    /// Answers the oldest taken buffer: `len` bytes at `offset`, `flags`
    /// `NETRXF_*` (`more_data`/`extra_info` as the chain needs).
    pub fn push_data(&mut self, offset: u16, len: u16, flags: u16) -> Result<(), SendError> {
        if u32::from(offset) + u32::from(len) > PAGE_SIZE || len > i16::MAX as u16 {
            return Err(SendError::Invalid("data outside the page"));
        }
        self.push(
            RxResponse {
                id: 0,
                offset,
                flags,
                status: len as i16,
            }
            .encode(),
            true,
        )
    }

    /// Answers the oldest taken buffer with an error status.
    pub fn push_error(&mut self, status: i16) -> Result<(), SendError> {
        if status != NETIF_RSP_ERROR && status != NETIF_RSP_DROPPED {
            return Err(SendError::Invalid(
                "rx error status must be ERROR or DROPPED",
            ));
        }
        self.push(
            RxResponse {
                id: 0,
                offset: 0,
                flags: 0,
                status,
            }
            .encode(),
            true,
        )
    }

    /// Fills the oldest taken buffer's slot with an extra-info.
    pub fn push_extra(&mut self, e: &ExtraInfo, more: bool) -> Result<(), SendError> {
        self.push(e.encode(more), false)
    }

    /// Answers a whole packet: `frags` are `(offset, len)` in the taken
    /// buffers, in order; extras go after the first. Needs
    /// `frags.len() + extras.len()` taken buffers.
    pub fn push_packet(
        &mut self,
        frags: &[(u16, u16)],
        flags: u16,
        extras: &[ExtraInfo],
    ) -> Result<(), SendError> {
        if frags.is_empty() || flags & !(NETRXF_DATA_VALIDATED | NETRXF_CSUM_BLANK) != 0 {
            return Err(SendError::Invalid(
                "need a fragment; only checksum flags may be passed",
            ));
        }
        if (self.ring.unanswered() as usize) < frags.len() + extras.len() {
            return Err(SendError::NothingOutstanding);
        }
        for (i, &(offset, len)) in frags.iter().enumerate() {
            let more = if i + 1 < frags.len() {
                NETRXF_MORE_DATA
            } else {
                0
            };
            let ex = if i == 0 && !extras.is_empty() {
                NETRXF_EXTRA_INFO
            } else {
                0
            };
            let f = if i == 0 { flags } else { 0 };
            self.push_data(offset, len, f | more | ex)?;
            if i == 0 {
                for (k, e) in extras.iter().enumerate() {
                    self.push_extra(e, k + 1 < extras.len())?;
                }
            }
        }
        Ok(())
    }

    /// Publishes responses; true means "send the event".
    pub fn flush(&mut self) -> bool {
        self.ring.flush()
    }

    /// Arms the request event and re-checks; true means do not sleep.
    pub fn final_check(&mut self) -> Result<bool, PeerError> {
        self.ring.final_check_for_requests()
    }
}
