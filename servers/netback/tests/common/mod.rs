//! A Linux-netfront-like guest over the simulated hypervisor (libnc2's netif frontends), and
//! the toolstack steps that create its vif. Used by the vif tests and the benchmark.
#![allow(dead_code)]

pub mod nc2;

use std::collections::BTreeMap;

use libnc2::netif::{ExtraInfo, RxFrontend, TxFrag, TxFrontend};
use libnc2::shm::SharedMem;
use netback::hv::{DomId, Port, read_bytes, write_bytes};
use netback::sim::SimHypervisor;
use netback::switch::Mac;
use netback::{Config, Netback};

/// The driver domain's id in the tests.
pub const BACKEND: DomId = 1;

pub fn netback() -> Netback<SimHypervisor> {
    Netback::new(SimHypervisor::new(BACKEND), Config::default())
}

pub fn mac_of(dom: DomId) -> Mac {
    [0x00, 0x16, 0x3e, 0, 0, dom as u8]
}

pub fn ip_of(dom: DomId) -> [u8; 4] {
    [10, 0, 0, dom as u8]
}

pub fn fe_path(dom: DomId, devid: u32) -> String {
    format!("/local/domain/{dom}/device/vif/{devid}")
}

pub fn be_path(dom: DomId, devid: u32) -> String {
    format!("/local/domain/{BACKEND}/backend/vif/{dom}/{devid}")
}

/// What libxl writes for a new vif (both directories).
pub fn toolstack_add(hv: &mut SimHypervisor, dom: DomId, devid: u32) {
    hv.add_domain(dom);
    let fe = fe_path(dom, devid);
    let be = be_path(dom, devid);
    let mac = mac_of(dom);
    let mac = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    for (k, v) in [
        ("backend", be.as_str()),
        ("backend-id", &BACKEND.to_string()),
        ("state", "1"),
        ("handle", &devid.to_string()),
        ("mac", &mac),
    ] {
        hv.store_write(&format!("{fe}/{k}"), v.as_bytes());
    }
    for (k, v) in [
        ("frontend", fe.as_str()),
        ("frontend-id", &dom.to_string()),
        ("online", "1"),
        ("state", "1"),
        ("handle", &devid.to_string()),
        ("mac", &mac),
        ("type", "vif"),
    ] {
        hv.store_write(&format!("{be}/{k}"), v.as_bytes());
    }
}

pub fn state_of(hv: &SimHypervisor, path: &str) -> Option<u8> {
    hv.peek(&format!("{path}/state"))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

/// How a guest sets itself up.
#[derive(Clone, Copy)]
pub struct GuestOpts {
    pub queues: u32,
    pub split: bool,
    pub rx_buffers: u16,
    pub sg: bool,
    pub gso: bool,
}

impl Default for GuestOpts {
    fn default() -> Self {
        GuestOpts {
            queues: 1,
            split: false,
            rx_buffers: 64,
            sg: true,
            gso: true,
        }
    }
}

struct Queue {
    tx: TxFrontend<'static>,
    rx: RxFrontend<'static>,
    tx_ring: SharedMem<'static>,
    rx_ring: SharedMem<'static>,
    port_tx: Port,
    port_rx: Port,
    rx_bufs: BTreeMap<u16, (u32, SharedMem<'static>)>,
    tx_free: Vec<u16>,
}

/// A received packet as the guest saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub data: Vec<u8>,
    pub flags: u16,
    pub extras: Vec<ExtraInfo>,
    pub frags: usize,
}

pub struct Guest {
    pub dom: DomId,
    pub devid: u32,
    queues: Vec<Queue>,
    tx_pages: Vec<(u32, SharedMem<'static>)>,
    pub received: Vec<Received>,
    pub tx_ok: u64,
    pub tx_err: u64,
}

impl Guest {
    /// Writes the frontend keys, posts rx buffers and goes Connected (as netfront does once
    /// the backend is in InitWait).
    pub fn connect(hv: &mut SimHypervisor, dom: DomId, devid: u32, o: GuestOpts) -> Guest {
        let fe = fe_path(dom, devid);
        let mut queues = Vec::new();
        let mut tx_pages = Vec::new();
        for _ in 0..64 * o.queues {
            let (f, mem) = hv.alloc_page(dom);
            tx_pages.push((hv.grant(dom, f, BACKEND, true), mem));
        }
        for q in 0..o.queues {
            let (tf, tmem) = hv.alloc_page(dom);
            let (rf, rmem) = hv.alloc_page(dom);
            let tref = hv.grant(dom, tf, BACKEND, false);
            let rref = hv.grant(dom, rf, BACKEND, false);
            let port_tx = hv.alloc_unbound(dom);
            let port_rx = if o.split {
                hv.alloc_unbound(dom)
            } else {
                port_tx
            };
            let dir = if o.queues == 1 {
                fe.clone()
            } else {
                format!("{fe}/queue-{q}")
            };
            hv.store_write(&format!("{dir}/tx-ring-ref"), tref.to_string().as_bytes());
            hv.store_write(&format!("{dir}/rx-ring-ref"), rref.to_string().as_bytes());
            if o.split {
                hv.store_write(
                    &format!("{dir}/event-channel-tx"),
                    port_tx.to_string().as_bytes(),
                );
                hv.store_write(
                    &format!("{dir}/event-channel-rx"),
                    port_rx.to_string().as_bytes(),
                );
            } else {
                hv.store_write(
                    &format!("{dir}/event-channel"),
                    port_tx.to_string().as_bytes(),
                );
            }
            let tx = TxFrontend::new(tmem).unwrap();
            let mut rx = RxFrontend::new(rmem, 32).unwrap();
            let mut rx_bufs = BTreeMap::new();
            for id in 0..o.rx_buffers {
                let (f, mem) = hv.alloc_page(dom);
                let g = hv.grant(dom, f, BACKEND, false);
                rx.post_buffer(id, g).unwrap();
                rx_bufs.insert(id, (g, mem));
            }
            rx.flush();
            let base = q as u16 * 64;
            queues.push(Queue {
                tx,
                rx,
                tx_ring: tmem,
                rx_ring: rmem,
                port_tx,
                port_rx,
                rx_bufs,
                tx_free: (base..base + 64).rev().collect(),
            });
        }
        if o.queues > 1 {
            hv.store_write(
                &format!("{fe}/multi-queue-num-queues"),
                o.queues.to_string().as_bytes(),
            );
        }
        let b = |v: bool| if v { "1" } else { "0" };
        hv.store_write(&format!("{fe}/request-rx-copy"), b"1");
        hv.store_write(&format!("{fe}/feature-rx-notify"), b"1");
        hv.store_write(&format!("{fe}/feature-sg"), b(o.sg).as_bytes());
        hv.store_write(&format!("{fe}/feature-gso-tcpv4"), b(o.gso).as_bytes());
        hv.store_write(&format!("{fe}/feature-gso-tcpv6"), b(o.gso).as_bytes());
        hv.store_write(&format!("{fe}/state"), b"4");
        Guest {
            dom,
            devid,
            queues,
            tx_pages,
            received: Vec::new(),
            tx_ok: 0,
            tx_err: 0,
        }
    }

    /// Queues a frame on queue `q` (split over pages when longer than one), without notifying.
    pub fn queue_frame(&mut self, q: usize, data: &[u8], flags: u16, extras: &[ExtraInfo]) -> bool {
        let qu = &mut self.queues[q];
        let pages = data.len().div_ceil(4096).max(1);
        if qu.tx_free.len() < pages {
            return false;
        }
        let mut frags = Vec::new();
        // An empty packet (e.g. only a multicast-control extra) still has its first slot.
        let empty: &[u8] = &[];
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![empty]
        } else {
            data.chunks(4096).collect()
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let id = qu.tx_free.pop().unwrap();
            let (g, mem) = self.tx_pages[usize::from(id)];
            write_bytes(mem, 0, chunk);
            frags.push(TxFrag {
                id,
                gref: g,
                offset: 0,
                size: chunk.len() as u16,
            });
            let _ = i;
        }
        match qu.tx.send_packet(&frags, flags, extras) {
            Ok(()) => true,
            Err(_) => {
                for f in frags {
                    qu.tx_free.push(f.id);
                }
                false
            }
        }
    }

    /// Publishes queued frames; notifies if the ring says so.
    pub fn push(&mut self, hv: &mut SimHypervisor, q: usize) {
        let qu = &mut self.queues[q];
        if qu.tx.flush() {
            hv.guest_notify(self.dom, qu.port_tx);
        }
    }

    /// Sends one frame on queue 0.
    pub fn send(&mut self, hv: &mut SimHypervisor, data: &[u8]) {
        assert!(self.queue_frame(0, data, 0, &[]), "guest tx ring full");
        self.push(hv, 0);
    }

    /// Sends one frame on queue 0 if the (possibly scribbled) ring lets it.
    pub fn send_unchecked(&mut self, hv: &mut SimHypervisor, data: &[u8]) {
        if self.queue_frame(0, data, 0, &[]) {
            self.push(hv, 0);
        }
    }

    /// Collects tx responses and received packets (re-posting the buffers), as netfront's
    /// poll does.
    pub fn poll(&mut self, hv: &mut SimHypervisor) {
        let _ = hv.take_pending_of(self.dom);
        for q in &mut self.queues {
            while let Some(r) = q.tx.poll_response().unwrap() {
                if r.status == 0 {
                    self.tx_ok += 1;
                } else {
                    self.tx_err += 1;
                }
                q.tx_free.push(r.id);
            }
            q.tx.final_check().unwrap();
            let mut reposted = false;
            while let Some(p) = q.rx.poll_packet().unwrap() {
                let mut data = Vec::new();
                for f in p.frags() {
                    let (_, mem) = q.rx_bufs[&f.id];
                    let mut b = vec![0u8; usize::from(f.len)];
                    read_bytes(mem, usize::from(f.offset), &mut b);
                    data.extend_from_slice(&b);
                    q.rx.post_buffer(f.id, f.gref).unwrap();
                }
                for &(id, g) in p.spare_buffers() {
                    q.rx.post_buffer(id, g).unwrap();
                }
                reposted = true;
                self.received.push(Received {
                    data,
                    flags: p.flags,
                    extras: p.extras.iter().collect(),
                    frags: p.frags().len(),
                });
            }
            if reposted && q.rx.flush() {
                hv.guest_notify(self.dom, q.port_rx);
            }
            q.rx.final_check().unwrap();
        }
    }

    /// Hostile: moves the tx ring's request producer far beyond the ring and kicks.
    pub fn corrupt_tx_ring(&mut self, hv: &mut SimHypervisor) {
        let q = &self.queues[0];
        let p = q.tx_ring.load_u32(0, std::sync::atomic::Ordering::Relaxed);
        q.tx_ring.store_u32(
            0,
            p.wrapping_add(1000),
            std::sync::atomic::Ordering::Release,
        );
        hv.guest_notify(self.dom, q.port_tx);
    }

    /// Hostile: ends the grants of every posted rx buffer (they stay posted).
    pub fn revoke_rx_grants(&mut self, hv: &mut SimHypervisor) {
        for q in &self.queues {
            for (g, _) in q.rx_bufs.values() {
                hv.revoke(self.dom, *g);
            }
        }
    }

    /// Hostile: ends the grants of the tx pages.
    pub fn revoke_tx_grants(&mut self, hv: &mut SimHypervisor) {
        for (g, _) in &self.tx_pages {
            hv.revoke(self.dom, *g);
        }
    }

    /// Hostile: scribbles `words` pseudo-random words over the shared ring pages and kicks.
    pub fn scribble_rings(&mut self, hv: &mut SimHypervisor, seed: &mut u64, words: usize) {
        for q in &self.queues {
            for mem in [q.tx_ring, q.rx_ring] {
                for _ in 0..words {
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    // Half the scribbles hit the ring indices, the rest the slots.
                    let off = if *seed & 1 == 0 {
                        (*seed as usize >> 1) % 4 * 4
                    } else {
                        (*seed as usize >> 1) % 1024 * 4
                    };
                    mem.store_u32(
                        off,
                        (*seed >> 32) as u32,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            }
            hv.guest_notify(self.dom, q.port_tx);
            hv.guest_notify(self.dom, q.port_rx);
        }
    }

    /// Goes Closing then Closed, as netfront does on unplug.
    pub fn close(&mut self, hv: &mut SimHypervisor, nb: &mut impl FnMut(&mut SimHypervisor)) {
        let fe = fe_path(self.dom, self.devid);
        hv.store_write(&format!("{fe}/state"), b"5");
        nb(hv);
        hv.store_write(&format!("{fe}/state"), b"6");
        nb(hv);
    }
}

/// Polls netback and every guest until nothing moves.
pub fn settle(nb: &mut Netback<SimHypervisor>, guests: &mut [&mut Guest]) {
    for _ in 0..20 {
        let moved = nb.poll();
        for g in guests.iter_mut() {
            g.poll(nb.hv_mut());
        }
        if moved == 0 && nb.poll() == 0 {
            for g in guests.iter_mut() {
                g.poll(nb.hv_mut());
            }
            return;
        }
    }
}

/// An Ethernet frame `len` bytes long from `src` to `dst` with a recognisable payload.
pub fn frame(dst: Mac, src: Mac, len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = tag.wrapping_add(i as u8);
    }
    f
}

/// An Ethernet + IPv4 + TCP frame (checksums blank) carrying `payload`.
pub fn tcp4(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[8, 0]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, src[5]]);
    f[30..34].copy_from_slice(&[10, 0, 0, dst[5]]);
    f[38..42].copy_from_slice(&7u32.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x18;
    f.extend_from_slice(payload);
    let c = netback::responder::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// Whether an IPv4 TCP frame's checksums are right.
pub fn tcp4_ok(f: &[u8]) -> bool {
    let ip_ok = netback::responder::checksum(&f[14..34]) == 0;
    let mut p = Vec::new();
    p.extend_from_slice(&f[26..34]);
    p.extend_from_slice(&[0, 6]);
    p.extend_from_slice(&((f.len() - 34) as u16).to_be_bytes());
    p.extend_from_slice(&f[34..]);
    ip_ok && netback::responder::checksum(&p) == 0
}

/// The TCP payload of an IPv4 frame.
pub fn tcp4_payload(f: &[u8]) -> &[u8] {
    &f[54..]
}
