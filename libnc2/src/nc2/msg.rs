//! netchannel2 messages, wire format v1: encoding, and decoding with
//! stateless validation (see `docs/nc2-wire.md`).
//!
//! Every message starts with a 4-byte header `{u8 type, u8 flags, u16 size}`
//! (little-endian); `size` counts the header and the padding, is a multiple
//! of 8 and at least 8. Decoding works on a private copy made by the ring
//! consumer, so each field is read exactly once; anything the rules below do
//! not allow is a [`PeerError`].

use crate::error::{PeerError, SendError};
use crate::grant::{GrantBound, PAGE_SIZE};

/// Wire format version described by this module.
pub const WIRE_VERSION: u32 = 1;
/// Header size.
pub const HEADER_SIZE: usize = 4;
/// Smallest message.
pub const MIN_MESSAGE_SIZE: usize = 8;
/// Largest message other than PAD.
pub const MAX_MESSAGE_SIZE: usize = 1024;
/// Most fragments in one packet.
pub const MAX_FRAGMENTS: u32 = 64;
/// Longest inline prefix (and so the largest SMALL packet).
pub const MAX_PREFIX: u16 = 256;
/// Longest packet.
pub const MAX_PACKET: u32 = 65536;
/// Most buffers in one POST_BUFFERS message.
pub const MAX_POST_BATCH: usize = (MAX_MESSAGE_SIZE - 8) / 8;
/// Most ids in one RETURN_BUFFERS message.
pub const MAX_RETURN_BATCH: usize = (MAX_MESSAGE_SIZE - 8) / 4;

/// Message type: SET_MAX_PACKETS.
pub const TYPE_SET_MAX_PACKETS: u8 = 1;
/// Message type: PACKET.
pub const TYPE_PACKET: u8 = 2;
/// Message type: FINISH_PACKET.
pub const TYPE_FINISH_PACKET: u8 = 3;
/// Message type: SET_OFFLOAD.
pub const TYPE_SET_OFFLOAD: u8 = 4;
/// Message type: SET_MAX_FRAGMENTS_PER_PACKET.
pub const TYPE_SET_MAX_FRAGMENTS: u8 = 5;
/// Message type: POST_BUFFERS (frontend to backend).
pub const TYPE_POST_BUFFERS: u8 = 6;
/// Message type: RETURN_BUFFERS (backend to frontend).
pub const TYPE_RETURN_BUFFERS: u8 = 7;
/// Message type: SET_MAX_POSTED_BUFFERS (backend to frontend).
pub const TYPE_SET_MAX_POSTED_BUFFERS: u8 = 8;
/// Message type: PAD (fills to the end of the ring; skipped by the ring).
pub const TYPE_PAD: u8 = 255;

/// Packet flag: the checksum field is blank (offloaded).
pub const PKT_CSUM_BLANK: u8 = 1;
/// Packet flag: the data was validated against its checksum.
pub const PKT_DATA_VALIDATED: u8 = 2;
/// Packet flag: send this packet's FINISH with an event right away.
pub const PKT_NEED_EVENT: u8 = 8;
const PKT_KNOWN_FLAGS: u8 = PKT_CSUM_BLANK | PKT_DATA_VALIDATED | PKT_NEED_EVENT;

/// Offset of the first fragment in a PACKET.
pub const PACKET_FIXED: usize = 20;
/// Size of one fragment descriptor.
pub const FRAGMENT_SIZE: usize = 8;

/// How the receiver gets at a packet's fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketKind {
    /// Copy-only grants: the receiver copies on its own CPU, then FINISHes.
    ReceiverCopy = 1,
    /// Fragments are in buffers the receiver pre-posted (`gref` is the
    /// buffer id); no FINISH, the receiver re-posts the buffer.
    PrePosted = 2,
    /// Mappable grants: the receiver may map, must unmap promptly, then
    /// FINISHes.
    ReceiverMap = 3,
    /// Everything is in the inline prefix; no grants, no FINISH.
    Small = 4,
}

impl PacketKind {
    fn from_u8(v: u8) -> Result<Self, PeerError> {
        Ok(match v {
            1 => PacketKind::ReceiverCopy,
            2 => PacketKind::PrePosted,
            3 => PacketKind::ReceiverMap,
            4 => PacketKind::Small,
            kind => return Err(PeerError::UnknownPacketKind { kind }),
        })
    }
    /// True if the receiver answers with FINISH_PACKET.
    pub fn needs_finish(self) -> bool {
        matches!(self, PacketKind::ReceiverCopy | PacketKind::ReceiverMap)
    }
}

/// Segmentation offload requested for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Segmentation {
    /// None.
    None = 0,
    /// TCP over IPv4.
    TcpV4 = 1,
    /// TCP over IPv6.
    TcpV6 = 2,
}

impl Segmentation {
    fn from_u8(v: u8) -> Result<Self, PeerError> {
        Ok(match v {
            0 => Segmentation::None,
            1 => Segmentation::TcpV4,
            2 => Segmentation::TcpV6,
            seg => return Err(PeerError::UnknownSegmentation { seg }),
        })
    }
}

/// The fixed part of a PACKET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Sender's id, echoed by FINISH_PACKET.
    pub id: u32,
    /// How fragments are reached.
    pub kind: PacketKind,
    /// `PKT_*` flags.
    pub flags: u8,
    /// Segmentation offload.
    pub seg: Segmentation,
    /// Segment size when `seg` is not `None`.
    pub mss: u16,
    /// Where checksumming starts (with `PKT_CSUM_BLANK`).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl PacketMeta {
    /// A plain packet of `kind` with no offloads.
    pub fn new(id: u32, kind: PacketKind) -> Self {
        PacketMeta {
            id,
            kind,
            flags: 0,
            seg: Segmentation::None,
            mss: 0,
            csum_start: 0,
            csum_offset: 0,
        }
    }
}

/// One fragment: `size` bytes at `offset` in the page named by `gref`
/// (for pre-posted packets `gref` is the posted buffer's id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Length in bytes (1..=4096).
    pub size: u16,
    /// Offset from the start of the page.
    pub offset: u16,
    /// Grant reference, or buffer id for pre-posted packets.
    pub gref: u32,
}

/// A received PACKET, validated.
#[derive(Clone, Copy, Debug)]
pub struct PacketView<'b> {
    /// The fixed fields.
    pub meta: PacketMeta,
    frags: &'b [u8],
    /// The inline prefix (the whole packet for SMALL).
    pub prefix: &'b [u8],
    /// Prefix plus all fragment sizes.
    pub total_len: u32,
}

impl<'b> PacketView<'b> {
    /// Number of fragments.
    pub fn nr_frags(&self) -> usize {
        self.frags.len() / FRAGMENT_SIZE
    }
    /// Fragment `i` (already validated).
    pub fn frag(&self, i: usize) -> Fragment {
        decode_frag(&self.frags[i * FRAGMENT_SIZE..(i + 1) * FRAGMENT_SIZE])
    }
    /// All fragments in order.
    pub fn frags(&self) -> impl Iterator<Item = Fragment> + 'b {
        self.frags.chunks_exact(FRAGMENT_SIZE).map(decode_frag)
    }
}

fn decode_frag(b: &[u8]) -> Fragment {
    Fragment {
        size: u16::from_le_bytes([b[0], b[1]]),
        offset: u16::from_le_bytes([b[2], b[3]]),
        gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    }
}

/// Offloads an endpoint is willing to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offload {
    /// Accepts packets with a blank checksum.
    pub csum: bool,
    /// Accepts TCPv4 segmentation offload.
    pub tso4: bool,
    /// Accepts TCPv6 segmentation offload.
    pub tso6: bool,
}

/// A receive buffer the frontend posts: one whole granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedBuffer {
    /// Buffer id (in `0..max posted buffers`).
    pub id: u32,
    /// Grant of the page.
    pub gref: u32,
}

/// The entries of a received POST_BUFFERS (grants validated).
#[derive(Clone, Copy, Debug)]
pub struct PostedBuffers<'b> {
    raw: &'b [u8],
}

impl<'b> PostedBuffers<'b> {
    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.raw.len() / 8
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// The buffers.
    pub fn iter(&self) -> impl Iterator<Item = PostedBuffer> + 'b {
        self.raw.chunks_exact(8).map(|b| PostedBuffer {
            id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            gref: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// The ids of a received RETURN_BUFFERS.
#[derive(Clone, Copy, Debug)]
pub struct BufferIds<'b> {
    raw: &'b [u8],
}

impl<'b> BufferIds<'b> {
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// The ids.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'b {
        self.raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A decoded, statelessly validated message.
#[derive(Clone, Copy, Debug)]
pub enum Message<'b> {
    /// The most packets needing FINISH the sender of this may have outstanding.
    SetMaxPackets(u32),
    /// A packet.
    Packet(PacketView<'b>),
    /// The receiver is done with packet `id`.
    FinishPacket(u32),
    /// Offloads the sender accepts.
    SetOffload(Offload),
    /// Fragments per packet the sender accepts (clamped to [`MAX_FRAGMENTS`]).
    SetMaxFragments(u32),
    /// Receive buffers posted by the frontend.
    PostBuffers(PostedBuffers<'b>),
    /// Posted buffers the backend gives back unused.
    ReturnBuffers(BufferIds<'b>),
    /// How many buffers the frontend may have posted (ids `0..n`).
    SetMaxPostedBuffers(u32),
}

/// Receiver-side limits used while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Grant references must be below this.
    pub grants: GrantBound,
    /// Fragments per packet accepted.
    pub max_fragments: u32,
    /// Buffer ids (pre-posted fragments, posted and returned buffers) must be below this.
    pub buffer_ids: u32,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Size of a PACKET message with `nr_frags` fragments and `prefix` bytes inline.
pub fn packet_message_size(nr_frags: usize, prefix: usize) -> usize {
    align8(PACKET_FIXED + nr_frags * FRAGMENT_SIZE + prefix)
}

fn expect_size(ty: u8, b: &[u8], expected: usize) -> Result<(), PeerError> {
    if b.len() != expected {
        return Err(PeerError::WrongMessageSize {
            ty,
            size: b.len() as u16,
            expected: expected as u32,
        });
    }
    Ok(())
}

fn boolean(v: u8) -> Result<bool, PeerError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(PeerError::BadBoolean { value }),
    }
}

/// Checks the packet rules shared by sender and receiver; returns the total
/// length. `frags` yields `(size, offset, gref)`.
fn check_packet(
    meta: &PacketMeta,
    nr_frags: usize,
    frags: impl Iterator<Item = Fragment>,
    prefix_len: u16,
    limits: &Limits,
) -> Result<u32, PeerError> {
    if meta.flags & !PKT_KNOWN_FLAGS != 0 {
        return Err(PeerError::UnknownPacketFlags { flags: meta.flags });
    }
    if meta.seg != Segmentation::None && meta.mss == 0 {
        return Err(PeerError::ZeroMss);
    }
    if prefix_len > MAX_PREFIX {
        return Err(PeerError::PrefixTooLong {
            len: prefix_len,
            max: MAX_PREFIX,
        });
    }
    match (meta.kind, nr_frags) {
        (PacketKind::Small, 0) => {}
        (PacketKind::Small, _) => return Err(PeerError::SmallPacketWithFragments),
        (_, 0) => return Err(PeerError::PacketWithoutFragments),
        _ => {}
    }
    let max = limits.max_fragments.min(MAX_FRAGMENTS);
    if nr_frags as u32 > max {
        return Err(PeerError::TooManyFragments {
            count: nr_frags as u32,
            max,
        });
    }
    let mut total = u32::from(prefix_len);
    for (i, f) in frags.enumerate() {
        let index = i as u32;
        if f.size == 0 {
            return Err(PeerError::EmptyFragment { index });
        }
        let (offset, size) = (u32::from(f.offset), u32::from(f.size));
        if offset + size > PAGE_SIZE {
            return Err(PeerError::FragmentOutsidePage {
                index,
                offset,
                size,
            });
        }
        if meta.kind == PacketKind::PrePosted {
            if f.gref >= limits.buffer_ids {
                return Err(PeerError::BufferIdOutOfRange {
                    id: f.gref,
                    bound: limits.buffer_ids,
                });
            }
        } else {
            limits.grants.check(f.gref)?;
        }
        total += size;
    }
    if total > MAX_PACKET {
        return Err(PeerError::PacketTooLong {
            len: total,
            max: MAX_PACKET,
        });
    }
    if meta.flags & PKT_CSUM_BLANK != 0
        && u32::from(meta.csum_start) + u32::from(meta.csum_offset) + 2 > total
    {
        return Err(PeerError::ChecksumOutsidePacket {
            start: meta.csum_start,
            offset: meta.csum_offset,
            len: total,
        });
    }
    Ok(total)
}

/// Decodes one message copied out of the ring (`bytes` includes the
/// header; its length is the header's size, already checked by the ring).
pub fn decode<'b>(
    ty: u8,
    flags: u8,
    bytes: &'b [u8],
    limits: &Limits,
) -> Result<Message<'b>, PeerError> {
    if flags != 0 {
        return Err(PeerError::UnknownMessageFlags { ty, flags });
    }
    let b = bytes;
    match ty {
        TYPE_SET_MAX_PACKETS => {
            expect_size(ty, b, 8)?;
            Ok(Message::SetMaxPackets(u32_at(b, 4)))
        }
        TYPE_FINISH_PACKET => {
            expect_size(ty, b, 8)?;
            Ok(Message::FinishPacket(u32_at(b, 4)))
        }
        TYPE_SET_MAX_FRAGMENTS => {
            expect_size(ty, b, 8)?;
            Ok(Message::SetMaxFragments(u32_at(b, 4).min(MAX_FRAGMENTS)))
        }
        TYPE_SET_MAX_POSTED_BUFFERS => {
            expect_size(ty, b, 8)?;
            Ok(Message::SetMaxPostedBuffers(u32_at(b, 4)))
        }
        TYPE_SET_OFFLOAD => {
            expect_size(ty, b, 8)?;
            if b[7] != 0 {
                return Err(PeerError::BadBoolean { value: b[7] });
            }
            Ok(Message::SetOffload(Offload {
                csum: boolean(b[4])?,
                tso4: boolean(b[5])?,
                tso6: boolean(b[6])?,
            }))
        }
        TYPE_POST_BUFFERS | TYPE_RETURN_BUFFERS => {
            if b.len() < 8 {
                return Err(PeerError::WrongMessageSize {
                    ty,
                    size: b.len() as u16,
                    expected: 8,
                });
            }
            let count = usize::from(u16_at(b, 4));
            if u16_at(b, 6) != 0 {
                return Err(PeerError::BadBoolean { value: b[6] | b[7] });
            }
            let entry = if ty == TYPE_POST_BUFFERS { 8 } else { 4 };
            expect_size(ty, b, align8(8 + count * entry))?;
            let raw = &b[8..8 + count * entry];
            if ty == TYPE_POST_BUFFERS {
                let v = PostedBuffers { raw };
                for pb in v.iter() {
                    if pb.id >= limits.buffer_ids {
                        return Err(PeerError::BufferIdOutOfRange {
                            id: pb.id,
                            bound: limits.buffer_ids,
                        });
                    }
                    limits.grants.check(pb.gref)?;
                }
                Ok(Message::PostBuffers(v))
            } else {
                let v = BufferIds { raw };
                for id in v.iter() {
                    if id >= limits.buffer_ids {
                        return Err(PeerError::BufferIdOutOfRange {
                            id,
                            bound: limits.buffer_ids,
                        });
                    }
                }
                Ok(Message::ReturnBuffers(v))
            }
        }
        TYPE_PACKET => {
            if b.len() < PACKET_FIXED {
                return Err(PeerError::WrongMessageSize {
                    ty,
                    size: b.len() as u16,
                    expected: 24,
                });
            }
            let meta = PacketMeta {
                id: u32_at(b, 4),
                kind: PacketKind::from_u8(b[8])?,
                flags: b[9],
                seg: Segmentation::from_u8(b[10])?,
                mss: u16_at(b, 14),
                csum_start: u16_at(b, 16),
                csum_offset: u16_at(b, 18),
            };
            let nr_frags = usize::from(b[11]);
            let prefix_len = u16_at(b, 12);
            let expected = packet_message_size(nr_frags, usize::from(prefix_len));
            if b.len() != expected {
                return Err(PeerError::WrongMessageSize {
                    ty,
                    size: b.len() as u16,
                    expected: expected as u32,
                });
            }
            let frags_end = PACKET_FIXED + nr_frags * FRAGMENT_SIZE;
            let frags = &b[PACKET_FIXED..frags_end];
            let fview = PacketView {
                meta,
                frags,
                prefix: &[],
                total_len: 0,
            };
            let total = check_packet(&meta, nr_frags, fview.frags(), prefix_len, limits)?;
            let prefix = &b[frags_end..frags_end + usize::from(prefix_len)];
            Ok(Message::Packet(PacketView {
                meta,
                frags,
                prefix,
                total_len: total,
            }))
        }
        _ => Err(PeerError::UnknownMessageType { ty }),
    }
}

/// A message to send.
#[derive(Clone, Copy, Debug)]
pub enum OutMessage<'m> {
    /// See [`Message::SetMaxPackets`].
    SetMaxPackets(u32),
    /// A packet: fixed fields, fragments, inline prefix.
    Packet(&'m PacketMeta, &'m [Fragment], &'m [u8]),
    /// See [`Message::FinishPacket`].
    FinishPacket(u32),
    /// See [`Message::SetOffload`].
    SetOffload(Offload),
    /// See [`Message::SetMaxFragments`].
    SetMaxFragments(u32),
    /// See [`Message::PostBuffers`].
    PostBuffers(&'m [PostedBuffer]),
    /// See [`Message::ReturnBuffers`].
    ReturnBuffers(&'m [u32]),
    /// See [`Message::SetMaxPostedBuffers`].
    SetMaxPostedBuffers(u32),
}

fn header(out: &mut [u8], ty: u8, size: usize) {
    out[0] = ty;
    out[1] = 0;
    out[2..4].copy_from_slice(&(size as u16).to_le_bytes());
}

fn small(out: &mut [u8], ty: u8, val: u32) -> usize {
    header(out, ty, 8);
    out[4..8].copy_from_slice(&val.to_le_bytes());
    8
}

/// Encodes `msg` into `out`, returning its size. Packets are checked
/// against the same rules the receiver applies (grants unbounded here).
pub fn encode(msg: &OutMessage<'_>, out: &mut [u8; MAX_MESSAGE_SIZE]) -> Result<usize, SendError> {
    Ok(match *msg {
        OutMessage::SetMaxPackets(v) => small(out, TYPE_SET_MAX_PACKETS, v),
        OutMessage::FinishPacket(v) => small(out, TYPE_FINISH_PACKET, v),
        OutMessage::SetMaxFragments(v) => small(out, TYPE_SET_MAX_FRAGMENTS, v),
        OutMessage::SetMaxPostedBuffers(v) => small(out, TYPE_SET_MAX_POSTED_BUFFERS, v),
        OutMessage::SetOffload(o) => {
            header(out, TYPE_SET_OFFLOAD, 8);
            out[4..8].copy_from_slice(&[u8::from(o.csum), u8::from(o.tso4), u8::from(o.tso6), 0]);
            8
        }
        OutMessage::PostBuffers(bufs) => {
            if bufs.len() > MAX_POST_BATCH {
                return Err(SendError::Invalid(
                    "too many buffers for one POST_BUFFERS message",
                ));
            }
            let size = 8 + bufs.len() * 8;
            header(out, TYPE_POST_BUFFERS, size);
            out[4..6].copy_from_slice(&(bufs.len() as u16).to_le_bytes());
            out[6..8].copy_from_slice(&[0, 0]);
            for (i, pb) in bufs.iter().enumerate() {
                out[8 + i * 8..12 + i * 8].copy_from_slice(&pb.id.to_le_bytes());
                out[12 + i * 8..16 + i * 8].copy_from_slice(&pb.gref.to_le_bytes());
            }
            size
        }
        OutMessage::ReturnBuffers(ids) => {
            if ids.len() > MAX_RETURN_BATCH {
                return Err(SendError::Invalid(
                    "too many ids for one RETURN_BUFFERS message",
                ));
            }
            let size = align8(8 + ids.len() * 4);
            header(out, TYPE_RETURN_BUFFERS, size);
            out[4..6].copy_from_slice(&(ids.len() as u16).to_le_bytes());
            out[6..8].copy_from_slice(&[0, 0]);
            for (i, id) in ids.iter().enumerate() {
                out[8 + i * 4..12 + i * 4].copy_from_slice(&id.to_le_bytes());
            }
            out[8 + ids.len() * 4..size].fill(0);
            size
        }
        OutMessage::Packet(meta, frags, prefix) => {
            if prefix.len() > usize::from(MAX_PREFIX) {
                return Err(SendError::Malformed(PeerError::PrefixTooLong {
                    len: prefix.len().min(usize::from(u16::MAX)) as u16,
                    max: MAX_PREFIX,
                }));
            }
            if frags.len() > MAX_FRAGMENTS as usize {
                return Err(SendError::Malformed(PeerError::TooManyFragments {
                    count: frags.len() as u32,
                    max: MAX_FRAGMENTS,
                }));
            }
            let limits = Limits {
                grants: GrantBound(u32::MAX),
                max_fragments: MAX_FRAGMENTS,
                buffer_ids: u32::MAX,
            };
            check_packet(
                meta,
                frags.len(),
                frags.iter().copied(),
                prefix.len() as u16,
                &limits,
            )
            .map_err(SendError::Malformed)?;
            let size = packet_message_size(frags.len(), prefix.len());
            header(out, TYPE_PACKET, size);
            out[4..8].copy_from_slice(&meta.id.to_le_bytes());
            out[8] = meta.kind as u8;
            out[9] = meta.flags;
            out[10] = meta.seg as u8;
            out[11] = frags.len() as u8;
            out[12..14].copy_from_slice(&(prefix.len() as u16).to_le_bytes());
            out[14..16].copy_from_slice(&meta.mss.to_le_bytes());
            out[16..18].copy_from_slice(&meta.csum_start.to_le_bytes());
            out[18..20].copy_from_slice(&meta.csum_offset.to_le_bytes());
            let mut o = PACKET_FIXED;
            for f in frags {
                out[o..o + 2].copy_from_slice(&f.size.to_le_bytes());
                out[o + 2..o + 4].copy_from_slice(&f.offset.to_le_bytes());
                out[o + 4..o + 8].copy_from_slice(&f.gref.to_le_bytes());
                o += FRAGMENT_SIZE;
            }
            out[o..o + prefix.len()].copy_from_slice(prefix);
            out[o + prefix.len()..size].fill(0);
            size
        }
    })
}
