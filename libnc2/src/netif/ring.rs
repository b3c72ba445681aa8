//! The generic `io/ring.h` request/response ring, both ends, over raw
//! slots; typed layers (tx, rx, ctrl) encode and decode the slots.
//!
//! Invariants: the front end never has more than `nr` requests without a
//! response; the back end never consumes a request it has no response slot
//! for (`RING_REQUEST_CONS_OVERFLOW`). Each peer index is read once per
//! refresh and validated against these windows before use.

use core::sync::atomic::{Ordering, fence};

use super::sring::{REQ_EVENT, REQ_PROD, RING_OFFSET, RSP_EVENT, RSP_PROD, nr_entries};
use crate::error::{PeerError, SendError, SetupError};
use crate::notify::crossed;
use crate::shm::SharedMem;

/// Largest slot size any netif ring uses.
pub const MAX_SLOT: usize = 16;

/// One slot copied out of the ring.
pub type Slot = [u8; MAX_SLOT];

fn geometry(mem: &SharedMem<'_>, slot: usize) -> Result<u32, SetupError> {
    if slot == 0 || slot > MAX_SLOT || !slot.is_multiple_of(4) {
        return Err(SetupError("slot size must be 4, 8, 12 or 16"));
    }
    match nr_entries(mem.len(), slot) {
        0 => Err(SetupError("shared ring too small for one slot")),
        n => Ok(n),
    }
}

fn slot_off(idx: u32, nr: u32, slot: usize) -> usize {
    RING_OFFSET + (idx & (nr - 1)) as usize * slot
}

/// The front (request-producing) end.
pub struct FrontRing<'a> {
    mem: SharedMem<'a>,
    slot: usize,
    nr: u32,
    req_prod_pvt: u32,
    req_published: u32,
    rsp_cons: u32,
    rsp_prod_cache: u32,
}

impl<'a> FrontRing<'a> {
    /// Front end over an initialised shared ring (see [`super::sring::init`]).
    pub fn new(mem: SharedMem<'a>, slot: usize) -> Result<Self, SetupError> {
        let nr = geometry(&mem, slot)?;
        Ok(FrontRing {
            mem,
            slot,
            nr,
            req_prod_pvt: 0,
            req_published: 0,
            rsp_cons: 0,
            rsp_prod_cache: 0,
        })
    }

    /// Number of slots.
    pub fn size(&self) -> u32 {
        self.nr
    }

    /// Slots free for new requests.
    pub fn free_requests(&self) -> u32 {
        self.nr - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Private producer index (the next request's ring index).
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Writes a request into the next slot (not yet visible to the peer).
    pub fn push_request(&mut self, bytes: &[u8]) -> Result<u32, SendError> {
        if self.free_requests() == 0 {
            return Err(SendError::RingFull);
        }
        if bytes.len() > self.slot || !bytes.len().is_multiple_of(4) {
            return Err(SendError::Invalid("request larger than the slot"));
        }
        let idx = self.req_prod_pvt;
        self.mem
            .write_from(slot_off(idx, self.nr, self.slot), bytes);
        self.req_prod_pvt = idx.wrapping_add(1);
        Ok(idx)
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes and says whether the
    /// back end asked for an event.
    pub fn flush(&mut self) -> bool {
        if self.req_prod_pvt == self.req_published {
            return false;
        }
        let (old, new) = (self.req_published, self.req_prod_pvt);
        self.mem.store_u32(REQ_PROD, new, Ordering::Release);
        self.req_published = new;
        fence(Ordering::SeqCst);
        crossed(new, old, self.mem.load_u32(REQ_EVENT, Ordering::Relaxed))
    }

    fn refresh(&mut self) -> Result<(), PeerError> {
        let prod = self.mem.load_u32(RSP_PROD, Ordering::Acquire);
        let window = self.req_published.wrapping_sub(self.rsp_cons);
        if prod.wrapping_sub(self.rsp_cons) > window {
            return Err(PeerError::ProducerIndexJump {
                prod,
                cons: self.rsp_cons,
                capacity: window,
            });
        }
        self.rsp_prod_cache = prod;
        Ok(())
    }

    /// Responses published and not yet consumed (re-reading `rsp_prod` if
    /// the cache says none).
    pub fn available_responses(&mut self) -> Result<u32, PeerError> {
        if self.rsp_cons == self.rsp_prod_cache {
            self.refresh()?;
        }
        Ok(self.rsp_prod_cache.wrapping_sub(self.rsp_cons))
    }

    /// Re-reads `rsp_prod` even if responses are cached.
    pub fn refresh_responses(&mut self) -> Result<u32, PeerError> {
        self.refresh()?;
        Ok(self.rsp_prod_cache.wrapping_sub(self.rsp_cons))
    }

    /// Copies response `i` (counting from the next unconsumed one; `i` must
    /// be below [`available_responses`](Self::available_responses)).
    pub fn read_response(&self, i: u32) -> (u32, Slot) {
        assert!(
            i < self.rsp_prod_cache.wrapping_sub(self.rsp_cons),
            "response not available"
        );
        let idx = self.rsp_cons.wrapping_add(i);
        let mut s = [0; MAX_SLOT];
        self.mem
            .read_into(slot_off(idx, self.nr, self.slot), &mut s[..self.slot]);
        (idx, s)
    }

    /// Marks `n` responses consumed.
    pub fn consume_responses(&mut self, n: u32) {
        assert!(
            n <= self.rsp_prod_cache.wrapping_sub(self.rsp_cons),
            "consuming unavailable responses"
        );
        self.rsp_cons = self.rsp_cons.wrapping_add(n);
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: arms `rsp_event` and re-checks;
    /// true means responses are waiting (do not sleep).
    pub fn final_check_for_responses(&mut self) -> Result<bool, PeerError> {
        self.mem
            .store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.refresh()?;
        Ok(self.rsp_prod_cache != self.rsp_cons)
    }
}

/// The back (response-producing) end.
pub struct BackRing<'a> {
    mem: SharedMem<'a>,
    slot: usize,
    nr: u32,
    rsp_prod_pvt: u32,
    rsp_published: u32,
    req_cons: u32,
    req_prod_cache: u32,
}

impl<'a> BackRing<'a> {
    /// Back end over a mapped shared ring.
    pub fn new(mem: SharedMem<'a>, slot: usize) -> Result<Self, SetupError> {
        let nr = geometry(&mem, slot)?;
        Ok(BackRing {
            mem,
            slot,
            nr,
            rsp_prod_pvt: 0,
            rsp_published: 0,
            req_cons: 0,
            req_prod_cache: 0,
        })
    }

    /// Number of slots.
    pub fn size(&self) -> u32 {
        self.nr
    }

    /// Requests consumed but not yet answered.
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Ring index of the next response slot.
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    fn window(&self) -> u32 {
        self.nr - self.unanswered()
    }

    fn refresh(&mut self) -> Result<(), PeerError> {
        let prod = self.mem.load_u32(REQ_PROD, Ordering::Acquire);
        let window = self.window();
        if prod.wrapping_sub(self.req_cons) > window {
            return Err(PeerError::ProducerIndexJump {
                prod,
                cons: self.req_cons,
                capacity: window,
            });
        }
        self.req_prod_cache = prod;
        Ok(())
    }

    /// Requests published and not yet consumed (re-reading `req_prod` if the
    /// cache says none).
    pub fn available_requests(&mut self) -> Result<u32, PeerError> {
        if self.req_cons == self.req_prod_cache {
            self.refresh()?;
        }
        Ok(self.req_prod_cache.wrapping_sub(self.req_cons))
    }

    /// Re-reads `req_prod` even if requests are cached.
    pub fn refresh_requests(&mut self) -> Result<u32, PeerError> {
        self.refresh()?;
        Ok(self.req_prod_cache.wrapping_sub(self.req_cons))
    }

    /// True if every slot is either unconsumed or unanswered, so no more
    /// requests can ever arrive until we respond.
    pub fn requests_fill_window(&self) -> bool {
        self.req_prod_cache.wrapping_sub(self.req_cons) == self.window()
    }

    /// Copies request `i` counting from the next unconsumed one.
    pub fn read_request(&self, i: u32) -> (u32, Slot) {
        assert!(
            i < self.req_prod_cache.wrapping_sub(self.req_cons),
            "request not available"
        );
        let idx = self.req_cons.wrapping_add(i);
        let mut s = [0; MAX_SLOT];
        self.mem
            .read_into(slot_off(idx, self.nr, self.slot), &mut s[..self.slot]);
        (idx, s)
    }

    /// Marks `n` requests consumed.
    pub fn consume_requests(&mut self, n: u32) {
        assert!(
            n <= self.req_prod_cache.wrapping_sub(self.req_cons),
            "consuming unavailable requests"
        );
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Writes a response into the next slot (not yet visible).
    pub fn push_response(&mut self, bytes: &[u8]) -> Result<u32, SendError> {
        if self.unanswered() == 0 {
            return Err(SendError::NothingOutstanding);
        }
        if bytes.len() > self.slot || !bytes.len().is_multiple_of(4) {
            return Err(SendError::Invalid("response larger than the slot"));
        }
        let idx = self.rsp_prod_pvt;
        self.mem
            .write_from(slot_off(idx, self.nr, self.slot), bytes);
        self.rsp_prod_pvt = idx.wrapping_add(1);
        Ok(idx)
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn flush(&mut self) -> bool {
        if self.rsp_prod_pvt == self.rsp_published {
            return false;
        }
        let (old, new) = (self.rsp_published, self.rsp_prod_pvt);
        self.mem.store_u32(RSP_PROD, new, Ordering::Release);
        self.rsp_published = new;
        fence(Ordering::SeqCst);
        crossed(new, old, self.mem.load_u32(RSP_EVENT, Ordering::Relaxed))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: arms `req_event` and re-checks;
    /// true means requests are waiting (do not sleep).
    pub fn final_check_for_requests(&mut self) -> Result<bool, PeerError> {
        self.mem
            .store_u32(REQ_EVENT, self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.refresh()?;
        Ok(self.req_prod_cache != self.req_cons)
    }
}
