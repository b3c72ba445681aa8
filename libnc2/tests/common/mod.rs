//! Shared test helpers: a small deterministic PRNG, the long-mode switch,
//! and heap-backed channel memory.
#![allow(dead_code)]

use libnc2::nc2::ChannelMem;
use libnc2::shm::OwnedRegion;

/// splitmix64: tiny, deterministic, good enough to drive fuzzing.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// True when `NC2DD_LONG_TESTS=1`.
pub fn long_mode() -> bool {
    std::env::var("NC2DD_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// `short` normally, `long` in long mode.
pub fn cases(short: u64, long: u64) -> u64 {
    if long_mode() { long } else { short }
}

/// Memory for one netchannel2 channel: control area plus two rings.
pub struct Nc2Mem {
    region: OwnedRegion,
    ring: usize,
}

impl Nc2Mem {
    pub fn new(ring: usize) -> Self {
        Nc2Mem {
            region: OwnedRegion::new(256 + 2 * ring),
            ring,
        }
    }
    pub fn channel(&self) -> ChannelMem<'_> {
        let m = self.region.mem();
        ChannelMem {
            control: m.sub(0, 256).unwrap(),
            front_to_back: m.sub(256, self.ring).unwrap(),
            back_to_front: m.sub(256 + self.ring, self.ring).unwrap(),
        }
    }
}
