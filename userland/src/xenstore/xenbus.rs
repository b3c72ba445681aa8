//! Xenbus device states (`io/xenbus.h`), as the frontend and backend write them in their `state`
//! keys, and typed access to those keys.
//!
//! A frontend's state key is written by another domain: anything but a decimal 0..=8 is refused
//! with an error instead of being guessed at.

use super::client::{Client, Transport, TxId};
use super::wire::Error;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    /// Backend: probed, feature keys written, waiting for the frontend's rings.
    InitWait = 2,
    /// Frontend: rings and event channels published.
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    pub fn from_u64(v: u64) -> Option<Self> {
        use XenbusState::*;
        Some(match v {
            0 => Unknown,
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => return None,
        })
    }

    /// The value as stored: one decimal digit.
    pub fn as_bytes(self) -> [u8; 1] {
        [b'0' + self as u8]
    }
}

impl<T: Transport> Client<T> {
    /// The xenbus state stored at `path`.
    pub fn read_state(&mut self, tx: TxId, path: &str) -> Result<XenbusState, Error> {
        let v = self.read_u64(tx, path)?;
        XenbusState::from_u64(v).ok_or(Error::Protocol("not a xenbus state"))
    }

    pub fn write_state(&mut self, tx: TxId, path: &str, s: XenbusState) -> Result<(), Error> {
        self.write(tx, path, &s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_junk_is_refused() {
        for v in 0..=8 {
            let s = XenbusState::from_u64(v).unwrap();
            assert_eq!(s as u64, v);
            assert_eq!(s.as_bytes(), [b'0' + v as u8]);
        }
        assert_eq!(XenbusState::from_u64(9), None);
        assert!(XenbusState::InitWait < XenbusState::Connected);
    }
}
