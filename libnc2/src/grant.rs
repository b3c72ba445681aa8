//! Grant references as they appear in messages: a plain `u32` that must be
//! validated against a caller-supplied bound (the peer's grant table size)
//! before anything uses it.

use crate::error::PeerError;

/// Exclusive upper bound for acceptable grant references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantBound(pub u32);

impl GrantBound {
    /// Checks `gref < bound`.
    #[inline]
    pub fn check(self, gref: u32) -> Result<u32, PeerError> {
        if gref < self.0 {
            Ok(gref)
        } else {
            Err(PeerError::GrantOutOfRange {
                gref,
                bound: self.0,
            })
        }
    }
}

/// Page size the grant-based fragment rules assume.
pub const PAGE_SIZE: u32 = 4096;
