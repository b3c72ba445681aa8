//! The netchannel2 frontend (the side that provides the channel memory,
//! normally the guest): sends copy/map/small packets, posts receive buffers,
//! and receives packets including ones placed in its posted buffers.

use super::endpoint::{Config, Core, Event, Role, Status};
use super::layout::ChannelMem;
use super::msg::{Fragment, Offload, PacketMeta, PostedBuffer};
use super::ring::Producer;
use crate::error::{PeerError, SendError, SetupError};

/// Frontend end of a netchannel2 channel.
pub struct Frontend<'a> {
    core: Core<'a>,
}

impl<'a> Frontend<'a> {
    /// Initialises the control area and queues the opening messages
    /// (SET_MAX_PACKETS, SET_MAX_FRAGMENTS); call [`flush`](Self::flush) to
    /// publish them once the backend is connected.
    pub fn new(mem: ChannelMem<'a>, cfg: Config) -> Result<Self, SetupError> {
        mem.init()?;
        Ok(Frontend {
            core: Core::new(Role::Frontend, mem, cfg)?,
        })
    }

    /// Next validated event from the backend, or `None` if nothing waits.
    pub fn poll(&mut self) -> Result<Option<Event<'_>>, PeerError> {
        self.core.poll()
    }

    /// Queues a packet (ReceiverCopy, ReceiverMap or Small).
    pub fn send_packet(
        &mut self,
        meta: &PacketMeta,
        frags: &[Fragment],
        prefix: &[u8],
    ) -> Result<(), SendError> {
        self.core.send_packet(meta, frags, prefix)
    }

    /// Tells the backend we are done with one of its copy/map packets.
    pub fn finish_packet(&mut self, id: u32) -> Result<(), SendError> {
        self.core.finish_packet(id)
    }

    /// Posts receive buffers (at most [`super::msg::MAX_POST_BATCH`] at once).
    pub fn post_buffers(&mut self, bufs: &[PostedBuffer]) -> Result<(), SendError> {
        self.core.post_buffers(bufs)
    }

    /// True if buffer `id` is posted and not yet used or returned.
    pub fn is_posted(&self, id: u32) -> bool {
        self.core.is_posted(id)
    }

    /// Announces the offloads we accept.
    pub fn set_offload(&mut self, o: Offload) -> Result<(), SendError> {
        self.core.set_offload(o)
    }

    /// Changes the packet credit we give the backend.
    pub fn set_max_packets(&mut self, n: u32) -> Result<(), SendError> {
        self.core.set_max_packets(n)
    }

    /// Publishes what we produced and consumed; true means "send the event".
    pub fn flush(&mut self) -> bool {
        self.core.flush()
    }

    /// Arms the event for the next message and re-checks; true means
    /// messages are already waiting (do not sleep). Call after
    /// [`flush`](Self::flush), so the peer sees everything we consumed.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, PeerError> {
        self.core.prepare_to_sleep()
    }

    /// The outgoing ring (space checks, waiting for space).
    pub fn producer(&mut self) -> &mut Producer<'a> {
        self.core.producer()
    }

    /// Flow-control state.
    pub fn status(&self) -> Status {
        self.core.status()
    }
}
