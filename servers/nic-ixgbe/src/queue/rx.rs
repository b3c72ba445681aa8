//! One receive ring: post buffers (one RDT doorbell per batch), harvest completions.
//!
//! Invariants: the descriptors in `[head, head + posted)` (mod n) belong to the NIC and carry
//! the ids in `ids`; `posted <= n - 1`, because RDT == RDH means "empty" to the NIC. A
//! descriptor is only read back after its DD bit, and the DD bit is cleared by writing the
//! upper quadword as zero whenever a buffer is posted.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::desc::*;
use crate::hw::{DmaRegion, RegisterAccess};

/// A buffer handed to the NIC for receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxBuf {
    pub addr: u64,
    pub id: u32,
}

/// A buffer coming back from the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxCompletion {
    pub id: u32,
    /// Bytes of frame written into the buffer.
    pub len: u16,
    /// False when the NIC flagged a receive error or the frame did not fit one buffer.
    pub ok: bool,
    /// The NIC found a wrong IPv4, TCP or UDP checksum in an otherwise good frame, which is
    /// delivered as received (`ok` stays true).
    pub checksum_error: bool,
}

pub struct RxRing {
    ring: DmaRegion,
    mask: usize,
    ids: Vec<u32>,
    head: usize,
    tail: usize,
    posted: usize,
    rdt: u32,
    errors: RxErrorBits,
}

impl RxRing {
    /// `ring` must hold `n` descriptors, `n` a power of two; `rdt` is the queue's RDT offset;
    /// `errors` the chip's write-back error bits.
    pub fn new(ring: DmaRegion, n: usize, rdt: u32, errors: RxErrorBits) -> Self {
        debug_assert!(n.is_power_of_two() && ring.len() >= n * DESC_SIZE);
        Self {
            ring,
            mask: n - 1,
            ids: vec![0; n],
            head: 0,
            tail: 0,
            posted: 0,
            rdt,
            errors,
        }
    }

    pub fn bus(&self) -> u64 {
        self.ring.bus()
    }

    pub fn size(&self) -> usize {
        self.mask + 1
    }

    /// Forgets all state; used when the queue is (re)programmed with RDH = RDT = 0.
    pub fn reset(&mut self) {
        self.ring.fill(0xFF);
        self.head = 0;
        self.tail = 0;
        self.posted = 0;
    }

    /// Buffers the NIC currently holds.
    pub fn posted(&self) -> usize {
        self.posted
    }

    /// Buffers that can still be posted.
    pub fn room(&self) -> usize {
        self.mask - self.posted
    }

    /// Posts as many of `bufs` as fit and rings the doorbell once; returns how many.
    pub fn post<R: RegisterAccess>(&mut self, regs: &R, bufs: &[RxBuf]) -> usize {
        let n = bufs.len().min(self.room());
        if n == 0 {
            return 0;
        }
        for b in &bufs[..n] {
            let off = self.tail * DESC_SIZE;
            self.ring.write_u64(off + RX_PKT_ADDR_OFF, b.addr);
            self.ring.write_u64(off + RX_HDR_ADDR_OFF, 0);
            self.ids[self.tail] = b.id;
            self.tail = (self.tail + 1) & self.mask;
        }
        self.posted += n;
        // Descriptor stores must be visible before the NIC sees the new tail.
        fence(Ordering::Release);
        regs.write32(self.rdt, self.tail as u32);
        n
    }

    /// Harvests up to `out.len()` completed buffers in ring order.
    pub fn poll(&mut self, out: &mut [RxCompletion]) -> usize {
        let mut n = 0;
        while n < out.len() && self.posted > 0 {
            let off = self.head * DESC_SIZE;
            let status = self.ring.read_u32(off + RX_STATUS_OFF);
            if status & RXD_STAT_DD == 0 {
                break;
            }
            // The rest of the write-back is only valid once DD is seen.
            fence(Ordering::Acquire);
            let len = self.ring.read_u16(off + RX_LENGTH_OFF);
            let st = self.errors.decode(status);
            out[n] = RxCompletion {
                id: self.ids[self.head],
                len: if st.usable { len } else { 0 },
                ok: st.usable,
                checksum_error: st.checksum_error,
            };
            n += 1;
            self.head = (self.head + 1) & self.mask;
            self.posted -= 1;
        }
        n
    }

    /// Hands back the ids of every buffer still posted (the queue must be disabled first).
    pub fn drain_unused(&mut self, mut f: impl FnMut(u32)) {
        while self.posted > 0 {
            f(self.ids[self.head]);
            self.head = (self.head + 1) & self.mask;
            self.posted -= 1;
        }
    }
}
