//! A whole queue-pair channel: six rings in one shared region, and the two ends of it.
//!
//! Region layout, in order, each ring as [`crate::ring`] describes: control requests
//! (netback → NIC), control replies (NIC → netback), RX posts, RX completions, TX posts,
//! TX completions. Both ends must be built with the same [`Layout`] (it comes from the static
//! system description, not from the peer). Whoever sets the channel up zeroes the region.
//!
//! Each receive call decodes every entry it pops; malformed entries are dropped and counted in
//! [`ChannelStats`] (with the last error kept for the log), because an entry whose fields are
//! out of range cannot be answered sensibly. A peer index that is out of range is a
//! [`ChannelError::Ring`]: the channel is unusable from then on and the caller should drop it.

use core::sync::atomic::AtomicU64;

use crate::msg::{Ctrl, CtrlReply, MsgError, RxDone, RxPost, TxDone, TxPost};
pub use crate::ring::Pushed;
use crate::ring::{Consumer, Entry, Producer, RingError, ring_words};

/// Entries popped per internal step (bounds the stack buffer).
const STEP: usize = 32;

/// Ring capacities of a channel (entries, powers of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Control requests and control replies.
    pub ctrl: u32,
    /// RX posts and RX completions.
    pub rx: u32,
    /// TX posts and TX completions.
    pub tx: u32,
}

impl Layout {
    fn caps(&self) -> [u32; 6] {
        [self.ctrl, self.ctrl, self.rx, self.rx, self.tx, self.tx]
    }

    /// Words (8 bytes each) the whole channel region occupies.
    pub fn words(&self) -> usize {
        self.caps().iter().map(|&c| ring_words(c)).sum()
    }

    /// The layout both ends derive from a channel region of `bytes`: 16 control entries and
    /// the largest power-of-two RX and TX rings (at most 4096) for which all six rings fit.
    /// `None` if not even 16-entry rings fit.
    pub fn for_region(bytes: u64) -> Option<Layout> {
        let mut n = 4096u32;
        while n >= 16 {
            let l = Layout {
                ctrl: 16,
                rx: n,
                tx: n,
            };
            if (l.words() as u64) * 8 <= bytes {
                return Some(l);
            }
            n /= 2;
        }
        None
    }

    fn split<'a>(&self, mem: &'a [AtomicU64]) -> Result<[&'a [AtomicU64]; 6], ChannelError> {
        if mem.len() != self.words() {
            return Err(ChannelError::Ring(RingError::RegionSize {
                need: self.words(),
                got: mem.len(),
            }));
        }
        let mut out: [&[AtomicU64]; 6] = [&[]; 6];
        let mut rest = mem;
        for (slot, cap) in out.iter_mut().zip(self.caps()) {
            let (a, b) = rest.split_at(ring_words(cap));
            *slot = a;
            rest = b;
        }
        Ok(out)
    }
}

/// Why a channel operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    Ring(RingError),
}

impl From<RingError> for ChannelError {
    fn from(e: RingError) -> Self {
        ChannelError::Ring(e)
    }
}

/// What this end has seen of the peer's mistakes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Entries dropped because they did not decode.
    pub malformed: u64,
    /// The most recent decoding error.
    pub last_error: Option<MsgError>,
}

fn recv<T>(
    ring: &mut Consumer<'_>,
    out: &mut [T],
    stats: &mut ChannelStats,
    decode: fn(Entry) -> Result<T, MsgError>,
) -> Result<usize, ChannelError> {
    let mut filled = 0;
    let mut buf = [[0u64; 2]; STEP];
    while filled < out.len() {
        let want = (out.len() - filled).min(STEP);
        let got = ring.pop(&mut buf[..want])?.count;
        if got == 0 {
            break;
        }
        for e in &buf[..got] {
            match decode(*e) {
                Ok(m) => {
                    out[filled] = m;
                    filled += 1;
                }
                Err(err) => {
                    stats.malformed += 1;
                    stats.last_error = Some(err);
                }
            }
        }
    }
    Ok(filled)
}

fn send<T>(
    ring: &mut Producer<'_>,
    msgs: &[T],
    encode: fn(&T) -> Entry,
) -> Result<Pushed, ChannelError> {
    let mut total = Pushed {
        count: 0,
        notify: false,
    };
    let mut buf = [[0u64; 2]; STEP];
    for chunk in msgs.chunks(STEP) {
        for (b, m) in buf.iter_mut().zip(chunk) {
            *b = encode(m);
        }
        let p = ring.push(&buf[..chunk.len()])?;
        total.count += p.count;
        total.notify |= p.notify;
        if p.count < chunk.len() {
            break;
        }
    }
    Ok(total)
}

/// The NIC server's end.
pub struct NicEnd<'a> {
    ctrl_in: Consumer<'a>,
    ctrl_out: Producer<'a>,
    rx_post: Consumer<'a>,
    rx_done: Producer<'a>,
    tx_post: Consumer<'a>,
    tx_done: Producer<'a>,
    pub stats: ChannelStats,
}

impl<'a> NicEnd<'a> {
    pub fn new(mem: &'a [AtomicU64], layout: Layout) -> Result<Self, ChannelError> {
        let [a, b, c, d, e, f] = layout.split(mem)?;
        Ok(Self {
            ctrl_in: Consumer::new(a, layout.ctrl)?,
            ctrl_out: Producer::new(b, layout.ctrl)?,
            rx_post: Consumer::new(c, layout.rx)?,
            rx_done: Producer::new(d, layout.rx)?,
            tx_post: Consumer::new(e, layout.tx)?,
            tx_done: Producer::new(f, layout.tx)?,
            stats: ChannelStats::default(),
        })
    }

    pub fn recv_ctrl(&mut self, out: &mut [Ctrl]) -> Result<usize, ChannelError> {
        recv(&mut self.ctrl_in, out, &mut self.stats, Ctrl::decode)
    }
    pub fn recv_rx_posts(&mut self, out: &mut [RxPost]) -> Result<usize, ChannelError> {
        recv(&mut self.rx_post, out, &mut self.stats, RxPost::decode)
    }
    pub fn recv_tx_posts(&mut self, out: &mut [TxPost]) -> Result<usize, ChannelError> {
        recv(&mut self.tx_post, out, &mut self.stats, TxPost::decode)
    }
    pub fn send_ctrl(&mut self, msgs: &[CtrlReply]) -> Result<Pushed, ChannelError> {
        send(&mut self.ctrl_out, msgs, CtrlReply::encode)
    }
    pub fn send_rx_done(&mut self, msgs: &[RxDone]) -> Result<Pushed, ChannelError> {
        send(&mut self.rx_done, msgs, RxDone::encode)
    }
    pub fn send_tx_done(&mut self, msgs: &[TxDone]) -> Result<Pushed, ChannelError> {
        send(&mut self.tx_done, msgs, TxDone::encode)
    }
    /// Free completion slots (RX, TX): the server takes no more work than it can complete.
    pub fn completion_room(&self) -> Result<(u32, u32), ChannelError> {
        Ok((self.rx_done.free()?, self.tx_done.free()?))
    }
    /// Free control-reply slots.
    pub fn ctrl_room(&self) -> Result<u32, ChannelError> {
        Ok(self.ctrl_out.free()?)
    }
    /// Arms all three request rings; true if work arrived meanwhile.
    pub fn arm(&mut self) -> Result<bool, ChannelError> {
        Ok(self.ctrl_in.arm()? | self.rx_post.arm()? | self.tx_post.arm()?)
    }
}

/// Netback's end.
pub struct NetbackEnd<'a> {
    ctrl_out: Producer<'a>,
    ctrl_in: Consumer<'a>,
    rx_post: Producer<'a>,
    rx_done: Consumer<'a>,
    tx_post: Producer<'a>,
    tx_done: Consumer<'a>,
    pub stats: ChannelStats,
}

impl<'a> NetbackEnd<'a> {
    pub fn new(mem: &'a [AtomicU64], layout: Layout) -> Result<Self, ChannelError> {
        let [a, b, c, d, e, f] = layout.split(mem)?;
        Ok(Self {
            ctrl_out: Producer::new(a, layout.ctrl)?,
            ctrl_in: Consumer::new(b, layout.ctrl)?,
            rx_post: Producer::new(c, layout.rx)?,
            rx_done: Consumer::new(d, layout.rx)?,
            tx_post: Producer::new(e, layout.tx)?,
            tx_done: Consumer::new(f, layout.tx)?,
            stats: ChannelStats::default(),
        })
    }

    pub fn send_ctrl(&mut self, msgs: &[Ctrl]) -> Result<Pushed, ChannelError> {
        send(&mut self.ctrl_out, msgs, Ctrl::encode)
    }
    pub fn post_rx(&mut self, msgs: &[RxPost]) -> Result<Pushed, ChannelError> {
        send(&mut self.rx_post, msgs, RxPost::encode)
    }
    pub fn post_tx(&mut self, msgs: &[TxPost]) -> Result<Pushed, ChannelError> {
        send(&mut self.tx_post, msgs, TxPost::encode)
    }
    pub fn recv_ctrl(&mut self, out: &mut [CtrlReply]) -> Result<usize, ChannelError> {
        recv(&mut self.ctrl_in, out, &mut self.stats, CtrlReply::decode)
    }
    pub fn recv_rx_done(&mut self, out: &mut [RxDone]) -> Result<usize, ChannelError> {
        recv(&mut self.rx_done, out, &mut self.stats, RxDone::decode)
    }
    pub fn recv_tx_done(&mut self, out: &mut [TxDone]) -> Result<usize, ChannelError> {
        recv(&mut self.tx_done, out, &mut self.stats, TxDone::decode)
    }
    /// Arms the three reply rings; true if replies arrived meanwhile.
    pub fn arm(&mut self) -> Result<bool, ChannelError> {
        Ok(self.ctrl_in.arm()? | self.rx_done.arm()? | self.tx_done.arm()?)
    }
}

/// Builds a zeroed channel region from raw shared memory.
///
/// # Safety
/// `ptr` must be 8-byte aligned and valid for reads and writes of `layout.words()` words for
/// `'a`, and only ever accessed atomically (by us and the peer) during `'a`.
pub unsafe fn region_from_raw<'a>(ptr: *mut u64, layout: Layout) -> &'a [AtomicU64] {
    // SAFETY: the caller guarantees alignment, size and lifetime; AtomicU64 has the same
    // layout as u64 and all accesses through the slice are atomic.
    unsafe { core::slice::from_raw_parts(ptr.cast::<AtomicU64>(), layout.words()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_layout_follows_the_region_size() {
        let l = super::Layout::for_region(65536).unwrap();
        assert_eq!((l.ctrl, l.rx, l.tx), (16, 512, 512));
        assert!(l.words() * 8 <= 65536);
        let bigger = super::Layout {
            rx: 1024,
            tx: 1024,
            ..l
        };
        assert!(bigger.words() * 8 > 65536, "512 is the largest that fits");
        assert_eq!(
            super::Layout::for_region(2048),
            None,
            "not even 16-entry rings fit"
        );
        assert_eq!(super::Layout::for_region(4096).unwrap().rx, 32);
        assert_eq!(super::Layout::for_region(1 << 20).unwrap().rx, 4096);
    }

    use super::*;
    use crate::msg::{MacAddr, PoolFlags, RxStatus};
    use core::sync::atomic::Ordering;

    const L: Layout = Layout {
        ctrl: 4,
        rx: 64,
        tx: 64,
    };

    fn region() -> Vec<AtomicU64> {
        (0..L.words()).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn both_ends_exchange_batches() {
        let mem = region();
        let mut nb = NetbackEnd::new(&mem, L).unwrap();
        let mut nic = NicEnd::new(&mem, L).unwrap();
        let req = Ctrl::AllocPool {
            req: 1,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            flags: PoolFlags::default(),
        };
        nb.send_ctrl(&[req]).unwrap();
        let posts: Vec<RxPost> = (0..40)
            .map(|i| RxPost {
                pool: 0,
                id: i,
                addr: 0x10_0000 + u64::from(i) * 2048,
                len: 2048,
            })
            .collect();
        assert_eq!(nb.post_rx(&posts).unwrap().count, 40);
        let mut c = [Ctrl::ReleasePool { pool: 0 }; 4];
        assert_eq!(nic.recv_ctrl(&mut c).unwrap(), 1);
        assert_eq!(c[0], req);
        let mut got = [RxPost {
            pool: 0,
            id: 0,
            addr: 1,
            len: 1,
        }; 64];
        assert_eq!(nic.recv_rx_posts(&mut got).unwrap(), 40);
        assert_eq!(&got[..40], &posts[..]);
        let done: Vec<RxDone> = got[..40]
            .iter()
            .map(|p| RxDone {
                pool: p.pool,
                id: p.id,
                len: 60,
                status: RxStatus::Frame,
            })
            .collect();
        nic.send_rx_done(&done).unwrap();
        let mut back = [done[0]; 64];
        assert_eq!(nb.recv_rx_done(&mut back).unwrap(), 40);
        assert_eq!(&back[..40], &done[..]);
        assert_eq!(nic.stats.malformed, 0);
    }

    #[test]
    fn malformed_entries_are_dropped_and_counted() {
        let mem = region();
        let mut nb = NetbackEnd::new(&mem, L).unwrap();
        let mut nic = NicEnd::new(&mem, L).unwrap();
        let good = RxPost {
            pool: 1,
            id: 5,
            addr: 0x2000,
            len: 2048,
        };
        let bad = RxPost { pool: 99, ..good };
        nb.post_rx(&[good, bad, good]).unwrap();
        let mut out = [good; 8];
        assert_eq!(nic.recv_rx_posts(&mut out).unwrap(), 2);
        assert_eq!(nic.stats.malformed, 1);
        assert_eq!(nic.stats.last_error, Some(MsgError::Pool(99)));
    }

    #[test]
    fn corrupt_peer_index_is_a_channel_error() {
        let mem = region();
        let mut nic = NicEnd::new(&mem, L).unwrap();
        // The RX post ring's producer index lives at the start of the third ring.
        let off = 2 * ring_words(L.ctrl);
        mem[off].store(1000, Ordering::Relaxed);
        let mut out = [RxPost {
            pool: 0,
            id: 0,
            addr: 1,
            len: 1,
        }; 8];
        assert!(matches!(
            nic.recv_rx_posts(&mut out),
            Err(ChannelError::Ring(RingError::PeerIndex { peer: 1000, .. }))
        ));
    }

    #[test]
    fn wrong_region_size_is_refused() {
        let mem: Vec<AtomicU64> = (0..L.words() - 1).map(|_| AtomicU64::new(0)).collect();
        assert!(NicEnd::new(&mem, L).is_err());
    }
}
