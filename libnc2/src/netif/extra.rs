//! `netif_extra_info`: 8-byte slots that follow a tx request or rx response
//! flagged `extra_info` (GSO, multicast add/delete, hash), chained by the
//! MORE flag. At most one of each type per packet.

use crate::error::PeerError;

/// `XEN_NETIF_EXTRA_TYPE_GSO`.
pub const EXTRA_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
pub const EXTRA_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
pub const EXTRA_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`.
pub const EXTRA_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_FLAG_MORE`.
pub const EXTRA_FLAG_MORE: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const GSO_TCPV6: u8 = 2;
/// Size of the extra-info structure.
pub const EXTRA_SIZE: usize = 8;

/// One extra-info slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraInfo {
    /// Segmentation offload: segment size, `GSO_*` type, features.
    Gso {
        /// Segment payload size (MSS).
        size: u16,
        /// `GSO_TCPV4` or `GSO_TCPV6`.
        gso_type: u8,
        /// `XEN_NETIF_GSO_FEAT_*` bits.
        features: u16,
    },
    /// Add a multicast address to the filter.
    McastAdd([u8; 6]),
    /// Remove a multicast address from the filter.
    McastDel([u8; 6]),
    /// The packet's hash.
    Hash {
        /// Hash type (bit number of `XEN_NETIF_CTRL_HASH_TYPE_*`).
        htype: u8,
        /// Algorithm.
        alg: u8,
        /// Value (little-endian on the wire).
        value: u32,
    },
}

impl ExtraInfo {
    /// Type byte.
    pub fn ty(&self) -> u8 {
        match self {
            ExtraInfo::Gso { .. } => EXTRA_GSO,
            ExtraInfo::McastAdd(_) => EXTRA_MCAST_ADD,
            ExtraInfo::McastDel(_) => EXTRA_MCAST_DEL,
            ExtraInfo::Hash { .. } => EXTRA_HASH,
        }
    }

    /// Wire form; `more` sets `XEN_NETIF_EXTRA_FLAG_MORE`.
    pub fn encode(&self, more: bool) -> [u8; EXTRA_SIZE] {
        let mut b = [0u8; EXTRA_SIZE];
        b[0] = self.ty();
        b[1] = if more { EXTRA_FLAG_MORE } else { 0 };
        match *self {
            ExtraInfo::Gso {
                size,
                gso_type,
                features,
            } => {
                b[2..4].copy_from_slice(&size.to_le_bytes());
                b[4] = gso_type;
                b[6..8].copy_from_slice(&features.to_le_bytes());
            }
            ExtraInfo::McastAdd(a) | ExtraInfo::McastDel(a) => b[2..8].copy_from_slice(&a),
            ExtraInfo::Hash { htype, alg, value } => {
                b[2] = htype;
                b[3] = alg;
                b[4..8].copy_from_slice(&value.to_le_bytes());
            }
        }
        b
    }

    /// Parses and validates one slot; returns the extra and its MORE flag.
    pub fn decode(b: &[u8]) -> Result<(ExtraInfo, bool), PeerError> {
        let (ty, flags) = (b[0], b[1]);
        if flags & !EXTRA_FLAG_MORE != 0 {
            return Err(PeerError::UnknownExtraFlags { flags });
        }
        let mut addr = [0u8; 6];
        addr.copy_from_slice(&b[2..8]);
        let e = match ty {
            EXTRA_GSO => {
                let size = u16::from_le_bytes([b[2], b[3]]);
                let gso_type = b[4];
                if size == 0 || !(gso_type == GSO_TCPV4 || gso_type == GSO_TCPV6) {
                    return Err(PeerError::BadGso { gso_type, size });
                }
                ExtraInfo::Gso {
                    size,
                    gso_type,
                    features: u16::from_le_bytes([b[6], b[7]]),
                }
            }
            EXTRA_MCAST_ADD => ExtraInfo::McastAdd(addr),
            EXTRA_MCAST_DEL => ExtraInfo::McastDel(addr),
            EXTRA_HASH => ExtraInfo::Hash {
                htype: b[2],
                alg: b[3],
                value: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            },
            ty => return Err(PeerError::UnknownExtraType { ty }),
        };
        Ok((e, flags & EXTRA_FLAG_MORE != 0))
    }
}

/// The extras of one packet, at most one per type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    slots: [Option<ExtraInfo>; 4],
    count: u8,
}

impl Extras {
    /// Adds `e`, rejecting a second extra of the same type.
    pub fn add(&mut self, e: ExtraInfo) -> Result<(), PeerError> {
        let i = usize::from(e.ty() - 1);
        if self.slots[i].is_some() {
            return Err(PeerError::DuplicateExtra { ty: e.ty() });
        }
        self.slots[i] = Some(e);
        self.count += 1;
        Ok(())
    }
    /// Number of extra slots the packet used.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }
    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The GSO extra, if any.
    pub fn gso(&self) -> Option<ExtraInfo> {
        self.slots[0]
    }
    /// All extras present.
    pub fn iter(&self) -> impl Iterator<Item = ExtraInfo> + '_ {
        self.slots.iter().flatten().copied()
    }
}
