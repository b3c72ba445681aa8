//! The queue-pair channel `qp0` to netback, served by the driver core's
//! [`nic_ixgbe::service::Service`]: netback allocates a pool per MAC it serves, posts receive
//! buffers and transmit frames by bus address, and gets completions back; this module owns the
//! channel's memory, its notifications both ways and the log lines about netback's pools.
//!
//! Notifications: the server arms the request rings before it sleeps (netback's posts then
//! kick it), and notifies netback after every round that moved anything, because netback's
//! NIC port does not arm its completion rings (see `servers/netback/src/nicport.rs`).
//!
//! Trust: everything netback writes is checked by qpair (decoding) and by the service
//! (ownership, lengths, outstanding buffers, bus windows). The windows are wide: the task
//! info says nothing about the peer's DMA regions, so netback's buffers are accepted anywhere
//! in the RAM the kernel identity-maps (below 4 GiB, [`NETBACK_WINDOW`]) and in the
//! guest-physical hole above RAM where the Xen gateway maps the pages netchannel2 guests grant
//! (their receive buffers, filled by the NIC with no copy, [`GRANT_WINDOW`]). The windows catch
//! garbage; the IOMMU bounds what the NIC can reach at all.

use alloc::format;
use alloc::string::String;

use log::info;
use nic_ixgbe::service::{Service, Window};
use qpair::{ChannelError, Layout, NicEnd};
use userland::syscall;

use super::run::Driver;

/// The channel's name in the system description.
pub const CHANNEL: &str = "qp0";

/// Where netback's buffers may lie. The kernel hands out DMA memory from RAM below 4 GiB (its
/// identity map) and tells no task about another's regions; a narrower window needs the
/// system description to grant netback's DMA regions to this end of the channel.
pub const NETBACK_WINDOW: Window = Window {
    start: 0x1000,
    end: 1 << 32,
};

/// Service rounds per wake-up while work keeps coming (bounds the time netback can hold us).
const ROUNDS: usize = 8;
/// How often the per-pool counters of netback's pools are logged (when they changed).
const REPORT_MS: u64 = 5000;

/// Where the Xen gateway maps guests' granted pages: above 4 GiB (the hole above nc2dd's RAM)
/// and below 2^39, the address width of the IOMMUs nc2dd runs behind. Under Xen HVM with an
/// IOMMU a mapped grant's bus address is its guest-physical address (see the gateway's
/// `xen_grant_bus`).
pub const GRANT_WINDOW: Window = Window {
    start: 1 << 32,
    end: 1 << 39,
};

/// This end of `qp0` and the service behind it.
pub struct QueuePair {
    end: NicEnd<'static>,
    service: Service,
    channel: usize,
    kick_mask: u64,
    /// Pools already announced in the log.
    announced: u64,
    /// Last logged (received, sent) per pool.
    logged: [(u64, u64); 64],
    last_report_ms: u64,
}

impl QueuePair {
    /// The channel named [`CHANNEL`], if the system description gives this task one.
    pub fn open() -> Result<Option<Self>, String> {
        let Some((channel, ch)) = userland::info().channel(CHANNEL) else {
            return Ok(None);
        };
        if ch.kick_bit >= 64 {
            return Err(format!("channel {CHANNEL} has no kick bit"));
        }
        let layout = Layout::for_region(ch.size)
            .ok_or_else(|| format!("channel {CHANNEL} ({} bytes) is too small", ch.size))?;
        let (base, size) = userland::channel_memory(channel);
        if base.is_null() || !(base as usize).is_multiple_of(8) || size < layout.words() * 8 {
            return Err(format!("channel {CHANNEL} is not mapped as described"));
        }
        // SAFETY: the kernel maps the channel (8-byte aligned, `size` bytes, checked above) into
        // this task for its whole life, shared only with netback; both ends access it through
        // qpair's atomics only.
        let mem = unsafe { qpair::channel::region_from_raw(base.cast::<u64>(), layout) };
        let end = NicEnd::new(mem, layout).map_err(|e| format!("channel {CHANNEL}: {e:?}"))?;
        info!(
            "{CHANNEL}: serving netback (rings: control {}, rx {}, tx {})",
            layout.ctrl, layout.rx, layout.tx
        );
        Ok(Some(Self {
            end,
            service: Service::new(&[NETBACK_WINDOW, GRANT_WINDOW]),
            channel,
            kick_mask: 1 << ch.kick_bit,
            announced: 0,
            logged: [(0, 0); 64],
            last_report_ms: 0,
        }))
    }

    /// The notification bit netback kicks.
    pub fn kick_mask(&self) -> u64 {
        self.kick_mask
    }

    /// Pools netback owns now.
    pub fn pools(&self) -> impl Iterator<Item = u8> + '_ {
        self.service.pools()
    }

    /// Serves requests and pushes completions until idle (or [`ROUNDS`]), notifies netback if
    /// anything moved, and arms the request rings. True when requests arrived meanwhile (poll
    /// again instead of sleeping).
    pub fn serve(&mut self, nic: &mut Driver) -> Result<bool, ChannelError> {
        let mut moved = false;
        for _ in 0..ROUNDS {
            let act = self.service.poll(nic, &mut self.end)?;
            if act.work == 0 {
                break;
            }
            moved = true;
        }
        if moved {
            syscall::notify(self.channel);
        }
        self.announce(nic);
        self.end.arm()
    }

    /// Logs pools netback gained or gave back, and every [`REPORT_MS`] what each carried.
    fn announce(&mut self, nic: &mut Driver) {
        let now: u64 = self.service.pools().fold(0, |m, p| m | (1 << p));
        let gained = now & !self.announced;
        let lost = self.announced & !now;
        for p in (0..64u8).filter(|p| gained & (1 << p) != 0) {
            info!(
                "{CHANNEL}: pool {p} allocated to netback (vector {})",
                nic.pool_vector(p)
                    .map_or_else(|| String::from("none"), |v| format!("{v}"))
            );
        }
        for p in (0..64u8).filter(|p| lost & (1 << p) != 0) {
            info!("{CHANNEL}: pool {p} released by netback");
            self.logged[usize::from(p)] = (0, 0);
        }
        self.announced = now;
        let ms = syscall::uptime_ms();
        if ms.saturating_sub(self.last_report_ms) < REPORT_MS {
            return;
        }
        self.last_report_ms = ms;
        for p in (0..64u8).filter(|p| now & (1 << p) != 0) {
            let Ok(s) = nic.pool_stats(p) else { continue };
            let counts = (s.rx_frames, s.tx_frames);
            if counts != self.logged[usize::from(p)] {
                self.logged[usize::from(p)] = counts;
                info!(
                    "{CHANNEL}: pool {p}: {} frames received, {} sent",
                    s.rx_frames, s.tx_frames
                );
            }
        }
    }

    /// What netback broke, for the server's last words.
    pub fn summary(&self) -> String {
        let r = self.service.refusals;
        format!(
            "{CHANNEL}: refused {} posts for pools netback does not own, {} outside its window, \
             {} of bad length, {} past a full ring; {} malformed entries",
            r.not_owned, r.outside_window, r.bad_length, r.ring_full, self.end.stats.malformed
        )
    }
}
