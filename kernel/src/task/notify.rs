//! The notification word: 64 bits per task, posted by IRQs, timers, peers and the kernel.
//!
//! Invariant: a posted bit stays pending until a `wait` or `poll` whose mask covers it takes it;
//! several posts of one bit before it is taken collapse into one (a bit is a flag, not a count).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    pending: u64,
    /// While blocked in `wait`, the bits that wake the task.
    waiting_for: u64,
}

impl Notifications {
    pub fn post(&mut self, bits: u64) {
        self.pending |= bits;
    }

    /// Takes the pending bits in `mask` (possibly none).
    pub fn take(&mut self, mask: u64) -> u64 {
        let got = self.pending & mask;
        self.pending &= !mask;
        got
    }

    /// Starts waiting for `mask`; returns the bits at once if some are already pending.
    pub fn wait(&mut self, mask: u64) -> Option<u64> {
        let got = self.take(mask);
        if got != 0 {
            self.waiting_for = 0;
            Some(got)
        } else {
            self.waiting_for = mask;
            None
        }
    }

    /// For a blocked task: the bits that end its wait, if any have arrived (taken).
    pub fn wake(&mut self) -> Option<u64> {
        if self.waiting_for == 0 {
            return None;
        }
        let got = self.take(self.waiting_for);
        if got != 0 {
            self.waiting_for = 0;
            Some(got)
        } else {
            None
        }
    }

    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Forgets everything (task restart).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_pending_bits_in_mask_only() {
        let mut n = Notifications::default();
        n.post(0b1010);
        assert_eq!(n.wait(0b0010), Some(0b0010));
        assert_eq!(n.pending(), 0b1000);
        assert_eq!(n.wait(0b0001), None);
        assert_eq!(n.wake(), None);
        n.post(0b0100);
        assert_eq!(n.wake(), None, "bit outside the mask must not wake");
        n.post(0b0001);
        assert_eq!(n.wake(), Some(0b0001));
        assert_eq!(n.wake(), None, "a wake is delivered once");
        assert_eq!(n.pending(), 0b1100);
    }

    #[test]
    fn posts_collapse_and_poll_takes_nothing_when_idle() {
        let mut n = Notifications::default();
        n.post(1);
        n.post(1);
        assert_eq!(n.take(1), 1);
        assert_eq!(n.take(1), 0);
        n.post(u64::MAX);
        n.reset();
        assert_eq!(n.pending(), 0);
    }
}
