//! The messages of the queue-pair channel and their 16-byte wire encoding.
//!
//! Every entry is two little-endian-agnostic `u64` words (the rings are atomics, so endianness
//! never meets bytes):
//! word 0 = `kind` (bits 7:0) | `pool` (15:8) | `len` or flags (31:16) | `id` (63:32),
//! word 1 = bus address, MAC address (48 bits) or status, depending on the kind.
//!
//! Decoding is total: any bit pattern yields either a message whose fields are all in range or
//! a [`MsgError`] naming what was wrong. Range rules live here (structure); ownership rules
//! (which pools a channel may touch, which bus addresses it may name) belong to the server.

/// Pools a channel can name (the 82599's VMDq pool count; the 82576 uses the first 8).
pub const MAX_POOLS: u8 = 64;
/// Largest buffer or frame length a message may carry (bytes).
pub const MAX_LEN: u16 = 16 * 1024;
/// Bus addresses are at most 52 bits wide (IOMMU/x86-64 physical address limit).
pub const BUS_ADDR_LIMIT: u64 = 1 << 52;

const K_ALLOC_POOL: u8 = 0x01;
const K_RELEASE_POOL: u8 = 0x02;
const K_POOL_ALLOCATED: u8 = 0x11;
const K_POOL_REFUSED: u8 = 0x12;
const K_POOL_RELEASED: u8 = 0x13;
const K_RX_POST: u8 = 0x21;
const K_RX_DONE: u8 = 0x22;
const K_TX_POST: u8 = 0x31;
const K_TX_DONE: u8 = 0x32;

/// What was wrong with an entry the peer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgError {
    /// The kind byte is not one this ring carries.
    Kind(u8),
    /// The pool number is not below [`MAX_POOLS`].
    Pool(u8),
    /// A length is zero or above [`MAX_LEN`].
    Len(u16),
    /// A bus address is zero, above [`BUS_ADDR_LIMIT`], or the buffer would wrap past it.
    Addr(u64),
    /// A MAC address is all-zero or multicast.
    Mac([u8; 6]),
    /// A status or reason code is unknown.
    Status(u64),
    /// Bits that must be zero are not.
    Reserved(u64),
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A MAC a pool may be keyed by: unicast and not zero.
    pub fn is_valid_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    fn to_u64(self) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&self.0);
        u64::from_le_bytes(b)
    }

    fn from_u64(v: u64) -> Result<Self, MsgError> {
        if v >> 48 != 0 {
            return Err(MsgError::Reserved(v));
        }
        let b = v.to_le_bytes();
        let mac = MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]);
        if !mac.is_valid_unicast() {
            return Err(MsgError::Mac(mac.0));
        }
        Ok(mac)
    }
}

/// Receive filter options for a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolFlags {
    /// Accept broadcast frames.
    pub broadcast: bool,
    /// Accept all multicast frames.
    pub multicast: bool,
}

impl PoolFlags {
    fn bits(self) -> u16 {
        u16::from(self.broadcast) | (u16::from(self.multicast) << 1)
    }

    fn from_bits(v: u16) -> Result<Self, MsgError> {
        if v & !3 != 0 {
            return Err(MsgError::Reserved(u64::from(v)));
        }
        Ok(Self {
            broadcast: v & 1 != 0,
            multicast: v & 2 != 0,
        })
    }
}

struct Fields {
    kind: u8,
    pool: u8,
    len: u16,
    id: u32,
}

fn pack(kind: u8, pool: u8, len: u16, id: u32) -> u64 {
    u64::from(kind) | (u64::from(pool) << 8) | (u64::from(len) << 16) | (u64::from(id) << 32)
}

fn unpack(w: u64, want: u8) -> Result<Fields, MsgError> {
    let f = Fields {
        kind: w as u8,
        pool: (w >> 8) as u8,
        len: (w >> 16) as u16,
        id: (w >> 32) as u32,
    };
    if f.kind != want {
        return Err(MsgError::Kind(f.kind));
    }
    Ok(f)
}

fn pool(p: u8) -> Result<u8, MsgError> {
    if p >= MAX_POOLS {
        return Err(MsgError::Pool(p));
    }
    Ok(p)
}

fn len(l: u16) -> Result<u16, MsgError> {
    if l == 0 || l > MAX_LEN {
        return Err(MsgError::Len(l));
    }
    Ok(l)
}

fn addr(a: u64, l: u16) -> Result<u64, MsgError> {
    if a == 0 || a >= BUS_ADDR_LIMIT || a + u64::from(l) > BUS_ADDR_LIMIT {
        return Err(MsgError::Addr(a));
    }
    Ok(a)
}

fn zero(f: &Fields, pool: bool, len: bool, id: bool) -> Result<(), MsgError> {
    let bad = (pool && f.pool != 0) || (len && f.len != 0) || (id && f.id != 0);
    if bad {
        return Err(MsgError::Reserved(pack(f.kind, f.pool, f.len, f.id)));
    }
    Ok(())
}

/// Control requests, netback → NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctrl {
    /// Give the MAC its own pool; `req` comes back in the reply.
    AllocPool {
        req: u32,
        mac: MacAddr,
        flags: PoolFlags,
    },
    /// Tear the pool down; every buffer still posted comes back as a completion first.
    ReleasePool { pool: u8 },
}

impl Ctrl {
    pub fn encode(&self) -> [u64; 2] {
        match *self {
            Ctrl::AllocPool { req, mac, flags } => {
                [pack(K_ALLOC_POOL, 0, flags.bits(), req), mac.to_u64()]
            }
            Ctrl::ReleasePool { pool } => [pack(K_RELEASE_POOL, pool, 0, 0), 0],
        }
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        match e[0] as u8 {
            K_ALLOC_POOL => {
                let f = unpack(e[0], K_ALLOC_POOL)?;
                zero(&f, true, false, false)?;
                Ok(Ctrl::AllocPool {
                    req: f.id,
                    mac: MacAddr::from_u64(e[1])?,
                    flags: PoolFlags::from_bits(f.len)?,
                })
            }
            K_RELEASE_POOL => {
                let f = unpack(e[0], K_RELEASE_POOL)?;
                zero(&f, false, true, true)?;
                if e[1] != 0 {
                    return Err(MsgError::Reserved(e[1]));
                }
                Ok(Ctrl::ReleasePool {
                    pool: pool(f.pool)?,
                })
            }
            k => Err(MsgError::Kind(k)),
        }
    }
}

/// Why the NIC refused a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// Every pool (or every MAC filter) is in use.
    NoPool = 1,
    /// Another pool already receives this MAC.
    MacInUse = 2,
    /// The NIC could not set the pool up (DMA memory, hardware timeout).
    Hardware = 3,
}

impl RefuseReason {
    fn from_u64(v: u64) -> Result<Self, MsgError> {
        Ok(match v {
            1 => RefuseReason::NoPool,
            2 => RefuseReason::MacInUse,
            3 => RefuseReason::Hardware,
            _ => return Err(MsgError::Status(v)),
        })
    }
}

/// Control replies, NIC → netback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlReply {
    PoolAllocated {
        req: u32,
        pool: u8,
    },
    PoolRefused {
        req: u32,
        reason: RefuseReason,
    },
    /// The pool is gone; all its buffers were completed before this reply.
    PoolReleased {
        pool: u8,
    },
}

impl CtrlReply {
    pub fn encode(&self) -> [u64; 2] {
        match *self {
            CtrlReply::PoolAllocated { req, pool } => [pack(K_POOL_ALLOCATED, pool, 0, req), 0],
            CtrlReply::PoolRefused { req, reason } => {
                [pack(K_POOL_REFUSED, 0, 0, req), reason as u64]
            }
            CtrlReply::PoolReleased { pool } => [pack(K_POOL_RELEASED, pool, 0, 0), 0],
        }
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        let k = e[0] as u8;
        let f = unpack(e[0], k)?;
        match k {
            K_POOL_ALLOCATED | K_POOL_RELEASED => {
                zero(&f, false, true, k == K_POOL_RELEASED)?;
                if e[1] != 0 {
                    return Err(MsgError::Reserved(e[1]));
                }
                let p = pool(f.pool)?;
                Ok(if k == K_POOL_ALLOCATED {
                    CtrlReply::PoolAllocated { req: f.id, pool: p }
                } else {
                    CtrlReply::PoolReleased { pool: p }
                })
            }
            K_POOL_REFUSED => {
                zero(&f, true, true, false)?;
                Ok(CtrlReply::PoolRefused {
                    req: f.id,
                    reason: RefuseReason::from_u64(e[1])?,
                })
            }
            _ => Err(MsgError::Kind(k)),
        }
    }
}

/// A receive buffer posted to a pool: the NIC may DMA up to `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPost {
    pub pool: u8,
    pub id: u32,
    pub addr: u64,
    pub len: u16,
}

impl RxPost {
    pub fn encode(&self) -> [u64; 2] {
        [pack(K_RX_POST, self.pool, self.len, self.id), self.addr]
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        let f = unpack(e[0], K_RX_POST)?;
        let l = len(f.len)?;
        Ok(RxPost {
            pool: pool(f.pool)?,
            id: f.id,
            addr: addr(e[1], l)?,
            len: l,
        })
    }
}

/// How a posted receive buffer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStatus {
    /// It holds a frame of `len` bytes.
    Frame = 0,
    /// Returned unused (pool released).
    Unused = 1,
    /// The server refused the post (pool not owned, address outside the window, too small).
    Refused = 2,
    /// The NIC flagged a receive error; the contents are not a good frame.
    Error = 3,
}

/// A receive completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxDone {
    pub pool: u8,
    pub id: u32,
    /// Bytes of frame in the buffer (0 unless `status` is `Frame`).
    pub len: u16,
    pub status: RxStatus,
}

impl RxDone {
    pub fn encode(&self) -> [u64; 2] {
        [
            pack(K_RX_DONE, self.pool, self.len, self.id),
            self.status as u64,
        ]
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        let f = unpack(e[0], K_RX_DONE)?;
        let status = match e[1] {
            0 => RxStatus::Frame,
            1 => RxStatus::Unused,
            2 => RxStatus::Refused,
            3 => RxStatus::Error,
            v => return Err(MsgError::Status(v)),
        };
        let l = if status == RxStatus::Frame {
            len(f.len)?
        } else if f.len != 0 {
            return Err(MsgError::Len(f.len));
        } else {
            0
        };
        Ok(RxDone {
            pool: pool(f.pool)?,
            id: f.id,
            len: l,
            status,
        })
    }
}

/// A frame to transmit from a pool: `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPost {
    pub pool: u8,
    pub id: u32,
    pub addr: u64,
    pub len: u16,
}

impl TxPost {
    pub fn encode(&self) -> [u64; 2] {
        [pack(K_TX_POST, self.pool, self.len, self.id), self.addr]
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        let f = unpack(e[0], K_TX_POST)?;
        let l = len(f.len)?;
        Ok(TxPost {
            pool: pool(f.pool)?,
            id: f.id,
            addr: addr(e[1], l)?,
            len: l,
        })
    }
}

/// How a transmit request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// The NIC has read the frame; the buffer is free again.
    Sent = 0,
    /// The server refused it (pool not owned, address outside the window, bad length).
    Refused = 1,
    /// Dropped unsent because the pool was released.
    Discarded = 2,
}

/// A transmit completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxDone {
    pub pool: u8,
    pub id: u32,
    pub status: TxStatus,
}

impl TxDone {
    pub fn encode(&self) -> [u64; 2] {
        [pack(K_TX_DONE, self.pool, 0, self.id), self.status as u64]
    }

    pub fn decode(e: [u64; 2]) -> Result<Self, MsgError> {
        let f = unpack(e[0], K_TX_DONE)?;
        zero(&f, false, true, false)?;
        let status = match e[1] {
            0 => TxStatus::Sent,
            1 => TxStatus::Refused,
            2 => TxStatus::Discarded,
            v => return Err(MsgError::Status(v)),
        };
        Ok(TxDone {
            pool: pool(f.pool)?,
            id: f.id,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 7]);

    #[test]
    fn every_message_round_trips() {
        let c = [
            Ctrl::AllocPool {
                req: 9,
                mac: MAC,
                flags: PoolFlags {
                    broadcast: true,
                    multicast: false,
                },
            },
            Ctrl::ReleasePool { pool: 63 },
        ];
        for m in c {
            assert_eq!(Ctrl::decode(m.encode()), Ok(m));
        }
        let r = [
            CtrlReply::PoolAllocated { req: 1, pool: 5 },
            CtrlReply::PoolRefused {
                req: 2,
                reason: RefuseReason::MacInUse,
            },
            CtrlReply::PoolReleased { pool: 5 },
        ];
        for m in r {
            assert_eq!(CtrlReply::decode(m.encode()), Ok(m));
        }
        let p = RxPost {
            pool: 3,
            id: u32::MAX,
            addr: 0x1234_5000,
            len: 2048,
        };
        assert_eq!(RxPost::decode(p.encode()), Ok(p));
        let d = RxDone {
            pool: 3,
            id: 7,
            len: 60,
            status: RxStatus::Frame,
        };
        assert_eq!(RxDone::decode(d.encode()), Ok(d));
        let t = TxPost {
            pool: 0,
            id: 1,
            addr: 0x8000,
            len: 1514,
        };
        assert_eq!(TxPost::decode(t.encode()), Ok(t));
        let td = TxDone {
            pool: 0,
            id: 1,
            status: TxStatus::Discarded,
        };
        assert_eq!(TxDone::decode(td.encode()), Ok(td));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let mut p = RxPost {
            pool: 64,
            id: 0,
            addr: 0x1000,
            len: 2048,
        };
        assert_eq!(RxPost::decode(p.encode()), Err(MsgError::Pool(64)));
        p.pool = 1;
        p.len = 0;
        assert_eq!(RxPost::decode(p.encode()), Err(MsgError::Len(0)));
        p.len = MAX_LEN + 1;
        assert_eq!(RxPost::decode(p.encode()), Err(MsgError::Len(MAX_LEN + 1)));
        p.len = 100;
        p.addr = 0;
        assert_eq!(RxPost::decode(p.encode()), Err(MsgError::Addr(0)));
        p.addr = BUS_ADDR_LIMIT - 50;
        assert_eq!(
            RxPost::decode(p.encode()),
            Err(MsgError::Addr(BUS_ADDR_LIMIT - 50))
        );
        // A TX post on the RX ring is not an RX post.
        let t = TxPost {
            pool: 1,
            id: 0,
            addr: 0x1000,
            len: 60,
        };
        assert_eq!(RxPost::decode(t.encode()), Err(MsgError::Kind(K_TX_POST)));
    }

    #[test]
    fn bad_macs_and_reserved_bits_are_rejected() {
        let mut e = Ctrl::AllocPool {
            req: 0,
            mac: MAC,
            flags: PoolFlags::default(),
        }
        .encode();
        let good = e;
        e[1] = MacAddr([1, 0, 0, 0, 0, 1]).to_u64();
        assert_eq!(Ctrl::decode(e), Err(MsgError::Mac([1, 0, 0, 0, 0, 1])));
        e[1] = 0;
        assert_eq!(Ctrl::decode(e), Err(MsgError::Mac([0; 6])));
        e = good;
        e[1] |= 1 << 50;
        assert!(matches!(Ctrl::decode(e), Err(MsgError::Reserved(_))));
        e = good;
        e[0] |= 4 << 16; // unknown pool flag
        assert!(matches!(Ctrl::decode(e), Err(MsgError::Reserved(_))));
        assert_eq!(Ctrl::decode([0xEE, 0]), Err(MsgError::Kind(0xEE)));
        let mut d = RxDone {
            pool: 0,
            id: 0,
            len: 0,
            status: RxStatus::Unused,
        }
        .encode();
        d[1] = 9;
        assert_eq!(RxDone::decode(d), Err(MsgError::Status(9)));
    }

    /// Every one of a few hundred thousand pseudo-random entries decodes to a message whose
    /// fields are in range, or to an error; never a panic.
    #[test]
    fn arbitrary_words_never_panic_and_stay_in_range() {
        let n = if std::env::var("NC2DD_LONG_TESTS").is_ok() {
            20_000_000
        } else {
            200_000
        };
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kinds = [
            K_ALLOC_POOL,
            K_RELEASE_POOL,
            K_POOL_ALLOCATED,
            K_POOL_REFUSED,
            K_POOL_RELEASED,
            K_RX_POST,
            K_RX_DONE,
            K_TX_POST,
            K_TX_DONE,
        ];
        let mut accepted = 0u32;
        for i in 0..n {
            let mut w0 = next();
            // Bias toward valid kinds and small fields so the accept paths get exercised.
            if i % 2 == 0 {
                w0 = (w0 & !0xFFFF_FFFF) | u64::from(kinds[(i / 2) % kinds.len()]);
                w0 |= (next() % 70) << 8 | (next() % 3000) << 16;
            }
            let w1 = if i % 3 == 0 { next() >> 14 } else { next() % 8 };
            let e = [w0, w1];
            if let Ok(p) = RxPost::decode(e) {
                assert!(p.pool < MAX_POOLS && p.len > 0 && p.len <= MAX_LEN);
                assert!(p.addr != 0 && p.addr + u64::from(p.len) <= BUS_ADDR_LIMIT);
                accepted += 1;
            }
            if let Ok(p) = TxPost::decode(e) {
                assert!(p.pool < MAX_POOLS && p.len > 0 && p.len <= MAX_LEN);
                accepted += 1;
            }
            if let Ok(Ctrl::AllocPool { mac, .. }) = Ctrl::decode(e) {
                assert!(mac.is_valid_unicast());
                accepted += 1;
            }
            if let Ok(d) = RxDone::decode(e) {
                assert!(d.pool < MAX_POOLS);
                accepted += 1;
            }
            let _ = CtrlReply::decode(e);
            let _ = TxDone::decode(e);
        }
        assert!(accepted > 0);
    }
}
