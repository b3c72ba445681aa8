//! The netif control ring (`xen_netif_ctrl_*`): the frontend asks, the
//! backend answers, one 16-byte slot each. This module decodes requests
//! into typed operations with parameter checks; what an operation does is
//! the backend server's business. Types 8..=10 (grant-mapping) are not
//! decoded here and come out as [`CtrlOp::Unsupported`].

use super::ring::{BackRing, FrontRing};
use super::sring;
use crate::error::{PeerError, SendError, SetupError};
use crate::grant::{GrantBound, PAGE_SIZE};
use crate::idset::IdSet;
use crate::shm::SharedMem;

/// Slot size of the control ring (`max(sizeof req, sizeof rsp)`).
pub const CTRL_SLOT: usize = 16;
/// `XEN_NETIF_CTRL_TYPE_INVALID`.
pub const CTRL_INVALID: u16 = 0;
/// `XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS`.
pub const CTRL_GET_HASH_FLAGS: u16 = 1;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS`.
pub const CTRL_SET_HASH_FLAGS: u16 = 2;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_KEY`.
pub const CTRL_SET_HASH_KEY: u16 = 3;
/// `XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE`.
pub const CTRL_GET_HASH_MAPPING_SIZE: u16 = 4;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE`.
pub const CTRL_SET_HASH_MAPPING_SIZE: u16 = 5;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING`.
pub const CTRL_SET_HASH_MAPPING: u16 = 6;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM`.
pub const CTRL_SET_HASH_ALGORITHM: u16 = 7;
/// `XEN_NETIF_CTRL_STATUS_SUCCESS`.
pub const CTRL_STATUS_SUCCESS: u32 = 0;
/// `XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED`.
pub const CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// `XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER`.
pub const CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// `XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW`.
pub const CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;
/// Hash types defined (`XEN_NETIF_CTRL_HASH_TYPE_IPV4 .. IPV6_TCP`).
pub const HASH_TYPES_ALL: u32 = 0xF;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`.
pub const HASH_ALGORITHM_NONE: u32 = 0;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`.
pub const HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// `struct xen_netif_ctrl_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// `CTRL_*` type.
    pub ty: u16,
    /// Type-specific words.
    pub data: [u32; 3],
}

impl CtrlRequest {
    /// Wire form.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.ty.to_le_bytes());
        for (i, d) in self.data.iter().enumerate() {
            b[4 + i * 4..8 + i * 4].copy_from_slice(&d.to_le_bytes());
        }
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        let w = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        CtrlRequest {
            id: u16::from_le_bytes([b[0], b[1]]),
            ty: u16::from_le_bytes([b[2], b[3]]),
            data: [w(4), w(8), w(12)],
        }
    }

    /// The typed operation, or the status the backend should answer with.
    pub fn op(&self, grants: GrantBound) -> Result<CtrlOp, CtrlReject> {
        let [d0, d1, d2] = self.data;
        let grant = |g: u32| {
            grants
                .check(g)
                .map_err(|_| CtrlReject::GrantOutOfRange { gref: g })
        };
        Ok(match self.ty {
            CTRL_SET_HASH_ALGORITHM => match d0 {
                HASH_ALGORITHM_NONE | HASH_ALGORITHM_TOEPLITZ => CtrlOp::SetHashAlgorithm(d0),
                _ => {
                    return Err(CtrlReject::BadValue {
                        what: "algorithm",
                        value: d0,
                    });
                }
            },
            CTRL_GET_HASH_FLAGS => CtrlOp::GetHashFlags,
            CTRL_SET_HASH_FLAGS => {
                if d0 & !HASH_TYPES_ALL != 0 {
                    return Err(CtrlReject::BadValue {
                        what: "hash flags",
                        value: d0,
                    });
                }
                CtrlOp::SetHashFlags(d0)
            }
            CTRL_SET_HASH_KEY => {
                if d1 > PAGE_SIZE {
                    return Err(CtrlReject::TooLarge {
                        what: "key size",
                        value: d1,
                    });
                }
                CtrlOp::SetHashKey {
                    gref: grant(d0)?,
                    len: d1,
                }
            }
            CTRL_GET_HASH_MAPPING_SIZE => CtrlOp::GetHashMappingSize,
            CTRL_SET_HASH_MAPPING_SIZE => CtrlOp::SetHashMappingSize(d0),
            CTRL_SET_HASH_MAPPING => {
                if d1 > PAGE_SIZE / 4 {
                    return Err(CtrlReject::TooLarge {
                        what: "mapping entries in one page",
                        value: d1,
                    });
                }
                if d2.checked_add(d1).is_none() {
                    return Err(CtrlReject::BadValue {
                        what: "mapping offset",
                        value: d2,
                    });
                }
                CtrlOp::SetHashMapping {
                    gref: grant(d0)?,
                    len: d1,
                    offset: d2,
                }
            }
            ty => CtrlOp::Unsupported(ty),
        })
    }
}

/// A decoded control operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlOp {
    /// Select `HASH_ALGORITHM_*`.
    SetHashAlgorithm(u32),
    /// Query supported hash types.
    GetHashFlags,
    /// Select hash types.
    SetHashFlags(u32),
    /// Key of `len` bytes at the start of granted page `gref`.
    SetHashKey {
        /// Page grant (validated).
        gref: u32,
        /// Key length (at most a page).
        len: u32,
    },
    /// Query the largest mapping table.
    GetHashMappingSize,
    /// Set the mapping table size.
    SetHashMappingSize(u32),
    /// `len` u32 queue numbers at the start of page `gref`, for table
    /// entries `offset..offset+len`.
    SetHashMapping {
        /// Page grant (validated).
        gref: u32,
        /// Entries in the page (at most 1024).
        len: u32,
        /// First table entry.
        offset: u32,
    },
    /// A type this crate does not decode (answer `NOT_SUPPORTED`).
    Unsupported(u16),
}

/// Why a control request's parameters are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlReject {
    /// A grant at or above the bound.
    GrantOutOfRange {
        /// The grant.
        gref: u32,
    },
    /// A value outside the defined set.
    BadValue {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// A size larger than one page allows.
    TooLarge {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u32,
    },
}

impl CtrlReject {
    /// The status to answer with.
    pub fn status(&self) -> u32 {
        match self {
            CtrlReject::TooLarge { .. } => CTRL_STATUS_BUFFER_OVERFLOW,
            _ => CTRL_STATUS_INVALID_PARAMETER,
        }
    }
}

/// `struct xen_netif_ctrl_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The request's type.
    pub ty: u16,
    /// `CTRL_STATUS_*`.
    pub status: u32,
    /// Type-specific result.
    pub data: u32,
}

impl CtrlResponse {
    /// Wire form (12 bytes).
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.status.to_le_bytes());
        b[8..12].copy_from_slice(&self.data.to_le_bytes());
        b
    }
    /// Parses (no validation).
    pub fn decode(b: &[u8]) -> Self {
        CtrlResponse {
            id: u16::from_le_bytes([b[0], b[1]]),
            ty: u16::from_le_bytes([b[2], b[3]]),
            status: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            data: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Backend end of the control ring.
pub struct CtrlBackend<'a> {
    ring: BackRing<'a>,
}

impl<'a> CtrlBackend<'a> {
    /// Attaches to a mapped control ring.
    pub fn attach(mem: SharedMem<'a>) -> Result<Self, SetupError> {
        Ok(CtrlBackend {
            ring: BackRing::new(mem, CTRL_SLOT)?,
        })
    }
    /// The next request (use [`CtrlRequest::op`] to check its parameters).
    pub fn poll_request(&mut self) -> Result<Option<CtrlRequest>, PeerError> {
        if self.ring.available_requests()? == 0 {
            return Ok(None);
        }
        let req = CtrlRequest::decode(&self.ring.read_request(0).1);
        self.ring.consume_requests(1);
        Ok(Some(req))
    }
    /// Answers the oldest unanswered request.
    pub fn respond(&mut self, rsp: &CtrlResponse) -> Result<(), SendError> {
        self.ring.push_response(&rsp.encode()).map(|_| ())
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

/// Frontend end of the control ring.
pub struct CtrlFrontend<'a> {
    ring: FrontRing<'a>,
    outstanding: IdSet,
}

impl<'a> CtrlFrontend<'a> {
    /// Initialises the shared ring and takes the front end.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, SetupError> {
        sring::init(&mem)?;
        Ok(CtrlFrontend {
            ring: FrontRing::new(mem, CTRL_SLOT)?,
            outstanding: IdSet::new(1 << 16),
        })
    }
    /// Queues a request (its id must not be outstanding).
    pub fn send(&mut self, req: &CtrlRequest) -> Result<(), SendError> {
        if self.outstanding.contains(req.id.into()) {
            return Err(SendError::IdInUse { id: req.id.into() });
        }
        self.ring.push_request(&req.encode())?;
        self.outstanding.insert(req.id.into());
        Ok(())
    }
    /// Publishes requests; true means "send the event".
    pub fn flush(&mut self) -> bool {
        self.ring.flush()
    }
    /// The next response, validated (known id, defined status).
    pub fn poll_response(&mut self) -> Result<Option<CtrlResponse>, PeerError> {
        if self.ring.available_responses()? == 0 {
            return Ok(None);
        }
        let rsp = CtrlResponse::decode(&self.ring.read_response(0).1);
        if rsp.status > CTRL_STATUS_BUFFER_OVERFLOW {
            return Err(PeerError::BadCtrlStatus { status: rsp.status });
        }
        if !self.outstanding.remove(rsp.id.into()) {
            return Err(PeerError::UnexpectedId { id: rsp.id.into() });
        }
        self.ring.consume_responses(1);
        Ok(Some(rsp))
    }
}
