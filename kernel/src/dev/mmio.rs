//! The MMIO edge: 32-bit register access inside one mapped device region.
//!
//! The kernel implements [`Mmio`] with volatile accesses over an uncached mapping; host tests
//! implement it over an array. Offsets are bytes from the start of the region. Implementations
//! must ignore (or fault on) offsets outside their region; callers in this module tree only use
//! offsets they have checked against the region's size.

/// Dword access to a device register block.
pub trait Mmio {
    /// Reads the 32-bit register at `offset` (4-byte aligned).
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset` (4-byte aligned).
    fn write32(&self, offset: usize, value: u32);

    /// Reads a 64-bit register that the hardware may update between the two halves (a free-running
    /// counter): high, low, high again, and retries the low half if the high half moved. A
    /// counter's high half moves at most once per 2^32 ticks, so the first retry succeeds; the
    /// bound only keeps a broken device from hanging the caller.
    fn read64_split(&self, offset: usize) -> u64 {
        let mut high = self.read32(offset + 4);
        let mut low = self.read32(offset);
        for _ in 0..4 {
            let again = self.read32(offset + 4);
            if again == high {
                break;
            }
            high = again;
            low = self.read32(offset);
        }
        (u64::from(high) << 32) | u64::from(low)
    }
}

impl<M: Mmio + ?Sized> Mmio for &M {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

/// A register block in host memory, for tests of the modules that program devices.
#[cfg(test)]
pub(crate) mod fake {
    use super::Mmio;
    use core::cell::RefCell;
    use std::vec::Vec;

    pub struct FakeMmio {
        pub regs: RefCell<Vec<u32>>,
        /// Every write in order, as (offset, value).
        pub writes: RefCell<Vec<(usize, u32)>>,
    }

    impl FakeMmio {
        pub fn new(bytes: usize) -> Self {
            FakeMmio {
                regs: RefCell::new(vec![0; bytes / 4]),
                writes: RefCell::new(Vec::new()),
            }
        }
        pub fn get(&self, offset: usize) -> u32 {
            self.regs.borrow()[offset / 4]
        }
        pub fn set(&self, offset: usize, value: u32) {
            self.regs.borrow_mut()[offset / 4] = value;
        }
    }

    impl Mmio for FakeMmio {
        fn read32(&self, offset: usize) -> u32 {
            assert_eq!(offset % 4, 0, "unaligned MMIO read at {offset:#x}");
            self.get(offset)
        }
        fn write32(&self, offset: usize, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned MMIO write at {offset:#x}");
            self.writes.borrow_mut().push((offset, value));
            self.set(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mmio;
    use core::cell::Cell;

    /// A counter whose low half wraps (carrying into the high half) right after the first read.
    struct Wrapping {
        reads: Cell<u32>,
    }

    impl Mmio for Wrapping {
        fn read32(&self, offset: usize) -> u32 {
            let n = self.reads.get();
            self.reads.set(n + 1);
            match (offset, n) {
                (4, 0) => 1, // high before the wrap
                (0, 1) => 0, // low after the wrap
                (4, _) => 2, // high after the wrap
                (0, _) => 5, // low, re-read
                _ => 0,
            }
        }
        fn write32(&self, _offset: usize, _value: u32) {}
    }

    /// A broken register whose high half changes on every read.
    struct Noisy(Cell<u32>);

    impl Mmio for Noisy {
        fn read32(&self, _offset: usize) -> u32 {
            self.0.set(self.0.get().wrapping_add(1));
            self.0.get()
        }
        fn write32(&self, _offset: usize, _value: u32) {}
    }

    #[test]
    fn split_reads_retry_across_a_carry_and_stay_bounded() {
        let w = Wrapping {
            reads: Cell::new(0),
        };
        assert_eq!(w.read64_split(0), (2 << 32) | 5);
        let n = Noisy(Cell::new(0));
        let _ = n.read64_split(0);
        assert!(n.0.get() <= 10, "unbounded retries");
    }
}
