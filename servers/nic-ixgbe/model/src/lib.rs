//! ixgbe-model: a register-level software model of the Intel 82599 (and a smaller 82576
//! variant, as QEMU's igb presents it) for host tests and benchmarks of the driver core.
//!
//! What it models: reset values and self-clearing bits (CTRL.RST, AUTOC.AN_RESTART), the
//! EEPROM-done and DMA-init-done bits appearing a few reads after reset, RXDCTL/TXDCTL enable
//! handshakes that take effect one poll later, clear-on-read statistics, descriptor fetch and
//! write-back through bus memory (the model reads descriptors from the bus address the driver
//! programmed, never from the driver's pointers), destination-MAC to pool steering (82599: RAR
//! and MPSAR, PFVML2FLT, PFVFRE, PFVTCTL; 82576: RAH.POOLSEL, VMOLR, VFRE, VT_CTL), a shared
//! receive packet buffer in which a frame for a queue without descriptors blocks everything
//! behind it unless that queue has drop-enable, MAC anti-spoofing on transmit, and MSI-X
//! vectors through IVAR with EIMS/EIMC masking, auto-clear (EIAC) and auto-mask (EIAM).
//!
//! What it does not model (tests must not rely on it): EITR throttling, RSS, VLAN filtering
//! and tagging, header split, multi-descriptor receive frames, multicast hash tables, the
//! internal VM-to-VM switch, flow control, timing beyond "one poll later".
//!
//! Programming errors the model can see (for example MTQC written without RTTDCS.ARBDIS, a
//! queue enabled with a bad ring length, a descriptor at an unmapped bus address) are recorded
//! as [`Model::violations`]; driver tests assert there are none.
//!
//! The API: [`Model::new`], register access ([`Model::read32`]/[`Model::write32`]), DMA memory
//! ([`Model::dma_alloc`], [`Model::read_bus`], [`Model::write_bus`]), time
//! ([`Model::advance_us`]), the wire ([`Model::inject`], [`Model::take_transmitted`]),
//! counters ([`Model::pool_counters`]) and interrupts ([`Model::take_msix`]).

mod map;
mod mem;
mod state;

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use state::State;

/// Which chip the model plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    X82599,
    I82576,
}

/// What the model saw of one pool (not clear-on-read; since model creation or reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames for this pool dropped because its queue had no descriptor (drop-enable).
    pub rx_dropped: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames this pool sent with a source MAC that is not its own, dropped.
    pub tx_spoofed: u64,
}

/// The model. Clones share one device.
#[derive(Clone)]
pub struct Model(Rc<RefCell<State>>);

impl Model {
    /// A powered-on device with permanent MAC `mac`, link down, just reset.
    pub fn new(chip: Chip, mac: [u8; 6]) -> Self {
        Model(Rc::new(RefCell::new(State::new(chip, mac))))
    }

    pub fn chip(&self) -> Chip {
        self.0.borrow().chip
    }

    pub fn read32(&self, off: u32) -> u32 {
        self.0.borrow_mut().read32(off)
    }

    pub fn write32(&self, off: u32, v: u32) {
        self.0.borrow_mut().write32(off, v)
    }

    /// Zeroed device-visible memory: (CPU pointer, bus address), page aligned. Valid until the
    /// last clone of the model is dropped.
    pub fn dma_alloc(&self, len: usize) -> (NonNull<u8>, u64) {
        self.0.borrow_mut().mem.alloc(len)
    }

    /// Reads `len` bytes at bus address `bus`, as the device would see them.
    pub fn read_bus(&self, bus: u64, len: usize) -> Option<Vec<u8>> {
        let mut v = vec![0; len];
        self.0.borrow().mem.read(bus, &mut v).then_some(v)
    }

    /// Writes at bus address `bus`; false if the range is not mapped.
    pub fn write_bus(&self, bus: u64, data: &[u8]) -> bool {
        self.0.borrow().mem.write(bus, data)
    }

    /// Lets virtual time pass (link negotiation, pending handshakes).
    pub fn advance_us(&self, us: u64) {
        self.0.borrow_mut().advance(us)
    }

    pub fn now_us(&self) -> u64 {
        self.0.borrow().now_us
    }

    /// A frame (destination MAC first, no FCS) arrives from the wire.
    pub fn inject(&self, frame: &[u8]) {
        self.0.borrow_mut().inject(frame)
    }

    /// Frames sent to the wire since the last call, in order.
    pub fn take_transmitted(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.0.borrow_mut().wire_out)
    }

    /// Frames transmitted and not yet taken.
    pub fn transmitted_len(&self) -> usize {
        self.0.borrow().wire_out.len()
    }

    /// Drops the transmitted frames without copying them out (for benchmarks).
    pub fn discard_transmitted(&self) {
        self.0.borrow_mut().wire_out.clear()
    }

    /// When set, TDT writes only record the tail; [`Model::run_tx`] does the transmitting.
    /// Benchmarks use it to keep the model's work out of the driver's timed calls.
    pub fn defer_tx(&self, on: bool) {
        self.0.borrow_mut().defer_tx = on
    }

    /// Processes every queue's pending transmit descriptors.
    pub fn run_tx(&self) {
        self.0.borrow_mut().run_all_tx()
    }

    pub fn pool_counters(&self, pool: u32) -> PoolCounters {
        self.0
            .borrow()
            .pools
            .get(pool as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Frames no pool accepted (no filter matched, or every matching pool disabled).
    pub fn unmatched(&self) -> u64 {
        self.0.borrow().unmatched
    }

    /// Frames waiting in the receive packet buffer (blocked behind a queue without
    /// descriptors and without drop-enable).
    pub fn rx_buffered(&self) -> usize {
        self.0.borrow().fifo.len()
    }

    /// MSI-X vectors signalled since the last call, in order.
    pub fn take_msix(&self) -> Vec<u32> {
        std::mem::take(&mut self.0.borrow_mut().fired)
    }

    /// Programming errors seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.0.borrow().violations.clone()
    }

    /// Number of full-device resets performed (CTRL.RST).
    pub fn resets(&self) -> u32 {
        self.0.borrow().resets
    }
}
