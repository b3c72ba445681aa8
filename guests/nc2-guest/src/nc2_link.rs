//! The netchannel2 frontend (wire format and xenbus keys: libnc2/docs/nc2-wire.md and
//! nc2-xenbus.md), built on libnc2's `nc2::Frontend`.
//!
//! Memory: a control page and one page per ring, granted to the backend; one event channel.
//! Receive: pages granted writable once, posted with POST_BUFFERS as soon as the backend's
//! SET_MAX_POSTED_BUFFERS allows, and re-posted (same id, same grant: the backend keeps its
//! mapping) after the frame in them is copied out. Frames reach us as PRE_POSTED packets (or
//! SMALL, inline; RECEIVER_COPY ones are copied with a grant copy and FINISHed). Transmit: frames
//! up to 256 bytes go inline (SMALL); longer ones as RECEIVER_COPY from a pool of pages granted
//! read-only, each reused when the backend's FINISH_PACKET names it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use libnc2::GrantBound;
use libnc2::nc2::layout::{FRONTEND_BLOCK, OUT_PROD};
use libnc2::nc2::msg::{MAX_POST_BATCH, WIRE_VERSION};
use libnc2::nc2::{
    ChannelMem, Config, Event, Fragment, Frontend, MAX_PREFIX, PacketKind, PacketMeta, PostedBuffer,
};
use libnc2::shm::SharedMem;
use userland::syscall::{self, XEN_COPY_GRANT, XEN_COPY_LOCAL, XenCopySegment, XenCopySide};
use userland::xenstore::XenbusState;

use crate::env::{Env, Vif};
use crate::link::Link;
use crate::pages::{self, Granted};

const TX_BUFFERS: usize = 64;
const RX_BUFFERS: usize = 128;
const CONNECT_TIMEOUT_MS: u64 = 60_000;

pub struct Nc2Link {
    fe: Frontend<'static>,
    f2b: SharedMem<'static>,
    control: SharedMem<'static>,
    port: u32,
    backend_id: u16,
    tx_pages: Vec<Granted>,
    tx_free: Vec<u32>,
    rx_pages: Vec<Granted>,
    /// Buffer ids we hold and may post (the backend does not hold them).
    rx_unposted: Vec<u32>,
    copy_page: core::ptr::NonNull<u8>,
    scratch: Vec<u8>,
}

fn notify(port: u32) -> Result<(), String> {
    syscall::xen_evtchn_send(port).map_err(|e| format!("event to the backend: errno {e}"))
}

/// True if the backend at `vif` offers netchannel2 version 1.
pub fn offered(env: &mut Env, vif: &Vif) -> Result<bool, String> {
    let nc2 = env.read(&format!("{}/feature-nc2", vif.backend))?;
    let ver = env.read(&format!("{}/nc2-wire-version", vif.backend))?;
    Ok(nc2.as_deref().map(str::trim) == Some("1")
        && ver
            .as_deref()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|v| v >= WIRE_VERSION))
}

impl Nc2Link {
    /// Grants the channel, publishes the keys, waits for Connected and publishes the opening
    /// messages.
    pub fn connect(env: &mut Env, vif: &Vif) -> Result<Nc2Link, String> {
        let be = vif.backend_id;
        env.wait_backend(vif, "InitWait", CONNECT_TIMEOUT_MS, |s| {
            s >= XenbusState::InitWait
        })?;
        if !offered(env, vif)? {
            return Err(format!(
                "the backend {} does not offer netchannel2 version {WIRE_VERSION}",
                vif.backend
            ));
        }
        let control = pages::granted(be, false)?;
        let f2b = pages::granted(be, false)?;
        let b2f = pages::granted(be, false)?;
        let mem = ChannelMem {
            control: pages::shared(control.ptr),
            front_to_back: pages::shared(f2b.ptr),
            back_to_front: pages::shared(b2f.ptr),
        };
        let cfg = Config {
            max_packets: 64,
            max_fragments: 1,
            grants: GrantBound(1 << 20),
            tx_ids: TX_BUFFERS as u32,
            posted_buffers: RX_BUFFERS as u32,
        };
        let fe = Frontend::new(mem, cfg).map_err(|e| format!("nc2 channel: {e:?}"))?;
        let port = syscall::xen_evtchn_alloc_unbound(be)
            .map_err(|e| format!("event channel for domain {be}: errno {e}"))?;
        syscall::xen_evtchn_unmask(port).map_err(|e| format!("unmask {port}: errno {e}"))?;
        let mut tx_pages = Vec::with_capacity(TX_BUFFERS);
        for _ in 0..TX_BUFFERS {
            tx_pages.push(pages::granted(be, true)?);
        }
        let mut rx_pages = Vec::with_capacity(RX_BUFFERS);
        for _ in 0..RX_BUFFERS {
            rx_pages.push(pages::granted(be, false)?);
        }
        let f = &vif.front;
        for (k, v) in [
            ("nc2-wire-version", format!("{WIRE_VERSION}")),
            ("nc2-control-ref", format!("{}", control.gref)),
            ("nc2-f2b-ring-ref", format!("{}", f2b.gref)),
            ("nc2-b2f-ring-ref", format!("{}", b2f.gref)),
            ("event-channel", format!("{port}")),
        ] {
            env.write(&format!("{f}/{k}"), &v)?;
        }
        env.set_state(vif, XenbusState::Connected)?;
        let s = env.wait_backend(vif, "Connected", CONNECT_TIMEOUT_MS, |s| {
            s == XenbusState::Connected || s >= XenbusState::Closing
        })?;
        if s != XenbusState::Connected {
            let why = env
                .read(&format!("{}/error", vif.backend))?
                .unwrap_or_default();
            return Err(format!(
                "the backend went to {s:?} instead of Connected: {why:?}"
            ));
        }
        let mut link = Nc2Link {
            fe,
            f2b: mem.front_to_back,
            control: mem.control,
            port,
            backend_id: be,
            tx_pages,
            tx_free: (0..TX_BUFFERS as u32).rev().collect(),
            rx_pages,
            rx_unposted: (0..RX_BUFFERS as u32).rev().collect(),
            copy_page: pages::page()?,
            scratch: Vec::with_capacity(pages::PAGE),
        };
        link.fe.flush();
        notify(link.port)?;
        Ok(link)
    }

    pub fn kick(&self) -> Result<(), String> {
        notify(self.port)
    }

    /// Posts every buffer we hold, as far as the backend's limit allows.
    fn post(&mut self) -> Result<(), String> {
        loop {
            let st = self.fe.status();
            let room = st.peer_max_posted.saturating_sub(st.posted) as usize;
            let n = room.min(self.rx_unposted.len()).min(MAX_POST_BATCH);
            if n == 0 {
                return Ok(());
            }
            let batch: Vec<PostedBuffer> = self.rx_unposted[self.rx_unposted.len() - n..]
                .iter()
                .map(|&id| PostedBuffer {
                    id,
                    gref: self.rx_pages[id as usize].gref,
                })
                .collect();
            match self.fe.post_buffers(&batch) {
                Ok(()) => {
                    let keep = self.rx_unposted.len() - n;
                    self.rx_unposted.truncate(keep);
                }
                Err(libnc2::SendError::RingFull) => return Ok(()),
                Err(e) => return Err(format!("posting buffers: {e:?}")),
            }
        }
    }

    /// Copies `frag` of one of the backend's RECEIVER_COPY packets into `scratch`.
    fn copy_in(&mut self, frag: Fragment) -> Result<(), String> {
        let seg = XenCopySegment {
            src: XenCopySide {
                kind: XEN_COPY_GRANT,
                domid: self.backend_id,
                gref: frag.gref,
                offset: frag.offset,
                ..XenCopySide::default()
            },
            dst: XenCopySide {
                kind: XEN_COPY_LOCAL,
                vaddr: self.copy_page.as_ptr() as u64,
                ..XenCopySide::default()
            },
            len: frag.size,
            ..XenCopySegment::default()
        };
        let mut st = [0i64; 1];
        syscall::xen_grant_copy(&[seg], &mut st).map_err(|e| format!("grant copy: errno {e}"))?;
        if st[0] != 0 {
            return Err(format!(
                "grant copy of the backend's ref {}: status {}",
                frag.gref, st[0]
            ));
        }
        pages::read(self.copy_page, 0, usize::from(frag.size), &mut self.scratch);
        Ok(())
    }

    /// Hostile: a message header claiming 12 bytes (sizes must be multiples of 8).
    pub fn corrupt_message_size(&mut self) -> &'static str {
        let prod = self
            .control
            .load_u32(FRONTEND_BLOCK + OUT_PROD, Ordering::Acquire);
        let off = (prod as usize) & (self.f2b.len() - 1);
        // type SET_MAX_PACKETS, flags 0, size 12.
        let hdr = u32::from_le_bytes([1, 0, 12, 0]);
        self.f2b.store_u32(off, hdr, Ordering::Relaxed);
        self.f2b.store_u32(off + 4, 64, Ordering::Relaxed);
        self.control.store_u32(
            FRONTEND_BLOCK + OUT_PROD,
            prod.wrapping_add(16),
            Ordering::Release,
        );
        "nc2 front-to-back message of size 12"
    }

    /// Hostile: the producer index jumps two ring sizes ahead.
    pub fn corrupt_index_jump(&mut self) -> &'static str {
        let prod = self
            .control
            .load_u32(FRONTEND_BLOCK + OUT_PROD, Ordering::Acquire);
        let jump = prod.wrapping_add(2 * self.f2b.len() as u32);
        self.control
            .store_u32(FRONTEND_BLOCK + OUT_PROD, jump, Ordering::Release);
        "nc2 front-to-back out_prod jumped two ring sizes"
    }
}

enum Got {
    Frame { trusted: bool },
    Nothing,
}

impl Link for Nc2Link {
    fn send(&mut self, frame: &[u8]) -> Result<bool, String> {
        if frame.len() > pages::PAGE {
            return Err(format!("a {}-byte frame does not fit a page", frame.len()));
        }
        let r = if frame.len() <= usize::from(MAX_PREFIX) {
            self.fe
                .send_packet(&PacketMeta::new(0, PacketKind::Small), &[], frame)
        } else {
            let Some(id) = self.tx_free.pop() else {
                return Ok(false);
            };
            let page = self.tx_pages[id as usize];
            pages::write(page.ptr, frame);
            let frag = Fragment {
                size: frame.len() as u16,
                offset: 0,
                gref: page.gref,
            };
            let r =
                self.fe
                    .send_packet(&PacketMeta::new(id, PacketKind::ReceiverCopy), &[frag], &[]);
            if r.is_err() {
                self.tx_free.push(id);
            }
            r
        };
        match r {
            Ok(()) => {
                if self.fe.flush() {
                    notify(self.port)?;
                }
                Ok(true)
            }
            Err(libnc2::SendError::RingFull | libnc2::SendError::NoPacketCredit) => Ok(false),
            Err(e) => Err(format!("nc2 send: {e:?}")),
        }
    }

    fn poll(&mut self, f: &mut dyn FnMut(&[u8], bool)) -> Result<usize, String> {
        let mut n = 0;
        loop {
            self.scratch.clear();
            let mut finish = None;
            let mut repost: Vec<u32> = Vec::new();
            let mut copies: Vec<Fragment> = Vec::new();
            let got = match self.fe.poll().map_err(|e| format!("nc2 channel: {e:?}"))? {
                None => break,
                Some(Event::Packet(p)) => {
                    self.scratch.extend_from_slice(p.prefix);
                    let trusted = p.meta.flags
                        & (libnc2::nc2::msg::PKT_CSUM_BLANK | libnc2::nc2::msg::PKT_DATA_VALIDATED)
                        != 0;
                    match p.meta.kind {
                        PacketKind::PrePosted => {
                            for fr in p.frags() {
                                repost.push(fr.gref);
                                let ok = self.rx_pages.get(fr.gref as usize).is_some_and(|pg| {
                                    pages::read(
                                        pg.ptr,
                                        usize::from(fr.offset),
                                        usize::from(fr.size),
                                        &mut self.scratch,
                                    )
                                });
                                if !ok {
                                    return Err(format!(
                                        "pre-posted fragment {fr:?} is out of bounds"
                                    ));
                                }
                            }
                        }
                        PacketKind::ReceiverCopy | PacketKind::ReceiverMap => {
                            finish = Some(p.meta.id);
                            copies.extend(p.frags());
                        }
                        PacketKind::Small => {}
                    }
                    Got::Frame { trusted }
                }
                Some(Event::Finished { id }) => {
                    if (id as usize) < TX_BUFFERS {
                        self.tx_free.push(id);
                    }
                    Got::Nothing
                }
                Some(Event::BuffersReturned(ids)) => {
                    repost.extend(ids.iter());
                    Got::Nothing
                }
                Some(_) => Got::Nothing,
            };
            for fr in copies {
                self.copy_in(fr)?;
            }
            if let Some(id) = finish {
                self.fe
                    .finish_packet(id)
                    .map_err(|e| format!("finishing packet {id}: {e:?}"))?;
            }
            self.rx_unposted.extend(repost);
            if let Got::Frame { trusted } = got {
                n += 1;
                f(&self.scratch, trusted);
            }
        }
        self.post()?;
        if self.fe.flush() {
            notify(self.port)?;
        }
        Ok(n)
    }

    fn prepare_sleep(&mut self) -> Result<bool, String> {
        if self.fe.flush() {
            notify(self.port)?;
        }
        self.fe
            .prepare_to_sleep()
            .map_err(|e| format!("nc2 channel: {e:?}"))
    }

    fn tx_in_flight(&self) -> usize {
        TX_BUFFERS - self.tx_free.len()
    }

    fn name(&self) -> &'static str {
        "nc2"
    }
}
