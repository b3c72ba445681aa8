//! State shared by both netchannel2 endpoints: the two rings plus flow
//! control (packet credit, fragment limit, offloads, posted buffers) and the
//! stateful checks on what the peer sends.
//!
//! Invariants: we never have more FINISH-needing packets outstanding than
//! the peer allowed; the peer is never allowed more than we advertised; a
//! buffer id is held by exactly one side. The first [`PeerError`] is sticky.

use super::layout::{BACKEND_BLOCK, BLOCK_SIZE, ChannelMem, FRONTEND_BLOCK, init_block};
use super::msg::{
    self, BufferIds, Fragment, Limits, MAX_FRAGMENTS, MAX_MESSAGE_SIZE, Message, Offload,
    OutMessage, PacketKind, PacketMeta, PacketView, PostedBuffers, Segmentation, TYPE_PACKET,
    TYPE_POST_BUFFERS, TYPE_RETURN_BUFFERS, TYPE_SET_MAX_POSTED_BUFFERS,
};
use super::ring::{Consumer, Producer};
use crate::error::{PeerError, SendError, SetupError};
use crate::grant::GrantBound;
use crate::idset::IdSet;

/// Which side of the channel an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Provides the memory (normally the guest).
    Frontend,
    /// Maps the memory (normally the driver domain).
    Backend,
}

/// Local limits of an endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// FINISH-needing packets the peer may have outstanding towards us.
    pub max_packets: u32,
    /// Fragments per packet we accept (at most [`MAX_FRAGMENTS`]).
    pub max_fragments: u32,
    /// Bound on grant references the peer may name (its grant table size).
    pub grants: GrantBound,
    /// Ids of packets we send that need FINISH are in `0..tx_ids`.
    pub tx_ids: u32,
    /// Posted receive buffers: ids are in `0..posted_buffers`. The backend
    /// advertises this as the most the frontend may post; the frontend uses
    /// it as its own id space.
    pub posted_buffers: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packets: 256,
            max_fragments: 18,
            grants: GrantBound(32768),
            tx_ids: 256,
            posted_buffers: 512,
        }
    }
}

/// Something the peer told us, after validation.
#[derive(Clone, Copy, Debug)]
pub enum Event<'b> {
    /// A packet. Copy/map packets must be answered with `finish_packet(id)`;
    /// pre-posted ones hand their buffers back to the frontend.
    Packet(PacketView<'b>),
    /// The peer finished our packet `id`; its grants may be reused.
    Finished {
        /// The id we sent.
        id: u32,
    },
    /// The peer changed its packet credit.
    PeerMaxPackets(u32),
    /// The peer changed how many fragments it accepts.
    PeerMaxFragments(u32),
    /// The peer changed the offloads it accepts.
    PeerOffload(Offload),
    /// Backend only: the frontend posted receive buffers (grants validated).
    BuffersPosted(PostedBuffers<'b>),
    /// Frontend only: the backend gave posted buffers back unused.
    BuffersReturned(BufferIds<'b>),
    /// Frontend only: how many buffers the backend lets us post.
    PeerMaxPostedBuffers(u32),
}

pub(crate) struct Core<'a> {
    role: Role,
    cfg: Config,
    tx: Producer<'a>,
    rx: Consumer<'a>,
    failed: Option<PeerError>,
    peer_max_packets: u32,
    peer_max_fragments: u32,
    peer_offload: Offload,
    peer_max_posted: u32,
    awaiting_finish: IdSet,
    peer_outstanding: u32,
    posted: IdSet,
    scratch: [u8; MAX_MESSAGE_SIZE],
}

impl<'a> Core<'a> {
    pub(crate) fn new(
        role: Role,
        mem: ChannelMem<'a>,
        mut cfg: Config,
    ) -> Result<Self, SetupError> {
        mem.validate()?;
        cfg.max_fragments = cfg.max_fragments.min(MAX_FRAGMENTS);
        let front = mem
            .control
            .sub(FRONTEND_BLOCK, BLOCK_SIZE)
            .ok_or(SetupError("control area"))?;
        let back = mem
            .control
            .sub(BACKEND_BLOCK, BLOCK_SIZE)
            .ok_or(SetupError("control area"))?;
        let (mine, peer, out_ring, in_ring) = match role {
            Role::Frontend => (front, back, mem.front_to_back, mem.back_to_front),
            Role::Backend => {
                // Our block is ours to (re)initialise; never trust what the
                // frontend left in it.
                init_block(&mem.control, BACKEND_BLOCK);
                (back, front, mem.back_to_front, mem.front_to_back)
            }
        };
        let mut core = Core {
            role,
            cfg,
            tx: Producer::new(out_ring, mine, peer),
            rx: Consumer::new(in_ring, mine, peer),
            failed: None,
            peer_max_packets: 0,
            peer_max_fragments: 1,
            peer_offload: Offload::default(),
            peer_max_posted: 0,
            awaiting_finish: IdSet::new(cfg.tx_ids),
            peer_outstanding: 0,
            posted: IdSet::new(cfg.posted_buffers),
            scratch: [0; MAX_MESSAGE_SIZE],
        };
        // Announce our limits first, as the protocol requires before packets.
        let mut hello = [
            OutMessage::SetMaxPackets(cfg.max_packets),
            OutMessage::SetMaxFragments(cfg.max_fragments),
            OutMessage::SetMaxPostedBuffers(cfg.posted_buffers),
        ]
        .into_iter()
        .take(if role == Role::Backend { 3 } else { 2 });
        hello
            .try_for_each(|m| core.send(&m))
            .map_err(|_| SetupError("ring too small for the opening messages"))?;
        Ok(core)
    }

    fn send(&mut self, m: &OutMessage<'_>) -> Result<(), SendError> {
        let n = msg::encode(m, &mut self.scratch)?;
        self.tx.send_raw(&self.scratch[..n])
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            grants: self.cfg.grants,
            max_fragments: self.cfg.max_fragments,
            buffer_ids: self.cfg.posted_buffers,
        }
    }

    pub(crate) fn poll(&mut self) -> Result<Option<Event<'_>>, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let limits = self.limits();
        let raw = match self.rx.poll_raw() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.failed = Some(e);
                return Err(e);
            }
        };
        let res = apply(
            self.role,
            &self.cfg,
            &mut State {
                peer_max_packets: &mut self.peer_max_packets,
                peer_max_fragments: &mut self.peer_max_fragments,
                peer_offload: &mut self.peer_offload,
                peer_max_posted: &mut self.peer_max_posted,
                awaiting_finish: &mut self.awaiting_finish,
                peer_outstanding: &mut self.peer_outstanding,
                posted: &mut self.posted,
            },
            msg::decode(raw.ty, raw.flags, raw.bytes, &limits),
        );
        match res {
            Ok(ev) => Ok(Some(ev)),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    pub(crate) fn send_packet(
        &mut self,
        meta: &PacketMeta,
        frags: &[Fragment],
        prefix: &[u8],
    ) -> Result<(), SendError> {
        let o = self.peer_offload;
        if meta.flags & msg::PKT_CSUM_BLANK != 0 && !o.csum {
            return Err(SendError::Invalid(
                "the peer has not enabled checksum offload",
            ));
        }
        match meta.seg {
            Segmentation::TcpV4 if !o.tso4 => {
                return Err(SendError::Invalid(
                    "the peer has not enabled TCPv4 segmentation",
                ));
            }
            Segmentation::TcpV6 if !o.tso6 => {
                return Err(SendError::Invalid(
                    "the peer has not enabled TCPv6 segmentation",
                ));
            }
            _ => {}
        }
        let n = frags.len() as u32;
        if n > self.peer_max_fragments {
            return Err(SendError::TooManyFragments {
                count: n,
                max: self.peer_max_fragments,
            });
        }
        match meta.kind {
            PacketKind::ReceiverCopy | PacketKind::ReceiverMap => {
                if meta.id >= self.cfg.tx_ids {
                    return Err(SendError::IdOutOfRange {
                        id: meta.id,
                        bound: self.cfg.tx_ids,
                    });
                }
                if self.awaiting_finish.contains(meta.id) {
                    return Err(SendError::IdInUse { id: meta.id });
                }
                if self.awaiting_finish.len() >= self.peer_max_packets {
                    return Err(SendError::NoPacketCredit);
                }
            }
            PacketKind::PrePosted => {
                if self.role != Role::Backend {
                    return Err(SendError::Invalid(
                        "only the backend sends pre-posted packets",
                    ));
                }
                for (i, f) in frags.iter().enumerate() {
                    if !self.posted.contains(f.gref) || frags[..i].iter().any(|g| g.gref == f.gref)
                    {
                        return Err(SendError::BufferUnavailable { id: f.gref });
                    }
                }
            }
            PacketKind::Small => {}
        }
        self.send(&OutMessage::Packet(meta, frags, prefix))?;
        match meta.kind {
            PacketKind::ReceiverCopy | PacketKind::ReceiverMap => {
                self.awaiting_finish.insert(meta.id);
            }
            PacketKind::PrePosted => {
                for f in frags {
                    self.posted.remove(f.gref);
                }
            }
            PacketKind::Small => {}
        }
        Ok(())
    }

    pub(crate) fn finish_packet(&mut self, id: u32) -> Result<(), SendError> {
        if self.peer_outstanding == 0 {
            return Err(SendError::NothingOutstanding);
        }
        self.send(&OutMessage::FinishPacket(id))?;
        self.peer_outstanding -= 1;
        Ok(())
    }

    pub(crate) fn set_offload(&mut self, o: Offload) -> Result<(), SendError> {
        self.send(&OutMessage::SetOffload(o))
    }

    /// Advertises a new credit. Enforcement never drops below the largest
    /// credit ever advertised: the peer may have sent packets under an older,
    /// larger credit before it saw this message.
    pub(crate) fn set_max_packets(&mut self, n: u32) -> Result<(), SendError> {
        self.send(&OutMessage::SetMaxPackets(n))?;
        self.cfg.max_packets = self.cfg.max_packets.max(n);
        Ok(())
    }

    pub(crate) fn post_buffers(&mut self, bufs: &[msg::PostedBuffer]) -> Result<(), SendError> {
        for (i, b) in bufs.iter().enumerate() {
            if b.id >= self.cfg.posted_buffers {
                return Err(SendError::IdOutOfRange {
                    id: b.id,
                    bound: self.cfg.posted_buffers,
                });
            }
            if self.posted.contains(b.id) || bufs[..i].iter().any(|c| c.id == b.id) {
                return Err(SendError::IdInUse { id: b.id });
            }
        }
        if self.posted.len() as usize + bufs.len() > self.peer_max_posted as usize {
            return Err(SendError::PostLimit {
                max: self.peer_max_posted,
            });
        }
        self.send(&OutMessage::PostBuffers(bufs))?;
        for b in bufs {
            self.posted.insert(b.id);
        }
        Ok(())
    }

    pub(crate) fn return_buffers(&mut self, ids: &[u32]) -> Result<(), SendError> {
        for (i, &id) in ids.iter().enumerate() {
            if !self.posted.contains(id) || ids[..i].contains(&id) {
                return Err(SendError::BufferUnavailable { id });
            }
        }
        self.send(&OutMessage::ReturnBuffers(ids))?;
        for &id in ids {
            self.posted.remove(id);
        }
        Ok(())
    }

    /// Publishes both indices; true if the peer wants an event.
    pub(crate) fn flush(&mut self) -> bool {
        let a = self.tx.flush();
        let b = self.rx.publish();
        a | b
    }

    pub(crate) fn prepare_to_sleep(&mut self) -> Result<bool, PeerError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.rx.prepare_to_sleep()
    }

    pub(crate) fn producer(&mut self) -> &mut Producer<'a> {
        &mut self.tx
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            peer_max_packets: self.peer_max_packets,
            peer_max_fragments: self.peer_max_fragments,
            peer_offload: self.peer_offload,
            peer_max_posted: self.peer_max_posted,
            awaiting_finish: self.awaiting_finish.len(),
            peer_outstanding: self.peer_outstanding,
            posted: self.posted.len(),
        }
    }

    pub(crate) fn is_posted(&self, id: u32) -> bool {
        self.posted.contains(id)
    }
}

/// A snapshot of an endpoint's flow-control state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Packet credit the peer gave us.
    pub peer_max_packets: u32,
    /// Fragments per packet the peer accepts.
    pub peer_max_fragments: u32,
    /// Offloads the peer accepts.
    pub peer_offload: Offload,
    /// Buffers the backend lets the frontend post (frontend side).
    pub peer_max_posted: u32,
    /// Our packets waiting for FINISH.
    pub awaiting_finish: u32,
    /// Peer packets we have not finished yet.
    pub peer_outstanding: u32,
    /// Posted buffers currently held by the backend.
    pub posted: u32,
}

struct State<'s> {
    peer_max_packets: &'s mut u32,
    peer_max_fragments: &'s mut u32,
    peer_offload: &'s mut Offload,
    peer_max_posted: &'s mut u32,
    awaiting_finish: &'s mut IdSet,
    peer_outstanding: &'s mut u32,
    posted: &'s mut IdSet,
}

fn apply<'b>(
    role: Role,
    cfg: &Config,
    st: &mut State<'_>,
    msg: Result<Message<'b>, PeerError>,
) -> Result<Event<'b>, PeerError> {
    let frontend = role == Role::Frontend;
    Ok(match msg? {
        Message::SetMaxPackets(n) => {
            *st.peer_max_packets = n;
            Event::PeerMaxPackets(n)
        }
        Message::SetMaxFragments(n) => {
            *st.peer_max_fragments = n;
            Event::PeerMaxFragments(n)
        }
        Message::SetOffload(o) => {
            *st.peer_offload = o;
            Event::PeerOffload(o)
        }
        Message::FinishPacket(id) => {
            if !st.awaiting_finish.remove(id) {
                return Err(PeerError::UnexpectedId { id });
            }
            Event::Finished { id }
        }
        Message::Packet(p) => {
            match p.meta.kind {
                PacketKind::ReceiverCopy | PacketKind::ReceiverMap => {
                    if *st.peer_outstanding >= cfg.max_packets {
                        return Err(PeerError::TooManyOutstandingPackets {
                            max: cfg.max_packets,
                        });
                    }
                    *st.peer_outstanding += 1;
                }
                PacketKind::PrePosted => {
                    if !frontend {
                        return Err(PeerError::WrongDirection { ty: TYPE_PACKET });
                    }
                    for f in p.frags() {
                        if !st.posted.remove(f.gref) {
                            return Err(PeerError::BufferNotPosted { id: f.gref });
                        }
                    }
                }
                PacketKind::Small => {}
            }
            Event::Packet(p)
        }
        Message::PostBuffers(bufs) => {
            if frontend {
                return Err(PeerError::WrongDirection {
                    ty: TYPE_POST_BUFFERS,
                });
            }
            for b in bufs.iter() {
                if !st.posted.insert(b.id) {
                    return Err(PeerError::BufferAlreadyPosted { id: b.id });
                }
            }
            Event::BuffersPosted(bufs)
        }
        Message::ReturnBuffers(ids) => {
            if !frontend {
                return Err(PeerError::WrongDirection {
                    ty: TYPE_RETURN_BUFFERS,
                });
            }
            for id in ids.iter() {
                if !st.posted.remove(id) {
                    return Err(PeerError::BufferNotPosted { id });
                }
            }
            Event::BuffersReturned(ids)
        }
        Message::SetMaxPostedBuffers(n) => {
            if !frontend {
                return Err(PeerError::WrongDirection {
                    ty: TYPE_SET_MAX_POSTED_BUFFERS,
                });
            }
            *st.peer_max_posted = n;
            Event::PeerMaxPostedBuffers(n)
        }
    })
}
