//! Randomised runs of the driver core against the model, checked against a reference of what
//! netback should see: per pool, frames arrive in order into buffers taken in posting order,
//! a frame is dropped exactly when its pool had no buffer, transmitted frames leave in order
//! and complete in order, and a release hands back every outstanding buffer exactly once.
//! Short by default; `NC2DD_LONG_TESTS=1` runs many more steps.

mod common;

use std::collections::{HashMap, VecDeque};

use common::*;
use nic_ixgbe::{Chip, Config, PoolFlags, Released, RxBuf, RxCompletion, TxBuf};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Netback's view of one pool.
#[derive(Default)]
struct PoolRef {
    mac: u8,
    /// Buffers posted and not yet completed, oldest first.
    posted: VecDeque<u32>,
    /// Buffers the NIC has not yet filled.
    nic_free: usize,
    /// Frame seqs the pool should receive, oldest first.
    expect: VecDeque<u32>,
    /// TX ids in flight, oldest first.
    tx: VecDeque<u32>,
    dropped: u64,
}

fn run(chip: Chip, seed: u64, steps: u32) {
    let mut cfg = Config::new(chip);
    cfg.rx_ring = 16;
    cfg.tx_ring = 16;
    let (m, mut nic) = nic_with(cfg);
    let mut rng = Rng(seed);
    let bufs = Buffers::new(&m, 4096, 2048);
    let mut free: Vec<u32> = (0..4096).collect();
    let mut pools: HashMap<u8, PoolRef> = HashMap::new();
    let mut next_mac = 1u8;
    let mut seq = 0u32;
    let mut wire_expect: VecDeque<u32> = VecDeque::new();
    let mut accepted = 0u64;
    let max_pools = chip.max_pools().min(6);
    let mut out = [RxCompletion::default(); 16];
    let mut ids = [0u32; 16];

    for _ in 0..steps {
        match rng.below(100) {
            // Allocate a pool.
            0..=4 if pools.len() < max_pools as usize => {
                let mac = next_mac;
                next_mac = next_mac % 200 + 1;
                let p = nic
                    .alloc_pool(guest_mac(mac), PoolFlags::default())
                    .unwrap();
                assert!(!pools.contains_key(&p));
                pools.insert(
                    p,
                    PoolRef {
                        mac,
                        ..PoolRef::default()
                    },
                );
            }
            // Release a pool: every outstanding buffer comes back once.
            5..=6 if !pools.is_empty() => {
                let keys: Vec<u8> = pools.keys().copied().collect();
                let p = keys[rng.below(keys.len() as u64) as usize];
                let mut r = pools.remove(&p).unwrap();
                let mut events = Vec::new();
                nic.release_pool(p, |e| events.push(e)).unwrap();
                for e in events {
                    match e {
                        Released::RxFrame(c) => {
                            assert_eq!(Some(c.id), r.posted.pop_front());
                            let got = seq_of(&bufs.read(c.id, c.len.into()));
                            assert_eq!(Some(got), r.expect.pop_front());
                            free.push(c.id);
                        }
                        Released::RxUnused(id) => {
                            assert_eq!(Some(id), r.posted.pop_front());
                            free.push(id);
                        }
                        Released::TxSent(id) | Released::TxDiscarded(id) => {
                            assert_eq!(Some(id), r.tx.pop_front());
                            free.push(id);
                        }
                    }
                }
                assert!(r.posted.is_empty() && r.tx.is_empty() && r.expect.is_empty());
            }
            // Post buffers.
            7..=29 if !pools.is_empty() => {
                let keys: Vec<u8> = pools.keys().copied().collect();
                let p = keys[rng.below(keys.len() as u64) as usize];
                let want = rng.below(10) as usize;
                let take: Vec<u32> = free.drain(..want.min(free.len())).collect();
                let posts: Vec<RxBuf> = take
                    .iter()
                    .map(|&id| RxBuf {
                        addr: bufs.addr(id),
                        id,
                    })
                    .collect();
                let n = nic.post_rx(p, &posts).unwrap();
                let r = pools.get_mut(&p).unwrap();
                assert_eq!(
                    n,
                    posts.len().min(15 - r.posted.len()),
                    "room is ring - 1 - posted"
                );
                r.posted.extend(&take[..n]);
                r.nic_free += n;
                free.extend(&take[n..]);
            }
            // A frame from the wire: to a pool, to nobody, or broadcast (no pool accepts).
            30..=64 => {
                let keys: Vec<u8> = pools.keys().copied().collect();
                let target = if !keys.is_empty() && rng.below(10) < 8 {
                    Some(keys[rng.below(keys.len() as u64) as usize])
                } else {
                    None
                };
                let dst = match target {
                    Some(p) => guest_mac(pools[&p].mac),
                    None if rng.below(2) == 0 => [0xFF; 6],
                    None => guest_mac(250),
                };
                let len = 60 + rng.below(1400) as usize;
                m.inject(&frame(dst, guest_mac(251), seq, len));
                if let Some(p) = target {
                    accepted += 1;
                    let r = pools.get_mut(&p).unwrap();
                    if r.nic_free > 0 {
                        r.nic_free -= 1;
                        r.expect.push_back(seq);
                    } else {
                        r.dropped += 1;
                    }
                }
                seq += 1;
            }
            // Harvest.
            65..=84 if !pools.is_empty() => {
                let keys: Vec<u8> = pools.keys().copied().collect();
                let p = keys[rng.below(keys.len() as u64) as usize];
                let b = 1 + rng.below(16) as usize;
                let n = nic.rx_burst(p, &mut out[..b]).unwrap();
                let r = pools.get_mut(&p).unwrap();
                for c in &out[..n] {
                    assert!(c.ok);
                    assert_eq!(
                        Some(c.id),
                        r.posted.pop_front(),
                        "buffers fill in posting order"
                    );
                    let got = seq_of(&bufs.read(c.id, c.len.into()));
                    assert_eq!(Some(got), r.expect.pop_front(), "frames arrive in order");
                    free.push(c.id);
                }
            }
            // Transmit and reclaim.
            _ if !pools.is_empty() => {
                let keys: Vec<u8> = pools.keys().copied().collect();
                let p = keys[rng.below(keys.len() as u64) as usize];
                let mac = pools[&p].mac;
                let want = rng.below(6) as usize;
                let take: Vec<u32> = free.drain(..want.min(free.len())).collect();
                let frames: Vec<TxBuf> = take
                    .iter()
                    .map(|&id| {
                        let f = frame(guest_mac(252), guest_mac(mac), seq, 64);
                        seq += 1;
                        bufs.write(id, &f);
                        TxBuf {
                            addr: bufs.addr(id),
                            len: 64,
                            id,
                        }
                    })
                    .collect();
                let n = nic.tx_burst(p, &frames).unwrap();
                let r = pools.get_mut(&p).unwrap();
                for f in &frames[..n] {
                    r.tx.push_back(f.id);
                    wire_expect.push_back(seq_of(&bufs.read(f.id, 64)));
                }
                free.extend(&take[n..]);
                let k = nic.tx_reclaim(p, &mut ids).unwrap();
                for &id in &ids[..k] {
                    assert_eq!(Some(id), r.tx.pop_front(), "transmit completes in order");
                    free.push(id);
                }
            }
            _ => {}
        }
        for f in m.take_transmitted() {
            assert_eq!(
                Some(seq_of(&f)),
                wire_expect.pop_front(),
                "frames leave in order"
            );
        }
    }
    assert!(wire_expect.is_empty());
    assert_eq!(nic.stats().rx_frames, accepted);
    for (&p, r) in &pools {
        if let Some(d) = nic.pool_stats(p).unwrap().rx_dropped {
            // Drops since this pool's allocation.
            assert_eq!(d, r.dropped, "pool {p}");
        }
    }
    assert_eq!(m.violations(), Vec::<String>::new());
}

fn steps() -> u32 {
    if std::env::var("NC2DD_LONG_TESTS").is_ok() {
        300_000
    } else {
        5_000
    }
}

#[test]
fn random_traffic_82599() {
    for seed in [1u64, 0xDEAD_BEEF, 42] {
        run(Chip::X82599, seed, steps());
    }
}

#[test]
fn random_traffic_82576() {
    for seed in [7u64, 0xFEED_F00D, 99] {
        run(Chip::I82576, seed, steps());
    }
}
