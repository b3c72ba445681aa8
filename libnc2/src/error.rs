//! Error values. [`PeerError`] says what a peer wrote that was wrong; it is
//! returned, never panicked on. [`SendError`] says why a local request to send
//! was refused. After a `PeerError` the channel is no longer trustworthy:
//! the caller should tear it down (the endpoint does not advance past the
//! offending data, so polling again returns the same error).

use core::fmt;

/// What a (possibly hostile) peer got wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// The peer's producer index moved further ahead of our consumer index
    /// than the ring can hold.
    ProducerIndexJump { prod: u32, cons: u32, capacity: u32 },
    /// The peer's consumer index claims more than we ever produced.
    ConsumerIndexJump { cons: u32, prod: u32 },
    /// A netchannel2 producer index not on an 8-byte boundary.
    MisalignedIndex { index: u32 },

    /// A netchannel2 message header whose size is below the 8-byte minimum.
    MessageTooSmall { size: u16 },
    /// A netchannel2 message size that is not a multiple of 8.
    MessageSizeUnaligned { size: u16 },
    /// A message longer than the bytes the producer published.
    MessageBeyondProducer { size: u16, available: u32 },
    /// A message that would run past the end of the ring (only PAD fills to the end).
    MessageCrossesRingEnd { size: u16, to_end: u32 },
    /// A message longer than [`crate::nc2::MAX_MESSAGE_SIZE`].
    MessageTooLarge { size: u16 },
    /// A message type this version does not define.
    UnknownMessageType { ty: u8 },
    /// Header flag bits this version does not define.
    UnknownMessageFlags { ty: u8, flags: u8 },
    /// A message whose size does not match its type's layout.
    WrongMessageSize { ty: u8, size: u16, expected: u32 },
    /// A message the peer's role may not send (e.g. a frontend sending a
    /// pre-posted packet).
    WrongDirection { ty: u8 },

    /// Unknown netchannel2 packet kind.
    UnknownPacketKind { kind: u8 },
    /// Unknown netchannel2 packet flag bits.
    UnknownPacketFlags { flags: u8 },
    /// Unknown segmentation type.
    UnknownSegmentation { seg: u8 },
    /// Segmentation requested with an MSS of zero.
    ZeroMss,
    /// More fragments than allowed.
    TooManyFragments { count: u32, max: u32 },
    /// An inline prefix longer than allowed.
    PrefixTooLong { len: u16, max: u16 },
    /// A fragment of zero bytes.
    EmptyFragment { index: u32 },
    /// A fragment that does not fit inside its page or buffer.
    FragmentOutsidePage { index: u32, offset: u32, size: u32 },
    /// A grant reference at or above the caller-supplied bound.
    GrantOutOfRange { gref: u32, bound: u32 },
    /// A packet longer than the protocol maximum.
    PacketTooLong { len: u32, max: u32 },
    /// A SMALL packet that carries fragments.
    SmallPacketWithFragments,
    /// A non-SMALL packet with no fragment.
    PacketWithoutFragments,
    /// A checksum location outside the packet.
    ChecksumOutsidePacket { start: u16, offset: u16, len: u32 },
    /// A boolean field with a value other than 0 or 1.
    BadBoolean { value: u8 },
    /// A count or limit that is zero or above the protocol maximum.
    BadLimit { value: u32, max: u32 },

    /// More packets outstanding than we allowed with SET_MAX_PACKETS.
    TooManyOutstandingPackets { max: u32 },
    /// A FINISH_PACKET (or netif response) for an id we are not waiting on.
    UnexpectedId { id: u32 },
    /// A posted-buffer id we do not hold (or the peer does not hold).
    BufferNotPosted { id: u32 },
    /// A buffer id posted twice.
    BufferAlreadyPosted { id: u32 },
    /// A posted-buffer id outside `0..bound`.
    BufferIdOutOfRange { id: u32, bound: u32 },
    /// More posted buffers than allowed.
    TooManyPostedBuffers { max: u32 },

    /// netif: unknown request/response flag bits.
    UnknownNetifFlags { flags: u16 },
    /// netif: fragment sizes after the first exceed the packet's total size.
    TxSizeMismatch { total: u32, rest: u32 },
    /// netif: a packet spans more slots than allowed.
    TooManySlots { count: u32, max: u32 },
    /// netif: unknown extra-info type.
    UnknownExtraType { ty: u8 },
    /// netif: unknown extra-info flag bits.
    UnknownExtraFlags { flags: u8 },
    /// netif: the same extra-info type twice in one packet.
    DuplicateExtra { ty: u8 },
    /// netif: a GSO extra with an unknown type or zero size.
    BadGso { gso_type: u8, size: u16 },
    /// netif: a response status outside the defined set.
    BadStatus { status: i16 },
    /// netif rx: a response carries an id other than the request in its slot.
    RxIdMismatch { slot: u32, expected: u16, got: u16 },
    /// netif control: a response status outside the defined set.
    BadCtrlStatus { status: u32 },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer protocol violation: {self:?}")
    }
}

/// Why a local send was refused. The message was not queued (on `RingFull`
/// a PAD to the ring end may have been).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The ring has no room now; flush, wait for the peer and retry.
    RingFull,
    /// The peer has not granted enough packet credit (SET_MAX_PACKETS).
    NoPacketCredit,
    /// More fragments than the peer accepts (SET_MAX_FRAGMENTS_PER_PACKET).
    TooManyFragments { count: u32, max: u32 },
    /// The id is already outstanding.
    IdInUse { id: u32 },
    /// The id is outside this endpoint's id space.
    IdOutOfRange { id: u32, bound: u32 },
    /// A posted buffer we do not hold, or more than the peer allows.
    BufferUnavailable { id: u32 },
    /// The peer's posted-buffer limit would be exceeded.
    PostLimit { max: u32 },
    /// Nothing to finish/respond to.
    NothingOutstanding,
    /// The arguments break the wire format; the text says which rule.
    Invalid(&'static str),
    /// The message would break the wire format: the peer would reject it
    /// with this error.
    Malformed(PeerError),
    /// A peer error was found while checking for space (e.g. a consumer
    /// index jump); the channel must be torn down.
    Peer(PeerError),
}

impl From<PeerError> for SendError {
    fn from(e: PeerError) -> Self {
        SendError::Peer(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send refused: {self:?}")
    }
}

/// A shared-memory layout or configuration that cannot work (local mistake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupError(pub &'static str);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad ring setup: {}", self.0)
    }
}
