//! A fixed-size bit set of ids (outstanding packets, posted buffers). Ids
//! outside `0..capacity` are reported, never indexed.

use alloc::vec;
use alloc::vec::Vec;

/// Set of ids in `0..capacity`.
#[derive(Clone, Debug)]
pub struct IdSet {
    bits: Vec<u64>,
    capacity: u32,
    count: u32,
}

impl IdSet {
    /// An empty set for ids `0..capacity`.
    pub fn new(capacity: u32) -> Self {
        IdSet {
            bits: vec![0; (capacity as usize).div_ceil(64)],
            capacity,
            count: 0,
        }
    }
    /// Exclusive bound of ids.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// Number of ids present.
    pub fn len(&self) -> u32 {
        self.count
    }
    /// True if no id is present.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// True if `id` is present (false when out of range).
    pub fn contains(&self, id: u32) -> bool {
        id < self.capacity && self.bits[(id / 64) as usize] & (1 << (id % 64)) != 0
    }
    /// Adds `id`; false if out of range or already present.
    pub fn insert(&mut self, id: u32) -> bool {
        if id >= self.capacity || self.contains(id) {
            return false;
        }
        self.bits[(id / 64) as usize] |= 1 << (id % 64);
        self.count += 1;
        true
    }
    /// Removes `id`; false if it was not present.
    pub fn remove(&mut self, id: u32) -> bool {
        if !self.contains(id) {
            return false;
        }
        self.bits[(id / 64) as usize] &= !(1 << (id % 64));
        self.count -= 1;
        true
    }
}
