//! The backend proper: netback serving guests' vifs over the Xen gateway.
//!
//! Task arguments (kernel command line `nc2dd.netback.<key>=<value>`):
//! - `ip`: the responder's IPv4 address (default 10.0.0.1, [`Config::default`]);
//! - `mac`: the responder's MAC, `aa:bb:cc:dd:ee:ff` (default a fixed locally administered one);
//! - `queues`: queues offered per vif (default 1: every queue costs staging memory);
//! - `serve=0`: do not serve (the task ends at once; for runs that wait for every server to end).
//!
//! Without Xen (bare QEMU) the task ends at once, successfully.
//!
//! The NIC ([`Uplink`]): when the system description gives netback the queue-pair channel
//! `qp0`, netback's NIC port ([`netback::nicport`]) runs over it with buffers in netback's own
//! DMA memory; every MAC netback serves gets a NIC pool of its own. The port joins netback's
//! switch only once nic-ixgbe has answered (allocated the first pool): a system without the
//! NIC (nic-ixgbe found no device and stopped) keeps the switch exactly as it is without a
//! channel, and what netback asked for just stays unanswered.
//!
//! The loop: poll and exchange with the NIC until idle, publish counters at most once a
//! second, then sleep on the Xen event bit, the queue-pair kick and the timer (a rate-limit
//! deadline, or [`IDLE_MS`] ([`NIC_IDLE_MS`] with the NIC port up) so a lost wake-up costs at
//! most that).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use libnc2::shm::SharedMem;
use nc2dd_abi::system_table::NO_BIT;
use netback::hv::Hypervisor;
use netback::nicport::{DmaRegion, NicPort, PortConfig, PortStats};
use netback::switch::Mac;
use qpair::{ChannelError, Layout, NetbackEnd};
use userland::syscall;

use crate::gateway_hv::GatewayHv;
use netback::{Config, Netback};

/// The longest sleep without looking at the rings and the store.
const IDLE_MS: u64 = 200;
/// The same once the NIC port is up. In the HVM driver domain, guests' event-channel
/// notifications have been seen to arrive late or not at all under load (the port line
/// counted 2 Xen-event wake-ups against 137 timer wake-ups while a guest pinged), so with
/// traffic to the wire at stake a lost wake-up may cost at most this.
const NIC_IDLE_MS: u64 = 20;
/// Counters go to xenstore at most this often.
const PUBLISH_MS: u64 = 1000;
/// Polls in a row while work keeps coming, before the loop sleeps once.
const BUSY_ROUNDS: usize = 64;
/// The NIC port's statistics are logged at most this often (when they changed).
const PORT_REPORT_MS: u64 = 5000;

/// The queue-pair channel to nic-ixgbe in the system description.
const QP_CHANNEL: &str = "qp0";

/// The NIC port's buffers: one 2 KiB buffer per frame (the NIC's receive buffer size), at most
/// 63 per pool and direction (nic-ixgbe's descriptor rings hold 64), a pool for the responder
/// and up to seven vifs. 1 MiB of netback's 4 MiB DMA budget.
const PORT: PortConfig = PortConfig {
    buf_size: 2048,
    rx_per_pool: 32,
    tx_per_pool: 32,
    max_pools: 8,
};

/// netback's way to the wire: the NIC port over `qp0`.
struct Uplink {
    port: NicPort<'static>,
    channel: usize,
    kick_mask: u64,
    /// The port is in the switch (nic-ixgbe answered).
    attached: bool,
    /// The responder's MAC (named as such in the log).
    responder: Mac,
    /// (MAC, NIC pool) pairs already logged.
    announced: Vec<(Mac, u8)>,
    logged: PortStats,
    last_report_ms: u64,
    /// Since when a served MAC waits for its pool (frames for the wire are held meanwhile).
    waiting_since_ms: Option<u64>,
    /// Why the loop woke up: (Xen event, queue-pair kick, timer only), for the report line.
    wakeups: (u64, u64, u64),
}

/// How long frames for the wire wait for a pool netback asked for, before they are handed to
/// the port anyway (which drops those whose source has no pool).
const POOL_WAIT_MS: u64 = 1000;

impl Uplink {
    /// The port, if the system has the channel and the DMA budget covers the buffers; a
    /// system without them serves vifs without a NIC (said in the log).
    fn open(responder: Mac) -> Option<Self> {
        let (channel, ch) = userland::info().channel(QP_CHANNEL)?;
        let Some(layout) = Layout::for_region(ch.size).filter(|_| ch.kick_bit < 64) else {
            log::warn!("channel {QP_CHANNEL} is unusable (size or kick bit): no NIC");
            return None;
        };
        let (base, size) = userland::channel_memory(channel);
        if base.is_null() || !(base as usize).is_multiple_of(8) || size < layout.words() * 8 {
            log::warn!("channel {QP_CHANNEL} is not mapped as described: no NIC");
            return None;
        }
        // SAFETY: the kernel maps the channel (8-byte aligned, `size` bytes, checked above)
        // into this task for its whole life, shared only with nic-ixgbe; both ends access it
        // through qpair's atomics only.
        let mem = unsafe { qpair::channel::region_from_raw(base.cast::<u64>(), layout) };
        let end = match NetbackEnd::new(mem, layout) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("channel {QP_CHANNEL}: {e:?}: no NIC");
                return None;
            }
        };
        let len = PORT.dma_bytes();
        let Some((ptr, bus)) = syscall::dma_alloc(len) else {
            log::warn!("no {len} bytes of DMA memory for the NIC port: no NIC");
            return None;
        };
        let base = NonNull::new(ptr)?;
        // SAFETY: the kernel hands out page-aligned, zeroed DMA memory of `len` bytes (a
        // multiple of 8), mapped into this task for its whole life; only the NIC writes it
        // besides us, and SharedMem accesses it atomically.
        let mem = unsafe { SharedMem::from_raw(base, len) };
        let port = NicPort::new(end, DmaRegion { mem, bus }, PORT)?;
        log::info!(
            "NIC port on {QP_CHANNEL}: {} KiB of buffers at bus {bus:#x}, rings rx {} tx {}",
            len >> 10,
            layout.rx,
            layout.tx
        );
        Some(Self {
            port,
            channel,
            kick_mask: 1 << ch.kick_bit,
            attached: false,
            responder,
            announced: Vec::new(),
            logged: PortStats::default(),
            last_report_ms: 0,
            waiting_since_ms: None,
            wakeups: (0, 0, 0),
        })
    }

    /// One exchange with nic-ixgbe (after netback's poll): pools follow the served MACs, wire
    /// frames go into the switch, frames for the wire go out, netchannel2 guests' posted
    /// buffers go to their own pools; kicks nic-ixgbe when it sleeps. Returns the frames that
    /// came from the wire (netback polls again to deliver them).
    ///
    /// While a served MAC waits for its pool, frames for the wire stay in netback's bounded NIC
    /// backlog for up to [`POOL_WAIT_MS`] instead of being dropped for want of a pool.
    fn exchange<H: Hypervisor>(&mut self, nb: &mut Netback<H>) -> Result<usize, ChannelError> {
        let before = self.port.stats.rx_frames;
        let macs = nb.port_macs();
        let waiting = self.attached && macs.iter().any(|m| self.port.pool_of(m).is_none());
        let now = syscall::uptime_ms();
        let since = match (waiting, self.waiting_since_ms) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, Some(t)) => Some(t),
        };
        self.waiting_since_ms = since;
        let hold = !self.attached || since.is_some_and(|t| now.saturating_sub(t) < POOL_WAIT_MS);
        self.port.exchange_holding(nb, hold)?;
        if !self.attached && macs.iter().any(|m| self.port.pool_of(m).is_some()) {
            nb.attach_nic();
            self.attached = true;
            log::info!("NIC port up: nic-ixgbe answered on {QP_CHANNEL}");
        }
        if self.port.take_kick() {
            syscall::notify(self.channel);
        }
        self.announce(nb);
        Ok((self.port.stats.rx_frames - before) as usize)
    }

    /// Logs each MAC's NIC pool once, and the port's counters now and then.
    fn announce<H: Hypervisor>(&mut self, nb: &Netback<H>) {
        let macs = nb.port_macs();
        self.announced.retain(|(m, _)| macs.contains(m));
        for m in macs {
            let Some(pool) = self.port.pool_of(&m) else {
                continue;
            };
            if self.announced.contains(&(m, pool)) {
                continue;
            }
            self.announced.push((m, pool));
            log::info!(
                "NIC pool {pool} for {} {}",
                if m == self.responder {
                    "the responder"
                } else {
                    "vif MAC"
                },
                MacText(m)
            );
        }
        let ms = syscall::uptime_ms();
        if ms.saturating_sub(self.last_report_ms) >= PORT_REPORT_MS
            && self.port.stats != self.logged
        {
            self.last_report_ms = ms;
            let s = self.port.stats;
            self.logged = s;
            log::info!(
                "NIC port: {} frames from the wire, {} to it, {} receive errors, {} not sent, \
                 {} dropped, {} bogus completions, {} pools refused; woken by {} Xen events, \
                 {} NIC kicks, {} timers",
                s.rx_frames,
                s.tx_frames,
                s.rx_errors,
                s.tx_failed,
                s.tx_drops,
                s.bogus,
                s.refused,
                self.wakeups.0,
                self.wakeups.1,
                self.wakeups.2
            );
        }
    }
}

struct MacText(Mac);

impl core::fmt::Display for MacText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

fn parse_ip(s: &str) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut it = s.split('.');
    for b in &mut ip {
        *b = it.next()?.parse().ok()?;
    }
    it.next().is_none().then_some(ip)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut it = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(mac)
}

/// netback's settings from the task arguments.
fn config() -> Result<Config, String> {
    let info = userland::info();
    let mut cfg = Config {
        max_queues: 1,
        ..Config::default()
    };
    if let Some(v) = info.arg("ip") {
        cfg.ip = parse_ip(v).ok_or_else(|| format!("ip={v} is not an IPv4 address"))?;
    }
    if let Some(v) = info.arg("mac") {
        cfg.mac = parse_mac(v).ok_or_else(|| format!("mac={v} is not a MAC address"))?;
    }
    if let Some(v) = info.arg("queues") {
        cfg.max_queues = v
            .parse()
            .ok()
            .filter(|&q| (1..=8).contains(&q))
            .ok_or_else(|| format!("queues={v} is not 1..8"))?;
    }
    Ok(cfg)
}

/// Serves vifs until the task is stopped.
pub fn run() -> Result<(), String> {
    let info = userland::info();
    if info.xen_event_bit == NO_BIT {
        return Err("this task has no Xen rights".into());
    }
    if info.timer_bit == NO_BIT {
        return Err("netback needs a timer bit".into());
    }
    let xen_mask = 1u64 << info.xen_event_bit;
    let timer_mask = 1u64 << info.timer_bit;
    if info.arg("serve") == Some("0") {
        log::info!("serve=0, not serving vifs");
        return Ok(());
    }
    let cfg = config()?;
    let xs = match userland::xen::xenstore(info.xen_event_bit, Some(info.timer_bit), 5_000) {
        Ok(xs) => xs,
        Err(syscall::XEN_ENODEV) => {
            log::info!("no hypervisor, no vifs to serve");
            return Ok(());
        }
        Err(e) => return Err(format!("attaching to xenstore: errno {e}")),
    };
    let hv = GatewayHv::new(xs).map_err(|e| format!("reading our domain id: {e}"))?;
    let ip = cfg.ip;
    log::info!(
        "serving vifs of domain {} (responder {}.{}.{}.{}, {} queue(s) per vif)",
        hv_domid(&hv),
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        cfg.max_queues
    );
    let responder = cfg.mac;
    let mut nb = Netback::new(hv, cfg);
    let mut uplink = Uplink::open(responder);
    let qp_mask = uplink.as_ref().map_or(0, |u| u.kick_mask);
    let mut last_publish = 0u64;
    loop {
        let mut rounds = 0;
        loop {
            let mut work = nb.poll();
            if let Some(u) = uplink.as_mut() {
                match u.exchange(&mut nb) {
                    Ok(n) => work += n,
                    Err(e) => {
                        // A peer index out of range: the channel is unusable from now on.
                        log::error!("NIC port dropped: channel {QP_CHANNEL}: {e:?}");
                        uplink = None;
                    }
                }
            }
            if work == 0 || rounds == BUSY_ROUNDS {
                break;
            }
            rounds += 1;
        }
        let now_ms = syscall::uptime_ms();
        if now_ms.saturating_sub(last_publish) >= PUBLISH_MS {
            nb.publish_counters();
            last_publish = now_ms;
        }
        let mut sleep = if uplink.as_ref().is_some_and(|u| u.attached) {
            NIC_IDLE_MS
        } else {
            IDLE_MS
        };
        if let Some(t) = nb.next_deadline() {
            let now = syscall::now_ns();
            sleep = sleep.min(t.saturating_sub(now).div_ceil(1_000_000).max(1));
        }
        if rounds == BUSY_ROUNDS {
            // Work is still coming: look again at once.
            syscall::yield_now();
            nb.hv_mut().note_event();
            continue;
        }
        syscall::set_timer(sleep);
        let got = syscall::wait(xen_mask | timer_mask | qp_mask);
        if let Some(u) = uplink.as_mut() {
            match (got & xen_mask != 0, got & qp_mask != 0) {
                (true, _) => u.wakeups.0 += 1,
                (false, true) => u.wakeups.1 += 1,
                (false, false) => u.wakeups.2 += 1,
            }
        }
        syscall::set_timer(0);
        if got & xen_mask != 0 {
            nb.hv_mut().note_event();
        }
    }
}

fn hv_domid(hv: &GatewayHv) -> u16 {
    hv.domid()
}
