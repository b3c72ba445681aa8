//! A simulated Xen for host tests and benchmarks: per-domain pages and grant tables, a xenstore
//! tree with watches, event-channel pairs, and a counter for every operation, so tests can
//! assert how many hypercalls a batch took.
//!
//! The simulator is also the guests' hypervisor: guest-side helpers (`alloc_page`, `grant`,
//! `alloc_unbound`, `guest_notify`, ...) act on behalf of a domain. Pages are leaked on
//! allocation, so every [`SharedMem`] handed out stays valid for the rest of the process, even
//! after a hostile test revokes the grant (what Xen would keep alive until unmap).
//!
//! Invariants: grant copies check every reference (exists, granted to the backend, writable
//! if written) and every offset/length against page or region bounds, and report `GNTST_*`
//! per operation; nothing a guest sets up can make the simulator read out of bounds.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use libnc2::shm::{OwnedRegion, SharedMem};

use crate::hv::{
    CopyOp, CopyPtr, DomId, GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_OKAY,
    GNTST_PERMISSION_DENIED, HvError, Hypervisor, LocalRegion, Mapping, PAGE, Port, WatchEvent,
    XsError,
};
pub use crate::hv::{read_bytes, write_bytes};

/// Every operation the core asked for, for assertions and per-packet costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Grant map hypercalls / operations.
    pub map_calls: u64,
    /// Map operations in those calls.
    pub map_ops: u64,
    /// Grant unmap hypercalls.
    pub unmap_calls: u64,
    /// Unmap operations.
    pub unmap_ops: u64,
    /// Grant copy hypercalls.
    pub copy_calls: u64,
    /// Copy operations.
    pub copy_ops: u64,
    /// Copy operations that failed.
    pub copy_failures: u64,
    /// Event sends by the backend.
    pub notifies: u64,
    /// Interdomain binds.
    pub binds: u64,
    /// Unmasks.
    pub unmasks: u64,
    /// Xenstore requests by the backend.
    pub xs_requests: u64,
}

impl SimCounters {
    /// Grant hypercalls of every kind.
    pub fn grant_calls(&self) -> u64 {
        self.map_calls + self.unmap_calls + self.copy_calls
    }
    /// Grant operations of every kind.
    pub fn grant_ops(&self) -> u64 {
        self.map_ops + self.unmap_ops + self.copy_ops
    }
}

#[derive(Clone, Copy)]
struct Grant {
    page: SharedMem<'static>,
    bus: Option<u64>,
    to: DomId,
    readonly: bool,
}

#[derive(Default)]
struct Domain {
    pages: Vec<(SharedMem<'static>, Option<u64>)>,
    grants: Vec<Option<Grant>>,
}

/// Where guest pages come from when a device must reach them: returns one zeroed page (valid
/// for the rest of the process) and its bus address.
pub type PageSource = Box<dyn FnMut() -> (SharedMem<'static>, u64)>;

#[derive(Clone, Copy)]
struct Channel {
    dom: DomId,
    peer: Option<(DomId, Port)>,
}

/// The simulated hypervisor (see the module header).
pub struct SimHypervisor {
    me: DomId,
    domains: BTreeMap<DomId, Domain>,
    store: BTreeMap<String, Vec<u8>>,
    watches: Vec<(String, String)>,
    fired: VecDeque<WatchEvent>,
    channels: BTreeMap<(DomId, Port), Channel>,
    next_port: BTreeMap<DomId, Port>,
    pending: BTreeMap<DomId, BTreeSet<Port>>,
    maps: BTreeMap<u32, (DomId, u32)>,
    next_handle: u32,
    regions: Vec<Option<SharedMem<'static>>>,
    freed: Vec<SharedMem<'static>>,
    local_pages: usize,
    page_source: Option<PageSource>,
    scratch: Vec<u8>,
    /// While set, backend xenstore requests for paths starting with it fail with `EIO` (a
    /// sick xenstored; `""` fails them all).
    pub xs_fail: Option<String>,
    /// The simulated clock ([`Hypervisor::now_ns`]); tests move it.
    pub clock_ns: u64,
    /// What the backend has asked for so far.
    pub counters: SimCounters,
}

fn leak_pages(n: usize) -> SharedMem<'static> {
    let region: &'static OwnedRegion = Box::leak(Box::new(OwnedRegion::new(n * PAGE)));
    region.mem()
}

/// True if `path` is `watch` or below it.
fn under(path: &str, watch: &str) -> bool {
    path == watch || (path.starts_with(watch) && path.as_bytes().get(watch.len()) == Some(&b'/'))
}

/// Copies `len` bytes between two shared windows at any byte offsets (the windows only allow
/// word accesses, so the enclosing words are read and merged).
fn copy_bytes(
    scratch: &mut Vec<u8>,
    src: SharedMem<'_>,
    soff: usize,
    dst: SharedMem<'_>,
    doff: usize,
    len: usize,
) {
    scratch.resize(len, 0);
    read_bytes(src, soff, scratch);
    write_bytes(dst, doff, scratch);
}

impl SimHypervisor {
    /// A hypervisor whose backend (the caller of the trait) is domain `me`.
    pub fn new(me: DomId) -> Self {
        let mut s = SimHypervisor {
            me,
            domains: BTreeMap::new(),
            store: BTreeMap::new(),
            watches: Vec::new(),
            fired: VecDeque::new(),
            channels: BTreeMap::new(),
            next_port: BTreeMap::new(),
            pending: BTreeMap::new(),
            maps: BTreeMap::new(),
            next_handle: 1,
            regions: Vec::new(),
            freed: Vec::new(),
            local_pages: 0,
            page_source: None,
            scratch: Vec::new(),
            xs_fail: None,
            clock_ns: 0,
            counters: SimCounters::default(),
        };
        s.domains.insert(me, Domain::default());
        s
    }

    /// Creates domain `dom` (a guest).
    pub fn add_domain(&mut self, dom: DomId) {
        self.domains.entry(dom).or_default();
    }

    /// From now on guest pages come from `src`, with the bus address it gives (e.g. the NIC
    /// model's DMA memory), so a mapped grant of such a page has [`Mapping::bus`] set and a
    /// device can write the guest's page directly, as through an IOMMU under Xen.
    pub fn set_page_source(&mut self, src: PageSource) {
        self.page_source = Some(src);
    }

    /// A fresh zeroed page of `dom`; returns its frame index and memory.
    pub fn alloc_page(&mut self, dom: DomId) -> (u32, SharedMem<'static>) {
        let (mem, bus) = match self.page_source.as_mut() {
            Some(src) => {
                let (m, b) = src();
                (m, Some(b))
            }
            None => (leak_pages(1), None),
        };
        let d = self.domains.entry(dom).or_default();
        d.pages.push((mem, bus));
        ((d.pages.len() - 1) as u32, mem)
    }

    /// Pages of local (copy/staging) memory the backend holds now.
    pub fn local_pages(&self) -> usize {
        self.local_pages
    }

    /// `dom` grants its page `frame` to `to`; returns the reference.
    pub fn grant(&mut self, dom: DomId, frame: u32, to: DomId, readonly: bool) -> u32 {
        let d = self.domains.get_mut(&dom).expect("unknown domain");
        let (page, bus) = d.pages[frame as usize];
        // Reference 0 is reserved by convention (the toolstack's), so real ones start at 1.
        if d.grants.is_empty() {
            d.grants.push(None);
        }
        d.grants.push(Some(Grant {
            page,
            bus,
            to,
            readonly,
        }));
        (d.grants.len() - 1) as u32
    }

    /// `dom` ends grant `gref` (later copies through it fail; existing mappings stay).
    pub fn revoke(&mut self, dom: DomId, gref: u32) {
        if let Some(slot) = self
            .domains
            .get_mut(&dom)
            .and_then(|d| d.grants.get_mut(gref as usize))
        {
            *slot = None;
        }
    }

    fn new_port(&mut self, dom: DomId) -> Port {
        let n = self.next_port.entry(dom).or_insert(1);
        let p = *n;
        *n += 1;
        p
    }

    /// `EVTCHNOP_alloc_unbound` by `dom`: a port that `remote` may bind to.
    pub fn alloc_unbound(&mut self, dom: DomId) -> Port {
        let p = self.new_port(dom);
        self.channels.insert((dom, p), Channel { dom, peer: None });
        p
    }

    /// `dom` sends an event on its `port`.
    pub fn guest_notify(&mut self, dom: DomId, port: Port) {
        if let Some(Channel {
            peer: Some((pd, pp)),
            ..
        }) = self.channels.get(&(dom, port)).copied()
        {
            self.pending.entry(pd).or_default().insert(pp);
        }
    }

    /// Takes `dom`'s pending ports.
    pub fn take_pending_of(&mut self, dom: DomId) -> Vec<Port> {
        self.pending
            .get_mut(&dom)
            .map(|s| core::mem::take(s).into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether `port` of `dom` is connected to a peer.
    pub fn is_bound(&self, dom: DomId, port: Port) -> bool {
        self.channels
            .get(&(dom, port))
            .is_some_and(|c| c.peer.is_some())
    }

    /// Mappings still held by the backend.
    pub fn live_mappings(&self) -> usize {
        self.maps.len()
    }

    /// A key's value, without counting it as a backend request (for test assertions).
    pub fn peek(&self, path: &str) -> Option<&[u8]> {
        self.store.get(path).map(|v| v.as_slice())
    }

    /// Writes a key on behalf of a guest or the toolstack (fires watches, not counted).
    pub fn store_write(&mut self, path: &str, value: &[u8]) {
        self.store.insert(path.to_string(), value.to_vec());
        self.fire(path);
    }

    /// Removes a subtree on behalf of a guest or the toolstack.
    pub fn store_rm(&mut self, path: &str) {
        self.store.retain(|k, _| !under(k, path));
        self.fire(path);
        // Like xenstored, a watch on a removed descendant fires too (with its own path).
        for (w, t) in &self.watches {
            if under(w, path) && w != path {
                self.fired.push_back(WatchEvent {
                    path: w.clone(),
                    token: t.clone(),
                });
            }
        }
    }

    fn fire(&mut self, path: &str) {
        for (w, t) in &self.watches {
            if under(path, w) {
                self.fired.push_back(WatchEvent {
                    path: path.to_string(),
                    token: t.clone(),
                });
            }
        }
    }

    fn sick(&self, path: &str) -> Result<(), HvError> {
        if self.xs_fail.as_deref().is_some_and(|p| path.starts_with(p)) {
            return Err(HvError::Xs(XsError::Xs(userland::xenstore::XsErrno::EIO)));
        }
        Ok(())
    }

    fn resolve(
        &self,
        p: CopyPtr,
        len: usize,
        write: bool,
    ) -> Result<(SharedMem<'static>, usize), i16> {
        self.resolve_bus(p, len, write).map(|(m, o, _)| (m, o))
    }

    fn resolve_bus(
        &self,
        p: CopyPtr,
        len: usize,
        write: bool,
    ) -> Result<(SharedMem<'static>, usize, Option<u64>), i16> {
        match p {
            CopyPtr::Grant { dom, gref, offset } => {
                let d = self.domains.get(&dom).ok_or(GNTST_BAD_DOMAIN)?;
                let g = d
                    .grants
                    .get(gref as usize)
                    .copied()
                    .flatten()
                    .ok_or(GNTST_BAD_GNTREF)?;
                if g.to != self.me {
                    return Err(GNTST_PERMISSION_DENIED);
                }
                if write && g.readonly {
                    return Err(GNTST_PERMISSION_DENIED);
                }
                if usize::from(offset) + len > PAGE {
                    return Err(GNTST_BAD_COPY_ARG);
                }
                Ok((g.page, usize::from(offset), g.bus))
            }
            CopyPtr::Local { region, offset } => {
                let mem = self
                    .regions
                    .get(region as usize)
                    .copied()
                    .flatten()
                    .ok_or(GNTST_BAD_COPY_ARG)?;
                if offset as usize + len > mem.len() {
                    return Err(GNTST_BAD_COPY_ARG);
                }
                Ok((mem, offset as usize, None))
            }
        }
    }
}

impl Hypervisor for SimHypervisor {
    fn domid(&self) -> DomId {
        self.me
    }

    fn xs_read(&mut self, path: &str) -> Result<Vec<u8>, HvError> {
        self.counters.xs_requests += 1;
        self.sick(path)?;
        self.store.get(path).cloned().ok_or(HvError::Xs(XsError::Xs(
            userland::xenstore::XsErrno::ENOENT,
        )))
    }

    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), HvError> {
        self.counters.xs_requests += 1;
        self.sick(path)?;
        self.store_write(path, value);
        Ok(())
    }

    fn xs_directory(&mut self, path: &str) -> Result<Vec<String>, HvError> {
        self.counters.xs_requests += 1;
        self.sick(path)?;
        let prefix = alloc::format!("{path}/");
        let mut out: Vec<String> = Vec::new();
        for k in self.store.keys() {
            if let Some(rest) = k.strip_prefix(&prefix) {
                let child = rest.split('/').next().unwrap_or(rest);
                if out.last().map(String::as_str) != Some(child) && !out.iter().any(|c| c == child)
                {
                    out.push(child.to_string());
                }
            }
        }
        if out.is_empty() && !self.store.contains_key(path) {
            return Err(HvError::Xs(XsError::Xs(
                userland::xenstore::XsErrno::ENOENT,
            )));
        }
        Ok(out)
    }

    fn xs_rm(&mut self, path: &str) -> Result<(), HvError> {
        self.counters.xs_requests += 1;
        self.sick(path)?;
        self.store_rm(path);
        Ok(())
    }

    fn xs_watch(&mut self, path: &str, token: &str) -> Result<(), HvError> {
        self.counters.xs_requests += 1;
        self.watches.push((path.to_string(), token.to_string()));
        // xenstored fires every new watch once.
        self.fired.push_back(WatchEvent {
            path: path.to_string(),
            token: token.to_string(),
        });
        Ok(())
    }

    fn xs_unwatch(&mut self, path: &str, token: &str) -> Result<(), HvError> {
        self.counters.xs_requests += 1;
        self.watches.retain(|(p, t)| !(p == path && t == token));
        Ok(())
    }

    fn xs_poll_watch(&mut self) -> Result<Option<WatchEvent>, HvError> {
        Ok(self.fired.pop_front())
    }

    fn evtchn_bind(&mut self, dom: DomId, remote_port: Port) -> Result<Port, HvError> {
        self.counters.binds += 1;
        let Some(remote) = self.channels.get(&(dom, remote_port)).copied() else {
            return Err(HvError::Evtchn(-22));
        };
        if remote.peer.is_some() || remote.dom != dom {
            return Err(HvError::Evtchn(-22));
        }
        let me = self.me;
        let local = self.new_port(me);
        self.channels.insert(
            (me, local),
            Channel {
                dom: me,
                peer: Some((dom, remote_port)),
            },
        );
        self.channels.insert(
            (dom, remote_port),
            Channel {
                dom,
                peer: Some((me, local)),
            },
        );
        Ok(local)
    }

    fn evtchn_notify(&mut self, port: Port) {
        self.counters.notifies += 1;
        let me = self.me;
        self.guest_notify(me, port);
    }

    fn evtchn_unmask(&mut self, _port: Port) {
        self.counters.unmasks += 1;
    }

    fn evtchn_close(&mut self, port: Port) {
        let me = self.me;
        if let Some(c) = self.channels.remove(&(me, port))
            && let Some((pd, pp)) = c.peer
            && let Some(r) = self.channels.get_mut(&(pd, pp))
        {
            r.peer = None;
        }
    }

    fn evtchn_take_pending(&mut self, out: &mut Vec<Port>) {
        let me = self.me;
        out.extend(self.take_pending_of(me));
    }

    fn grant_map(
        &mut self,
        dom: DomId,
        grefs: &[u32],
        readonly: bool,
        out: &mut Vec<Result<Mapping, i16>>,
    ) -> Result<(), HvError> {
        self.counters.map_calls += 1;
        self.counters.map_ops += grefs.len() as u64;
        out.clear();
        for &gref in grefs {
            let r = match self.resolve_bus(
                CopyPtr::Grant {
                    dom,
                    gref,
                    offset: 0,
                },
                PAGE,
                !readonly,
            ) {
                Ok((mem, _, bus)) => {
                    let handle = self.next_handle;
                    self.next_handle += 1;
                    self.maps.insert(handle, (dom, gref));
                    Ok(Mapping { handle, mem, bus })
                }
                Err(s) => Err(s),
            };
            out.push(r);
        }
        Ok(())
    }

    fn grant_unmap(&mut self, handles: &[u32]) -> Result<(), HvError> {
        self.counters.unmap_calls += 1;
        self.counters.unmap_ops += handles.len() as u64;
        for h in handles {
            if self.maps.remove(h).is_none() {
                return Err(HvError::Grant(-22));
            }
        }
        Ok(())
    }

    fn grant_copy(&mut self, ops: &mut [CopyOp]) -> Result<(), HvError> {
        self.counters.copy_calls += 1;
        self.counters.copy_ops += ops.len() as u64;
        for op in ops.iter_mut() {
            let len = usize::from(op.len);
            let r = self
                .resolve(op.src, len, false)
                .and_then(|s| self.resolve(op.dst, len, true).map(|d| (s, d)));
            op.status = match r {
                Ok(((sm, so), (dm, dof))) => {
                    copy_bytes(&mut self.scratch, sm, so, dm, dof, len);
                    GNTST_OKAY
                }
                Err(s) => {
                    self.counters.copy_failures += 1;
                    s
                }
            };
        }
        Ok(())
    }

    fn now_ns(&mut self) -> u64 {
        self.clock_ns
    }

    fn alloc_local(&mut self, pages: usize) -> Result<LocalRegion, HvError> {
        if pages == 0 {
            return Err(HvError::NoMemory);
        }
        // A freed region of the same size is reused (zeroed), so a core that returns its
        // regions keeps the simulator's memory flat.
        let mem = match self.freed.iter().position(|m| m.len() == pages * PAGE) {
            Some(i) => {
                let m = self.freed.swap_remove(i);
                m.zero(0, m.len());
                m
            }
            None => leak_pages(pages),
        };
        self.local_pages += pages;
        let id = match self.regions.iter().position(Option::is_none) {
            Some(i) => {
                self.regions[i] = Some(mem);
                i
            }
            None => {
                self.regions.push(Some(mem));
                self.regions.len() - 1
            }
        };
        Ok(LocalRegion { id: id as u32, mem })
    }

    fn free_local(&mut self, region: LocalRegion) {
        if let Some(slot) = self.regions.get_mut(region.id as usize)
            && let Some(mem) = slot.take()
        {
            self.local_pages -= mem.len() / PAGE;
            self.freed.push(mem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_checks_grants_and_bounds() {
        let mut hv = SimHypervisor::new(1);
        hv.add_domain(5);
        let (f, page) = hv.alloc_page(5);
        write_bytes(page, 3, b"hello");
        let g = hv.grant(5, f, 1, true);
        let local = hv.alloc_local(1).unwrap();
        let src = CopyPtr::Grant {
            dom: 5,
            gref: g,
            offset: 3,
        };
        let dst = CopyPtr::Local {
            region: local.id,
            offset: 7,
        };
        let mut ops = [
            CopyOp::new(src, dst, 5),
            // Writing through a read-only grant.
            CopyOp::new(dst, src, 5),
            // Past the page end.
            CopyOp::new(
                CopyPtr::Grant {
                    dom: 5,
                    gref: g,
                    offset: 4095,
                },
                dst,
                2,
            ),
            // A reference never granted.
            CopyOp::new(
                CopyPtr::Grant {
                    dom: 5,
                    gref: 99,
                    offset: 0,
                },
                dst,
                2,
            ),
        ];
        hv.grant_copy(&mut ops).unwrap();
        let st: Vec<i16> = ops.iter().map(|o| o.status).collect();
        assert_eq!(
            st,
            [
                GNTST_OKAY,
                GNTST_PERMISSION_DENIED,
                GNTST_BAD_COPY_ARG,
                GNTST_BAD_GNTREF
            ]
        );
        let mut got = [0u8; 5];
        read_bytes(local.mem, 7, &mut got);
        assert_eq!(&got, b"hello");
        assert_eq!(hv.counters.copy_calls, 1);
        assert_eq!(hv.counters.copy_ops, 4);
        assert_eq!(hv.counters.copy_failures, 3);
    }

    #[test]
    fn watches_fire_for_subtree_and_directory_lists_children() {
        let mut hv = SimHypervisor::new(1);
        hv.xs_watch("/a/b", "t").unwrap();
        assert_eq!(hv.xs_poll_watch().unwrap().unwrap().path, "/a/b");
        hv.store_write("/a/b/c/d", b"1");
        hv.store_write("/a/bc", b"1");
        hv.store_write("/a/b/e", b"2");
        let ev: Vec<String> = core::iter::from_fn(|| hv.xs_poll_watch().unwrap())
            .map(|e| e.path)
            .collect();
        assert_eq!(ev, ["/a/b/c/d", "/a/b/e"]);
        assert_eq!(hv.xs_directory("/a/b").unwrap(), ["c", "e"]);
        hv.xs_rm("/a/b/c").unwrap();
        assert_eq!(hv.xs_directory("/a/b").unwrap(), ["e"]);
        assert!(hv.xs_read("/a/b/c/d").is_err());
    }

    #[test]
    fn event_channels_pair_up_once() {
        let mut hv = SimHypervisor::new(1);
        hv.add_domain(5);
        let gp = hv.alloc_unbound(5);
        let lp = hv.evtchn_bind(5, gp).unwrap();
        assert!(hv.evtchn_bind(5, gp).is_err(), "a port binds once");
        hv.guest_notify(5, gp);
        let mut p = Vec::new();
        hv.evtchn_take_pending(&mut p);
        assert_eq!(p, [lp]);
        hv.evtchn_notify(lp);
        assert_eq!(hv.take_pending_of(5), [gp]);
        hv.evtchn_close(lp);
        assert!(!hv.is_bound(5, gp));
    }
}
