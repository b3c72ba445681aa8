//! The xenstore ring page (`xenstore_domain_interface`) and byte transfer over it.
//!
//! Layout: `req[1024]` at 0, `rsp[1024]` at 1024, then u32 `req_cons`, `req_prod`, `rsp_cons`,
//! `rsp_prod` at 2048.., `server_features`, `connection`, `error`, `evtchn_port`. Indices run
//! freely (wrapping u32) and are masked by 1023 to address bytes.
//!
//! We produce requests and consume replies. Our own indices (`req_prod`, `rsp_cons`) are kept
//! locally and only published, so the peer cannot make us overwrite unread bytes by rewriting
//! them; the peer's indices are read once per transfer and checked: a producer or consumer more
//! than a ring's length away from ours is [`Error::RingIndex`].

use core::sync::atomic::{AtomicU32, Ordering};

use super::wire::Error;

pub const RING_SIZE: u32 = 1024;
pub const REQ_OFFSET: usize = 0;
pub const RSP_OFFSET: usize = 1024;
pub const REQ_CONS: usize = 2048;
pub const REQ_PROD: usize = 2052;
pub const RSP_CONS: usize = 2056;
pub const RSP_PROD: usize = 2060;
pub const SERVER_FEATURES: usize = 2064;
pub const CONNECTION: usize = 2068;
pub const ERROR: usize = 2072;
pub const EVTCHN_PORT: usize = 2076;

/// The shared page. Index accesses are atomic (acquire loads, release stores); byte copies happen
/// only between an acquire of the peer's index and a release of ours.
pub trait RingPage {
    fn load_u32(&self, off: usize) -> u32;
    fn store_u32(&self, off: usize, v: u32);
    /// Copies bytes out of the page; `off + buf.len()` is within the page.
    fn read(&self, off: usize, buf: &mut [u8]);
    /// Copies bytes into the page; `off + data.len()` is within the page.
    fn write(&self, off: usize, data: &[u8]);
}

/// A page mapped into our address space, shared with the peer.
pub struct MappedPage {
    base: *mut u8,
}

impl MappedPage {
    /// # Safety
    /// `base` must be 4-byte aligned, mapped readable and writable for 4096 bytes for as long as
    /// the value lives, and only accessed through atomic or volatile operations meanwhile.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn index(&self, off: usize) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= 4096,
            "ring index offset {off}"
        );
        // SAFETY: in the page and aligned (checked above, base is aligned per `new`); the peer
        // accesses the same word, which is exactly what an atomic is for.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
    }
}

impl RingPage for MappedPage {
    fn load_u32(&self, off: usize) -> u32 {
        self.index(off).load(Ordering::Acquire)
    }

    fn store_u32(&self, off: usize, v: u32) {
        self.index(off).store(v, Ordering::Release)
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        assert!(off + buf.len() <= 4096, "ring read {off}+{}", buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: within the mapped page (checked above); volatile because the peer may write
            // concurrently and we must read each byte exactly once.
            *b = unsafe { core::ptr::read_volatile(self.base.add(off + i)) };
        }
    }

    fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= 4096, "ring write {off}+{}", data.len());
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: within the mapped page (checked above).
            unsafe { core::ptr::write_volatile(self.base.add(off + i), b) };
        }
    }
}

/// Our side of both rings: the indices we own.
#[derive(Debug)]
pub struct Rings {
    req_prod: u32,
    rsp_cons: u32,
}

impl Rings {
    /// Takes over the rings in their current state (after a reconnect both sides agree on them).
    pub fn attach(page: &impl RingPage) -> Self {
        Self {
            req_prod: page.load_u32(REQ_PROD),
            rsp_cons: page.load_u32(RSP_CONS),
        }
    }

    /// Writes as much of `data` as fits; returns how many bytes were queued (0 when full).
    pub fn send(&mut self, page: &impl RingPage, data: &[u8]) -> Result<usize, Error> {
        let cons = page.load_u32(REQ_CONS);
        let used = self.req_prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(Error::RingIndex { avail: used });
        }
        let mut done = 0;
        let mut free = (RING_SIZE - used) as usize;
        while done < data.len() && free > 0 {
            let at = (self.req_prod % RING_SIZE) as usize;
            let n = (data.len() - done).min(free).min(RING_SIZE as usize - at);
            page.write(REQ_OFFSET + at, &data[done..done + n]);
            done += n;
            free -= n;
            self.req_prod = self.req_prod.wrapping_add(n as u32);
        }
        if done > 0 {
            page.store_u32(REQ_PROD, self.req_prod);
        }
        Ok(done)
    }

    /// Reads up to `buf.len()` available reply bytes; returns how many (0 when empty).
    pub fn recv(&mut self, page: &impl RingPage, buf: &mut [u8]) -> Result<usize, Error> {
        let prod = page.load_u32(RSP_PROD);
        let avail = prod.wrapping_sub(self.rsp_cons);
        if avail > RING_SIZE {
            return Err(Error::RingIndex { avail });
        }
        let mut done = 0;
        let mut left = (avail as usize).min(buf.len());
        while left > 0 {
            let at = (self.rsp_cons % RING_SIZE) as usize;
            let n = left.min(RING_SIZE as usize - at);
            page.read(RSP_OFFSET + at, &mut buf[done..done + n]);
            done += n;
            left -= n;
            self.rsp_cons = self.rsp_cons.wrapping_add(n as u32);
        }
        if done > 0 {
            page.store_u32(RSP_CONS, self.rsp_cons);
        }
        Ok(done)
    }
}

/// A heap page for tests (both ends of a ring over one block of memory).
#[cfg(test)]
pub fn test_page() -> std::boxed::Box<[AtomicU32; 1024]> {
    std::boxed::Box::new(core::array::from_fn(|_| AtomicU32::new(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(p: &[AtomicU32; 1024]) -> MappedPage {
        // SAFETY: the test page is 4096 aligned-enough bytes, lives for the test, and is only
        // accessed through MappedPage.
        unsafe { MappedPage::new(p.as_ptr() as *mut u8) }
    }

    /// Plays the server: consumes requests and produces replies on the same page.
    fn server_take(page: &MappedPage, n: usize) -> std::vec::Vec<u8> {
        let cons = page.load_u32(REQ_CONS);
        let mut out = std::vec![0; n];
        for (i, b) in out.iter_mut().enumerate() {
            let mut one = [0];
            page.read(REQ_OFFSET + ((cons as usize + i) % 1024), &mut one);
            *b = one[0];
        }
        page.store_u32(REQ_CONS, cons.wrapping_add(n as u32));
        out
    }

    fn server_put(page: &MappedPage, data: &[u8]) {
        let prod = page.load_u32(RSP_PROD);
        for (i, b) in data.iter().enumerate() {
            page.write(RSP_OFFSET + ((prod as usize + i) % 1024), &[*b]);
        }
        page.store_u32(RSP_PROD, prod.wrapping_add(data.len() as u32));
    }

    #[test]
    fn bytes_wrap_around_both_rings_and_indices_wrap_u32() {
        let mem = test_page();
        let page = mapped(&mem);
        // Start near u32::MAX so the indices wrap during the test.
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
            page.store_u32(off, u32::MAX - 700);
        }
        let mut r = Rings::attach(&page);
        let data: std::vec::Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut got = std::vec::Vec::new();
        while sent < data.len() {
            let n = r.send(&page, &data[sent..]).unwrap();
            assert!(n <= 1024);
            sent += n;
            let echoed = server_take(&page, n);
            server_put(&page, &echoed);
            let mut buf = [0; 300];
            loop {
                let k = r.recv(&page, &mut buf).unwrap();
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
        }
        assert_eq!(got, data);
    }

    #[test]
    fn a_full_ring_takes_nothing_more() {
        let mem = test_page();
        let page = mapped(&mem);
        let mut r = Rings::attach(&page);
        assert_eq!(r.send(&page, &[1; 2000]).unwrap(), 1024);
        assert_eq!(r.send(&page, &[1; 10]).unwrap(), 0);
        server_take(&page, 10);
        assert_eq!(r.send(&page, &[1; 100]).unwrap(), 10);
    }

    #[test]
    fn hostile_indices_are_errors() {
        let mem = test_page();
        let page = mapped(&mem);
        let mut r = Rings::attach(&page);
        // Producer more than a ring ahead of what we consumed.
        page.store_u32(RSP_PROD, 1025);
        let mut buf = [0; 16];
        assert_eq!(
            r.recv(&page, &mut buf),
            Err(Error::RingIndex { avail: 1025 })
        );
        // Producer behind our consumer reads as a huge jump too.
        page.store_u32(RSP_PROD, u32::MAX);
        assert!(matches!(
            r.recv(&page, &mut buf),
            Err(Error::RingIndex { .. })
        ));
        // Consumer claiming to be ahead of what we produced.
        page.store_u32(REQ_CONS, 5);
        assert!(matches!(r.send(&page, b"x"), Err(Error::RingIndex { .. })));
        // Rewriting our own producer index does not move us.
        page.store_u32(REQ_CONS, 0);
        page.store_u32(REQ_PROD, 900);
        assert_eq!(r.send(&page, b"abc").unwrap(), 3);
        assert_eq!(page.load_u32(REQ_PROD), 3);
    }
}
