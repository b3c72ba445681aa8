//! The netchannel2 byte ring: one producer, one consumer, free-running u32
//! byte counters, variable-size messages that never wrap (a PAD message
//! fills to the end of the ring instead).
//!
//! Invariants kept by [`Producer`]: `prod_pvt - cons <= size`, every message
//! starts on an 8-byte boundary and lies wholly inside the ring. [`Consumer`]
//! re-checks all of this on what the peer publishes, copying each message
//! out of the ring exactly once before anything parses it.

use core::sync::atomic::{Ordering, fence};

use super::layout::{IN_CONS, IN_PROD_EVENT, OUT_CONS_EVENT, OUT_PROD};
use super::msg::{MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE, TYPE_PAD};
use crate::error::{PeerError, SendError};
use crate::notify::crossed;
use crate::shm::SharedMem;

/// Writing end of one byte ring.
pub struct Producer<'a> {
    ring: SharedMem<'a>,
    size: u32,
    mine: SharedMem<'a>,
    peer: SharedMem<'a>,
    prod_pvt: u32,
    published: u32,
    cons_cache: u32,
}

impl<'a> Producer<'a> {
    /// `ring` is the payload (size already validated), `mine`/`peer` the
    /// control blocks of this endpoint and of the peer.
    pub(crate) fn new(ring: SharedMem<'a>, mine: SharedMem<'a>, peer: SharedMem<'a>) -> Self {
        let size = ring.len() as u32;
        Producer {
            ring,
            size,
            mine,
            peer,
            prod_pvt: 0,
            published: 0,
            cons_cache: 0,
        }
    }

    /// Ring payload size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Free bytes according to the last consumer index we read.
    fn cached_space(&self) -> u32 {
        self.size
            .saturating_sub(self.prod_pvt.wrapping_sub(self.cons_cache))
    }

    /// Re-reads the peer's consumer index (once) and validates it: it may not
    /// claim bytes we have not published.
    pub fn refresh(&mut self) -> Result<u32, PeerError> {
        let cons = self.peer.load_u32(IN_CONS, Ordering::Acquire);
        if self.published.wrapping_sub(cons) > self.size {
            return Err(PeerError::ConsumerIndexJump {
                cons,
                prod: self.published,
            });
        }
        self.cons_cache = cons;
        Ok(self.cached_space())
    }

    fn to_end(&self) -> u32 {
        self.size - (self.prod_pvt & (self.size - 1))
    }

    fn room(&mut self, n: u32) -> Result<bool, PeerError> {
        Ok(self.cached_space() >= n || self.refresh()? >= n)
    }

    /// Makes the next `len` bytes contiguous and free: if the message would
    /// cross the ring end, a PAD to the end is queued first, as soon as there
    /// is room for the PAD alone. (Waiting for room for PAD and message at
    /// once could wait forever when together they exceed the ring.)
    fn ensure(&mut self, len: u32) -> Result<bool, PeerError> {
        let to_end = self.to_end();
        if len > to_end {
            if !self.room(to_end)? {
                return Ok(false);
            }
            let off = self.prod_pvt & (self.size - 1);
            // to_end < size <= 65536, so it fits the u16 size field.
            let pad = [TYPE_PAD, 0, to_end as u8, (to_end >> 8) as u8];
            self.ring.write_from(off as usize, &pad);
            self.prod_pvt = self.prod_pvt.wrapping_add(to_end);
        }
        self.room(len)
    }

    /// Appends one encoded message (`bytes.len()` a multiple of 8, at least
    /// 8, at most the ring size). Not visible to the peer until [`flush`].
    /// On `RingFull` a PAD may have been queued; nothing else was.
    ///
    /// [`flush`]: Producer::flush
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let len = bytes.len() as u32;
        if !bytes.len().is_multiple_of(8) || len < MIN_MESSAGE_SIZE as u32 || len > self.size {
            return Err(SendError::Invalid(
                "message length must be 8..=ring size, multiple of 8",
            ));
        }
        if !self.ensure(len)? {
            return Err(SendError::RingFull);
        }
        let off = self.prod_pvt & (self.size - 1);
        self.ring.write_from(off as usize, bytes);
        self.prod_pvt = self.prod_pvt.wrapping_add(len);
        Ok(())
    }

    /// True if a message of `len` bytes can be sent now (may queue a PAD).
    pub fn has_space(&mut self, len: u32) -> Result<bool, PeerError> {
        self.ensure(len.min(self.size))
    }

    /// Publishes everything sent so far; returns true if the peer asked for
    /// an event (its `in_prod_event` was crossed).
    pub fn flush(&mut self) -> bool {
        if self.prod_pvt == self.published {
            return false;
        }
        let old = self.published;
        let new = self.prod_pvt;
        self.mine.store_u32(OUT_PROD, new, Ordering::Release);
        self.published = new;
        // The peer's event store and our index store must be ordered against
        // each other's loads, or both sides can miss the wake-up.
        fence(Ordering::SeqCst);
        let event = self.peer.load_u32(IN_PROD_EVENT, Ordering::Relaxed);
        crossed(new, old, event)
    }

    /// Before sleeping for space: asks the peer for an event once a message
    /// of `len` bytes can make progress, then re-checks. Returns true if it
    /// already can (do not sleep).
    pub fn prepare_wait_for_space(&mut self, len: u32) -> Result<bool, PeerError> {
        let len = len.min(self.size);
        if self.ensure(len)? {
            return Ok(true);
        }
        let to_end = self.to_end();
        let need = if len > to_end { to_end } else { len };
        let event = self.prod_pvt.wrapping_add(need).wrapping_sub(self.size);
        self.mine
            .store_u32(OUT_CONS_EVENT, event, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.ensure(len)
    }
}

/// One message as copied out of the ring: header fields plus the whole
/// message (header included) in the consumer's private buffer.
#[derive(Clone, Copy, Debug)]
pub struct RawMessage<'b> {
    /// Message type.
    pub ty: u8,
    /// Header flags.
    pub flags: u8,
    /// The whole message, header included; length is the header's size.
    pub bytes: &'b [u8],
}

/// Reading end of one byte ring.
pub struct Consumer<'a> {
    ring: SharedMem<'a>,
    size: u32,
    mine: SharedMem<'a>,
    peer: SharedMem<'a>,
    cons_pvt: u32,
    published: u32,
    prod_cache: u32,
    buf: [u8; MAX_MESSAGE_SIZE],
}

impl<'a> Consumer<'a> {
    pub(crate) fn new(ring: SharedMem<'a>, mine: SharedMem<'a>, peer: SharedMem<'a>) -> Self {
        let size = ring.len() as u32;
        Consumer {
            ring,
            size,
            mine,
            peer,
            cons_pvt: 0,
            published: 0,
            prod_cache: 0,
            buf: [0; MAX_MESSAGE_SIZE],
        }
    }

    /// Re-reads the peer's producer index once and validates it.
    fn refresh(&mut self) -> Result<(), PeerError> {
        let prod = self.peer.load_u32(OUT_PROD, Ordering::Acquire);
        if !prod.is_multiple_of(8) {
            return Err(PeerError::MisalignedIndex { index: prod });
        }
        if prod.wrapping_sub(self.cons_pvt) > self.size {
            return Err(PeerError::ProducerIndexJump {
                prod,
                cons: self.cons_pvt,
                capacity: self.size,
            });
        }
        self.prod_cache = prod;
        Ok(())
    }

    /// True if published bytes remain unconsumed (per the cached index).
    pub fn has_pending(&self) -> bool {
        self.cons_pvt != self.prod_cache
    }

    /// Takes the next message (PADs are skipped). On error nothing is
    /// consumed.
    pub fn poll_raw(&mut self) -> Result<Option<RawMessage<'_>>, PeerError> {
        loop {
            if self.cons_pvt == self.prod_cache {
                self.refresh()?;
                if self.cons_pvt == self.prod_cache {
                    return Ok(None);
                }
            }
            let avail = self.prod_cache.wrapping_sub(self.cons_pvt);
            let off = self.cons_pvt & (self.size - 1);
            let to_end = self.size - off;
            // The first 8 bytes (header + start of body) are read once;
            // everything after is parsed from the private copy.
            let first = self
                .ring
                .load_u64(off as usize, Ordering::Relaxed)
                .to_ne_bytes();
            let ty = first[0];
            let flags = first[1];
            let size = u16::from_le_bytes([first[2], first[3]]);
            let len = u32::from(size);
            if len < MIN_MESSAGE_SIZE as u32 {
                return Err(PeerError::MessageTooSmall { size });
            }
            if len % 8 != 0 {
                return Err(PeerError::MessageSizeUnaligned { size });
            }
            if len > avail {
                return Err(PeerError::MessageBeyondProducer {
                    size,
                    available: avail,
                });
            }
            if len > to_end {
                return Err(PeerError::MessageCrossesRingEnd { size, to_end });
            }
            if ty == TYPE_PAD {
                if flags != 0 {
                    return Err(PeerError::UnknownMessageFlags { ty, flags });
                }
                self.cons_pvt = self.cons_pvt.wrapping_add(len);
                continue;
            }
            if len as usize > MAX_MESSAGE_SIZE {
                return Err(PeerError::MessageTooLarge { size });
            }
            let n = len as usize;
            self.buf[..8].copy_from_slice(&first);
            self.ring.read_into(off as usize + 8, &mut self.buf[8..n]);
            self.cons_pvt = self.cons_pvt.wrapping_add(len);
            return Ok(Some(RawMessage {
                ty,
                flags,
                bytes: &self.buf[..n],
            }));
        }
    }

    /// Publishes the consumer index; true if the peer asked for an event
    /// (it was waiting for space).
    pub fn publish(&mut self) -> bool {
        if self.cons_pvt == self.published {
            return false;
        }
        let old = self.published;
        let new = self.cons_pvt;
        self.mine.store_u32(IN_CONS, new, Ordering::Release);
        self.published = new;
        fence(Ordering::SeqCst);
        let event = self.peer.load_u32(OUT_CONS_EVENT, Ordering::Relaxed);
        crossed(new, old, event)
    }

    /// Before sleeping: asks for an event on the next message and re-checks.
    /// Returns true if messages are already waiting (do not sleep).
    pub fn prepare_to_sleep(&mut self) -> Result<bool, PeerError> {
        self.mine.store_u32(
            IN_PROD_EVENT,
            self.cons_pvt.wrapping_add(1),
            Ordering::Relaxed,
        );
        fence(Ordering::SeqCst);
        self.refresh()?;
        Ok(self.cons_pvt != self.prod_cache)
    }
}
