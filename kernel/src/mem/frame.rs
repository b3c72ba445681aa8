//! Physical frame allocator: one bit per 4 KiB frame below a fixed ceiling.
//!
//! Owns: which physical frames are free. Starts with every frame used; boot code frees the RAM the
//! memory map reports and then reserves what is already in use (kernel image, boot module, start
//! info). Invariants: a set bit means "not available"; `free` counts clear bits exactly; freeing a
//! frame that is already free is an error, not a silent corruption.

pub const FRAME_SIZE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    NotAligned(u64),
    OutOfRange(u64),
    DoubleFree(u64),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::NotAligned(a) => write!(f, "frame address {a:#x} not 4 KiB aligned"),
            FrameError::OutOfRange(a) => write!(f, "frame address {a:#x} beyond the allocator"),
            FrameError::DoubleFree(a) => write!(f, "frame {a:#x} freed twice"),
        }
    }
}

pub struct FrameAllocator<'a> {
    bits: &'a mut [u64],
    frames: u64,
    free: u64,
    /// Word index where the next search starts; frames below it were full when last looked at.
    hint: usize,
}

/// Bitmap words needed to cover physical addresses below `ceiling`.
pub const fn bitmap_words(ceiling: u64) -> usize {
    (ceiling / FRAME_SIZE).div_ceil(64) as usize
}

impl<'a> FrameAllocator<'a> {
    /// An allocator over `bits` (every frame starts used). Covers `bits.len() * 64` frames.
    pub fn new(bits: &'a mut [u64]) -> Self {
        bits.fill(u64::MAX);
        let frames = bits.len() as u64 * 64;
        Self {
            bits,
            frames,
            free: 0,
            hint: 0,
        }
    }

    /// First address the allocator does not cover.
    pub fn ceiling(&self) -> u64 {
        self.frames * FRAME_SIZE
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }

    fn set(&mut self, frame: u64, used: bool) {
        let (w, b) = ((frame / 64) as usize, frame % 64);
        let was_used = self.bits[w] & (1 << b) != 0;
        if used && !was_used {
            self.bits[w] |= 1 << b;
            self.free -= 1;
        } else if !used && was_used {
            self.bits[w] &= !(1 << b);
            self.free += 1;
            self.hint = self.hint.min(w);
        }
    }

    fn is_used(&self, frame: u64) -> bool {
        self.bits[(frame / 64) as usize] & (1 << (frame % 64)) != 0
    }

    /// Makes every frame wholly inside `[start, end)` available (clipped to the ceiling).
    pub fn add_free_range(&mut self, start: u64, end: u64) {
        let first = start.div_ceil(FRAME_SIZE);
        let last = (end / FRAME_SIZE).min(self.frames);
        for f in first..last {
            self.set(f, false);
        }
    }

    /// Marks every frame touching `[start, end)` as used.
    pub fn reserve_range(&mut self, start: u64, end: u64) {
        let first = start / FRAME_SIZE;
        let last = end.div_ceil(FRAME_SIZE).min(self.frames);
        for f in first..last {
            self.set(f, true);
        }
    }

    /// One free frame, lowest first.
    pub fn alloc(&mut self) -> Option<u64> {
        for w in self.hint..self.bits.len() {
            if self.bits[w] != u64::MAX {
                let b = (!self.bits[w]).trailing_zeros() as u64;
                let frame = w as u64 * 64 + b;
                self.set(frame, true);
                self.hint = w;
                return Some(frame * FRAME_SIZE);
            }
        }
        self.hint = self.bits.len();
        None
    }

    /// `count` physically contiguous free frames whose first frame address is a multiple of
    /// `align` bytes (a power of two >= 4 KiB).
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        if count == 0 || !align.is_power_of_two() || align < FRAME_SIZE {
            return None;
        }
        let step = align / FRAME_SIZE;
        let mut start = 0;
        while start + count <= self.frames {
            match (start..start + count).rev().find(|&f| self.is_used(f)) {
                None => {
                    for f in start..start + count {
                        self.set(f, true);
                    }
                    return Some(start * FRAME_SIZE);
                }
                // Restart after the used frame, rounded up to the alignment.
                Some(used) => start = (used + 1).div_ceil(step) * step,
            }
        }
        None
    }

    /// Returns a frame obtained from `alloc` or `alloc_contiguous`.
    pub fn free(&mut self, paddr: u64) -> Result<(), FrameError> {
        if !paddr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::NotAligned(paddr));
        }
        let frame = paddr / FRAME_SIZE;
        if frame >= self.frames {
            return Err(FrameError::OutOfRange(paddr));
        }
        if !self.is_used(frame) {
            return Err(FrameError::DoubleFree(paddr));
        }
        self.set(frame, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_and_frees_only_whole_frames() {
        let mut bits = vec![0; bitmap_words(1 << 24)];
        let mut fa = FrameAllocator::new(&mut bits);
        assert_eq!(fa.free_frames(), 0);
        assert_eq!(fa.alloc(), None);
        fa.add_free_range(0x1800, 0x5800); // partial frames at both ends are not usable
        assert_eq!(fa.free_frames(), 3);
        assert_eq!(fa.alloc(), Some(0x2000));
        assert_eq!(fa.alloc(), Some(0x3000));
        assert_eq!(fa.alloc(), Some(0x4000));
        assert_eq!(fa.alloc(), None);
    }

    #[test]
    fn reserve_wins_over_free_and_rounds_outward() {
        let mut bits = vec![0; bitmap_words(1 << 24)];
        let mut fa = FrameAllocator::new(&mut bits);
        fa.add_free_range(0, 0x10_0000);
        fa.reserve_range(0x1800, 0x2001); // touches frames 1 and 2
        assert_eq!(fa.free_frames(), 256 - 2);
        let got: Vec<u64> = (0..3).map(|_| fa.alloc().unwrap()).collect();
        assert_eq!(got, vec![0, 0x3000, 0x4000]);
    }

    #[test]
    fn free_checks_its_argument() {
        let mut bits = vec![0; 1];
        let mut fa = FrameAllocator::new(&mut bits);
        fa.add_free_range(0, 64 * FRAME_SIZE);
        let f = fa.alloc().unwrap();
        assert_eq!(fa.free(f + 1), Err(FrameError::NotAligned(f + 1)));
        assert_eq!(
            fa.free(64 * FRAME_SIZE),
            Err(FrameError::OutOfRange(64 * FRAME_SIZE))
        );
        assert_eq!(fa.free(f), Ok(()));
        assert_eq!(fa.free(f), Err(FrameError::DoubleFree(f)));
        assert_eq!(fa.free_frames(), 64);
    }

    #[test]
    fn ranges_beyond_the_ceiling_are_clipped() {
        let mut bits = vec![0; 1];
        let mut fa = FrameAllocator::new(&mut bits);
        fa.add_free_range(0, u64::MAX / 2);
        assert_eq!(fa.free_frames(), 64);
        assert_eq!(fa.ceiling(), 64 * FRAME_SIZE);
    }

    #[test]
    fn contiguous_respects_holes_and_alignment() {
        let mut bits = vec![0; bitmap_words(1 << 24)];
        let mut fa = FrameAllocator::new(&mut bits);
        fa.add_free_range(0, 1 << 24);
        fa.reserve_range(0x3000, 0x4000);
        let a = fa.alloc_contiguous(4, FRAME_SIZE).unwrap();
        assert_eq!(a, 0x4000);
        let b = fa.alloc_contiguous(16, 0x10000).unwrap();
        assert_eq!(b % 0x10000, 0);
        assert!(b >= 0x10000);
        for i in 0..16 {
            assert_eq!(fa.free(b + i * FRAME_SIZE), Ok(()));
        }
        assert_eq!(fa.alloc_contiguous(0, FRAME_SIZE), None);
        assert_eq!(fa.alloc_contiguous(1, 3000), None);
        assert_eq!(fa.alloc_contiguous(1 << 20, FRAME_SIZE), None);
    }

    #[test]
    fn alloc_and_free_keep_the_count_exact() {
        let mut bits = vec![0; 4];
        let mut fa = FrameAllocator::new(&mut bits);
        fa.add_free_range(0, 256 * FRAME_SIZE);
        let mut held = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if !seed.is_multiple_of(3) {
                if let Some(f) = fa.alloc() {
                    assert!(!held.contains(&f), "frame {f:#x} handed out twice");
                    held.push(f);
                }
            } else if !held.is_empty() {
                let f = held.swap_remove((seed as usize / 3) % held.len());
                fa.free(f).unwrap();
            }
            assert_eq!(fa.free_frames() + held.len() as u64, 256);
        }
    }
}
