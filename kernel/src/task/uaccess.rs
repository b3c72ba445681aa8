//! User pointers are allegations: a (pointer, length) from a task is checked against the regions
//! the kernel mapped for that task before the kernel touches a byte.
//!
//! Owns: the region list of one task and the check. Invariant: a range passes only if it lies
//! wholly inside one region with the needed right (overflow-safe); anything else is the caller's
//! fault, reported as [`Denied`].

use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub writable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    pub addr: u64,
    pub len: u64,
    pub write: bool,
}

impl core::fmt::Display for Denied {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} of {} bytes at {:#x} is outside the task's memory",
            if self.write { "write" } else { "read" },
            self.len,
            self.addr
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct UserRegions {
    regions: Vec<Region>,
}

impl UserRegions {
    pub fn add(&mut self, start: u64, len: u64, writable: bool) {
        self.regions.push(Region {
            start,
            end: start.saturating_add(len),
            writable,
        });
    }

    /// `Ok` when `[addr, addr + len)` may be read (or written, with `write`) by the task.
    pub fn check(&self, addr: u64, len: u64, write: bool) -> Result<(), Denied> {
        let denied = Denied { addr, len, write };
        let end = addr.checked_add(len).ok_or(denied)?;
        if len == 0 {
            return Ok(());
        }
        self.regions
            .iter()
            .any(|r| r.start <= addr && end <= r.end && (!write || r.writable))
            .then_some(())
            .ok_or(denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> UserRegions {
        let mut r = UserRegions::default();
        r.add(0x1000, 0x2000, false);
        r.add(0x8000, 0x1000, true);
        r
    }

    #[test]
    fn inside_one_region_with_the_right_passes() {
        let r = regions();
        assert!(r.check(0x1000, 0x2000, false).is_ok());
        assert!(r.check(0x8ff0, 0x10, true).is_ok());
        assert!(
            r.check(0x1234, 0, true).is_ok(),
            "empty ranges touch nothing"
        );
    }

    #[test]
    fn everything_else_is_denied() {
        let r = regions();
        assert!(
            r.check(0x1000, 0x2000, true).is_err(),
            "read-only region written"
        );
        assert!(r.check(0x2fff, 2, false).is_err(), "runs off the end");
        assert!(r.check(0x0fff, 2, false).is_err(), "starts before");
        assert!(r.check(0x100000, 8, false).is_err(), "kernel memory");
        assert!(r.check(u64::MAX - 2, 8, false).is_err(), "wraps around");
        assert!(
            r.check(0x2ff0, 0x6000, false).is_err(),
            "spans two regions with a hole"
        );
    }
}
