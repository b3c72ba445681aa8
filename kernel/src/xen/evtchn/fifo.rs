//! FIFO event channels: consuming the per-priority queues Xen links pending ports into.
//!
//! Layout: a per-vCPU control block (`ready` bitmap, `head[16]`) and event array pages of u32
//! event words (PENDING 31, MASKED 30, LINKED 29, link in bits 0..17). Xen appends a port to
//! its queue by writing the link of the queue's tail word, or the control block's head when the
//! tail was already consumed; it sets `ready` bit q when queue q becomes non-empty.
//!
//! Invariants of the consumer:
//! - the link of a word is taken and its LINKED bit cleared in one compare-exchange, so Xen
//!   either linked behind it first (we follow the link) or sees it unlinked and restarts the
//!   queue at the control block's head (we read that when our local head runs out);
//! - PENDING is cleared with an atomic read-modify-write before delivery, so a raise during
//!   delivery links the port again; masked ports stay pending (unmask goes through Xen, which
//!   relinks them);
//! - a link Xen writes beyond the event array we gave it stops that queue (counted as stray)
//!   instead of indexing out of bounds;
//! - one call consumes at most [`MAX_EVENTS`] events; unfinished `ready` bits go back to the
//!   control block and the call reports `more`.
//!
//! Shared pages are viewed as 64-bit atomics (see [`crate::xen::shared`]); a 32-bit field is
//! updated by a read-modify-write of its half, which leaves the other half untouched.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{EventChannels, EvtchnError, Merge, UpcallStats};
use crate::xen::abi::EvtchnPort;
use crate::xen::abi::evtchn::{
    EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_MASKED, EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_PENDING,
};
use crate::xen::hypercall::{self, Hypercall};
use crate::xen::shared::SharedPage;

/// Events consumed per call before handing back to the caller.
pub const MAX_EVENTS: u32 = 4096;

/// A 32-bit field inside a shared 64-bit word.
#[derive(Clone, Copy)]
struct Half<'a> {
    word: &'a AtomicU64,
    shift: u32,
}

impl Half<'_> {
    fn load(self) -> u32 {
        (self.word.load(Ordering::Acquire) >> self.shift) as u32
    }

    /// ANDs `mask` into the field; returns the field's old value.
    fn fetch_and(self, mask: u32) -> u32 {
        let keep = !(u64::from(!mask) << self.shift);
        (self.word.fetch_and(keep, Ordering::AcqRel) >> self.shift) as u32
    }

    /// ORs `bits` into the field; returns the field's old value.
    fn fetch_or(self, bits: u32) -> u32 {
        (self
            .word
            .fetch_or(u64::from(bits) << self.shift, Ordering::AcqRel)
            >> self.shift) as u32
    }

    /// Compare-exchange of the field alone (the other half may change meanwhile: retried).
    fn update(self, mut f: impl FnMut(u32) -> Option<u32>) -> Result<u32, u32> {
        let shift = self.shift;
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let old = (w >> shift) as u32;
                f(old).map(|new| (w & !(0xffff_ffffu64 << shift)) | (u64::from(new) << shift))
            })
            .map(|w| (w >> shift) as u32)
            .map_err(|w| (w >> shift) as u32)
    }
}

/// One vCPU's control block and the event array pages, as registered with Xen.
pub struct FifoView<'a> {
    control: SharedPage<'a>,
    /// Byte offset of the control block in its page (8-aligned).
    offset: usize,
    array: Vec<SharedPage<'a>>,
}

impl<'a> FifoView<'a> {
    /// `offset` must be 8-aligned and leave room for the 72-byte block (constants chosen by the
    /// kernel, not input).
    pub fn new(control: SharedPage<'a>, offset: usize, array: Vec<SharedPage<'a>>) -> Self {
        assert!(
            offset.is_multiple_of(8) && offset + 72 <= 4096,
            "control block offset {offset}"
        );
        Self {
            control,
            offset,
            array,
        }
    }

    /// Ports the event array covers.
    pub fn ports(&self) -> u32 {
        self.array.len() as u32 * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE
    }

    /// Adds the next event array page (after `EVTCHNOP_expand_array` accepted it).
    pub fn push_page(&mut self, page: SharedPage<'a>) {
        self.array.push(page);
    }

    fn ready(&self) -> Half<'a> {
        Half {
            word: self.control.word(self.offset),
            shift: 0,
        }
    }

    fn head(&self, q: usize) -> Half<'a> {
        Half {
            word: self.control.word(self.offset + 8 + 8 * (q / 2)),
            shift: 32 * (q as u32 % 2),
        }
    }

    fn event(&self, port: EvtchnPort) -> Option<Half<'a>> {
        let page = self
            .array
            .get((port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) as usize)?;
        let i = (port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) as usize;
        Some(Half {
            word: page.word_at(i / 2),
            shift: 32 * (i as u32 % 2),
        })
    }

    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        self.event(port)
            .is_some_and(|e| e.load() & EVTCHN_FIFO_PENDING != 0)
    }

    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        self.event(port)
            .is_some_and(|e| e.load() & EVTCHN_FIFO_MASKED != 0)
    }

    pub fn mask(&self, port: EvtchnPort) {
        if let Some(e) = self.event(port) {
            e.fetch_or(EVTCHN_FIFO_MASKED);
        }
    }
}

/// The consumer's own queue heads (the guest-local copy Linux keeps per vCPU): where each queue
/// continues, until it runs out and the control block's head is read again.
#[derive(Debug, Default)]
pub struct FifoConsumer {
    head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

impl<T: Copy + Eq> EventChannels<T> {
    /// The FIFO upcall: consumes every ready queue (most urgent first), delivering pending,
    /// unmasked ports to their tasks, merged into one `sink` call per task per flush.
    pub fn upcall_fifo(
        &self,
        fifo: &FifoView<'_>,
        cons: &mut FifoConsumer,
        mut sink: impl FnMut(T, u64),
    ) -> UpcallStats {
        let mut stats = UpcallStats::default();
        let mut merge = Merge::new();
        let mut ready = fifo.ready().fetch_and(0) & ((1 << EVTCHN_FIFO_MAX_QUEUES) - 1);
        let mut budget = MAX_EVENTS;
        while ready != 0 {
            if budget == 0 {
                fifo.ready().fetch_or(ready);
                stats.more = true;
                break;
            }
            budget -= 1;
            let q = ready.trailing_zeros() as usize;
            let mut port = cons.head[q];
            if port == 0 {
                port = fifo.head(q).load();
            }
            let Some(ev) = fifo.event(port).filter(|_| port != 0) else {
                // An empty queue marked ready, or a head beyond our array: stop this queue.
                if port != 0 {
                    stats.stray += 1;
                }
                ready &= !(1 << q);
                cons.head[q] = 0;
                continue;
            };
            // Take the link and unlink in one step (see the module invariants).
            let old = ev
                .update(|w| Some(w & !(EVTCHN_FIFO_LINKED | EVTCHN_FIFO_LINK_MASK)))
                .unwrap_or_else(|w| w);
            let next = old & EVTCHN_FIFO_LINK_MASK;
            if next == 0 {
                ready &= !(1 << q);
            }
            cons.head[q] = next;
            if old & EVTCHN_FIFO_MASKED != 0 {
                continue;
            }
            if ev.fetch_and(!EVTCHN_FIFO_PENDING) & EVTCHN_FIFO_PENDING == 0 {
                continue;
            }
            match self.binding(port) {
                Some(b) => {
                    stats.delivered += 1;
                    merge.add(b.task, b.bit, &mut sink, &mut stats);
                }
                None => {
                    stats.stray += 1;
                    ev.fetch_or(EVTCHN_FIFO_MASKED);
                }
            }
        }
        merge.flush(&mut sink, &mut stats);
        stats
    }

    /// Unmasks `task`'s port under FIFO: clears MASKED, and if the port is pending asks Xen to
    /// relink it (only Xen may link words into queues).
    pub fn unmask_fifo(
        &self,
        h: &impl Hypercall,
        fifo: &FifoView<'_>,
        task: T,
        port: EvtchnPort,
    ) -> Result<(), EvtchnError> {
        self.check_owner(port, task)?;
        let ev = fifo.event(port).ok_or(EvtchnError::PortOutOfRange(port))?;
        let old = ev.fetch_and(!EVTCHN_FIFO_MASKED);
        if old & EVTCHN_FIFO_PENDING != 0 {
            hypercall::evtchn_unmask(h, port)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::abi::evtchn::{EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHNOP_UNMASK, EvtchnPortArg};
    use crate::xen::hypercall::{Errno, nr};
    use crate::xen::shared::zeroed_page;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Task(u32);

    /// Xen's producer side, as the FIFO ABI specifies it.
    struct XenModel<'v, 'a> {
        view: &'v FifoView<'a>,
        tails: [u32; EVTCHN_FIFO_MAX_QUEUES],
        priority: BTreeMap<u32, usize>,
        upcalls: u32,
    }

    impl<'v, 'a> XenModel<'v, 'a> {
        fn new(view: &'v FifoView<'a>) -> Self {
            Self {
                view,
                tails: [0; EVTCHN_FIFO_MAX_QUEUES],
                priority: BTreeMap::new(),
                upcalls: 0,
            }
        }

        fn raise(&mut self, port: u32) {
            let ev = self.view.event(port).unwrap();
            let old = ev.fetch_or(EVTCHN_FIFO_PENDING);
            if old & (EVTCHN_FIFO_MASKED | EVTCHN_FIFO_LINKED) != 0 {
                return;
            }
            self.link(port);
        }

        fn link(&mut self, port: u32) {
            let ev = self.view.event(port).unwrap();
            if ev.fetch_or(EVTCHN_FIFO_LINKED) & EVTCHN_FIFO_LINKED != 0 {
                return;
            }
            let q = self
                .priority
                .get(&port)
                .copied()
                .unwrap_or(EVTCHN_FIFO_PRIORITY_DEFAULT as usize);
            let tail = self.tails[q];
            let linked = tail != 0
                && self
                    .view
                    .event(tail)
                    .unwrap()
                    .update(|w| {
                        (w & EVTCHN_FIFO_LINKED != 0).then_some((w & !EVTCHN_FIFO_LINK_MASK) | port)
                    })
                    .is_ok();
            if !linked {
                let h = self.view.head(q);
                h.update(|_| Some(port)).unwrap();
            }
            self.tails[q] = port;
            if self.view.ready().fetch_or(1 << q) & (1 << q) == 0 {
                self.upcalls += 1;
            }
        }

        fn unmask(&mut self, port: u32) {
            let ev = self.view.event(port).unwrap();
            let old = ev.fetch_and(!EVTCHN_FIFO_MASKED);
            if old & EVTCHN_FIFO_PENDING != 0 && old & EVTCHN_FIFO_LINKED == 0 {
                self.link(port);
            }
        }
    }

    struct UnmaskXen<'m, 'v, 'a>(&'m RefCell<XenModel<'v, 'a>>);
    impl Hypercall for UnmaskXen<'_, '_, '_> {
        unsafe fn call(&self, op: u32, a: [u64; 5]) -> i64 {
            if op != nr::EVENT_CHANNEL_OP || a[0] as u32 != EVTCHNOP_UNMASK {
                return -(Errno::ENOSYS.0 as i64);
            }
            // SAFETY: the unmask wrapper passes a live EvtchnPortArg.
            let port = unsafe { (*(a[1] as *const EvtchnPortArg)).port };
            self.0.borrow_mut().unmask(port);
            0
        }
    }

    fn pages(n: usize) -> Vec<alloc::boxed::Box<[AtomicU64; 512]>> {
        (0..n).map(|_| zeroed_page()).collect()
    }

    fn view<'a>(
        control: &'a [AtomicU64; 512],
        array: &'a [alloc::boxed::Box<[AtomicU64; 512]>],
    ) -> FifoView<'a> {
        FifoView::new(
            SharedPage::new(control),
            64,
            array.iter().map(|p| SharedPage::new(p)).collect(),
        )
    }

    fn drain(
        ch: &EventChannels<Task>,
        v: &FifoView<'_>,
        cons: &mut FifoConsumer,
    ) -> (BTreeMap<Task, u64>, UpcallStats) {
        let mut got = BTreeMap::new();
        let stats = ch.upcall_fifo(v, cons, |t, bits| {
            assert_eq!(got.insert(t, bits), None, "{t:?} notified twice");
        });
        (got, stats)
    }

    #[test]
    fn queued_ports_of_all_priorities_are_delivered_in_one_upcall() {
        let control = zeroed_page();
        let array = pages(2);
        let v = view(&control, &array);
        let mut ch = EventChannels::with_ports(v.ports() as usize);
        let mut xen = XenModel::new(&v);
        for i in 1..=300u32 {
            let port = i * 6;
            ch.bind(port, Task(i % 3), (i % 60) as u8).unwrap();
            xen.priority.insert(port, (i % 16) as usize);
            xen.raise(port);
        }
        assert_eq!(xen.upcalls, 16, "one upcall per queue that became ready");
        let mut cons = FifoConsumer::default();
        let (got, stats) = drain(&ch, &v, &mut cons);
        assert_eq!(stats.delivered, 300);
        assert_eq!(got.len(), 3);
        for i in 1..=300u32 {
            assert!(!v.is_pending(i * 6));
        }
        assert_eq!(v.ready().load(), 0);
        // Raising again after consumption relinks through the control block heads.
        xen.raise(6);
        xen.raise(12);
        let (got, stats) = drain(&ch, &v, &mut cons);
        assert_eq!(stats.delivered, 2);
        assert_eq!(got[&Task(1)], 1 << 1);
        assert_eq!(got[&Task(2)], 1 << 2);
    }

    #[test]
    fn masked_ports_stay_pending_until_unmask_relinks_them() {
        let control = zeroed_page();
        let array = pages(1);
        let v = view(&control, &array);
        let mut ch = EventChannels::with_ports(v.ports() as usize);
        ch.bind(5, Task(1), 9).unwrap();
        let xen = RefCell::new(XenModel::new(&v));
        v.mask(5);
        xen.borrow_mut().raise(5);
        let mut cons = FifoConsumer::default();
        let (got, _) = drain(&ch, &v, &mut cons);
        assert!(got.is_empty());
        assert!(v.is_pending(5));
        let hv = UnmaskXen(&xen);
        assert_eq!(
            ch.unmask_fifo(&hv, &v, Task(2), 5),
            Err(EvtchnError::NotOwner(5))
        );
        ch.unmask_fifo(&hv, &v, Task(1), 5).unwrap();
        let (got, _) = drain(&ch, &v, &mut cons);
        assert_eq!(got[&Task(1)], 1 << 9);
        assert!(!v.is_masked(5));
    }

    #[test]
    fn a_link_beyond_the_array_stops_the_queue_without_reading_out_of_bounds() {
        let control = zeroed_page();
        let array = pages(1);
        let v = view(&control, &array);
        let mut ch = EventChannels::with_ports(v.ports() as usize);
        ch.bind(3, Task(0), 0).unwrap();
        let mut xen = XenModel::new(&v);
        xen.raise(3);
        // A bogus link from port 3 to a port the array does not cover.
        v.event(3).unwrap().fetch_or(5000);
        let mut cons = FifoConsumer::default();
        let (got, stats) = drain(&ch, &v, &mut cons);
        assert_eq!(got[&Task(0)], 1);
        assert_eq!(stats.stray, 1);
        // Stray pending ports are masked so they cannot storm.
        let mut xen = XenModel::new(&v);
        xen.raise(700);
        let (got, stats) = drain(&ch, &v, &mut cons);
        assert!(got.is_empty());
        assert_eq!(stats.stray, 1);
        assert!(v.is_masked(700));
    }

    #[test]
    fn concurrent_raises_are_each_delivered_exactly_once() {
        let control = zeroed_page();
        let array = pages(4);
        let v = view(&control, &array);
        let mut ch = EventChannels::with_ports(v.ports() as usize);
        for port in 1..4096u32 {
            ch.bind(port, Task(port), 0).unwrap();
        }
        let mut seen = BTreeMap::new();
        let mut cons = FifoConsumer::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut xen = XenModel::new(&v);
                for port in 1..4096u32 {
                    xen.priority.insert(port, (port % 3) as usize);
                    xen.raise(port);
                }
            });
            while seen.len() < 4095 {
                ch.upcall_fifo(&v, &mut cons, |t, _| {
                    assert_eq!(seen.insert(t, ()), None, "{t:?} delivered twice");
                });
            }
        });
        assert_eq!(v.ready().load(), 0);
    }
}
