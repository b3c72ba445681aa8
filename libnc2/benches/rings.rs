//! Ring throughput: a producer thread and a consumer thread move N messages
//! over each ring at batch sizes 1, 8 and 32 (the producer publishes, and
//! the consumer publishes its consumer index, every `batch` messages), with
//! crossbeam-queue's `ArrayQueue` moving the same payload in the same run as
//! the baseline. Prints msgs/s, ns/msg and the ratio to the baseline.
//!
//! Payloads: netchannel2 carries a 64-byte packet inline (SMALL), compared
//! with `ArrayQueue<[u8; 64]>`; netif tx carries one 12-byte request and
//! returns one response per request (the protocol needs both), compared
//! with `ArrayQueue<TxRequest>`.
//!
//! `cargo bench -p libnc2 --bench rings` (N from `NC2DD_BENCH_MSGS`,
//! default 2,000,000; each figure is the best of `NC2DD_BENCH_REPS` runs,
//! default 3, baseline and ring runs interleaved, to damp noise from other
//! load on the machine).

use crossbeam_queue::ArrayQueue;
use libnc2::GrantBound;
use libnc2::nc2::{Backend, ChannelMem, Config, Event, Frontend, PacketKind, PacketMeta};
use libnc2::netif::{TxBackend, TxFrag, TxFrontend, TxRequest};
use libnc2::shm::OwnedRegion;
use std::hint::black_box;
use std::time::{Duration, Instant};

const RING: usize = 16384;

fn nc2(n: u64, batch: u64) -> Duration {
    let region = OwnedRegion::new(256 + 2 * RING);
    let m = region.mem();
    let ch = ChannelMem {
        control: m.sub(0, 256).unwrap(),
        front_to_back: m.sub(256, RING).unwrap(),
        back_to_front: m.sub(256 + RING, RING).unwrap(),
    };
    let cfg = Config::default();
    let mut f = Frontend::new(ch, cfg).unwrap();
    let mut b = Backend::attach(ch, cfg).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut payload = [0u8; 64];
            let meta = PacketMeta::new(0, PacketKind::Small);
            for i in 0..n {
                payload[0] = i as u8;
                while f.send_packet(&meta, &[], &payload).is_err() {
                    f.flush();
                    while let Ok(Some(_)) = f.poll() {}
                    std::hint::spin_loop();
                }
                if (i + 1) % batch == 0 {
                    f.flush();
                }
            }
            f.flush();
        });
        s.spawn(move || {
            let mut got = 0u64;
            let mut sum = 0u64;
            let mut since = 0u64;
            while got < n {
                match b.poll().unwrap() {
                    Some(Event::Packet(p)) => {
                        let mut local = [0u8; 64];
                        local.copy_from_slice(p.prefix);
                        sum += u64::from(black_box(local)[0]);
                        got += 1;
                        since += 1;
                        if since == batch {
                            b.flush();
                            since = 0;
                        }
                    }
                    Some(_) => {}
                    None => {
                        b.flush();
                        std::hint::spin_loop();
                    }
                }
            }
            black_box(sum);
        });
    });
    start.elapsed()
}

fn netif(n: u64, batch: u64) -> Duration {
    let page = OwnedRegion::new(4096);
    let mut f = TxFrontend::new(page.mem()).unwrap();
    let mut b = TxBackend::attach(page.mem(), GrantBound(1 << 20), 18).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n {
                let frag = TxFrag {
                    id: i as u16,
                    gref: i as u32 & 0xffff,
                    offset: 0,
                    size: 64,
                };
                while f.send_packet(&[frag], 0, &[]).is_err() {
                    f.flush();
                    while let Ok(Some(_)) = f.poll_response() {}
                    std::hint::spin_loop();
                }
                if (i + 1) % batch == 0 {
                    f.flush();
                    while let Ok(Some(_)) = f.poll_response() {}
                }
            }
            f.flush();
        });
        s.spawn(move || {
            let mut got = 0u64;
            let mut since = 0u64;
            let mut sum = 0u64;
            while got < n {
                match b.poll_packet().unwrap() {
                    Some(p) => {
                        sum += u64::from(p.slots()[0].gref);
                        b.respond(&p, 0).unwrap();
                        got += 1;
                        since += 1;
                        if since == batch {
                            b.flush();
                            since = 0;
                        }
                    }
                    None => {
                        b.flush();
                        std::hint::spin_loop();
                    }
                }
            }
            b.flush();
            black_box(sum);
        });
    });
    start.elapsed()
}

fn array_queue<T: Send + Copy>(
    n: u64,
    cap: usize,
    make: impl Fn(u64) -> T + Send,
    use_it: impl Fn(T) -> u64 + Send,
) -> Duration {
    let q = ArrayQueue::<T>::new(cap);
    let start = Instant::now();
    std::thread::scope(|s| {
        let q = &q;
        s.spawn(move || {
            for i in 0..n {
                let mut v = make(i);
                while let Err(back) = q.push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        });
        s.spawn(move || {
            let mut got = 0u64;
            let mut sum = 0u64;
            while got < n {
                match q.pop() {
                    Some(v) => {
                        sum += use_it(black_box(v));
                        got += 1;
                    }
                    None => std::hint::spin_loop(),
                }
            }
            black_box(sum);
        });
    });
    start.elapsed()
}

fn report(name: &str, batch: u64, n: u64, d: Duration, base: Duration) {
    let secs = d.as_secs_f64();
    println!(
        "{name:<22} batch {batch:>2}: {:>7.2} Mmsg/s {:>7.1} ns/msg   ratio vs ArrayQueue: {:.2}x throughput",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64,
        base.as_secs_f64() / secs
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_or("NC2DD_BENCH_MSGS", 2_000_000);
    let reps = env_or("NC2DD_BENCH_REPS", 3).max(1) as u32;
    println!(
        "libnc2 ring benchmark: {n} messages per run, best of {reps}, producer and consumer on two threads"
    );
    for batch in [1u64, 8, 32] {
        // Baseline and ring runs alternate, so passing load on the machine
        // hits both alike; each keeps its best run.
        let (mut aq64, mut nc, mut aqd, mut ni) =
            (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..reps {
            aq64 = aq64.min(array_queue(
                n,
                256,
                |i| [i as u8; 64],
                |v: [u8; 64]| u64::from(v[0]),
            ));
            nc = nc.min(nc2(n, batch));
            aqd = aqd.min(array_queue(
                n,
                256,
                |i| TxRequest {
                    gref: i as u32,
                    offset: 0,
                    flags: 0,
                    id: i as u16,
                    size: 64,
                },
                |v: TxRequest| u64::from(v.gref),
            ));
            ni = ni.min(netif(n, batch));
        }
        report("ArrayQueue<[u8;64]>", batch, n, aq64, aq64);
        report("nc2 small 64 B inline", batch, n, nc, aq64);
        report("ArrayQueue<TxRequest>", batch, n, aqd, aqd);
        report("netif tx req+rsp", batch, n, ni, aqd);
    }
}
