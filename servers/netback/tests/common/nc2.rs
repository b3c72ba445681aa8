//! A netchannel2 frontend guest over the simulated hypervisor (libnc2's frontend end), as
//! `docs/nc2-xenbus.md` describes one: three granted pages, one event channel, receive
//! buffers posted once SET_MAX_POSTED_BUFFERS arrives and re-posted (same grant) once read.

use std::collections::BTreeMap;

use libnc2::GrantBound;
use libnc2::nc2::msg::MAX_POST_BATCH;
use libnc2::nc2::{
    ChannelMem, Config, Event, Fragment, Frontend, PacketKind, PacketMeta, PostedBuffer,
};
use libnc2::shm::SharedMem;
use netback::hv::{DomId, Port, read_bytes, write_bytes};
use netback::sim::SimHypervisor;

use super::{BACKEND, fe_path};

/// How the guest transmits packets longer than an inline SMALL one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// RECEIVER_COPY.
    Copy,
    /// RECEIVER_MAP.
    Map,
}

#[derive(Clone, Copy)]
pub struct Nc2Opts {
    /// Receive buffers posted (ids `0..buffers`).
    pub buffers: u32,
    pub tx: TxKind,
    /// Bytes of each long packet sent inline as the prefix.
    pub prefix: usize,
}

impl Default for Nc2Opts {
    fn default() -> Self {
        Nc2Opts {
            buffers: 32,
            tx: TxKind::Copy,
            prefix: 64,
        }
    }
}

/// A packet as the guest received it.
#[derive(Clone, Debug)]
pub struct Nc2Received {
    pub data: Vec<u8>,
    pub kind: PacketKind,
    /// Buffer ids it came in (pre-posted packets).
    pub bufs: Vec<u32>,
}

pub struct Nc2Guest {
    pub dom: DomId,
    pub devid: u32,
    fe: Frontend<'static>,
    control: SharedMem<'static>,
    f2b: SharedMem<'static>,
    port: Port,
    o: Nc2Opts,
    rx_bufs: Vec<(u32, SharedMem<'static>)>,
    initial_posted: bool,
    /// Re-post buffers once read (off: the test re-posts by hand).
    pub repost: bool,
    tx_pages: Vec<(u32, SharedMem<'static>)>,
    tx_free: Vec<usize>,
    outstanding: BTreeMap<u32, Vec<usize>>,
    next_id: u32,
    pub received: Vec<Nc2Received>,
    pub finished: u64,
    pub sent: u64,
}

impl Nc2Guest {
    /// Grants the channel pages, writes the netchannel2 keys and goes Connected.
    pub fn connect(hv: &mut SimHypervisor, dom: DomId, devid: u32, o: Nc2Opts) -> Nc2Guest {
        let fe = fe_path(dom, devid);
        let page = |hv: &mut SimHypervisor, ro: bool| {
            let (f, mem) = hv.alloc_page(dom);
            (hv.grant(dom, f, BACKEND, ro), mem)
        };
        let (cref, control) = page(hv, false);
        let (fref, f2b) = page(hv, false);
        let (bref, b2f) = page(hv, false);
        let rx_bufs: Vec<_> = (0..o.buffers).map(|_| page(hv, false)).collect();
        let tx_pages: Vec<_> = (0..128).map(|_| page(hv, true)).collect();
        let port = hv.alloc_unbound(dom);
        let cfg = Config {
            max_packets: 64,
            max_fragments: 18,
            grants: GrantBound(u32::MAX),
            tx_ids: 256,
            posted_buffers: o.buffers,
        };
        let fe_end = Frontend::new(
            ChannelMem {
                control,
                front_to_back: f2b,
                back_to_front: b2f,
            },
            cfg,
        )
        .unwrap();
        for (k, v) in [
            ("nc2-wire-version", "1".to_string()),
            ("nc2-control-ref", cref.to_string()),
            ("nc2-f2b-ring-ref", fref.to_string()),
            ("nc2-b2f-ring-ref", bref.to_string()),
            ("event-channel", port.to_string()),
            ("state", "4".to_string()),
        ] {
            hv.store_write(&format!("{fe}/{k}"), v.as_bytes());
        }
        Nc2Guest {
            dom,
            devid,
            fe: fe_end,
            control,
            f2b,
            port,
            o,
            rx_bufs,
            initial_posted: false,
            repost: true,
            tx_pages,
            tx_free: (0..128).rev().collect(),
            outstanding: BTreeMap::new(),
            next_id: 0,
            received: Vec::new(),
            finished: 0,
            sent: 0,
        }
    }

    /// The guest's grant of receive buffer `id` and its page.
    pub fn rx_buf(&self, id: u32) -> (u32, SharedMem<'static>) {
        self.rx_bufs[id as usize]
    }

    /// From now on buffer `id` is page `mem` under grant `gref`.
    pub fn replace_buffer(&mut self, id: u32, gref: u32, mem: SharedMem<'static>) {
        self.rx_bufs[id as usize] = (gref, mem);
    }

    /// Posts buffers `ids` (with their usual grants).
    pub fn post(&mut self, ids: &[u32]) {
        for chunk in ids.chunks(MAX_POST_BATCH) {
            let bufs: Vec<PostedBuffer> = chunk
                .iter()
                .map(|&id| PostedBuffer {
                    id,
                    gref: self.rx_bufs[id as usize].0,
                })
                .collect();
            self.fe.post_buffers(&bufs).unwrap();
        }
    }

    /// Publishes and kicks if the backend asks for it.
    pub fn push(&mut self, hv: &mut SimHypervisor) {
        if self.fe.flush() {
            hv.guest_notify(self.dom, self.port);
        }
    }

    /// Handles everything the backend sent; re-posts read buffers.
    pub fn poll(&mut self, hv: &mut SimHypervisor) {
        let _ = hv.take_pending_of(self.dom);
        let mut reposts = Vec::new();
        loop {
            while let Some(ev) = self.fe.poll().unwrap() {
                match ev {
                    Event::Packet(p) => {
                        let mut data = p.prefix.to_vec();
                        let mut bufs = Vec::new();
                        for f in p.frags() {
                            assert_eq!(p.meta.kind, PacketKind::PrePosted);
                            let (_, mem) = self.rx_bufs[f.gref as usize];
                            let at = data.len();
                            data.resize(at + usize::from(f.size), 0);
                            read_bytes(mem, usize::from(f.offset), &mut data[at..]);
                            bufs.push(f.gref);
                        }
                        reposts.extend_from_slice(&bufs);
                        self.received.push(Nc2Received {
                            data,
                            kind: p.meta.kind,
                            bufs,
                        });
                    }
                    Event::Finished { id } => {
                        let pages = self.outstanding.remove(&id).expect("finish of a sent id");
                        self.tx_free.extend(pages);
                        self.finished += 1;
                    }
                    Event::PeerMaxPostedBuffers(n) if !self.initial_posted => {
                        assert!(n >= self.o.buffers);
                        self.initial_posted = true;
                        let ids: Vec<u32> = (0..self.o.buffers).collect();
                        self.post(&ids);
                    }
                    _ => {}
                }
            }
            if self.repost && !reposts.is_empty() {
                let ids = std::mem::take(&mut reposts);
                self.post(&ids);
            }
            self.push(hv);
            if !self.fe.prepare_to_sleep().unwrap() {
                break;
            }
        }
    }

    /// Queues one packet (SMALL when it fits inline, else copy/map fragments after an inline
    /// prefix) and kicks.
    pub fn send(&mut self, hv: &mut SimHypervisor, data: &[u8]) {
        assert!(self.try_send(data), "guest could not send");
        self.push(hv);
    }

    /// Queues one packet without kicking; false if it cannot go now.
    pub fn try_send(&mut self, data: &[u8]) -> bool {
        let id = self.next_id % 256;
        if data.len() <= 256 {
            let meta = PacketMeta::new(id, PacketKind::Small);
            if self.fe.send_packet(&meta, &[], data).is_err() {
                return false;
            }
            self.sent += 1;
            return true;
        }
        if self.outstanding.contains_key(&id) {
            return false;
        }
        let (prefix, rest) = data.split_at(self.o.prefix.min(data.len()));
        let chunks: Vec<&[u8]> = rest.chunks(4096).collect();
        if self.tx_free.len() < chunks.len() {
            return false;
        }
        let mut pages = Vec::new();
        let mut frags = Vec::new();
        for c in chunks {
            let p = self.tx_free.pop().unwrap();
            let (g, mem) = self.tx_pages[p];
            write_bytes(mem, 0, c);
            pages.push(p);
            frags.push(Fragment {
                size: c.len() as u16,
                offset: 0,
                gref: g,
            });
        }
        let kind = match self.o.tx {
            TxKind::Copy => PacketKind::ReceiverCopy,
            TxKind::Map => PacketKind::ReceiverMap,
        };
        let meta = PacketMeta::new(id, kind);
        if self.fe.send_packet(&meta, &frags, prefix).is_err() {
            self.tx_free.extend(pages);
            return false;
        }
        self.outstanding.insert(id, pages);
        self.next_id += 1;
        self.sent += 1;
        true
    }

    /// Hostile: publishes a message of an unknown type at the next ring position, kicks.
    pub fn corrupt_ring(&mut self, hv: &mut SimHypervisor) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        // The frontend's `out_prod` is the first word of its control block.
        let prod = self.control.load_u32(0, Relaxed);
        let at = (prod & 4095) as usize;
        // type 0xee, flags 0, size 8.
        self.f2b.store_u32(at, 0x0008_00ee, Relaxed);
        self.f2b.store_u32(at + 4, 0, Relaxed);
        self.control.store_u32(0, prod.wrapping_add(8), Release);
        hv.guest_notify(self.dom, self.port);
    }

    /// Goes Closing then Closed, as a frontend does on unplug.
    pub fn close(&mut self, hv: &mut SimHypervisor, nb: &mut impl FnMut(&mut SimHypervisor)) {
        let fe = fe_path(self.dom, self.devid);
        hv.store_write(&format!("{fe}/state"), b"5");
        nb(hv);
        hv.store_write(&format!("{fe}/state"), b"6");
        nb(hv);
    }
}
