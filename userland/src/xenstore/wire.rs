//! The xenstore wire format: `xsd_sockmsg` header, message types, and errors.
//!
//! Every message is a 16-byte header (type, req_id, tx_id, len; little-endian u32s) followed by
//! `len` payload bytes, at most [`XENSTORE_PAYLOAD_MAX`]. An `ERROR` reply carries the errno
//! *name* ("ENOENT\0"); [`XsErrno`] maps the names xenstored sends.

/// Bytes of the message header.
pub const HEADER_LEN: usize = 16;
/// Largest payload of one message (requests and replies).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;

/// Message types (`enum xsd_sockmsg_type`), the ones this client sends or receives.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgType {
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    WatchEvent = 15,
    Error = 16,
}

impl MsgType {
    pub fn from_raw(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            15 => WatchEvent,
            16 => Error,
            _ => return None,
        })
    }
}

/// `xsd_sockmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Self {
            ty: w(0),
            req_id: w(1),
            tx_id: w(2),
            len: w(3),
        }
    }
}

/// Errors xenstored reports by name in `ERROR` replies (`xsd_errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsErrno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
    /// A name this client does not know.
    Unknown,
}

const NAMES: [(XsErrno, &str); 16] = [
    (XsErrno::EINVAL, "EINVAL"),
    (XsErrno::EACCES, "EACCES"),
    (XsErrno::EEXIST, "EEXIST"),
    (XsErrno::EISDIR, "EISDIR"),
    (XsErrno::ENOENT, "ENOENT"),
    (XsErrno::ENOMEM, "ENOMEM"),
    (XsErrno::ENOSPC, "ENOSPC"),
    (XsErrno::EIO, "EIO"),
    (XsErrno::ENOTEMPTY, "ENOTEMPTY"),
    (XsErrno::ENOSYS, "ENOSYS"),
    (XsErrno::EROFS, "EROFS"),
    (XsErrno::EBUSY, "EBUSY"),
    (XsErrno::EAGAIN, "EAGAIN"),
    (XsErrno::EISCONN, "EISCONN"),
    (XsErrno::E2BIG, "E2BIG"),
    (XsErrno::EPERM, "EPERM"),
];

impl XsErrno {
    /// From an `ERROR` payload: the name, with or without its terminating NUL.
    pub fn from_payload(p: &[u8]) -> Self {
        let name = p.strip_suffix(b"\0").unwrap_or(p);
        NAMES
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map_or(XsErrno::Unknown, |(e, _)| *e)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(e, _)| *e == self)
            .map_or("unknown error", |(_, n)| n)
    }
}

/// Everything the client can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered with an `ERROR` reply.
    Xs(XsErrno),
    /// A path that is empty, too long, or has characters xenstore refuses.
    BadPath,
    /// A watch token that is empty or holds a NUL.
    BadToken,
    /// The request would exceed [`XENSTORE_PAYLOAD_MAX`].
    TooLarge,
    /// The peer moved a ring index further than the ring is long (`avail` bytes claimed).
    RingIndex { avail: u32 },
    /// A reply header with a payload longer than [`XENSTORE_PAYLOAD_MAX`].
    ReplyTooLarge(u32),
    /// A reply whose type, request id or payload does not fit the request.
    Protocol(&'static str),
    /// Waiting for the peer failed (the transport's reason).
    Transport(&'static str),
    /// A transaction kept conflicting (`EAGAIN`) after the retry limit.
    RetriesExhausted,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Xs(e) => write!(f, "xenstore error {}", e.name()),
            Error::BadPath => write!(f, "invalid xenstore path"),
            Error::BadToken => write!(f, "invalid watch token"),
            Error::TooLarge => write!(f, "request exceeds {XENSTORE_PAYLOAD_MAX} bytes"),
            Error::RingIndex { avail } => {
                write!(
                    f,
                    "xenstore ring index jumped: {avail} bytes claimed in a 1024-byte ring"
                )
            }
            Error::ReplyTooLarge(n) => write!(f, "xenstore reply of {n} bytes exceeds the limit"),
            Error::Protocol(why) => write!(f, "xenstore protocol error: {why}"),
            Error::Transport(why) => write!(f, "xenstore transport: {why}"),
            Error::RetriesExhausted => {
                write!(f, "xenstore transaction still conflicting after retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_little_endian() {
        let h = Header {
            ty: 11,
            req_id: 0x0102_0304,
            tx_id: 9,
            len: 4096,
        };
        let b = h.encode();
        assert_eq!(&b[4..8], &[4, 3, 2, 1]);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn errno_names_map_both_ways() {
        for (e, n) in NAMES {
            assert_eq!(XsErrno::from_payload(n.as_bytes()), e);
            let mut z = n.as_bytes().to_vec();
            z.push(0);
            assert_eq!(XsErrno::from_payload(&z), e);
            assert_eq!(e.name(), n);
        }
        assert_eq!(XsErrno::from_payload(b"EWHAT\0"), XsErrno::Unknown);
        assert_eq!(XsErrno::from_payload(b""), XsErrno::Unknown);
        assert_eq!(MsgType::from_raw(15), Some(MsgType::WatchEvent));
        assert_eq!(MsgType::from_raw(8), None);
    }
}
