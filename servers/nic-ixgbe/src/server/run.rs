//! The server's life: bring the claimed NIC up, give each configured MAC a pool with receive
//! buffers posted, then serve until told to finish, and release everything on the way out.
//!
//! Serving: wait on the device's MSI-X notification bits, the queue-pair kick and the timer (the
//! fallback poll), drain every responder pool's receive ring, hand each frame to the responder,
//! send its replies on the same pool, repost the buffers, reclaim transmit buffers, serve
//! netback's queue pair ([`super::queue_pair`]: its pools are netback's, not the responder's),
//! re-enable the pools' NIC vectors and acknowledge the vectors that fired to the kernel.
//!
//! Invariants: a receive buffer is either posted to the NIC or being handled, never both (its id
//! is its index in the pool's receive [`Buffers`]); a transmit buffer is either on the free list
//! or in flight. Frame contents are copied out of DMA memory once, then validated; an id or a
//! length the NIC writes back that is out of range is counted as malformed, never used.

use alloc::vec::Vec;

use log::{error, info, warn};
use nic_ixgbe::{Chip, Config, Error, Nic, PoolFlags, Released, RxBuf, RxCompletion, TxBuf};
use userland::syscall;

use super::platform::{Bdf, Buffers, Claim, KernelDelay, KernelDma};
use super::queue_pair::QueuePair;
use super::respond::{self, Answer, Identity, Mac, Verdict};
use super::settings::Settings;

const RING: u32 = 64;
const BUF_SIZE: usize = 2048;
/// The ring holds one descriptor fewer than its size (RDT == RDH means empty).
const RX_BUFS: usize = RING as usize - 1;
const TX_BUFS: usize = 16;
const BATCH: usize = 32;
const LINK_TIMEOUT_MS: u32 = 5000;
/// Frames per pool logged one by one; later ones are only counted (a console line per frame
/// would throttle a pool under real traffic).
const LOG_FRAMES: u64 = 64;

pub type Driver = Nic<nic_ixgbe::Mmio, KernelDma, KernelDelay>;

/// Why the server stopped before serving.
#[derive(Debug)]
pub enum StartError {
    Device(super::platform::DeviceError),
    Settings(super::settings::BadArg),
    UnknownChip(u16, u16),
    NoMac,
    Driver(Error),
    Dma,
    Channel(alloc::string::String),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Device(e) => write!(f, "{e}"),
            StartError::Settings(b) => write!(f, "task argument {:?} does not parse", b.0),
            StartError::UnknownChip(v, d) => write!(f, "no driver for {v:04x}:{d:04x}"),
            StartError::NoMac => {
                f.write_str("no pool MAC given (mac0=..) and no queue pair to serve")
            }
            StartError::Driver(e) => write!(f, "driver: {e:?}"),
            StartError::Dma => f.write_str("DMA budget too small for the packet buffers"),
            StartError::Channel(e) => write!(f, "queue pair: {e}"),
        }
    }
}

#[derive(Default)]
struct Counters {
    frames: u64,
    replies: u64,
    ignored: u64,
    malformed: u64,
    tx_full: u64,
}

struct Pool {
    me: Identity,
    /// Receive buffers are not reposted (the `stall` setting).
    stalled: bool,
    rx: Buffers,
    tx: Buffers,
    tx_free: Vec<u32>,
    count: Counters,
}

pub struct Server {
    nic: Driver,
    claim: Claim,
    pools: Vec<Pool>,
    settings: Settings,
    frame: [u8; BUF_SIZE],
    reply: [u8; BUF_SIZE],
    done: bool,
    wakeups: Wakeups,
    /// netback's queue pair, when the system description has one.
    qp: Option<QueuePair>,
    /// Requests arrived while arming the queue pair: poll again before sleeping.
    qp_pending: bool,
}

/// Why the serve loop woke up (a wake-up can have both causes).
#[derive(Default)]
struct Wakeups {
    vector: u64,
    timer: u64,
}

fn chip_of(vendor: u16, device: u16) -> Option<Chip> {
    match (vendor, device) {
        (0x8086, 0x10FB) => Some(Chip::X82599),
        (0x8086, 0x10C9) => Some(Chip::I82576),
        _ => None,
    }
}

impl Server {
    /// Finds and checks the device, resets it, waits for the link, and sets up the pools.
    pub fn start() -> Result<Self, StartError> {
        let settings =
            Settings::from_args(|k| userland::info().arg(k)).map_err(StartError::Settings)?;
        let claim = Claim::find().map_err(StartError::Device)?;
        info!(
            "device {} {:04x}:{:04x}, BAR0 at {:#x} ({} KiB), {} MSI-X vectors routed",
            Bdf(claim.bdf),
            claim.vendor,
            claim.device,
            claim.bar0.0,
            claim.bar0.1 >> 10,
            claim.vectors
        );
        claim.check_config().map_err(StartError::Device)?;
        let chip = chip_of(claim.vendor, claim.device)
            .ok_or(StartError::UnknownChip(claim.vendor, claim.device))?;
        let qp = QueuePair::open().map_err(StartError::Channel)?;
        if settings.guests.iter().all(Option::is_none) && qp.is_none() {
            return Err(StartError::NoMac);
        }
        let regs = claim.registers().map_err(StartError::Device)?;
        let cfg = Config {
            rx_ring: RING,
            tx_ring: RING,
            rx_buf_kb: (BUF_SIZE / 1024) as u32,
            ..Config::new(chip)
        };
        let mut nic = Nic::new(regs, KernelDma, KernelDelay, cfg).map_err(StartError::Driver)?;
        info!("{:?} reset, permanent MAC {}", chip, Mac(nic.mac()));
        let link = nic.wait_link(LINK_TIMEOUT_MS).map_err(StartError::Driver)?;
        info!("link up at {} Mb/s", link.mbps);

        let mut pools = Vec::new();
        for (n, g) in settings
            .guests
            .iter()
            .enumerate()
            .filter_map(|(n, g)| Some((n, (*g)?)))
        {
            // Broadcast only where there is an address to answer ARP for.
            let flags = PoolFlags {
                broadcast: g.ip.is_some(),
                multicast: false,
            };
            let p = nic.alloc_pool(g.mac, flags).map_err(StartError::Driver)?;
            let rx = Buffers::new(RX_BUFS, BUF_SIZE).map_err(|_| StartError::Dma)?;
            let tx = Buffers::new(TX_BUFS, BUF_SIZE).map_err(|_| StartError::Dma)?;
            let bufs: Vec<RxBuf> = (0..rx.count())
                .filter_map(|i| {
                    Some(RxBuf {
                        addr: rx.bus(i)?,
                        id: i as u32,
                    })
                })
                .collect();
            let posted = nic.post_rx(p, &bufs).map_err(StartError::Driver)?;
            let vector = nic.pool_vector(p);
            let routed = vector.is_some_and(|v| (v as usize) < claim.vectors);
            info!(
                "pool {}: mac {}{}, {} receive buffers posted, vector {}",
                p,
                Mac(g.mac),
                IpSuffix(g.ip),
                posted,
                match (vector, routed) {
                    (Some(v), true) => VectorNote::Routed(v),
                    (Some(v), false) => VectorNote::Unrouted(v),
                    (None, _) => VectorNote::None,
                }
            );
            let stalled = settings.stall == Some(n);
            if stalled {
                info!(
                    "pool {}: receive buffers will not be reposted (stall={})",
                    p, n
                );
            }
            pools.push(Pool {
                stalled,
                me: Identity {
                    pool: p,
                    mac: g.mac,
                    ip: g.ip,
                },
                rx,
                tx_free: (0..tx.count() as u32).rev().collect(),
                tx,
                count: Counters::default(),
            });
        }
        Ok(Self {
            nic,
            claim,
            pools,
            settings,
            frame: [0; BUF_SIZE],
            reply: [0; BUF_SIZE],
            done: false,
            wakeups: Wakeups::default(),
            qp,
            qp_pending: false,
        })
    }

    fn frames_total(&self) -> u64 {
        self.pools.iter().map(|p| p.count.frames).sum()
    }

    fn finished(&self) -> bool {
        self.done || (self.settings.frames > 0 && self.frames_total() >= self.settings.frames)
    }

    /// Serves until a "done" frame or the frame limit.
    pub fn serve(&mut self) {
        let vectors = self.claim.vector_mask();
        let timer_bit = userland::info().timer_bit;
        let timer = if timer_bit < 64 { 1u64 << timer_bit } else { 0 };
        if vectors == 0 {
            warn!("no MSI-X vector routed: polling only");
        }
        let kick = self.qp.as_ref().map_or(0, QueuePair::kick_mask);
        while !self.finished() {
            // Requests left on the channel (no room yet to answer them) are looked at again
            // soon; never spin on them: netback runs at a lower priority and must get the CPU
            // to make room.
            let pending = core::mem::take(&mut self.qp_pending);
            let fired = if vectors | timer | kick != 0 {
                if timer != 0 {
                    syscall::set_timer(if pending { 1 } else { self.settings.poll_ms });
                }
                let fired = syscall::wait(vectors | timer | kick);
                self.wakeups.vector += u64::from(fired & vectors != 0);
                self.wakeups.timer += u64::from(fired & timer != 0);
                fired
            } else {
                syscall::yield_now();
                0
            };
            for i in 0..self.pools.len() {
                self.drain(i);
            }
            self.serve_queue_pair();
            self.rearm(fired);
        }
        if timer != 0 {
            syscall::set_timer(0);
        }
    }

    /// One service round for netback. A channel whose peer broke the ring indices is
    /// unusable from then on: it is dropped, and the responder pools carry on.
    fn serve_queue_pair(&mut self) {
        let Some(qp) = self.qp.as_mut() else { return };
        match qp.serve(&mut self.nic) {
            Ok(pending) => self.qp_pending = pending,
            Err(e) => {
                error!("queue pair unusable ({e:?}); serving the responder pools only");
                info!("{}", qp.summary());
                self.qp = None;
            }
        }
    }

    /// Re-enables the NIC side of every vector, then acknowledges the fired ones to the kernel
    /// (in that order, so a cause raised in between is not lost behind a masked NIC vector).
    fn rearm(&mut self, fired: u64) {
        let netback_pools = self.qp.iter().flat_map(QueuePair::pools);
        for p in self.pools.iter().map(|p| p.me.pool).chain(netback_pools) {
            if let Err(e) = self.nic.rearm(p) {
                warn!("pool {}: rearm: {:?}", p, e);
            }
        }
        for (i, bit) in self.claim.vector_bits[..self.claim.vectors]
            .iter()
            .enumerate()
        {
            let Some(bit) = *bit else { continue };
            if fired & (1u64 << bit) == 0 {
                continue;
            }
            // NIC vector 0 carries the "other" causes (link state).
            if i == 0 && self.nic.link_changed() {
                let l = self.nic.link();
                info!(
                    "link {} ({} Mb/s)",
                    if l.up { "up" } else { "down" },
                    l.mbps
                );
            }
            syscall::irq_ack(self.claim.index, i);
        }
    }

    /// Harvests up to a ring's worth of pool `i`'s frames (so a busy pool cannot starve the
    /// others), answering and reposting as it goes. Once finished, no further frame is handled
    /// (the frame limit is exact); frames still in the ring are handed back when the pool is
    /// released.
    fn drain(&mut self, i: usize) {
        let p = self.pools[i].me.pool;
        let mut done = [RxCompletion::default(); BATCH];
        let mut budget = RING as usize;
        while budget > 0 {
            self.reclaim(i);
            if self.finished() {
                return;
            }
            // Never harvest more than the frame limit leaves to handle.
            let room = match self.settings.frames {
                0 => BATCH,
                limit => (limit - self.frames_total()).min(BATCH as u64) as usize,
            }
            .min(budget);
            let n = match self.nic.rx_burst(p, &mut done[..room]) {
                Ok(n) => n,
                Err(e) => {
                    error!("pool {}: rx: {:?}", p, e);
                    return;
                }
            };
            if n == 0 {
                return;
            }
            budget -= n;
            let mut repost = [RxBuf { addr: 0, id: 0 }; BATCH];
            let mut k = 0;
            for c in &done[..n] {
                if !self.done {
                    self.handle(i, c);
                }
                if self.pools[i].stalled {
                    continue;
                }
                if let Some(addr) = self.pools[i].rx.bus(c.id as usize) {
                    repost[k] = RxBuf { addr, id: c.id };
                    k += 1;
                }
            }
            match self.nic.post_rx(p, &repost[..k]) {
                Ok(m) if m == k => {}
                Ok(m) => warn!("pool {}: reposted {} of {} buffers", p, m, k),
                Err(e) => error!("pool {}: repost: {:?}", p, e),
            }
        }
    }

    fn handle(&mut self, i: usize, c: &RxCompletion) {
        let pool = &mut self.pools[i];
        let p = pool.me.pool;
        pool.count.frames += 1;
        let verbose = pool.count.frames <= LOG_FRAMES;
        if pool.count.frames == LOG_FRAMES + 1 {
            info!(
                "pool {}: more than {} frames: later ones are counted, not logged",
                p, LOG_FRAMES
            );
        }
        let len = usize::from(c.len);
        if !c.ok || len > BUF_SIZE || !pool.rx.read(c.id as usize, &mut self.frame[..len]) {
            pool.count.malformed += 1;
            if verbose {
                warn!(
                    "pool {}: dropped a receive completion (id {}, len {}, ok {})",
                    p, c.id, c.len, c.ok
                );
            }
            return;
        }
        let frame = &self.frame[..len];
        let verdict = respond::respond(frame, &pool.me, &mut self.reply);
        let Some(eth) = respond::eth_header(frame) else {
            pool.count.malformed += 1;
            if verbose {
                info!("pool {}: frame of {} bytes: malformed (too short)", p, len);
            }
            return;
        };
        let head = FrameNote {
            pool: p,
            src: eth.src,
            dst: eth.dst,
            ethertype: eth.ethertype,
            len,
        };
        match verdict {
            Verdict::Reply { len, answer } => {
                let sent = Self::send(&mut self.nic, pool, &self.reply[..len]);
                if sent {
                    pool.count.replies += 1;
                } else {
                    pool.count.tx_full += 1;
                }
                if verbose {
                    info!(
                        "{}: {}{}",
                        head,
                        AnswerNote(answer),
                        if sent { "" } else { " (no transmit room)" }
                    );
                }
            }
            Verdict::Ignored(why) => {
                pool.count.ignored += 1;
                if verbose {
                    info!("{}: ignored ({})", head, why);
                }
            }
            Verdict::Malformed(m) => {
                pool.count.malformed += 1;
                if verbose {
                    info!("{}: malformed ({}), dropped", head, m);
                }
            }
            Verdict::Done => {
                info!("{}: done requested", head);
                self.done = true;
            }
        }
    }

    fn send(nic: &mut Driver, pool: &mut Pool, frame: &[u8]) -> bool {
        let p = pool.me.pool;
        if pool.tx_free.is_empty() {
            Self::reclaim_pool(nic, pool);
        }
        let Some(id) = pool.tx_free.pop() else {
            return false;
        };
        let addr = pool.tx.bus(id as usize);
        let (Some(addr), true) = (addr, pool.tx.write(id as usize, frame)) else {
            pool.tx_free.push(id);
            return false;
        };
        let buf = TxBuf {
            addr,
            len: frame.len() as u16,
            id,
        };
        match nic.tx_burst(p, &[buf]) {
            Ok(1) => true,
            other => {
                if let Err(e) = other {
                    error!("pool {}: tx: {:?}", p, e);
                }
                pool.tx_free.push(id);
                false
            }
        }
    }

    fn reclaim(&mut self, i: usize) {
        Self::reclaim_pool(&mut self.nic, &mut self.pools[i]);
    }

    /// Returns the buffers of transmitted frames to the pool's free list.
    fn reclaim_pool(nic: &mut Driver, pool: &mut Pool) {
        let mut ids = [0u32; TX_BUFS];
        while let Ok(n) = nic.tx_reclaim(pool.me.pool, &mut ids) {
            if n == 0 {
                break;
            }
            // Ids come from our own ring bookkeeping, but a duplicate would corrupt the free
            // list: keep only ids in range and not already free.
            for &id in &ids[..n] {
                if (id as usize) < pool.tx.count() && !pool.tx_free.contains(&id) {
                    pool.tx_free.push(id);
                }
            }
        }
    }

    /// Logs what each pool saw, releases the pools and the NIC's counters.
    pub fn finish(mut self) {
        if let Some(qp) = &self.qp {
            info!("{}", qp.summary());
        }
        let total = self.frames_total();
        for i in 0..self.pools.len() {
            self.reclaim(i);
            let pool = &self.pools[i];
            let p = pool.me.pool;
            let c = &pool.count;
            let hw = self.nic.pool_stats(p).ok();
            info!(
                "pool {}: {} frames, {} replies, {} ignored, {} malformed, {} without transmit \
                 room; NIC counted {} received, {} sent, {} dropped",
                p,
                c.frames,
                c.replies,
                c.ignored,
                c.malformed,
                c.tx_full,
                hw.map_or(0, |s| s.rx_frames),
                hw.map_or(0, |s| s.tx_frames),
                hw.and_then(|s| s.rx_dropped).unwrap_or(0)
            );
            let mut returned = 0u32;
            let released = self.nic.release_pool(p, |r| {
                if matches!(r, Released::RxFrame(_) | Released::RxUnused(_)) {
                    returned += 1;
                }
            });
            match released {
                Ok(()) => info!(
                    "pool {}: released, {} receive buffers returned",
                    p, returned
                ),
                Err(e) => warn!("pool {}: release: {:?}", p, e),
            }
        }
        let hw = self.nic.stats();
        info!(
            "finished after {} frames{}; NIC totals: {} received, {} sent, {} missed; woken {} \
             times by MSI-X, {} by the poll timer",
            total,
            if self.done { " (done frame)" } else { "" },
            hw.rx_frames,
            hw.tx_frames,
            hw.rx_missed,
            self.wakeups.vector,
            self.wakeups.timer
        );
    }
}

struct IpSuffix(Option<[u8; 4]>);

impl core::fmt::Display for IpSuffix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(a) => write!(f, ", ip {}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            None => Ok(()),
        }
    }
}

enum VectorNote {
    Routed(u32),
    Unrouted(u32),
    None,
}

impl core::fmt::Display for VectorNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VectorNote::Routed(v) => write!(f, "{v}"),
            VectorNote::Unrouted(v) => write!(f, "{v} (not routed: polled)"),
            VectorNote::None => f.write_str("none (polled)"),
        }
    }
}

struct FrameNote {
    pool: u8,
    src: Mac,
    dst: Mac,
    ethertype: u16,
    len: usize,
}

impl core::fmt::Display for FrameNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "pool {}: frame from {} to {} type {:#06x} len {}",
            self.pool, self.src, self.dst, self.ethertype, self.len
        )
    }
}

struct AnswerNote(Answer);

impl core::fmt::Display for AnswerNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Answer::Arp => f.write_str("ARP request answered"),
            Answer::Echo { id, seq } => write!(f, "echo request id {id} seq {seq} answered"),
            Answer::Probe { seq } => write!(f, "probe {seq} acknowledged"),
        }
    }
}
