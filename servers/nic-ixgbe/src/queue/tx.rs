//! One transmit ring: queue frames (one TDT doorbell per batch), reclaim completions.
//!
//! Invariants: descriptors `[clean, clean + in_flight)` (mod n) belong to the NIC and carry
//! the ids in `ids`; `in_flight <= n - 1` (TDT == TDH means empty). Every descriptor asks for
//! status write-back (RS), so each one's DD bit says it is done; they complete in order.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::desc::*;
use crate::hw::{DmaRegion, RegisterAccess};

/// A frame to transmit: `len` bytes at bus address `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxBuf {
    pub addr: u64,
    pub len: u16,
    pub id: u32,
}

pub struct TxRing {
    ring: DmaRegion,
    mask: usize,
    ids: Vec<u32>,
    clean: usize,
    tail: usize,
    in_flight: usize,
    tdt: u32,
}

impl TxRing {
    pub fn new(ring: DmaRegion, n: usize, tdt: u32) -> Self {
        debug_assert!(n.is_power_of_two() && ring.len() >= n * DESC_SIZE);
        Self {
            ring,
            mask: n - 1,
            ids: vec![0; n],
            clean: 0,
            tail: 0,
            in_flight: 0,
            tdt,
        }
    }

    pub fn bus(&self) -> u64 {
        self.ring.bus()
    }

    pub fn size(&self) -> usize {
        self.mask + 1
    }

    pub fn reset(&mut self) {
        self.ring.fill(0);
        self.clean = 0;
        self.tail = 0;
        self.in_flight = 0;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn room(&self) -> usize {
        self.mask - self.in_flight
    }

    /// Queues as many of `frames` as fit and rings the doorbell once; returns how many.
    pub fn send<R: RegisterAccess>(&mut self, regs: &R, frames: &[TxBuf]) -> usize {
        let n = frames.len().min(self.room());
        if n == 0 {
            return 0;
        }
        for f in &frames[..n] {
            let off = self.tail * DESC_SIZE;
            let len = u32::from(f.len);
            let cmd = TXD_CMD_EOP
                | TXD_CMD_IFCS
                | TXD_CMD_RS
                | TXD_CMD_DEXT
                | TXD_DTYP_DATA
                | (len & TXD_DTALEN_MASK);
            self.ring.write_u64(off + TX_ADDR_OFF, f.addr);
            // cmd_type_len (low half) and olinfo_status with PAYLEN (high half).
            self.ring.write_u64(
                off + TX_CMD_OFF,
                u64::from(cmd) | (u64::from(len << TXD_PAYLEN_SHIFT) << 32),
            );
            self.ids[self.tail] = f.id;
            self.tail = (self.tail + 1) & self.mask;
        }
        self.in_flight += n;
        fence(Ordering::Release);
        regs.write32(self.tdt, self.tail as u32);
        n
    }

    /// Collects the ids of up to `out.len()` transmitted frames, in order.
    pub fn reclaim(&mut self, out: &mut [u32]) -> usize {
        let mut n = 0;
        while n < out.len() && self.in_flight > 0 {
            let status = self.ring.read_u32(self.clean * DESC_SIZE + TX_STATUS_OFF);
            if status & TXD_STAT_DD == 0 {
                break;
            }
            out[n] = self.ids[self.clean];
            n += 1;
            self.clean = (self.clean + 1) & self.mask;
            self.in_flight -= 1;
        }
        n
    }

    /// Hands back the ids of every frame still queued (the queue must be disabled first).
    pub fn drain_unsent(&mut self, mut f: impl FnMut(u32)) {
        while self.in_flight > 0 {
            f(self.ids[self.clean]);
            self.clean = (self.clean + 1) & self.mask;
            self.in_flight -= 1;
        }
    }
}
