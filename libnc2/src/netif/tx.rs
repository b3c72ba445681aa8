//! Guest transmit (`netif_tx_*`): the frontend sends packets as chains of
//! 12-byte requests (first slot carries the total size, extras follow it,
//! `more_data` links fragments); the backend answers each slot.
//!
//! The backend assembles a whole chain before consuming any of it, reading
//! each slot once per attempt, and rejects chains that break the rules
//! (sizes, page bounds, grants, slot count, extras).

use super::extra::{EXTRA_SIZE, ExtraInfo, Extras};
use super::ring::{BackRing, FrontRing};
use super::sring;
use crate::error::{PeerError, SendError, SetupError};
use crate::grant::{GrantBound, PAGE_SIZE};
use crate::idset::IdSet;
use crate::shm::SharedMem;

/// Slot size of the tx ring (`sizeof(netif_tx_request)`).
pub const TX_SLOT: usize = 12;
/// `NETTXF_csum_blank`.
pub const NETTXF_CSUM_BLANK: u16 = 1;
/// `NETTXF_data_validated`.
pub const NETTXF_DATA_VALIDATED: u16 = 2;
/// `NETTXF_more_data`.
pub const NETTXF_MORE_DATA: u16 = 4;
/// `NETTXF_extra_info`.
pub const NETTXF_EXTRA_INFO: u16 = 8;
const TX_KNOWN: u16 =
    NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED | NETTXF_MORE_DATA | NETTXF_EXTRA_INFO;
/// `XEN_NETIF_MAX_TX_SIZE`.
pub const MAX_TX_SIZE: u32 = 0xFFFF;
/// `XEN_NETIF_NR_SLOTS_MIN`: slots per packet every backend accepts.
pub const NR_SLOTS_MIN: u32 = 18;
/// Hard cap on data slots per packet this crate handles.
pub const MAX_TX_SLOTS: usize = 32;

/// `NETIF_RSP_DROPPED`.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL` (answer to an extra-info slot).
pub const NETIF_RSP_NULL: i16 = 1;

/// `struct netif_tx_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxRequest {
    /// Grant of the page holding the data.
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Total packet size in the first slot, fragment size in later ones.
    pub size: u16,
}

impl TxRequest {
    /// Wire form.
    pub fn encode(&self) -> [u8; TX_SLOT] {
        let mut b = [0; TX_SLOT];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        TxRequest {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16::from_le_bytes([b[4], b[5]]),
            flags: u16::from_le_bytes([b[6], b[7]]),
            id: u16::from_le_bytes([b[8], b[9]]),
            size: u16::from_le_bytes([b[10], b[11]]),
        }
    }
}

/// `struct netif_tx_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

impl TxResponse {
    /// Wire form (4 bytes; the rest of the slot is unused).
    pub fn encode(&self) -> [u8; 4] {
        let mut b = [0; 4];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        TxResponse {
            id: u16::from_le_bytes([b[0], b[1]]),
            status: i16::from_le_bytes([b[2], b[3]]),
        }
    }
}

/// One data slot of a packet: `size` bytes at `offset` in grant `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxSlot {
    /// Request id.
    pub id: u16,
    /// Grant reference (validated against the bound).
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes in this slot (for the first slot: total minus the rest).
    pub size: u16,
}

/// A whole validated transmit packet.
#[derive(Clone, Copy, Debug)]
pub struct TxPacket {
    /// Flags of the first request (`NETTXF_csum_blank`, `data_validated`, ...).
    pub flags: u16,
    /// Total length.
    pub total: u32,
    slots: [TxSlot; MAX_TX_SLOTS],
    nr_slots: u8,
    /// Extra-info slots that followed the first request.
    pub extras: Extras,
}

impl TxPacket {
    /// The data slots in order.
    pub fn slots(&self) -> &[TxSlot] {
        &self.slots[..usize::from(self.nr_slots)]
    }
    /// Ring slots the packet used (data plus extras).
    pub fn ring_slots(&self) -> u32 {
        u32::from(self.nr_slots) + self.extras.len() as u32
    }
}

/// Backend end of a tx ring.
pub struct TxBackend<'a> {
    ring: BackRing<'a>,
    grants: GrantBound,
    max_slots: u32,
    failed: Option<PeerError>,
}

impl<'a> TxBackend<'a> {
    /// Attaches to a mapped tx ring; `max_slots` (at least
    /// [`NR_SLOTS_MIN`], at most [`MAX_TX_SLOTS`]) bounds data slots per packet.
    pub fn attach(
        mem: SharedMem<'a>,
        grants: GrantBound,
        max_slots: u32,
    ) -> Result<Self, SetupError> {
        if !(NR_SLOTS_MIN..=MAX_TX_SLOTS as u32).contains(&max_slots) {
            return Err(SetupError("max_slots must be in 18..=32"));
        }
        Ok(TxBackend {
            ring: BackRing::new(mem, TX_SLOT)?,
            grants,
            max_slots,
            failed: None,
        })
    }

    /// The underlying ring (indices, final check).
    pub fn ring(&mut self) -> &mut BackRing<'a> {
        &mut self.ring
    }

    /// The next complete packet, or `None` if none is complete yet.
    pub fn poll_packet(&mut self) -> Result<Option<TxPacket>, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.assemble() {
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
            ok => ok,
        }
    }

    fn assemble(&mut self) -> Result<Option<TxPacket>, PeerError> {
        let mut avail = self.ring.available_requests()?;
        if avail == 0 {
            return Ok(None);
        }
        let mut pkt = TxPacket {
            flags: 0,
            total: 0,
            slots: [TxSlot::default(); MAX_TX_SLOTS],
            nr_slots: 0,
            extras: Extras::default(),
        };
        let mut i = 0u32;
        // Returns the next slot, Ok(None) when the chain is not all there.
        let mut next = |ring: &mut BackRing<'_>, i: u32| -> Result<Option<[u8; 16]>, PeerError> {
            if i >= avail {
                avail = ring.refresh_requests()?;
                if i >= avail {
                    if ring.requests_fill_window() {
                        return Err(PeerError::TooManySlots {
                            count: i + 1,
                            max: avail,
                        });
                    }
                    return Ok(None);
                }
            }
            Ok(Some(ring.read_request(i).1))
        };
        let first = TxRequest::decode(&self.ring.read_request(0).1);
        if first.flags & !TX_KNOWN != 0 {
            return Err(PeerError::UnknownNetifFlags { flags: first.flags });
        }
        pkt.flags = first.flags & (NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
        pkt.total = u32::from(first.size);
        let mut more_extra = first.flags & NETTXF_EXTRA_INFO != 0;
        while more_extra {
            i += 1;
            let Some(s) = next(&mut self.ring, i)? else {
                return Ok(None);
            };
            let (e, more) = ExtraInfo::decode(&s[..EXTRA_SIZE])?;
            pkt.extras.add(e)?;
            more_extra = more;
        }
        let mut slots = 1usize;
        pkt.slots[0] = TxSlot {
            id: first.id,
            gref: self.grants.check(first.gref)?,
            offset: first.offset,
            size: 0,
        };
        let mut rest = 0u32;
        let mut more = first.flags & NETTXF_MORE_DATA != 0;
        while more {
            if slots as u32 >= self.max_slots {
                return Err(PeerError::TooManySlots {
                    count: slots as u32 + 1,
                    max: self.max_slots,
                });
            }
            i += 1;
            let Some(s) = next(&mut self.ring, i)? else {
                return Ok(None);
            };
            let r = TxRequest::decode(&s);
            if r.flags & !NETTXF_MORE_DATA != 0 {
                return Err(PeerError::UnknownNetifFlags { flags: r.flags });
            }
            let index = slots as u32;
            if r.size == 0 {
                return Err(PeerError::EmptyFragment { index });
            }
            let (offset, size) = (u32::from(r.offset), u32::from(r.size));
            if offset + size > PAGE_SIZE {
                return Err(PeerError::FragmentOutsidePage {
                    index,
                    offset,
                    size,
                });
            }
            pkt.slots[slots] = TxSlot {
                id: r.id,
                gref: self.grants.check(r.gref)?,
                offset: r.offset,
                size: r.size,
            };
            rest += size;
            slots += 1;
            more = r.flags & NETTXF_MORE_DATA != 0;
        }
        if rest > pkt.total {
            return Err(PeerError::TxSizeMismatch {
                total: pkt.total,
                rest,
            });
        }
        let first_size = pkt.total - rest;
        if u32::from(first.offset) + first_size > PAGE_SIZE {
            return Err(PeerError::FragmentOutsidePage {
                index: 0,
                offset: first.offset.into(),
                size: first_size,
            });
        }
        pkt.slots[0].size = first_size as u16;
        pkt.nr_slots = slots as u8;
        self.ring.consume_requests(i + 1);
        Ok(Some(pkt))
    }

    /// Answers every slot of `pkt` (data slots with `status`, extras with
    /// `NETIF_RSP_NULL`), in ring order.
    pub fn respond(&mut self, pkt: &TxPacket, status: i16) -> Result<(), SendError> {
        if self.ring.unanswered() < pkt.ring_slots() {
            return Err(SendError::NothingOutstanding);
        }
        let slots = pkt.slots();
        self.ring.push_response(
            &TxResponse {
                id: slots[0].id,
                status,
            }
            .encode(),
        )?;
        for _ in 0..pkt.extras.len() {
            self.ring.push_response(
                &TxResponse {
                    id: 0,
                    status: NETIF_RSP_NULL,
                }
                .encode(),
            )?;
        }
        for s in &slots[1..] {
            self.ring
                .push_response(&TxResponse { id: s.id, status }.encode())?;
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

/// A data slot to send: `size` bytes at `offset` in grant `gref`, tagged `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxFrag {
    /// Request id (unique among outstanding requests).
    pub id: u16,
    /// Grant reference.
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// Bytes.
    pub size: u16,
}

/// Frontend end of a tx ring.
pub struct TxFrontend<'a> {
    ring: FrontRing<'a>,
    outstanding: IdSet,
    failed: Option<PeerError>,
}

impl<'a> TxFrontend<'a> {
    /// Initialises the shared ring (`SHARED_RING_INIT`) and takes the front end.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, SetupError> {
        sring::init(&mem)?;
        Ok(TxFrontend {
            ring: FrontRing::new(mem, TX_SLOT)?,
            outstanding: IdSet::new(1 << 16),
            failed: None,
        })
    }

    /// The underlying ring.
    pub fn ring(&mut self) -> &mut FrontRing<'a> {
        &mut self.ring
    }

    /// Requests awaiting a response.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.len()
    }

    /// Queues one packet: `frags` in order (at least one), `flags` from
    /// `NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED`, and extras.
    pub fn send_packet(
        &mut self,
        frags: &[TxFrag],
        flags: u16,
        extras: &[ExtraInfo],
    ) -> Result<(), SendError> {
        let Some(first) = frags.first() else {
            return Err(SendError::Invalid("a packet needs a first slot"));
        };
        if flags & !(NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED) != 0 {
            return Err(SendError::Invalid(
                "only csum_blank and data_validated may be passed",
            ));
        }
        if frags.len() > MAX_TX_SLOTS || extras.len() > 4 {
            return Err(SendError::Invalid("too many slots"));
        }
        let mut total = 0u32;
        let mut seen = Extras::default();
        for e in extras {
            seen.add(*e).map_err(SendError::Malformed)?;
        }
        for (i, f) in frags.iter().enumerate() {
            if u32::from(f.offset) + u32::from(f.size) > PAGE_SIZE {
                return Err(SendError::Invalid("fragment crosses its page"));
            }
            if i > 0 && f.size == 0 {
                return Err(SendError::Invalid("only the first slot may be empty"));
            }
            if self.outstanding.contains(u32::from(f.id)) || frags[..i].iter().any(|g| g.id == f.id)
            {
                return Err(SendError::IdInUse { id: f.id.into() });
            }
            total += u32::from(f.size);
        }
        if total > MAX_TX_SIZE {
            return Err(SendError::Invalid("packet longer than 65535 bytes"));
        }
        if self.ring.free_requests() < (frags.len() + extras.len()) as u32 {
            return Err(SendError::RingFull);
        }
        let more = |i: usize| {
            if i + 1 < frags.len() {
                NETTXF_MORE_DATA
            } else {
                0
            }
        };
        let ex = if extras.is_empty() {
            0
        } else {
            NETTXF_EXTRA_INFO
        };
        let head = TxRequest {
            gref: first.gref,
            offset: first.offset,
            flags: flags | more(0) | ex,
            id: first.id,
            size: total as u16,
        };
        self.ring.push_request(&head.encode())?;
        for (k, e) in extras.iter().enumerate() {
            let mut slot = [0u8; TX_SLOT];
            slot[..EXTRA_SIZE].copy_from_slice(&e.encode(k + 1 < extras.len()));
            self.ring.push_request(&slot)?;
        }
        for (i, f) in frags.iter().enumerate().skip(1) {
            let r = TxRequest {
                gref: f.gref,
                offset: f.offset,
                flags: more(i),
                id: f.id,
                size: f.size,
            };
            self.ring.push_request(&r.encode())?;
        }
        for f in frags {
            self.outstanding.insert(u32::from(f.id));
        }
        Ok(())
    }

    /// Publishes requests; true means "send the event".
    pub fn flush(&mut self) -> bool {
        self.ring.flush()
    }

    /// The next response for a data slot (answers to extras are skipped).
    pub fn poll_response(&mut self) -> Result<Option<TxResponse>, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.next_response();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn next_response(&mut self) -> Result<Option<TxResponse>, PeerError> {
        loop {
            if self.ring.available_responses()? == 0 {
                return Ok(None);
            }
            let rsp = TxResponse::decode(&self.ring.read_response(0).1);
            match rsp.status {
                NETIF_RSP_NULL => {
                    self.ring.consume_responses(1);
                    continue;
                }
                NETIF_RSP_DROPPED | NETIF_RSP_ERROR | NETIF_RSP_OKAY => {}
                status => return Err(PeerError::BadStatus { status }),
            }
            if !self.outstanding.remove(u32::from(rsp.id)) {
                return Err(PeerError::UnexpectedId { id: rsp.id.into() });
            }
            self.ring.consume_responses(1);
            return Ok(Some(rsp));
        }
    }

    /// Arms the response event and re-checks; true means do not sleep.
    pub fn final_check(&mut self) -> Result<bool, PeerError> {
        self.ring.final_check_for_responses()
    }
}
