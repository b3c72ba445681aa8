//! The netif frontend (what Linux netfront speaks), built on libnc2's netif rings: one tx and
//! one rx ring page and one event channel, receive copy (`request-rx-copy`), no scatter-gather.
//!
//! Transmit: a pool of pages granted read-only to the backend, one frame per page; a page is
//! reused when its response arrives. Receive: pages granted writable, posted once each and
//! re-posted after their frame is copied out. The hostile modes reach the raw ring pages through
//! [`NetifLink::tx_ring_mem`] and [`NetifLink::post_bad_rx_buffer`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use libnc2::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED};
use libnc2::netif::{RxFrontend, TxFrag, TxFrontend};
use libnc2::shm::SharedMem;
use userland::syscall;
use userland::xenstore::XenbusState;

use crate::env::{Env, Vif};
use crate::link::Link;
use crate::pages::{self, Granted};

const TX_BUFFERS: usize = 64;
const RX_BUFFERS: usize = 128;
const CONNECT_TIMEOUT_MS: u64 = 60_000;

pub struct NetifLink {
    tx: TxFrontend<'static>,
    rx: RxFrontend<'static>,
    tx_ring: SharedMem<'static>,
    port: u32,
    tx_pages: Vec<Granted>,
    tx_free: Vec<u16>,
    rx_pages: Vec<Granted>,
    scratch: Vec<u8>,
}

fn notify(port: u32) -> Result<(), String> {
    syscall::xen_evtchn_send(port).map_err(|e| format!("event to the backend: errno {e}"))
}

impl NetifLink {
    /// Grants the rings and buffers, publishes the keys and waits for the backend's Connected.
    pub fn connect(env: &mut Env, vif: &Vif) -> Result<NetifLink, String> {
        let be = vif.backend_id;
        env.wait_backend(vif, "InitWait", CONNECT_TIMEOUT_MS, |s| {
            s >= XenbusState::InitWait
        })?;
        let tx_page = pages::granted(be, false)?;
        let rx_page = pages::granted(be, false)?;
        let tx_ring = pages::shared(tx_page.ptr);
        let tx = TxFrontend::new(tx_ring).map_err(|e| format!("tx ring: {e:?}"))?;
        let mut rx = RxFrontend::new(pages::shared(rx_page.ptr), 1)
            .map_err(|e| format!("rx ring: {e:?}"))?;
        let port = syscall::xen_evtchn_alloc_unbound(be)
            .map_err(|e| format!("event channel for domain {be}: errno {e}"))?;
        syscall::xen_evtchn_unmask(port).map_err(|e| format!("unmask {port}: errno {e}"))?;
        let mut tx_pages = Vec::with_capacity(TX_BUFFERS);
        for _ in 0..TX_BUFFERS {
            tx_pages.push(pages::granted(be, true)?);
        }
        let mut rx_pages = Vec::with_capacity(RX_BUFFERS);
        for id in 0..RX_BUFFERS {
            let g = pages::granted(be, false)?;
            rx.post_buffer(id as u16, g.gref)
                .map_err(|e| format!("posting rx buffer {id}: {e:?}"))?;
            rx_pages.push(g);
        }
        let f = &vif.front;
        for (k, v) in [
            ("tx-ring-ref", format!("{}", tx_page.gref)),
            ("rx-ring-ref", format!("{}", rx_page.gref)),
            ("event-channel", format!("{port}")),
            ("request-rx-copy", "1".into()),
            ("feature-rx-notify", "1".into()),
        ] {
            env.write(&format!("{f}/{k}"), &v)?;
        }
        env.set_state(vif, XenbusState::Connected)?;
        env.wait_backend(vif, "Connected", CONNECT_TIMEOUT_MS, |s| {
            s == XenbusState::Connected || s >= XenbusState::Closing
        })
        .and_then(|s| {
            if s == XenbusState::Connected {
                Ok(())
            } else {
                Err(format!("the backend went to {s:?} instead of Connected"))
            }
        })?;
        let mut link = NetifLink {
            tx,
            rx,
            tx_ring,
            port,
            tx_pages,
            tx_free: (0..TX_BUFFERS as u16).rev().collect(),
            rx_pages,
            scratch: Vec::with_capacity(pages::PAGE),
        };
        if link.rx.flush() {
            notify(link.port)?;
        }
        // The backend may have missed requests published before it connected: always kick.
        notify(link.port)?;
        Ok(link)
    }

    /// The raw tx ring page (hostile modes only).
    pub fn tx_ring_mem(&self) -> SharedMem<'static> {
        self.tx_ring
    }

    /// Hostile: posts an rx buffer whose grant reference names no grant (id beyond the pool).
    pub fn post_bad_rx_buffer(&mut self) -> Result<(), String> {
        self.rx
            .post_buffer(RX_BUFFERS as u16, 0xffff_fff0)
            .map_err(|e| format!("{e:?}"))?;
        self.rx.flush();
        Ok(())
    }

    pub fn kick(&self) -> Result<(), String> {
        notify(self.port)
    }
}

impl Link for NetifLink {
    fn send(&mut self, frame: &[u8]) -> Result<bool, String> {
        if frame.len() > pages::PAGE {
            return Err(format!("a {}-byte frame does not fit a page", frame.len()));
        }
        let Some(id) = self.tx_free.pop() else {
            return Ok(false);
        };
        let page = self.tx_pages[usize::from(id)];
        pages::write(page.ptr, frame);
        let frag = TxFrag {
            id,
            gref: page.gref,
            offset: 0,
            size: frame.len() as u16,
        };
        if let Err(e) = self.tx.send_packet(&[frag], 0, &[]) {
            self.tx_free.push(id);
            return match e {
                libnc2::SendError::RingFull => Ok(false),
                e => Err(format!("tx: {e:?}")),
            };
        }
        if self.tx.flush() {
            notify(self.port)?;
        }
        Ok(true)
    }

    fn poll(&mut self, f: &mut dyn FnMut(&[u8], bool)) -> Result<usize, String> {
        while let Some(r) = self
            .tx
            .poll_response()
            .map_err(|e| format!("tx ring: {e:?}"))?
        {
            self.tx_free.push(r.id);
        }
        let mut n = 0;
        while let Some(pkt) = self
            .rx
            .poll_packet()
            .map_err(|e| format!("rx ring: {e:?}"))?
        {
            self.scratch.clear();
            let mut ok = pkt.error.is_none();
            for fr in pkt.frags() {
                let id = fr.id;
                let Some(&page) = self.rx_pages.get(usize::from(id)) else {
                    return Err(format!("rx: buffer id {id} was never posted"));
                };
                ok &= pages::read(
                    page.ptr,
                    usize::from(fr.offset),
                    usize::from(fr.len),
                    &mut self.scratch,
                );
                self.rx
                    .post_buffer(id, page.gref)
                    .map_err(|e| format!("re-posting rx buffer {id}: {e:?}"))?;
            }
            for &(id, gref) in pkt.spare_buffers() {
                self.rx
                    .post_buffer(id, gref)
                    .map_err(|e| format!("re-posting rx buffer {id}: {e:?}"))?;
            }
            if ok {
                n += 1;
                let trusted = pkt.flags & (NETRXF_DATA_VALIDATED | NETRXF_CSUM_BLANK) != 0;
                f(&self.scratch, trusted);
            }
        }
        if self.rx.flush() {
            notify(self.port)?;
        }
        Ok(n)
    }

    fn prepare_sleep(&mut self) -> Result<bool, String> {
        let rx = self
            .rx
            .final_check()
            .map_err(|e| format!("rx ring: {e:?}"))?;
        let tx = self
            .tx
            .final_check()
            .map_err(|e| format!("tx ring: {e:?}"))?;
        Ok(rx || tx)
    }

    fn tx_in_flight(&self) -> usize {
        TX_BUFFERS - self.tx_free.len()
    }

    fn name(&self) -> &'static str {
        "netif"
    }
}
