//! The `Nic` facade: one NIC, its pools, and the batch calls the server makes.
//!
//! Invariants: a pool number is allocated at most once; an allocated pool owns exactly one RAR
//! entry (`rar = pool + 1`; RAR 0 is the permanent MAC), one RX ring and one TX ring. Rings are
//! allocated the first time their pool number is used and kept for reuse afterwards (DMA
//! memory has no free). Chip differences are confined to the `match self.chip` arms.

use alloc::vec::Vec;

use crate::error::Error;
use crate::hw::{Delay, Dma, RegisterAccess};
use crate::ixgbe::link::Link;
use crate::pool::{PoolFlags, PoolStats};
use crate::queue::{RxBuf, RxCompletion, RxRing, TxBuf, TxRing};
use crate::stats::HwStats;
use crate::{igb, ixgbe};

/// Which chip the core drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    /// Intel 82599 (ixgbe): 64 pools.
    X82599,
    /// Intel 82576 (igb), as QEMU models it: 8 pools.
    I82576,
}

impl Chip {
    /// The chip's error bits in the RX write-back (they differ, see `desc`).
    pub fn rx_errors(self) -> crate::desc::RxErrorBits {
        match self {
            Chip::X82599 => crate::desc::RX_ERRORS_82599,
            Chip::I82576 => crate::desc::RX_ERRORS_82576,
        }
    }

    /// How this chip's descriptor queues are programmed.
    pub fn queue_regs(self) -> &'static crate::queue::program::QueueRegs {
        match self {
            Self::X82599 => &crate::queue::program::IXGBE,
            Self::I82576 => &crate::queue::program::IGB,
        }
    }

    pub fn max_pools(self) -> u8 {
        match self {
            Chip::X82599 => ixgbe::MAX_POOLS,
            Chip::I82576 => igb::MAX_POOLS,
        }
    }

    fn rar_entries(self) -> u32 {
        match self {
            Chip::X82599 => ixgbe::RAR_ENTRIES,
            Chip::I82576 => igb::RAR_ENTRIES,
        }
    }

    fn msix_vectors(self) -> u32 {
        match self {
            Chip::X82599 => ixgbe::MSIX_VECTORS,
            Chip::I82576 => igb::MSIX_VECTORS,
        }
    }

    /// (RX queue, TX queue) of pool `p`.
    pub fn pool_queues(self, p: u8) -> (u32, u32) {
        match self {
            Chip::X82599 => (ixgbe::pool_rx_queue(p), ixgbe::pool_tx_queue(p)),
            Chip::I82576 => (igb::pool_rx_queue(p), igb::pool_tx_queue(p)),
        }
    }
}

/// Driver configuration (from the system description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub chip: Chip,
    /// Descriptors per RX ring (power of two, 8..=4096).
    pub rx_ring: u32,
    /// Descriptors per TX ring (power of two, 8..=4096).
    pub tx_ring: u32,
    /// Receive buffer size the NIC may fill, in KiB (1..=16). Posted buffers must be this big.
    pub rx_buf_kb: u32,
    /// Drop frames whose source MAC is not the pool's.
    pub anti_spoof: bool,
    /// Interrupt moderation per pool vector (microseconds); `None` = no MSI-X, poll only.
    pub msix_itr_us: Option<u32>,
}

impl Config {
    pub fn new(chip: Chip) -> Self {
        Self {
            chip,
            rx_ring: 512,
            tx_ring: 512,
            rx_buf_kb: 2,
            anti_spoof: true,
            msix_itr_us: Some(20),
        }
    }

    fn check(&self) -> Result<(), Error> {
        let ring_ok = |n: u32| n.is_power_of_two() && (8..=4096).contains(&n);
        if !ring_ok(self.rx_ring) || !ring_ok(self.tx_ring) {
            return Err(Error::BadConfig(
                "ring size must be a power of two in 8..=4096",
            ));
        }
        if !(1..=16).contains(&self.rx_buf_kb) {
            return Err(Error::BadConfig("rx_buf_kb must be in 1..=16"));
        }
        Ok(())
    }
}

/// What happened to a pool's buffers when it was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// A frame that arrived before the filter went away.
    RxFrame(RxCompletion),
    /// A receive buffer returned unused.
    RxUnused(u32),
    /// A transmit frame the NIC finished.
    TxSent(u32),
    /// A transmit frame dropped unsent.
    TxDiscarded(u32),
}

struct Active {
    mac: [u8; 6],
    stats: PoolStats,
}

struct Slot {
    rings: Option<(RxRing, TxRing)>,
    active: Option<Active>,
}

pub struct Nic<R: RegisterAccess, D: Dma, T: Delay> {
    regs: R,
    dma: D,
    delay: T,
    cfg: Config,
    mac: [u8; 6],
    slots: Vec<Slot>,
    hw: HwStats,
}

impl<R: RegisterAccess, D: Dma, T: Delay> Nic<R, D, T> {
    /// Resets and initialises the NIC; no pools yet.
    pub fn new(regs: R, dma: D, mut delay: T, cfg: Config) -> Result<Self, Error> {
        cfg.check()?;
        let mac = match cfg.chip {
            Chip::X82599 => ixgbe::init::reset_and_init(&regs, &mut delay)?,
            Chip::I82576 => igb::init::reset_and_init(&regs, &mut delay)?,
        };
        if cfg.msix_itr_us.is_some() {
            match cfg.chip {
                Chip::X82599 => ixgbe::msix::setup(&regs),
                Chip::I82576 => igb::msix::setup(&regs),
            }
        }
        let slots = (0..cfg.chip.max_pools())
            .map(|_| Slot {
                rings: None,
                active: None,
            })
            .collect();
        Ok(Self {
            regs,
            dma,
            delay,
            cfg,
            mac,
            slots,
            hw: HwStats::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The permanent MAC address (RAR 0 after reset).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn link(&self) -> Link {
        match self.cfg.chip {
            Chip::X82599 => ixgbe::link::status(&self.regs),
            Chip::I82576 => igb::init::link_status(&self.regs),
        }
    }

    /// Waits up to `timeout_ms` for the link.
    pub fn wait_link(&mut self, timeout_ms: u32) -> Result<Link, Error> {
        for _ in 0..timeout_ms {
            let l = self.link();
            if l.up {
                return Ok(l);
            }
            self.delay.delay_us(1000);
        }
        Err(Error::Timeout("link up"))
    }

    /// Gives `mac` a pool of its own: RX and TX queue set up, filter programmed, vector mapped.
    pub fn alloc_pool(&mut self, mac: [u8; 6], flags: PoolFlags) -> Result<u8, Error> {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(Error::BadMac);
        }
        if self
            .slots
            .iter()
            .any(|s| s.active.as_ref().is_some_and(|a| a.mac == mac))
        {
            return Err(Error::MacInUse);
        }
        let max = self
            .cfg
            .chip
            .max_pools()
            .min((self.cfg.chip.rar_entries() - 1) as u8);
        let p = (0..max)
            .find(|&p| self.slots[usize::from(p)].active.is_none())
            .ok_or(Error::NoFreePool)?;
        let slot = usize::from(p);
        let (rxq, txq) = self.cfg.chip.pool_queues(p);
        if self.slots[slot].rings.is_none() {
            let qr = self.cfg.chip.queue_regs();
            let (rdt, tdt) = (qr.rdt(rxq), qr.tdt(txq));
            let rx_mem = self.dma.alloc(self.cfg.rx_ring as usize * 16)?;
            let tx_mem = self.dma.alloc(self.cfg.tx_ring as usize * 16)?;
            self.slots[slot].rings = Some((
                RxRing::new(
                    rx_mem,
                    self.cfg.rx_ring as usize,
                    rdt,
                    self.cfg.chip.rx_errors(),
                ),
                TxRing::new(tx_mem, self.cfg.tx_ring as usize, tdt),
            ));
        }
        let Some((rx, tx)) = self.slots[slot].rings.as_mut() else {
            return Err(Error::NoSuchPool(p));
        };
        rx.reset();
        tx.reset();
        let (rx_bus, tx_bus) = (rx.bus(), tx.bus());
        let rar = u32::from(p) + 1;
        let (regs, d, cfg) = (&self.regs, &mut self.delay, &self.cfg);
        let qr = cfg.chip.queue_regs();
        let queues = qr
            .setup_rx(regs, d, rxq, rx_bus, cfg.rx_ring, cfg.rx_buf_kb)
            .and_then(|()| qr.setup_tx(regs, d, txq, tx_bus, cfg.tx_ring));
        if let Err(e) = queues {
            // Leave nothing half-enabled; the pool number stays free. Best effort: the
            // original error is the one worth reporting.
            let _ = qr.disable_rx(regs, d, rxq).and(qr.disable_tx(regs, d, txq));
            return Err(e);
        }
        match cfg.chip {
            Chip::X82599 => {
                if p < ixgbe::stats::QUEUE_COUNTERS {
                    ixgbe::stats::map_rx_queue(regs, rxq, p);
                    ixgbe::stats::rx_drops(regs, p);
                }
                ixgbe::vmdq::enable_pool(regs, p, rar, mac, flags, cfg.anti_spoof);
            }
            Chip::I82576 => {
                igb::init::rx_drops(regs, rxq);
                igb::vmdq::enable_pool(regs, p, rar, mac, flags, cfg.anti_spoof);
            }
        }
        if let Some(itr) = cfg.msix_itr_us {
            let v = Self::vector_of(cfg.chip, p);
            match cfg.chip {
                Chip::X82599 => ixgbe::msix::map_queues(regs, rxq, txq, v, itr),
                Chip::I82576 => igb::msix::map_queues(regs, rxq, txq, v, itr),
            }
        }
        let has_drop_counter = cfg.chip == Chip::I82576 || p < ixgbe::stats::QUEUE_COUNTERS;
        self.slots[slot].active = Some(Active {
            mac,
            stats: PoolStats {
                rx_dropped: has_drop_counter.then_some(0),
                ..PoolStats::default()
            },
        });
        Ok(p)
    }

    fn vector_of(chip: Chip, p: u8) -> u32 {
        1 + u32::from(p) % (chip.msix_vectors() - 1)
    }

    /// The MSI-X vector pool `p`'s queues signal (several pools may share one).
    pub fn pool_vector(&self, p: u8) -> Option<u32> {
        self.cfg.msix_itr_us?;
        self.active(p).ok()?;
        Some(Self::vector_of(self.cfg.chip, p))
    }

    /// Re-enables pool `p`'s vector after its rings were polled (vectors auto-mask on firing).
    pub fn rearm(&self, p: u8) -> Result<(), Error> {
        let v = self.pool_vector(p).ok_or(Error::NoSuchPool(p))?;
        match self.cfg.chip {
            Chip::X82599 => ixgbe::msix::unmask(&self.regs, v),
            Chip::I82576 => igb::msix::unmask(&self.regs, v),
        }
        Ok(())
    }

    /// Acknowledges the "other causes" vector: true if the link state changed since the last
    /// call (read [`Nic::link`] for the new state). Re-enables the vector.
    pub fn link_changed(&self) -> bool {
        let regs = &self.regs;
        match self.cfg.chip {
            Chip::X82599 => {
                use crate::regs::ixgbe::{EICR, EICR_LSC, EICR_OTHER, EIMS};
                let lsc = regs.read32(EICR) & EICR_LSC != 0;
                if lsc {
                    // Write-1-to-clear under MSI-X.
                    regs.write32(EICR, EICR_LSC);
                }
                regs.write32(EIMS, EICR_LSC | EICR_OTHER);
                lsc
            }
            Chip::I82576 => {
                use crate::regs::igb::{EIMS, ICR, ICR_LSC};
                // ICR clears on read.
                let lsc = regs.read32(ICR) & ICR_LSC != 0;
                regs.write32(EIMS, 1 << igb::msix::MISC_VECTOR);
                lsc
            }
        }
    }

    fn active(&self, p: u8) -> Result<&Active, Error> {
        self.slots
            .get(usize::from(p))
            .and_then(|s| s.active.as_ref())
            .ok_or(Error::NoSuchPool(p))
    }

    fn parts(&mut self, p: u8) -> Result<(&R, &mut RxRing, &mut TxRing, &mut PoolStats), Error> {
        let slot = self
            .slots
            .get_mut(usize::from(p))
            .ok_or(Error::NoSuchPool(p))?;
        match (slot.rings.as_mut(), slot.active.as_mut()) {
            (Some((rx, tx)), Some(a)) => Ok((&self.regs, rx, tx, &mut a.stats)),
            _ => Err(Error::NoSuchPool(p)),
        }
    }

    /// Receive buffers pool `p` can still take.
    pub fn rx_room(&mut self, p: u8) -> Result<usize, Error> {
        Ok(self.parts(p)?.1.room())
    }

    /// Transmit slots pool `p` has free.
    pub fn tx_room(&mut self, p: u8) -> Result<usize, Error> {
        Ok(self.parts(p)?.2.room())
    }

    /// Posts receive buffers (each at least `rx_buf_kb` KiB); one doorbell. Returns how many fit.
    pub fn post_rx(&mut self, p: u8, bufs: &[RxBuf]) -> Result<usize, Error> {
        let (regs, rx, _, _) = self.parts(p)?;
        Ok(rx.post(regs, bufs))
    }

    /// Harvests up to `out.len()` received frames of pool `p`, in arrival order.
    pub fn rx_burst(&mut self, p: u8, out: &mut [RxCompletion]) -> Result<usize, Error> {
        let (_, rx, _, st) = self.parts(p)?;
        let n = rx.poll(out);
        for c in &out[..n] {
            if c.ok {
                st.rx_frames += 1;
                st.rx_bytes += u64::from(c.len);
            } else {
                st.rx_errors += 1;
            }
        }
        Ok(n)
    }

    /// Queues frames on pool `p`'s TX ring; one doorbell. Returns how many fit.
    pub fn tx_burst(&mut self, p: u8, frames: &[TxBuf]) -> Result<usize, Error> {
        let (regs, _, tx, st) = self.parts(p)?;
        let n = tx.send(regs, frames);
        st.tx_frames += n as u64;
        st.tx_bytes += frames[..n].iter().map(|f| u64::from(f.len)).sum::<u64>();
        Ok(n)
    }

    /// Ids of transmitted frames whose buffers are free again, in order.
    pub fn tx_reclaim(&mut self, p: u8, out: &mut [u32]) -> Result<usize, Error> {
        let (_, _, tx, _) = self.parts(p)?;
        Ok(tx.reclaim(out))
    }

    /// Tears pool `p` down, handing every buffer it held to `out` exactly once.
    pub fn release_pool(&mut self, p: u8, mut out: impl FnMut(Released)) -> Result<(), Error> {
        self.active(p)?;
        let chip = self.cfg.chip;
        let (rxq, txq) = chip.pool_queues(p);
        let rar = u32::from(p) + 1;
        match chip {
            Chip::X82599 => ixgbe::vmdq::disable_pool_rx(&self.regs, p, rar),
            Chip::I82576 => igb::vmdq::disable_pool_rx(&self.regs, p, rar),
        }
        self.take_pool_drops(p);
        let slot = usize::from(p);
        let Some((rx, tx)) = self.slots[slot].rings.as_mut() else {
            return Err(Error::NoSuchPool(p));
        };
        let mut batch = [RxCompletion::default(); 32];
        loop {
            let n = rx.poll(&mut batch);
            if n == 0 {
                break;
            }
            batch[..n].iter().for_each(|c| out(Released::RxFrame(*c)));
        }
        let regs = &self.regs;
        let d = &mut self.delay;
        let rx_res = chip.queue_regs().disable_rx(regs, d, rxq);
        // Frames completed while the queue was being disabled.
        loop {
            let n = rx.poll(&mut batch);
            if n == 0 {
                break;
            }
            batch[..n].iter().for_each(|c| out(Released::RxFrame(*c)));
        }
        rx.drain_unused(|id| out(Released::RxUnused(id)));
        // Give queued frames up to ~10 ms to leave before the queue is cut.
        let mut ids = [0u32; 32];
        for _ in 0..1000 {
            loop {
                let n = tx.reclaim(&mut ids);
                if n == 0 {
                    break;
                }
                ids[..n].iter().for_each(|&id| out(Released::TxSent(id)));
            }
            if tx.in_flight() == 0 {
                break;
            }
            d.delay_us(10);
        }
        let tx_res = chip.queue_regs().disable_tx(regs, d, txq);
        tx.drain_unsent(|id| out(Released::TxDiscarded(id)));
        match chip {
            Chip::X82599 => {
                ixgbe::vmdq::disable_pool_tx(regs, p);
                if self.cfg.msix_itr_us.is_some() {
                    ixgbe::msix::unmap_queues(regs, rxq, txq);
                }
            }
            Chip::I82576 => {
                igb::vmdq::disable_pool_tx(regs, p);
                if self.cfg.msix_itr_us.is_some() {
                    igb::msix::unmap_queues(regs, rxq, txq);
                }
            }
        }
        self.slots[slot].active = None;
        // The pool is gone either way; a stuck disable is still worth reporting.
        rx_res.and(tx_res)
    }

    fn take_pool_drops(&mut self, p: u8) {
        let (rxq, _) = self.cfg.chip.pool_queues(p);
        let drops = match self.cfg.chip {
            Chip::X82599 if p < ixgbe::stats::QUEUE_COUNTERS => {
                ixgbe::stats::rx_drops(&self.regs, p)
            }
            Chip::X82599 => return,
            Chip::I82576 => igb::init::rx_drops(&self.regs, rxq),
        };
        if let Some(d) = self.slots[usize::from(p)]
            .active
            .as_mut()
            .and_then(|a| a.stats.rx_dropped.as_mut())
        {
            *d += drops;
        }
    }

    /// Counters of pool `p` (reads its hardware drop counter).
    pub fn pool_stats(&mut self, p: u8) -> Result<PoolStats, Error> {
        self.active(p)?;
        self.take_pool_drops(p);
        Ok(self.active(p)?.stats)
    }

    /// Chip-wide counters (reads and clears the hardware counters into the totals).
    pub fn stats(&mut self) -> HwStats {
        match self.cfg.chip {
            Chip::X82599 => ixgbe::stats::accumulate(&self.regs, &mut self.hw),
            Chip::I82576 => igb::init::accumulate_stats(&self.regs, &mut self.hw),
        }
        self.hw
    }

    /// Pools currently allocated.
    pub fn pools(&self) -> impl Iterator<Item = u8> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_some())
            .map(|(i, _)| i as u8)
    }

    /// The register access, for the server's interrupt and diagnostic paths.
    pub fn regs(&self) -> &R {
        &self.regs
    }
}
