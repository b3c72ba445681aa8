//! Writing to the PV console ring (`xencons_interface`), which xenconsoled in dom0 drains into
//! `xl console` and its log. Found through `HVM_PARAM_CONSOLE_PFN` / `_EVTCHN`.
//!
//! Owns: our producer index of the output ring (`out[2048]` at 1024, `out_cons` at 3080,
//! `out_prod` at 3084). Invariants: the producer is kept locally and only published, so the peer
//! cannot make us overwrite unread bytes; the peer's consumer is read once per write and refused
//! if it claims more than the ring holds; bytes become visible before the producer moves. The
//! caller kicks the console event channel after a write that returned non-zero.

use core::sync::atomic::Ordering;

use super::abi::console::{XENCONS_OUT_SIZE, XenconsInterface};
use super::shared::SharedPage;

const OUT: usize = core::mem::offset_of!(XenconsInterface, output);
const OUT_CONS: usize = core::mem::offset_of!(XenconsInterface, out_cons);
/// `out_cons` and `out_prod` share one aligned 64-bit word: consumer low, producer high.
const INDEX_WORD: usize = OUT_CONS;
const _: () = assert!(INDEX_WORD.is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(XenconsInterface, out_prod) == INDEX_WORD + 4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The peer's consumer index is more than a ring away from our producer.
    BadConsumer { used: u32 },
}

pub struct ConsoleRing<'a> {
    page: SharedPage<'a>,
    prod: u32,
}

impl<'a> ConsoleRing<'a> {
    /// Takes over the ring, continuing at the producer index found in the page.
    pub fn attach(page: SharedPage<'a>) -> Self {
        let prod = (page.word(INDEX_WORD).load(Ordering::Acquire) >> 32) as u32;
        Self { page, prod }
    }

    /// Queues as much of `bytes` as fits; returns how many were queued.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, ConsoleError> {
        let cons = self.page.word(INDEX_WORD).load(Ordering::Acquire) as u32;
        let used = self.prod.wrapping_sub(cons);
        if used > XENCONS_OUT_SIZE as u32 {
            return Err(ConsoleError::BadConsumer { used });
        }
        let n = bytes.len().min(XENCONS_OUT_SIZE - used as usize);
        for (i, &b) in bytes[..n].iter().enumerate() {
            let at = OUT + (self.prod.wrapping_add(i as u32) as usize % XENCONS_OUT_SIZE);
            self.put_byte(at, b);
        }
        if n > 0 {
            self.prod = self.prod.wrapping_add(n as u32);
            // Adding to the high half moves out_prod only: the carry out of bit 63 is dropped
            // and the peer's out_cons in the low half is untouched. Release orders the bytes.
            self.page
                .word(INDEX_WORD)
                .fetch_add((n as u64) << 32, Ordering::Release);
        }
        Ok(n)
    }

    /// Stores one byte of the output area. Only we write that area (the peer only reads it), so
    /// a load-merge-store of the containing word loses nothing.
    fn put_byte(&self, off: usize, b: u8) {
        let w = self.page.word(off & !7);
        let shift = (off % 8) * 8;
        let old = w.load(Ordering::Relaxed);
        w.store(
            (old & !(0xff << shift)) | (u64::from(b) << shift),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::shared::zeroed_page;
    use std::vec::Vec;

    /// xenconsoled's side: drain everything between out_cons and out_prod.
    fn drain(page: &SharedPage<'_>) -> Vec<u8> {
        let w = page.word(INDEX_WORD).load(Ordering::Acquire);
        let (cons, prod) = (w as u32, (w >> 32) as u32);
        let mut out = Vec::new();
        let mut c = cons;
        while c != prod {
            let off = OUT + c as usize % XENCONS_OUT_SIZE;
            out.push((page.word(off & !7).load(Ordering::Relaxed) >> ((off % 8) * 8)) as u8);
            c = c.wrapping_add(1);
        }
        // Publish the consumer in the low half only (as the peer's 32-bit store would).
        let _ = page
            .word(INDEX_WORD)
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| {
                Some((w & !0xffff_ffff) | u64::from(prod))
            });
        out
    }

    #[test]
    fn text_wraps_around_the_ring_and_the_indices() {
        let mem = zeroed_page();
        let page = SharedPage::new(&mem);
        // Both indices just below the u32 wrap.
        let start = u32::MAX - 1000;
        page.word(INDEX_WORD).store(
            u64::from(start) | (u64::from(start) << 32),
            Ordering::Relaxed,
        );
        let mut con = ConsoleRing::attach(page);
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::new();
        while sent < text.len() {
            let n = con.write(&text[sent..]).unwrap();
            assert!(n <= XENCONS_OUT_SIZE);
            sent += n;
            got.extend(drain(&page));
        }
        assert_eq!(got, text);
        // The input ring area before the output ring was never written.
        assert!(
            mem[..OUT / 8]
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == 0)
        );
    }

    #[test]
    fn a_full_ring_and_a_lying_consumer() {
        let mem = zeroed_page();
        let page = SharedPage::new(&mem);
        let mut con = ConsoleRing::attach(page);
        assert_eq!(con.write(&[b'x'; 3000]), Ok(2048));
        assert_eq!(con.write(b"y"), Ok(0));
        // The consumer claims to be ahead of what we produced.
        page.word(INDEX_WORD).fetch_add(3000, Ordering::Relaxed);
        assert_eq!(
            con.write(b"z"),
            Err(ConsoleError::BadConsumer {
                used: 2048u32.wrapping_sub(3000)
            })
        );
    }
}
