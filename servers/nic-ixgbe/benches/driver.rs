//! Driver cycles per frame for RX and TX at batch 1, 8 and 32 against the 82599 model.
//!
//! Timed: only the driver's calls. RX = `rx_burst` (harvest write-backs) + `post_rx` (re-post
//! the same buffers, one RDT doorbell); TX = `tx_burst` (fill descriptors, one TDT doorbell) +
//! `tx_reclaim` (check DD, return ids). The model's own work (steering and DMA on inject,
//! descriptor processing in `run_tx`) runs outside the timed region.
//!
//! Baselines measured in the same process: a 64-byte memcpy per frame (the least any
//! frame-moving code does), the model's cost per frame (a software NIC moving the frame), and
//! one doorbell write into the model (on hardware an uncached MMIO write; here a function call
//! into the model, which the driver's figures include once per batch).
//!
//! A second table times the NIC end of the queue-pair channel (`Service::poll`: decode posts,
//! validate, drive the rings, encode completions) per frame at batch 32, to show what the
//! channel adds on top of the driver.
//!
//! Run: `cargo bench -p nic-ixgbe --bench driver`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use std::sync::atomic::AtomicU64;

use common::*;
use nic_ixgbe::service::{Service, Window};
use nic_ixgbe::{Chip, Config, PoolFlags, RxBuf, RxCompletion, TxBuf};
use qpair::{Layout, NetbackEnd, NicEnd, RxDone, RxPost, RxStatus, TxDone, TxPost, TxStatus};

const FRAME: usize = 64;
const FRAMES_PER_RUN: u32 = 192_000;

#[cfg(target_arch = "x86_64")]
fn cycles() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64 (`unsafe` only on older toolchains).
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cycles() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Cost of the timing itself (a back-to-back pair), subtracted from each timed region.
fn timer_overhead() -> f64 {
    let mut best = u64::MAX;
    for _ in 0..10_000 {
        let t0 = cycles();
        let t1 = cycles();
        best = best.min(t1 - t0);
    }
    best as f64
}

fn setup() -> (ixgbe_model::Model, ModelNic, u8, Buffers) {
    let (m, mut nic) = nic_with(Config {
        msix_itr_us: None,
        ..Config::new(Chip::X82599)
    });
    let p = nic.alloc_pool(guest_mac(1), PoolFlags::default()).unwrap();
    let bufs = Buffers::new(&m, 1024, 2048);
    (m, nic, p, bufs)
}

struct Result {
    driver: f64,
    model: f64,
}

fn bench_rx(batch: usize, overhead: f64) -> Result {
    let (m, mut nic, p, bufs) = setup();
    nic.post_rx(p, &bufs.rx(0..511)).unwrap();
    let f = frame(guest_mac(1), guest_mac(2), 0, FRAME);
    let mut out = vec![RxCompletion::default(); batch];
    let mut repost = vec![RxBuf { addr: 0, id: 0 }; batch];
    let (mut drv, mut mdl) = (0f64, 0f64);
    let rounds = FRAMES_PER_RUN as usize / batch;
    for _ in 0..rounds {
        let t0 = cycles();
        for _ in 0..batch {
            m.inject(&f);
        }
        let t1 = cycles();
        let n = nic.rx_burst(p, &mut out).unwrap();
        for (r, c) in repost.iter_mut().zip(&out[..n]) {
            *r = RxBuf {
                addr: bufs.addr(c.id),
                id: c.id,
            };
        }
        let posted = nic.post_rx(p, &repost[..n]).unwrap();
        let t2 = cycles();
        assert_eq!((n, posted), (batch, batch));
        mdl += (t1 - t0) as f64 - overhead;
        drv += (t2 - t1) as f64 - overhead;
    }
    assert!(m.violations().is_empty());
    let frames = (rounds * batch) as f64;
    Result {
        driver: drv / frames,
        model: mdl / frames,
    }
}

fn bench_tx(batch: usize, overhead: f64) -> Result {
    let (m, mut nic, p, bufs) = setup();
    m.defer_tx(true);
    let frames: Vec<TxBuf> = (0..batch as u32)
        .map(|id| {
            bufs.write(id, &frame(guest_mac(2), guest_mac(1), id, FRAME));
            TxBuf {
                addr: bufs.addr(id),
                len: FRAME as u16,
                id,
            }
        })
        .collect();
    let mut ids = vec![0u32; batch];
    let (mut drv, mut mdl) = (0f64, 0f64);
    let rounds = FRAMES_PER_RUN as usize / batch;
    let mut reclaimed = 0usize;
    for _ in 0..rounds {
        let t0 = cycles();
        let sent = nic.tx_burst(p, &frames).unwrap();
        reclaimed += nic.tx_reclaim(p, &mut ids).unwrap();
        let t1 = cycles();
        m.run_tx();
        m.discard_transmitted();
        let t2 = cycles();
        assert_eq!(sent, batch);
        drv += (t1 - t0) as f64 - overhead;
        mdl += (t2 - t1) as f64 - overhead;
    }
    // Each round reclaims the previous round's frames.
    assert_eq!(reclaimed, (rounds - 1) * batch);
    assert!(m.violations().is_empty());
    let frames = (rounds * batch) as f64;
    Result {
        driver: drv / frames,
        model: mdl / frames,
    }
}

fn bench_memcpy(overhead: f64) -> f64 {
    let src = vec![0x5Au8; 2048 * 64];
    let mut dst = vec![0u8; 2048 * 64];
    let n = 1_000_000usize;
    let t0 = cycles();
    for i in 0..n {
        let off = (i % 64) * 2048;
        dst[off..off + FRAME].copy_from_slice(black_box(&src[off..off + FRAME]));
        black_box(&mut dst);
    }
    let t1 = cycles();
    ((t1 - t0) as f64 - overhead) / n as f64
}

fn bench_doorbell(overhead: f64) -> f64 {
    let (m, _nic, _p, _bufs) = setup();
    let regs = Regs(m);
    let n = 200_000u32;
    let off = nic_ixgbe::regs::ixgbe::rxq(0, nic_ixgbe::regs::ixgbe::RDT);
    let t0 = cycles();
    for i in 0..n {
        nic_ixgbe::RegisterAccess::write32(&regs, off, black_box(i & 255));
    }
    let t1 = cycles();
    ((t1 - t0) as f64 - overhead) / f64::from(n)
}

/// (RX, TX) cycles per frame spent in `Service::poll` when netback moves `batch` frames per
/// poll through a channel; pool setup and the model's work are outside the timed region.
fn bench_service(batch: usize, overhead: f64) -> (f64, f64) {
    let (m, mut nic) = nic_with(Config {
        msix_itr_us: None,
        ..Config::new(Chip::X82599)
    });
    m.defer_tx(true);
    let bufs = Buffers::new(&m, 1024, 2048);
    let layout = Layout {
        ctrl: 8,
        rx: 512,
        tx: 512,
    };
    let mem: Vec<AtomicU64> = (0..layout.words()).map(|_| AtomicU64::new(0)).collect();
    let mut nic_end = NicEnd::new(&mem, layout).unwrap();
    let mut nb = NetbackEnd::new(&mem, layout).unwrap();
    let mut svc = Service::new(&[Window {
        start: bufs.base,
        end: bufs.base + 1024 * 2048,
    }]);
    nb.send_ctrl(&[qpair::Ctrl::AllocPool {
        req: 0,
        mac: qpair::MacAddr(guest_mac(1)),
        flags: qpair::PoolFlags::default(),
    }])
    .unwrap();
    svc.poll(&mut nic, &mut nic_end).unwrap();
    let mut rep = [qpair::CtrlReply::PoolReleased { pool: 0 }; 1];
    nb.recv_ctrl(&mut rep).unwrap();
    let qpair::CtrlReply::PoolAllocated { pool, .. } = rep[0] else {
        panic!("no pool: {:?}", rep[0]);
    };
    let posts: Vec<RxPost> = (0..256)
        .map(|id| RxPost {
            pool,
            id,
            addr: bufs.addr(id),
            len: 2048,
        })
        .collect();
    nb.post_rx(&posts).unwrap();
    svc.poll(&mut nic, &mut nic_end).unwrap();
    let f = frame(guest_mac(1), guest_mac(2), 0, FRAME);
    let mut done = vec![
        RxDone {
            pool,
            id: 0,
            len: 0,
            status: RxStatus::Unused
        };
        batch
    ];
    let mut repost = Vec::with_capacity(batch);
    let tx: Vec<TxPost> = (512..512 + batch as u32)
        .map(|id| {
            bufs.write(id, &frame(guest_mac(2), guest_mac(1), id, FRAME));
            TxPost {
                pool,
                id,
                addr: bufs.addr(id),
                len: FRAME as u16,
            }
        })
        .collect();
    let mut tx_done = vec![
        TxDone {
            pool,
            id: 0,
            status: TxStatus::Sent
        };
        batch
    ];
    let (mut rx_cyc, mut tx_cyc) = (0f64, 0f64);
    let rounds = 48_000 / batch;
    for _ in 0..rounds {
        for _ in 0..batch {
            m.inject(&f);
        }
        let t0 = cycles();
        svc.poll(&mut nic, &mut nic_end).unwrap();
        let t1 = cycles();
        let n = nb.recv_rx_done(&mut done).unwrap();
        assert_eq!(n, batch);
        repost.clear();
        repost.extend(done[..n].iter().map(|d| RxPost {
            pool,
            id: d.id,
            addr: bufs.addr(d.id),
            len: 2048,
        }));
        nb.post_rx(&repost).unwrap();
        nb.post_tx(&tx).unwrap();
        let t2 = cycles();
        // Takes the reposts and the TX posts, reclaims the previous round's frames.
        svc.poll(&mut nic, &mut nic_end).unwrap();
        let t3 = cycles();
        m.run_tx();
        m.discard_transmitted();
        nb.recv_tx_done(&mut tx_done).unwrap();
        rx_cyc += (t1 - t0) as f64 - overhead;
        tx_cyc += (t3 - t2) as f64 - overhead;
    }
    assert!(m.violations().is_empty());
    let frames = (rounds * batch) as f64;
    (rx_cyc / frames, tx_cyc / frames)
}

fn main() {
    let overhead = timer_overhead();
    let t = std::time::Instant::now();
    let c0 = cycles();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let ghz = (cycles() - c0) as f64 / t.elapsed().as_nanos() as f64;
    let memcpy = bench_memcpy(overhead);
    let doorbell = bench_doorbell(overhead);
    println!("nic-ixgbe driver benchmark: 82599 model, {FRAME}-byte frames, one pool");
    println!(
        "TSC {ghz:.2} GHz; timer overhead {overhead:.0} cycles (subtracted); baseline memcpy of one {FRAME}-byte frame: {memcpy:.1} cycles; one doorbell write into the model: {doorbell:.1} cycles"
    );
    println!(
        "{:<4} {:>5} {:>14} {:>14} {:>13} {:>14} {:>16}",
        "dir",
        "batch",
        "driver cyc/fr",
        "model cyc/fr",
        "driver/model",
        "driver/memcpy",
        "driver-doorbell"
    );
    for batch in [1usize, 8, 32] {
        for (dir, r) in [
            ("RX", bench_rx(batch, overhead)),
            ("TX", bench_tx(batch, overhead)),
        ] {
            println!(
                "{:<4} {:>5} {:>14.1} {:>14.1} {:>13.2} {:>14.2} {:>16.1}",
                dir,
                batch,
                r.driver,
                r.model,
                r.driver / r.model,
                r.driver / memcpy,
                r.driver - doorbell / batch as f64
            );
        }
    }
    println!();
    println!("NIC end of the queue-pair channel (Service::poll), cycles per frame:");
    println!(
        "{:>5} {:>18} {:>26}",
        "batch", "RX (harvest+reply)", "TX+repost (take+send+reclaim)"
    );
    for batch in [8usize, 32] {
        let (rx, tx) = bench_service(batch, overhead);
        println!("{batch:>5} {rx:>18.1} {tx:>26.1}");
    }
}
