//! Two-thread streaming tests: a producer thread and a consumer thread move
//! packets of random sizes (0 to 64 KiB, inline and fragmented) through each
//! protocol, with grant pages simulated by heap pages shared between the
//! threads. The consumer regenerates the producer's packet sequence from the
//! same seed, so loss, reordering, wrong sizes, wrong layout or wrong
//! contents all fail the test. Contents are checked cheaply: the whole
//! inline prefix, plus a seeded probe word at the start and end of every
//! fragment (the producer writes them into the pages it grants).
//!
//! Default: 100,000 packets per test; `NC2DD_LONG_TESTS=1`: 10,000,000
//! (run with `--release`). Covered: netchannel2 frontend-to-backend
//! (copy/map/small), netchannel2 backend-to-frontend into pre-posted
//! buffers (the multi-queue path), netif tx and netif rx.

mod common;

use common::{Nc2Mem, Rng, cases};
use libnc2::nc2::PostedBuffer;
use libnc2::nc2::msg::MAX_POST_BATCH;
use libnc2::nc2::{Backend, Config, Event, Fragment, Frontend, PacketKind, PacketMeta};
use libnc2::netif::extra::GSO_TCPV4;
use libnc2::netif::{ExtraInfo, RxBackend, RxFrontend, TxBackend, TxFrag, TxFrontend};
use libnc2::shm::{OwnedRegion, SharedMem};
use libnc2::{GrantBound, SendError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const DEADLINE: Duration = Duration::from_secs(900);

/// One packet as the generator describes it.
struct Shape {
    total: u32,
    prefix: u32,
    /// (offset, size) per fragment.
    frags: Vec<(u16, u16)>,
}

/// The packet sequence both threads derive from the seed.
fn next_shape(rng: &mut Rng, max_total: u32, max_prefix: u32) -> Shape {
    // Mostly small and mid-sized packets, with the full range well covered.
    let total = match rng.below(4) {
        0 => rng.range(0, 256),
        1 => rng.range(0, 1514),
        _ => rng.range(0, u64::from(max_total)),
    } as u32;
    let prefix = if total <= max_prefix {
        total
    } else {
        rng.range(0, u64::from(max_prefix.min(128))) as u32
    };
    let mut rest = total - prefix;
    let mut frags = Vec::new();
    let mut off = (rng.below(64) * 4) as u16;
    while rest > 0 {
        let room = PAGE as u32 - u32::from(off);
        let size = rest.min(room);
        frags.push((off, size as u16));
        rest -= size;
        off = 0;
    }
    Shape {
        total,
        prefix,
        frags,
    }
}

fn prefix_byte(seq: u64, i: u32) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

fn probe(seq: u64, frag: usize) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B1) ^ (frag as u32).wrapping_mul(0x85EB_CA77) ^ 0x5bd1_e995
}

/// Probe positions: the aligned word at the fragment start, and the last
/// aligned word that lies wholly inside it (fragments start 4-aligned).
fn probe_spots(off: u16, size: u16) -> Option<(usize, usize)> {
    if size < 4 {
        return None;
    }
    let start = usize::from(off);
    let end = (usize::from(off) + usize::from(size) - 4) & !3;
    Some((start, end))
}

fn write_probes(page: &SharedMem<'_>, seq: u64, frag: usize, off: u16, size: u16) {
    if let Some((a, b)) = probe_spots(off, size) {
        let v = probe(seq, frag).to_ne_bytes();
        page.write_from(a, &v);
        page.write_from(b, &v);
    }
}

fn check_probes(page: &SharedMem<'_>, seq: u64, frag: usize, off: u16, size: u16) {
    if let Some((a, b)) = probe_spots(off, size) {
        let mut w = [0u8; 4];
        page.read_into(a, &mut w);
        assert_eq!(
            u32::from_ne_bytes(w),
            probe(seq, frag),
            "packet {seq} fragment {frag}: start probe"
        );
        page.read_into(b, &mut w);
        assert_eq!(
            u32::from_ne_bytes(w),
            probe(seq, frag),
            "packet {seq} fragment {frag}: end probe"
        );
    }
}

/// Simulated grant table: gref `g` is page `g`.
struct Pages(OwnedRegion);

impl Pages {
    fn new(n: usize) -> Self {
        Pages(OwnedRegion::new(n * PAGE))
    }
    fn page(&self, gref: u32) -> SharedMem<'_> {
        self.0
            .mem()
            .sub(gref as usize * PAGE, PAGE)
            .expect("gref within the simulated table")
    }
}

const NC2_IDS: u32 = 128;
const NC2_FRAGS: usize = 17;

#[test]
fn nc2_two_threads_random_packets() {
    let count = cases(100_000, 10_000_000);
    let seed = 0x6e63_3200;
    let mem = Nc2Mem::new(16384);
    let pages = Pages::new(NC2_IDS as usize * NC2_FRAGS);
    let cfg = Config {
        max_packets: NC2_IDS,
        max_fragments: 32,
        grants: GrantBound((NC2_IDS as usize * NC2_FRAGS) as u32),
        tx_ids: NC2_IDS,
        posted_buffers: 0,
    };
    let mut front = Frontend::new(mem.channel(), cfg).unwrap();
    let mut back = Backend::attach(mem.channel(), cfg).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            // Producer: the guest transmitting.
            let mut rng = Rng(seed);
            let mut free: Vec<u32> = (0..NC2_IDS).rev().collect();
            let mut frags = Vec::with_capacity(NC2_FRAGS);
            let mut prefix = [0u8; 256];
            let mut since_flush = 0;
            for seq in 0..count {
                let shape = next_shape(&mut rng, 65536, 256);
                let kind = if shape.frags.is_empty() {
                    PacketKind::Small
                } else if seq % 2 == 0 {
                    PacketKind::ReceiverCopy
                } else {
                    PacketKind::ReceiverMap
                };
                let id = loop {
                    if kind == PacketKind::Small {
                        break 0;
                    }
                    if let Some(id) = free.pop() {
                        break id;
                    }
                    front.flush();
                    drain_front(&mut front, &mut free);
                    assert!(start.elapsed() < DEADLINE, "producer stalled");
                };
                frags.clear();
                for (i, &(off, size)) in shape.frags.iter().enumerate() {
                    let gref = id * NC2_FRAGS as u32 + i as u32;
                    write_probes(&pages.page(gref), seq, i, off, size);
                    frags.push(Fragment {
                        size,
                        offset: off,
                        gref,
                    });
                }
                for (i, b) in prefix[..shape.prefix as usize].iter_mut().enumerate() {
                    *b = prefix_byte(seq, i as u32);
                }
                let meta = PacketMeta::new(id, kind);
                loop {
                    match front.send_packet(&meta, &frags, &prefix[..shape.prefix as usize]) {
                        Ok(()) => break,
                        Err(SendError::RingFull)
                        | Err(SendError::NoPacketCredit)
                        | Err(SendError::TooManyFragments { .. }) => {
                            front.flush();
                            drain_front(&mut front, &mut free);
                            std::thread::yield_now();
                            assert!(start.elapsed() < DEADLINE, "producer stalled");
                        }
                        Err(e) => panic!("send failed: {e:?}"),
                    }
                }
                since_flush += 1;
                if since_flush == 32 {
                    front.flush();
                    since_flush = 0;
                    drain_front(&mut front, &mut free);
                }
            }
            front.flush();
        });
        s.spawn(move || {
            // Consumer: the backend receiving and checking.
            let mut rng = Rng(seed);
            let mut seq = 0u64;
            let mut pending_flush = false;
            while seq < count {
                match back.poll().expect("frontend is well behaved") {
                    Some(Event::Packet(p)) => {
                        let shape = next_shape(&mut rng, 65536, 256);
                        assert_eq!(p.total_len, shape.total, "packet {seq}: length");
                        assert_eq!(
                            p.prefix.len() as u32,
                            shape.prefix,
                            "packet {seq}: prefix length"
                        );
                        for (i, b) in p.prefix.iter().enumerate() {
                            assert_eq!(
                                *b,
                                prefix_byte(seq, i as u32),
                                "packet {seq}: prefix byte {i}"
                            );
                        }
                        assert_eq!(
                            p.nr_frags(),
                            shape.frags.len(),
                            "packet {seq}: fragment count"
                        );
                        for (i, f) in p.frags().enumerate() {
                            assert_eq!(
                                (f.offset, f.size),
                                shape.frags[i],
                                "packet {seq}: fragment {i}"
                            );
                            check_probes(&pages.page(f.gref), seq, i, f.offset, f.size);
                        }
                        let (id, needs) = (p.meta.id, p.meta.kind.needs_finish());
                        if needs {
                            back.finish_packet(id).unwrap();
                        }
                        seq += 1;
                        pending_flush = true;
                    }
                    Some(_) => {}
                    None => {
                        if pending_flush {
                            back.flush();
                            pending_flush = false;
                        } else {
                            std::thread::yield_now();
                        }
                        assert!(
                            start.elapsed() < DEADLINE,
                            "consumer stalled at packet {seq}"
                        );
                    }
                }
            }
            back.flush();
        });
    });
    eprintln!("nc2: {count} packets in {:?}", start.elapsed());
}

fn drain_front(front: &mut Frontend<'_>, free: &mut Vec<u32>) {
    while let Some(ev) = front.poll().expect("backend is well behaved") {
        if let Event::Finished { id } = ev {
            free.push(id);
        }
    }
    front.flush();
}

const NETIF_IDS: u16 = 256;

#[test]
fn netif_two_threads_random_packets() {
    let count = cases(100_000, 10_000_000);
    let seed = 0x6e65_7469;
    let ring = OwnedRegion::new(PAGE);
    let pages = Pages::new(usize::from(NETIF_IDS));
    let mut front = TxFrontend::new(ring.mem()).unwrap();
    let mut back = TxBackend::attach(ring.mem(), GrantBound(u32::from(NETIF_IDS)), 18).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            let mut rng = Rng(seed);
            let mut free: Vec<u16> = (0..NETIF_IDS).rev().collect();
            let mut frags: Vec<TxFrag> = Vec::with_capacity(18);
            let mut since_flush = 0;
            for seq in 0..count {
                // netif has no inline prefix and a 65535-byte limit.
                let shape = next_shape(&mut rng, 65535, 0);
                let gso = shape.total > 1514 && seq % 3 == 0;
                let nslots = shape.frags.len().max(1);
                while free.len() < nslots {
                    front.flush();
                    while let Some(r) = front.poll_response().expect("backend is well behaved") {
                        free.push(r.id);
                    }
                    std::thread::yield_now();
                    assert!(start.elapsed() < DEADLINE, "producer stalled");
                }
                frags.clear();
                if shape.frags.is_empty() {
                    let id = free.pop().unwrap();
                    frags.push(TxFrag {
                        id,
                        gref: u32::from(id),
                        offset: 0,
                        size: 0,
                    });
                }
                for (i, &(off, size)) in shape.frags.iter().enumerate() {
                    let id = free.pop().unwrap();
                    write_probes(&pages.page(u32::from(id)), seq, i, off, size);
                    frags.push(TxFrag {
                        id,
                        gref: u32::from(id),
                        offset: off,
                        size,
                    });
                }
                let extras: &[ExtraInfo] = if gso {
                    &[ExtraInfo::Gso {
                        size: 1448,
                        gso_type: GSO_TCPV4,
                        features: 0,
                    }]
                } else {
                    &[]
                };
                loop {
                    match front.send_packet(&frags, 0, extras) {
                        Ok(()) => break,
                        Err(SendError::RingFull) => {
                            front.flush();
                            while let Some(r) =
                                front.poll_response().expect("backend is well behaved")
                            {
                                free.push(r.id);
                            }
                            std::thread::yield_now();
                            assert!(start.elapsed() < DEADLINE, "producer stalled");
                        }
                        Err(e) => panic!("send failed: {e:?}"),
                    }
                }
                since_flush += 1;
                if since_flush == 16 {
                    front.flush();
                    since_flush = 0;
                    while let Some(r) = front.poll_response().expect("backend is well behaved") {
                        free.push(r.id);
                    }
                }
            }
            front.flush();
        });
        s.spawn(move || {
            let mut rng = Rng(seed);
            let mut seq = 0u64;
            let mut pending = false;
            while seq < count {
                match back.poll_packet().expect("frontend is well behaved") {
                    Some(p) => {
                        let shape = next_shape(&mut rng, 65535, 0);
                        let gso = shape.total > 1514 && seq.is_multiple_of(3);
                        assert_eq!(p.total, shape.total, "packet {seq}: length");
                        assert_eq!(p.extras.gso().is_some(), gso, "packet {seq}: gso extra");
                        if shape.frags.is_empty() {
                            assert_eq!(p.slots().len(), 1);
                            assert_eq!(p.slots()[0].size, 0);
                        } else {
                            assert_eq!(
                                p.slots().len(),
                                shape.frags.len(),
                                "packet {seq}: slot count"
                            );
                            for (i, s) in p.slots().iter().enumerate() {
                                assert_eq!(
                                    (s.offset, s.size),
                                    shape.frags[i],
                                    "packet {seq}: slot {i}"
                                );
                                check_probes(&pages.page(s.gref), seq, i, s.offset, s.size);
                            }
                        }
                        back.respond(&p, 0).unwrap();
                        seq += 1;
                        pending = true;
                    }
                    None => {
                        if pending {
                            back.flush();
                            pending = false;
                        } else {
                            std::thread::yield_now();
                        }
                        assert!(
                            start.elapsed() < DEADLINE,
                            "consumer stalled at packet {seq}"
                        );
                    }
                }
            }
            back.flush();
        });
    });
    eprintln!("netif: {count} packets in {:?}", start.elapsed());
}

const POSTED: u32 = 256;

#[test]
fn nc2_pre_posted_two_threads_random_packets() {
    let count = cases(100_000, 10_000_000);
    let seed = 0x7072_6570;
    let mem = Nc2Mem::new(16384);
    let pages = Pages::new(POSTED as usize);
    let cfg = Config {
        max_packets: 64,
        max_fragments: 32,
        grants: GrantBound(POSTED),
        tx_ids: 64,
        posted_buffers: POSTED,
    };
    let mut front = Frontend::new(mem.channel(), cfg).unwrap();
    let mut back = Backend::attach(mem.channel(), cfg).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            // Producer: the backend, "DMAing" into buffers the guest posted.
            let mut rng = Rng(seed);
            let mut avail: VecDeque<(u32, u32)> = VecDeque::new();
            let mut frags = Vec::with_capacity(NC2_FRAGS);
            let mut prefix = [0u8; 256];
            let mut since = 0;
            let drain = |back: &mut Backend<'_>, avail: &mut VecDeque<(u32, u32)>| {
                while let Some(ev) = back.poll().expect("frontend is well behaved") {
                    if let Event::BuffersPosted(b) = ev {
                        avail.extend(b.iter().map(|p| (p.id, p.gref)));
                    }
                }
            };
            for seq in 0..count {
                let shape = next_shape(&mut rng, 65536, 256);
                while avail.len() < shape.frags.len() {
                    back.flush();
                    drain(&mut back, &mut avail);
                    std::thread::yield_now();
                    assert!(start.elapsed() < DEADLINE, "producer stalled");
                }
                frags.clear();
                for (i, &(off, size)) in shape.frags.iter().enumerate() {
                    let (id, gref) = avail.pop_front().unwrap();
                    write_probes(&pages.page(gref), seq, i, off, size);
                    frags.push(Fragment {
                        size,
                        offset: off,
                        gref: id,
                    });
                }
                for (i, b) in prefix[..shape.prefix as usize].iter_mut().enumerate() {
                    *b = prefix_byte(seq, i as u32);
                }
                let kind = if frags.is_empty() {
                    PacketKind::Small
                } else {
                    PacketKind::PrePosted
                };
                let meta = PacketMeta::new(0, kind);
                loop {
                    match back.send_packet(&meta, &frags, &prefix[..shape.prefix as usize]) {
                        Ok(()) => break,
                        Err(SendError::RingFull) => {
                            back.flush();
                            drain(&mut back, &mut avail);
                            std::thread::yield_now();
                            assert!(start.elapsed() < DEADLINE, "producer stalled");
                        }
                        Err(e) => panic!("send failed: {e:?}"),
                    }
                }
                since += 1;
                if since == 32 {
                    back.flush();
                    since = 0;
                    drain(&mut back, &mut avail);
                }
            }
            back.flush();
        });
        s.spawn(move || {
            // Consumer: the guest, checking and re-posting its buffers.
            let mut rng = Rng(seed);
            let mut seq = 0u64;
            let mut repost: Vec<PostedBuffer> = (0..POSTED)
                .map(|id| PostedBuffer { id, gref: id })
                .collect();
            let mut can_post = false;
            while seq < count {
                if can_post && !repost.is_empty() {
                    let n = repost.len().min(MAX_POST_BATCH);
                    let batch: Vec<PostedBuffer> = repost.drain(..n).collect();
                    match front.post_buffers(&batch) {
                        Ok(()) => {}
                        Err(SendError::RingFull) => repost.splice(0..0, batch).for_each(drop),
                        Err(e) => panic!("post failed: {e:?}"),
                    }
                }
                match front.poll().expect("backend is well behaved") {
                    Some(Event::PeerMaxPostedBuffers(n)) => {
                        assert_eq!(n, POSTED);
                        can_post = true;
                    }
                    Some(Event::Packet(p)) => {
                        let shape = next_shape(&mut rng, 65536, 256);
                        assert_eq!(p.total_len, shape.total, "packet {seq}: length");
                        assert_eq!(
                            p.prefix.len() as u32,
                            shape.prefix,
                            "packet {seq}: prefix length"
                        );
                        for (i, b) in p.prefix.iter().enumerate() {
                            assert_eq!(
                                *b,
                                prefix_byte(seq, i as u32),
                                "packet {seq}: prefix byte {i}"
                            );
                        }
                        assert_eq!(
                            p.nr_frags(),
                            shape.frags.len(),
                            "packet {seq}: fragment count"
                        );
                        for (i, f) in p.frags().enumerate() {
                            assert_eq!(
                                (f.offset, f.size),
                                shape.frags[i],
                                "packet {seq}: fragment {i}"
                            );
                            // Buffer id i was posted with grant i.
                            check_probes(&pages.page(f.gref), seq, i, f.offset, f.size);
                            repost.push(PostedBuffer {
                                id: f.gref,
                                gref: f.gref,
                            });
                        }
                        seq += 1;
                    }
                    Some(_) => {}
                    None => {
                        if front.flush() || !repost.is_empty() {
                            continue;
                        }
                        std::thread::yield_now();
                        assert!(
                            start.elapsed() < DEADLINE,
                            "consumer stalled at packet {seq}"
                        );
                    }
                }
            }
            front.flush();
        });
    });
    eprintln!("nc2 pre-posted: {count} packets in {:?}", start.elapsed());
}

#[test]
fn netif_rx_two_threads_random_packets() {
    let count = cases(100_000, 10_000_000);
    let seed = 0x7278_7278;
    let ring = OwnedRegion::new(PAGE);
    let pages = Pages::new(256);
    let mut front = RxFrontend::new(ring.mem(), 18).unwrap();
    let mut back = RxBackend::attach(ring.mem(), GrantBound(256)).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            // Producer: the backend filling the guest's posted pages.
            let mut rng = Rng(seed);
            let mut taken: Vec<u32> = Vec::with_capacity(24);
            let mut frags: Vec<(u16, u16)> = Vec::with_capacity(18);
            let mut since = 0;
            for seq in 0..count {
                let shape = next_shape(&mut rng, 65535, 0);
                let gso = shape.total > 1514 && seq.is_multiple_of(3);
                frags.clear();
                frags.extend_from_slice(&shape.frags);
                if frags.is_empty() {
                    frags.push((0, 0));
                }
                let need = frags.len() + usize::from(gso);
                while taken.len() < need {
                    match back.take_buffer().expect("frontend is well behaved") {
                        Some(b) => taken.push(b.gref),
                        None => {
                            back.flush();
                            std::thread::yield_now();
                            assert!(start.elapsed() < DEADLINE, "producer stalled");
                        }
                    }
                }
                // Buffers are used in ring order: data 0, the extra, data 1...
                let skip = usize::from(gso);
                for (i, &(off, size)) in shape.frags.iter().enumerate() {
                    let buf = if i == 0 { taken[0] } else { taken[i + skip] };
                    write_probes(&pages.page(buf), seq, i, off, size);
                }
                let extras: &[ExtraInfo] = if gso {
                    &[ExtraInfo::Gso {
                        size: 1448,
                        gso_type: GSO_TCPV4,
                        features: 0,
                    }]
                } else {
                    &[]
                };
                back.push_packet(&frags, 0, extras).unwrap();
                taken.drain(..need);
                since += 1;
                if since == 16 {
                    back.flush();
                    since = 0;
                }
            }
            back.flush();
        });
        s.spawn(move || {
            // Consumer: the guest, checking and re-posting.
            let mut rng = Rng(seed);
            let mut seq = 0u64;
            for id in 0..256u16 {
                front.post_buffer(id, u32::from(id)).unwrap();
            }
            front.flush();
            let mut pending = false;
            while seq < count {
                match front.poll_packet().expect("backend is well behaved") {
                    Some(p) => {
                        let shape = next_shape(&mut rng, 65535, 0);
                        let gso = shape.total > 1514 && seq.is_multiple_of(3);
                        assert_eq!(p.total, shape.total, "packet {seq}: length");
                        assert_eq!(p.extras.gso().is_some(), gso, "packet {seq}: gso extra");
                        assert_eq!(p.error, None);
                        for (i, f) in p.frags().iter().enumerate() {
                            if let Some(&(off, size)) = shape.frags.get(i) {
                                assert_eq!(
                                    (f.offset, f.len),
                                    (off, size),
                                    "packet {seq}: fragment {i}"
                                );
                                check_probes(&pages.page(f.gref), seq, i, f.offset, f.len);
                            }
                        }
                        for f in p.frags() {
                            front.post_buffer(f.id, f.gref).unwrap();
                        }
                        for &(id, gref) in p.spare_buffers() {
                            front.post_buffer(id, gref).unwrap();
                        }
                        seq += 1;
                        pending = true;
                    }
                    None => {
                        if pending {
                            front.flush();
                            pending = false;
                        } else {
                            std::thread::yield_now();
                        }
                        assert!(
                            start.elapsed() < DEADLINE,
                            "consumer stalled at packet {seq}"
                        );
                    }
                }
            }
            front.flush();
        });
    });
    eprintln!("netif rx: {count} packets in {:?}", start.elapsed());
}
