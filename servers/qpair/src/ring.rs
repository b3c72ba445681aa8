//! One SPSC ring of 16-byte entries in shared memory, seen as a slice of `AtomicU64`.
//!
//! Layout (in 64-bit words): a 16-word header, then `capacity` slots of [`SLOT_WORDS`] words.
//! Header word 0 is the producer index, word 1 the producer-event index (written by the
//! consumer: "notify me once the producer index passes this"); word 8 is the consumer index and
//! word 9 the consumer-event index (written by the producer when it waits for space). The two
//! halves sit in different cache lines so the two ends do not false-share.
//!
//! Invariants: each end keeps its own index privately and only *publishes* it; the peer's index
//! is read once per operation and rejected if it implies more than `capacity` entries in flight
//! ([`RingError::PeerIndex`]). Indices are free-running `u32` that wrap; the capacity is a power
//! of two so `index & (capacity - 1)` is the slot. All shared accesses are atomic, so a hostile
//! peer can at worst make us read garbage entries, which the message layer rejects.

use core::sync::atomic::{AtomicU64, Ordering, fence};

/// Words of the ring header.
pub const HEADER_WORDS: usize = 16;
/// Words per entry.
pub const SLOT_WORDS: usize = 2;
/// Largest capacity a ring may have (entries).
pub const MAX_CAPACITY: u32 = 1 << 15;

const PROD: usize = 0;
const PROD_EVENT: usize = 1;
const CONS: usize = 8;
const CONS_EVENT: usize = 9;

/// One raw ring entry.
pub type Entry = [u64; SLOT_WORDS];

/// Why a ring operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The capacity is zero, not a power of two, or above [`MAX_CAPACITY`].
    BadCapacity(u32),
    /// The memory given for the ring does not have the size the capacity needs.
    RegionSize { need: usize, got: usize },
    /// The peer published an index that is more than `capacity` away from ours.
    PeerIndex { peer: u32, own: u32 },
}

/// Words a ring of `capacity` entries occupies.
pub const fn ring_words(capacity: u32) -> usize {
    HEADER_WORDS + capacity as usize * SLOT_WORDS
}

fn check(mem: &[AtomicU64], capacity: u32) -> Result<(), RingError> {
    if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(RingError::BadCapacity(capacity));
    }
    let need = ring_words(capacity);
    if mem.len() != need {
        return Err(RingError::RegionSize {
            need,
            got: mem.len(),
        });
    }
    Ok(())
}

/// Xen's rule: notify iff `event` lies in `(old, new]`.
fn crossed(event: u32, old: u32, new: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Result of a batched push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Entries written (may be fewer than offered when the ring is full).
    pub count: usize,
    /// The consumer asked to be notified and this push crossed its event index.
    pub notify: bool,
}

/// The producing end of one ring.
pub struct Producer<'a> {
    mem: &'a [AtomicU64],
    mask: u32,
    prod: u32,
}

impl<'a> Producer<'a> {
    /// Takes the producing end of a ring in `mem`, which must be zeroed by whoever set the
    /// channel up (both ends start at index 0).
    pub fn new(mem: &'a [AtomicU64], capacity: u32) -> Result<Self, RingError> {
        check(mem, capacity)?;
        Ok(Self {
            mem,
            mask: capacity - 1,
            prod: 0,
        })
    }

    /// Capacity in entries.
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Free slots, from one validated read of the consumer index.
    pub fn free(&self) -> Result<u32, RingError> {
        let cons = self.mem[CONS].load(Ordering::Acquire) as u32;
        let used = self.prod.wrapping_sub(cons);
        if used > self.capacity() {
            return Err(RingError::PeerIndex {
                peer: cons,
                own: self.prod,
            });
        }
        Ok(self.capacity() - used)
    }

    /// Writes as many of `entries` as fit, publishes them with one index store, and says
    /// whether the consumer wants a notification.
    pub fn push(&mut self, entries: &[Entry]) -> Result<Pushed, RingError> {
        let n = (self.free()? as usize).min(entries.len());
        if n == 0 {
            return Ok(Pushed {
                count: 0,
                notify: false,
            });
        }
        let old = self.prod;
        for (i, e) in entries[..n].iter().enumerate() {
            let slot = (old.wrapping_add(i as u32) & self.mask) as usize;
            let base = HEADER_WORDS + slot * SLOT_WORDS;
            self.mem[base].store(e[0], Ordering::Relaxed);
            self.mem[base + 1].store(e[1], Ordering::Relaxed);
        }
        let new = old.wrapping_add(n as u32);
        self.prod = new;
        self.mem[PROD].store(u64::from(new), Ordering::Release);
        // The event index must be read after the index store is visible.
        fence(Ordering::SeqCst);
        let event = self.mem[PROD_EVENT].load(Ordering::Acquire) as u32;
        Ok(Pushed {
            count: n,
            notify: crossed(event, old, new),
        })
    }

    /// Asks the consumer to notify us once it has freed space; returns true if space appeared
    /// meanwhile (the caller should try again instead of sleeping).
    pub fn wait_for_space(&mut self) -> Result<bool, RingError> {
        self.mem[CONS_EVENT].store(
            u64::from(self.prod.wrapping_sub(self.mask)),
            Ordering::Release,
        );
        fence(Ordering::SeqCst);
        Ok(self.free()? > 0)
    }
}

/// The consuming end of one ring.
pub struct Consumer<'a> {
    mem: &'a [AtomicU64],
    mask: u32,
    cons: u32,
}

impl<'a> Consumer<'a> {
    /// Takes the consuming end of a ring in `mem` (zeroed, see [`Producer::new`]).
    pub fn new(mem: &'a [AtomicU64], capacity: u32) -> Result<Self, RingError> {
        check(mem, capacity)?;
        Ok(Self {
            mem,
            mask: capacity - 1,
            cons: 0,
        })
    }

    /// Capacity in entries.
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Entries waiting, from one validated read of the producer index.
    pub fn available(&self) -> Result<u32, RingError> {
        let prod = self.mem[PROD].load(Ordering::Acquire) as u32;
        let avail = prod.wrapping_sub(self.cons);
        if avail > self.capacity() {
            return Err(RingError::PeerIndex {
                peer: prod,
                own: self.cons,
            });
        }
        Ok(avail)
    }

    /// Copies up to `out.len()` entries out of the ring and releases their slots with one
    /// index store. `notify` says whether the producer waits for space.
    pub fn pop(&mut self, out: &mut [Entry]) -> Result<Pushed, RingError> {
        let n = (self.available()? as usize).min(out.len());
        if n == 0 {
            return Ok(Pushed {
                count: 0,
                notify: false,
            });
        }
        let old = self.cons;
        for (i, e) in out[..n].iter_mut().enumerate() {
            let slot = (old.wrapping_add(i as u32) & self.mask) as usize;
            let base = HEADER_WORDS + slot * SLOT_WORDS;
            e[0] = self.mem[base].load(Ordering::Relaxed);
            e[1] = self.mem[base + 1].load(Ordering::Relaxed);
        }
        let new = old.wrapping_add(n as u32);
        self.cons = new;
        self.mem[CONS].store(u64::from(new), Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.mem[CONS_EVENT].load(Ordering::Acquire) as u32;
        Ok(Pushed {
            count: n,
            notify: crossed(event, old, new),
        })
    }

    /// Asks the producer to notify us on its next push; returns true if entries arrived
    /// meanwhile (poll again rather than sleep).
    pub fn arm(&mut self) -> Result<bool, RingError> {
        self.mem[PROD_EVENT].store(u64::from(self.cons.wrapping_add(1)), Ordering::Release);
        fence(Ordering::SeqCst);
        Ok(self.available()? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(cap: u32) -> Vec<AtomicU64> {
        (0..ring_words(cap)).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn push_pop_in_order_across_wrap() {
        let mem = region(8);
        let mut p = Producer::new(&mem, 8).unwrap();
        let mut c = Consumer::new(&mem, 8).unwrap();
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..20 {
            let batch: Vec<Entry> = (0..(round % 7 + 1))
                .map(|i| [next + i, !(next + i)])
                .collect();
            let pushed = p.push(&batch).unwrap();
            next += pushed.count as u64;
            let mut out = [[0u64; 2]; 8];
            let got = c.pop(&mut out).unwrap().count;
            for e in &out[..got] {
                assert_eq!(e[0], expect);
                assert_eq!(e[1], !expect);
                expect += 1;
            }
        }
        assert_eq!(next, expect);
        assert!(next > 8);
    }

    #[test]
    fn full_ring_accepts_only_capacity() {
        let mem = region(4);
        let mut p = Producer::new(&mem, 4).unwrap();
        let pushed = p.push(&[[1, 1]; 6]).unwrap();
        assert_eq!(pushed.count, 4);
        assert_eq!(p.push(&[[2, 2]]).unwrap().count, 0);
    }

    #[test]
    fn hostile_producer_index_is_rejected() {
        let mem = region(4);
        let c = Consumer::new(&mem, 4).unwrap();
        mem[PROD].store(5, Ordering::Relaxed);
        assert_eq!(c.available(), Err(RingError::PeerIndex { peer: 5, own: 0 }));
        // An index that moved backwards is just as wrong.
        mem[PROD].store(u64::from(u32::MAX), Ordering::Relaxed);
        assert!(matches!(c.available(), Err(RingError::PeerIndex { .. })));
    }

    #[test]
    fn hostile_consumer_index_is_rejected() {
        let mem = region(4);
        let mut p = Producer::new(&mem, 4).unwrap();
        p.push(&[[0, 0]; 2]).unwrap();
        mem[CONS].store(3, Ordering::Relaxed);
        assert_eq!(p.free(), Err(RingError::PeerIndex { peer: 3, own: 2 }));
    }

    #[test]
    fn bad_geometry_is_rejected() {
        let mem = region(4);
        assert_eq!(
            Producer::new(&mem, 3).err(),
            Some(RingError::BadCapacity(3))
        );
        assert_eq!(
            Consumer::new(&mem, 8).err(),
            Some(RingError::RegionSize {
                need: ring_words(8),
                got: ring_words(4)
            })
        );
    }

    #[test]
    fn notification_only_when_consumer_armed() {
        let mem = region(8);
        let mut p = Producer::new(&mem, 8).unwrap();
        let mut c = Consumer::new(&mem, 8).unwrap();
        // Fresh ring: event index 0 means "not armed" until the consumer arms.
        assert!(!p.push(&[[1, 0]]).unwrap().notify);
        let mut out = [[0u64; 2]; 8];
        c.pop(&mut out).unwrap();
        assert!(!c.arm().unwrap());
        assert!(p.push(&[[2, 0], [3, 0]]).unwrap().notify);
        // Not re-armed: the next push stays silent.
        assert!(!p.push(&[[4, 0]]).unwrap().notify);
        // Arming while entries are pending tells the consumer to keep polling.
        assert!(c.arm().unwrap());
    }

    #[test]
    fn producer_waiting_for_space_is_notified() {
        let mem = region(2);
        let mut p = Producer::new(&mem, 2).unwrap();
        let mut c = Consumer::new(&mem, 2).unwrap();
        p.push(&[[1, 0], [2, 0]]).unwrap();
        assert!(!p.wait_for_space().unwrap());
        let mut out = [[0u64; 2]; 1];
        assert!(c.pop(&mut out).unwrap().notify);
    }

    /// Real concurrency: a producer and a consumer thread stream entries through a small
    /// ring; every entry arrives once, in order, intact.
    #[test]
    fn two_threads_stream_in_order() {
        let n: u64 = if std::env::var("NC2DD_LONG_TESTS").is_ok() {
            20_000_000
        } else {
            200_000
        };
        let mem = region(64);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut p = Producer::new(&mem, 64).unwrap();
                let mut next = 0u64;
                let mut batch = [[0u64; 2]; 16];
                while next < n {
                    let k = ((n - next) as usize).min(1 + (next % 16) as usize);
                    for (i, e) in batch[..k].iter_mut().enumerate() {
                        let v = next + i as u64;
                        *e = [v, v.wrapping_mul(0x9E37_79B9_7F4A_7C15)];
                    }
                    next += p.push(&batch[..k]).unwrap().count as u64;
                    std::hint::spin_loop();
                }
            });
            let mut c = Consumer::new(&mem, 64).unwrap();
            let mut expect = 0u64;
            let mut out = [[0u64; 2]; 32];
            while expect < n {
                let got = c.pop(&mut out).unwrap().count;
                for e in &out[..got] {
                    assert_eq!(e[0], expect);
                    assert_eq!(e[1], expect.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    expect += 1;
                }
                std::hint::spin_loop();
            }
        });
    }
}
