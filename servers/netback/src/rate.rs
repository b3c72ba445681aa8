//! Guest transmit rate limiting, as the toolstack asks for it with the backend key
//! `rate = "<bytes>,<usec>"`: each vif queue may send `bytes` per `usec` window. Like Linux
//! netback's credit scheduler, the credit is reset (not accumulated) at each window, and a
//! packet may overdraw it once: the queue then waits until a later window repays the debt.
//!
//! Invariants: `allows` is false exactly while the credit is not positive; `refill` never
//! raises the credit above one window's worth; time only moves forward (an earlier `now` is
//! ignored).

/// A parsed `rate` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per window.
    pub bytes: u64,
    /// Window length in nanoseconds.
    pub window_ns: u64,
}

impl Rate {
    /// Parses `"<bytes>,<usec>"` (both decimal, non-zero).
    pub fn parse(v: &[u8]) -> Option<Rate> {
        let s = core::str::from_utf8(v).ok()?;
        let (b, u) = s.split_once(',')?;
        let num = |t: &str| -> Option<u64> {
            if t.is_empty() || t.len() > 19 || !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            t.parse().ok().filter(|&n| n > 0)
        };
        Some(Rate {
            bytes: num(b)?,
            window_ns: num(u)?.checked_mul(1000)?,
        })
    }
}

/// The credit of one queue.
#[derive(Clone, Copy, Debug)]
pub struct Credit {
    rate: Rate,
    credit: i64,
    window_start: u64,
}

impl Credit {
    /// Full credit, window starting at `now`.
    pub fn new(rate: Rate, now: u64) -> Self {
        Credit {
            rate,
            credit: rate.bytes.min(i64::MAX as u64) as i64,
            window_start: now,
        }
    }

    /// Starts new windows if `now` has reached them.
    pub fn refill(&mut self, now: u64) {
        if now < self.window_start + self.rate.window_ns {
            return;
        }
        let windows = (now - self.window_start) / self.rate.window_ns;
        self.window_start += windows * self.rate.window_ns;
        let full = self.rate.bytes.min(i64::MAX as u64) as i64;
        // Each elapsed window repays up to a full credit; what is left over is not banked.
        let repaid = self
            .credit
            .saturating_add(full.saturating_mul(windows as i64));
        self.credit = repaid.min(full);
    }

    /// Whether another packet may be taken now.
    pub fn allows(&self) -> bool {
        self.credit > 0
    }

    /// Charges a taken packet.
    pub fn charge(&mut self, bytes: usize) {
        self.credit = self.credit.saturating_sub(bytes as i64);
    }

    /// When the next window starts (when a blocked queue may go on).
    pub fn next_window(&self) -> u64 {
        self.window_start + self.rate.window_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        assert_eq!(
            Rate::parse(b"10000,50000"),
            Some(Rate {
                bytes: 10000,
                window_ns: 50_000_000
            })
        );
        for bad in [
            &b"10000"[..],
            b"0,5",
            b"5,0",
            b"a,5",
            b"5,",
            b",5",
            b"1,2,3",
            b" 1,2",
        ] {
            assert_eq!(Rate::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn overdraw_once_then_wait_for_repayment() {
        let r = Rate {
            bytes: 1000,
            window_ns: 100,
        };
        let mut c = Credit::new(r, 0);
        c.charge(600);
        assert!(c.allows());
        c.charge(1500);
        assert!(!c.allows(), "overdrawn by 1100");
        c.refill(99);
        assert!(!c.allows());
        c.refill(100);
        assert!(!c.allows(), "one window repays 1000 of 1100");
        c.refill(200);
        assert!(c.allows());
        assert_eq!(c.next_window(), 300);
        c.refill(10_000);
        c.charge(999);
        assert!(c.allows(), "never more than one window's credit");
        c.charge(1);
        assert!(!c.allows());
    }
}
