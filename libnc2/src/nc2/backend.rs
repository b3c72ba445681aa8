//! The netchannel2 backend (the side that maps the channel memory,
//! normally the driver domain): sends packets of every kind including into
//! buffers the frontend posted, returns unused buffers, receives packets.

use super::endpoint::{Config, Core, Event, Role, Status};
use super::layout::ChannelMem;
use super::msg::{Fragment, Offload, PacketMeta};
use super::ring::Producer;
use crate::error::{PeerError, SendError, SetupError};

/// Backend end of a netchannel2 channel.
pub struct Backend<'a> {
    core: Core<'a>,
}

impl<'a> Backend<'a> {
    /// Attaches to a channel the frontend initialised (mapped memory),
    /// resets our own control block, and queues the opening messages
    /// (SET_MAX_PACKETS, SET_MAX_FRAGMENTS, SET_MAX_POSTED_BUFFERS); call
    /// [`flush`](Self::flush) to publish them.
    pub fn attach(mem: ChannelMem<'a>, cfg: Config) -> Result<Self, SetupError> {
        Ok(Backend {
            core: Core::new(Role::Backend, mem, cfg)?,
        })
    }

    /// Next validated event from the frontend, or `None` if nothing waits.
    pub fn poll(&mut self) -> Result<Option<Event<'_>>, PeerError> {
        self.core.poll()
    }

    /// Queues a packet of any kind; for PrePosted, each fragment's `gref` is
    /// a buffer id the frontend posted, which is used up.
    pub fn send_packet(
        &mut self,
        meta: &PacketMeta,
        frags: &[Fragment],
        prefix: &[u8],
    ) -> Result<(), SendError> {
        self.core.send_packet(meta, frags, prefix)
    }

    /// Tells the frontend we are done with one of its copy/map packets.
    pub fn finish_packet(&mut self, id: u32) -> Result<(), SendError> {
        self.core.finish_packet(id)
    }

    /// Gives posted buffers back unused (e.g. on detach).
    pub fn return_buffers(&mut self, ids: &[u32]) -> Result<(), SendError> {
        self.core.return_buffers(ids)
    }

    /// True if we hold posted buffer `id`.
    pub fn is_posted(&self, id: u32) -> bool {
        self.core.is_posted(id)
    }

    /// Announces the offloads we accept.
    pub fn set_offload(&mut self, o: Offload) -> Result<(), SendError> {
        self.core.set_offload(o)
    }

    /// Changes the packet credit we give the frontend.
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
