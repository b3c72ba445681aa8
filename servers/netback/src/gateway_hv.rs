//! [`Hypervisor`] over the kernel's Xen gateway: what netback runs on inside nc2dd.
//!
//! Owns: the xenstore client, the set of event-channel ports netback bound, and the local copy
//! regions (heap pages, returned by [`Hypervisor::free_local`] when their queue is gone; a
//! region is only ever the target of a copy during a `grant_copy` call of its queue).
//!
//! Invariants:
//! - the gateway faults a task for a malformed call (a batch over `XEN_MAX_BATCH`, a zero-length
//!   copy, a side crossing a page, a window page it does not own), so everything is checked
//!   here first: batches are cut to the limit, empty copies succeed without a call, a local side
//!   that crosses a page is split into per-page pieces, and an out-of-page grant side or an
//!   unknown region is that operation's `GNTST_bad_copy_arg` status;
//! - a mapping's handle is its grant-window page index, so unmapping needs no table;
//! - a writable mapping's bus address is its guest-physical address (`xen_grant_bus`): under
//!   Xen HVM with an IOMMU the NIC reaches nc2dd's physmap at the same addresses, which is
//!   what lets the NIC write a guest's posted buffer directly;
//! - the kernel posts one Xen event bit for all of netback's ports and says not which one fired,
//!   so [`GatewayHv::evtchn_take_pending`] reports every bound port after an event was noted
//!   ([`GatewayHv::note_event`]) or after a xenstore request, whose wait may have consumed the
//!   bit; a queue with nothing to do costs one look at its ring.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use libnc2::shm::SharedMem;
use nc2dd_abi::syscall::{XEN_GRANT_WINDOW_BASE, XEN_MAX_BATCH};
use userland::syscall::XenMapRequest;
use userland::syscall::{self, XEN_COPY_GRANT, XEN_COPY_LOCAL, XenCopySegment, XenCopySide};
use userland::xenstore::client::NO_TX;

use netback::hv::{
    CopyOp, CopyPtr, DomId, GNTST_BAD_COPY_ARG, GNTST_GENERAL_ERROR, GNTST_OKAY, HvError,
    Hypervisor, LocalRegion, Mapping, PAGE, Port, WatchEvent,
};

type Xs = userland::xenstore::Client<userland::xen::GatewayTransport>;

const BATCH: usize = XEN_MAX_BATCH as usize;

/// The gateway as netback's hypervisor.
pub struct GatewayHv {
    xs: Xs,
    domid: DomId,
    ports: BTreeSet<Port>,
    event_seen: bool,
    /// Base address and length of each live local region, by id (freed ids are reused).
    regions: Vec<Option<(usize, usize)>>,
}

fn errno(e: i64) -> i32 {
    i32::try_from(e).unwrap_or(i32::MIN)
}

fn status(s: i64) -> i16 {
    i16::try_from(s).unwrap_or(i16::MIN)
}

impl GatewayHv {
    /// Wraps an attached xenstore client; reads our domain id.
    pub fn new(mut xs: Xs) -> Result<Self, HvError> {
        let domid = xs.read_domid()?;
        Ok(GatewayHv {
            xs,
            domid,
            ports: BTreeSet::new(),
            event_seen: true,
            regions: Vec::new(),
        })
    }

    /// The task's Xen event bit fired: every bound port may have work.
    pub fn note_event(&mut self) {
        self.event_seen = true;
    }

    /// One side of a copy as the gateway takes it, `at` bytes into the operation; `None` if it
    /// does not fit its page or region.
    fn side(&self, p: CopyPtr, at: usize, len: usize) -> Option<XenCopySide> {
        match p {
            CopyPtr::Grant { dom, gref, offset } => {
                let off = usize::from(offset) + at;
                (usize::from(offset) + len <= PAGE).then_some(XenCopySide {
                    kind: XEN_COPY_GRANT,
                    domid: dom,
                    gref,
                    offset: off as u16,
                    ..XenCopySide::default()
                })
            }
            CopyPtr::Local { region, offset } => {
                let &(base, size) = self.regions.get(region as usize)?.as_ref()?;
                let off = offset as usize;
                (off.checked_add(len)? <= size).then_some(XenCopySide {
                    kind: XEN_COPY_LOCAL,
                    vaddr: (base + off + at) as u64,
                    ..XenCopySide::default()
                })
            }
        }
    }
}

/// Bytes left in the page of a local side (a grant side's page bound was checked as a whole).
fn room(s: &XenCopySide) -> usize {
    if s.kind == XEN_COPY_LOCAL {
        PAGE - (s.vaddr as usize % PAGE)
    } else {
        PAGE - usize::from(s.offset)
    }
}

impl Hypervisor for GatewayHv {
    fn domid(&self) -> DomId {
        self.domid
    }

    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, HvError> {
        self.event_seen = true;
        Ok(self.xs.read(NO_TX, path)?)
    }

    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), HvError> {
        self.event_seen = true;
        if path.ends_with("/state") {
            // The bed follows each vif's xenbus states on the console.
            log::info!("{path} = {}", core::str::from_utf8(value).unwrap_or("?"));
        }
        Ok(self.xs.write(NO_TX, path, value)?)
    }

    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, HvError> {
        self.event_seen = true;
        Ok(self.xs.directory(NO_TX, path)?)
    }

    fn xs_rm(&mut self, path: &str) -> Result<(), HvError> {
        self.event_seen = true;
        Ok(self.xs.rm(NO_TX, path)?)
    }

    fn xs_watch(&mut self, path: &str, token: &str) -> Result<(), HvError> {
        self.event_seen = true;
        Ok(self.xs.watch(path, token)?)
    }

    fn xs_unwatch(&mut self, path: &str, token: &str) -> Result<(), HvError> {
        self.event_seen = true;
        Ok(self.xs.unwatch(path, token)?)
    }

    fn xs_poll_watch(&mut self) -> Result<Option<WatchEvent>, HvError> {
        // Never waits, so it consumes no event bit.
        Ok(self.xs.poll_watch_event()?)
    }

    fn evtchn_bind(&mut self, dom: DomId, remote_port: Port) -> Result<Port, HvError> {
        let p = syscall::xen_evtchn_bind_interdomain(dom, remote_port)
            .map_err(|e| HvError::Evtchn(errno(e)))?;
        self.ports.insert(p);
        // Anything the frontend queued before the bind is looked at in the next poll.
        self.event_seen = true;
        Ok(p)
    }

    fn evtchn_notify(&mut self, port: Port) {
        if self.ports.contains(&port) {
            // A refused send leaves the guest to its own timers; nothing better to do here.
            let _ = syscall::xen_evtchn_send(port);
        }
    }

    fn evtchn_unmask(&mut self, port: Port) {
        if self.ports.contains(&port) {
            let _ = syscall::xen_evtchn_unmask(port);
        }
    }

    fn evtchn_close(&mut self, port: Port) {
        if self.ports.remove(&port)
            && let Err(e) = syscall::xen_evtchn_close(port)
        {
            log::warn!("closing event channel port {port}: errno {e}");
        }
    }

    fn evtchn_take_pending(&mut self, out: &mut Vec<Port>) {
        if core::mem::take(&mut self.event_seen) {
            out.extend(self.ports.iter().copied());
        }
    }

    fn grant_map(
        &mut self,
        dom: DomId,
        grefs: &[u32],
        readonly: bool,
        out: &mut Vec<Result<Mapping, i16>>,
    ) -> Result<(), HvError> {
        out.clear();
        for chunk in grefs.chunks(BATCH) {
            let reqs: Vec<XenMapRequest> = chunk
                .iter()
                .map(|&gref| XenMapRequest {
                    gref,
                    domid: dom,
                    readonly: u16::from(readonly),
                })
                .collect();
            let mut res = alloc::vec![0i64; reqs.len()];
            syscall::xen_grant_map(&reqs, &mut res).map_err(|e| HvError::Grant(errno(e)))?;
            for r in res {
                if r < 0 {
                    out.push(Err(status(r)));
                    continue;
                }
                let va = r as u64;
                // The gateway answers window addresses only; anything else is not a mapping
                // this code may touch.
                let (Some(off), Some(base)) = (
                    va.checked_sub(XEN_GRANT_WINDOW_BASE),
                    NonNull::new(va as usize as *mut u8),
                ) else {
                    out.push(Err(GNTST_GENERAL_ERROR));
                    continue;
                };
                let Ok(handle) = u32::try_from(off / PAGE as u64) else {
                    out.push(Err(GNTST_GENERAL_ERROR));
                    continue;
                };
                // SAFETY: the gateway mapped a whole foreign page read-write (or read-only, and
                // then the core only reads) at `va`, page aligned, and keeps it until
                // `grant_unmap` of this handle; the guest writes it concurrently, which
                // SharedMem's atomic accesses allow.
                let mem = unsafe { SharedMem::from_raw(base, PAGE) };
                // Only writable pages are ever handed to a device (posted receive buffers).
                // Assumed here: under Xen HVM with an IOMMU, nc2dd's devices are translated
                // through nc2dd's own physmap, so a grant mapped into it is reachable at its
                // guest-physical address, which the gateway reports as the bus address.
                let bus = if readonly {
                    None
                } else {
                    syscall::xen_grant_bus(va).ok()
                };
                out.push(Ok(Mapping { handle, mem, bus }));
            }
        }
        Ok(())
    }

    fn grant_unmap(&mut self, handles: &[u32]) -> Result<(), HvError> {
        let mut first_bad = None;
        for chunk in handles.chunks(BATCH) {
            let vas: Vec<u64> = chunk
                .iter()
                .map(|&h| XEN_GRANT_WINDOW_BASE + u64::from(h) * PAGE as u64)
                .collect();
            let mut res = alloc::vec![0i64; vas.len()];
            syscall::xen_grant_unmap(&vas, &mut res).map_err(|e| HvError::Grant(errno(e)))?;
            if let Some(&s) = res.iter().find(|&&s| s != 0) {
                first_bad.get_or_insert(s);
            }
        }
        match first_bad {
            Some(s) => Err(HvError::Grant(errno(s))),
            None => Ok(()),
        }
    }

    fn grant_copy(&mut self, ops: &mut [CopyOp]) -> Result<(), HvError> {
        let mut segs: Vec<XenCopySegment> = Vec::with_capacity(ops.len());
        let mut owner: Vec<usize> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter_mut().enumerate() {
            let len = usize::from(op.len);
            op.status = GNTST_OKAY;
            let mut at = 0;
            while at < len {
                let left = len - at;
                let (Some(src), Some(dst)) =
                    (self.side(op.src, at, len), self.side(op.dst, at, len))
                else {
                    op.status = GNTST_BAD_COPY_ARG;
                    break;
                };
                let n = left.min(room(&src)).min(room(&dst));
                segs.push(XenCopySegment {
                    src,
                    dst,
                    len: n as u16,
                    ..XenCopySegment::default()
                });
                owner.push(i);
                at += n;
            }
        }
        let mut res = alloc::vec![0i64; segs.len()];
        for (s, r) in segs.chunks(BATCH).zip(res.chunks_mut(BATCH)) {
            syscall::xen_grant_copy(s, r).map_err(|e| HvError::Grant(errno(e)))?;
        }
        for (&i, &r) in owner.iter().zip(&res) {
            if r != 0 && ops[i].status == GNTST_OKAY {
                ops[i].status = status(r);
            }
        }
        Ok(())
    }

    fn now_ns(&mut self) -> u64 {
        syscall::now_ns()
    }

    fn alloc_local(&mut self, pages: usize) -> Result<LocalRegion, HvError> {
        let len = pages.checked_mul(PAGE).ok_or(HvError::NoMemory)?;
        if len == 0 {
            return Err(HvError::NoMemory);
        }
        let layout = Layout::from_size_align(len, PAGE).map_err(|_| HvError::NoMemory)?;
        // SAFETY: a non-zero size layout.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(p).ok_or(HvError::NoMemory)?;
        // SAFETY: `len` bytes of page-aligned heap memory, valid until `free_local` of this
        // region, which the core calls only after dropping every view of it; only netback and
        // Xen's copies (on netback's behalf) touch it.
        let mem = unsafe { SharedMem::from_raw(base, len) };
        let entry = Some((p as usize, len));
        let id = match self.regions.iter().position(Option::is_none) {
            Some(i) => {
                self.regions[i] = entry;
                i
            }
            None => {
                self.regions.push(entry);
                self.regions.len() - 1
            }
        };
        Ok(LocalRegion { id: id as u32, mem })
    }

    fn free_local(&mut self, region: LocalRegion) {
        let Some((base, len)) = self
            .regions
            .get_mut(region.id as usize)
            .and_then(Option::take)
        else {
            return;
        };
        if let Ok(layout) = Layout::from_size_align(len, PAGE) {
            // SAFETY: `base` came from `alloc_zeroed` with exactly this layout in `alloc_local`
            // and is freed once (the table entry was taken above); no copy is in flight, since
            // copies are synchronous calls.
            unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
        }
    }
}
