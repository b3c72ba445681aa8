//! The Xen self-test: netback's first real use of the Xen gateway, run when the kernel command
//! line says `nc2dd.netback.xen-selftest=1` (the nested test bed does).
//!
//! Steps, each logged so the bed can follow them:
//! 1. attach to xenstore, read our domain id and home path;
//! 2. write a key under `<home>/data/` and read it back;
//! 3. watch another key, see the watch fire when set and again after writing the key;
//! 4. grant dom0 one page holding [`PATTERN`], allocate an event channel for dom0, publish both
//!    as `<home>/data/nc2dd-gref` and `nc2dd-port`;
//! 5. wait until the peer in dom0 has written [`REPLY`] at [`REPLY_OFFSET`] and notified us,
//!    send an event back, end the grant once the peer let go, close the port;
//! 6. the other direction: wait (watch) for the page and unbound port the peer publishes as
//!    `<home>/data/peer-gref` and `peer-port`; map the grant into the grant window (batched map),
//!    check [`PEER_PATTERN`], write [`MAPPED_WRITE`] at [`MAPPED_WRITE_OFFSET`] through the
//!    mapping and read its bus address (`xen_grant_bus`), copy the pattern out and
//!    [`COPY_WRITE`] in at [`COPY_WRITE_OFFSET`] with one batched grant copy, unmap, then bind to
//!    the peer's port and notify it.
//!
//! With `nc2dd.netback.xen-restart=1` generation 0 stops on purpose after step 4, so the kernel
//! must release its port and grant, and generation 1 runs the self-test again.
//!
//! Everything the peer writes is read once into a local buffer before it is compared.

use alloc::format;
use alloc::string::String;
use core::alloc::Layout;
use nc2dd_abi::system_table::NO_BIT;
use userland::syscall::{
    self, XEN_COPY_GRANT, XEN_COPY_LOCAL, XEN_EBUSY, XEN_ENODEV, XenCopySegment, XenCopySide,
    XenMapRequest,
};
use userland::xenstore::client::NO_TX;
use userland::xenstore::{Error, XsErrno};

/// What netback writes at the start of the granted page.
pub const PATTERN: &[u8] = b"nc2dd grant pattern 0123456789";
/// What the peer writes back, and where.
pub const REPLY: &[u8] = b"nc2dd peer reply";
pub const REPLY_OFFSET: usize = 2048;
/// What the peer's own granted page starts with.
pub const PEER_PATTERN: &[u8] = b"dom0 grant pattern";
/// Written through our mapping of the peer's page.
pub const MAPPED_WRITE: &[u8] = b"nc2dd mapped write";
pub const MAPPED_WRITE_OFFSET: usize = 512;
/// Written into the peer's page with a grant copy.
pub const COPY_WRITE: &[u8] = b"nc2dd grant copy";
pub const COPY_WRITE_OFFSET: u16 = 1024;
/// How long the peer has to answer.
const PEER_DEADLINE_MS: u64 = 180_000;
/// How long the peer has to unmap the page after our event.
const RELEASE_DEADLINE_MS: u64 = 60_000;
const PAGE: usize = 4096;

fn log(s: &str) {
    log::info!("xen self-test: {s}");
}

/// A page of this task's heap, zeroed, page aligned, never freed (a grant may outlive us).
fn granted_page() -> Result<*mut u8, String> {
    let layout = Layout::from_size_align(PAGE, PAGE).map_err(|e| format!("{e}"))?;
    // SAFETY: a non-zero size layout.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return Err("no heap page for the grant".into());
    }
    Ok(p)
}

fn read_page(page: *const u8, off: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: `off + i` stays within the page (callers pass in-page ranges); volatile
        // because dom0 writes the page behind the compiler's back.
        *b = unsafe { core::ptr::read_volatile(page.add(off + i)) };
    }
}

/// A page-aligned heap page holding `bytes` at its start.
fn page_with(bytes: &[u8]) -> Result<*mut u8, String> {
    let p = granted_page()?;
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: within the page we own.
        unsafe { core::ptr::write_volatile(p.add(i), b) };
    }
    Ok(p)
}

fn local_side(va: *const u8) -> XenCopySide {
    XenCopySide {
        kind: XEN_COPY_LOCAL,
        vaddr: va as u64,
        ..XenCopySide::default()
    }
}

fn grant_side(domid: u16, gref: u32, offset: u16) -> XenCopySide {
    XenCopySide {
        kind: XEN_COPY_GRANT,
        domid,
        gref,
        offset,
        ..XenCopySide::default()
    }
}

/// Waits (watching `key`) until the peer has written it; returns its value as a number.
fn wait_for_key(xs: &mut Xs, key: &str) -> Result<u32, String> {
    let start = syscall::uptime_ms();
    xs.watch(key, "nc2dd-peer")
        .map_err(|e| format!("watch {key}: {e}"))?;
    let value = loop {
        match xs.read_string(NO_TX, key) {
            Ok(v) => break v,
            Err(Error::Xs(XsErrno::ENOENT)) => {}
            Err(e) => return Err(format!("reading {key}: {e}")),
        }
        if syscall::uptime_ms().saturating_sub(start) > PEER_DEADLINE_MS {
            return Err(format!("the peer did not write {key}"));
        }
        // A quiet xenstore ends the wait with a transport error: just look again.
        let _ = xs.next_watch_event();
    };
    xs.unwatch(key, "nc2dd-peer")
        .map_err(|e| format!("unwatch {key}: {e}"))?;
    value
        .trim()
        .parse()
        .map_err(|_| format!("{key} holds {value:?}, not a number"))
}

/// Step 6: the peer's grant and port.
fn peer_grant(xs: &mut Xs, home: &str, timer_mask: u64) -> Result<(), String> {
    let gref = wait_for_key(xs, &format!("{home}/data/peer-gref"))?;
    let port = wait_for_key(xs, &format!("{home}/data/peer-port"))?;
    log(&format!("dom0 granted ref {gref} and offers port {port}"));

    let mut out = [0i64; 1];
    syscall::xen_grant_map(
        &[XenMapRequest {
            gref,
            domid: 0,
            readonly: 0,
        }],
        &mut out,
    )
    .map_err(|e| format!("grant map: errno {e}"))?;
    if out[0] < 0 {
        return Err(format!("grant map of ref {gref}: status {}", out[0]));
    }
    let mapped = out[0] as u64 as *mut u8;
    let mut head = [0u8; PEER_PATTERN.len()];
    read_page(mapped, 0, &mut head);
    if head != PEER_PATTERN {
        return Err(format!("dom0's page starts with {head:?}"));
    }
    for (i, &b) in MAPPED_WRITE.iter().enumerate() {
        // SAFETY: the window page is mapped writable while the mapping lives; in bounds.
        unsafe { core::ptr::write_volatile(mapped.add(MAPPED_WRITE_OFFSET + i), b) };
    }
    log(&format!(
        "mapped dom0's ref {gref} at {mapped:p}: pattern found, wrote through the mapping"
    ));
    // Where a device would reach the mapped page (netchannel2 posted buffers go to the NIC so).
    let bus = syscall::xen_grant_bus(mapped as u64)
        .map_err(|e| format!("bus address of the mapping: errno {e}"))?;
    if bus == 0 || !bus.is_multiple_of(4096) {
        return Err(format!("bus address of the mapping: {bus:#x}"));
    }
    log(&format!("the mapping's bus address is {bus:#x}"));

    let into = granted_page()?;
    let from = page_with(COPY_WRITE)?;
    let segs = [
        XenCopySegment {
            src: grant_side(0, gref, 0),
            dst: local_side(into),
            len: PEER_PATTERN.len() as u16,
            ..XenCopySegment::default()
        },
        XenCopySegment {
            src: local_side(from),
            dst: grant_side(0, gref, COPY_WRITE_OFFSET),
            len: COPY_WRITE.len() as u16,
            ..XenCopySegment::default()
        },
    ];
    let mut st = [0i64; 2];
    syscall::xen_grant_copy(&segs, &mut st).map_err(|e| format!("grant copy: errno {e}"))?;
    if st != [0, 0] {
        return Err(format!("grant copy statuses {st:?}"));
    }
    read_page(into, 0, &mut head);
    if head != PEER_PATTERN {
        return Err(format!("grant copy brought {head:?}"));
    }
    let mut st = [0i64; 1];
    syscall::xen_grant_unmap(&[mapped as u64], &mut st)
        .map_err(|e| format!("grant unmap: errno {e}"))?;
    if st[0] != 0 {
        return Err(format!("grant unmap status {}", st[0]));
    }
    log("copied dom0's pattern out and our bytes in with one batched copy; unmapped");

    let local = syscall::xen_evtchn_bind_interdomain(0, port)
        .map_err(|e| format!("binding dom0's port {port}: errno {e}"))?;
    syscall::xen_evtchn_unmask(local).map_err(|e| format!("unmask {local}: errno {e}"))?;
    syscall::xen_evtchn_send(local).map_err(|e| format!("send on {local}: errno {e}"))?;
    log(&format!(
        "bound dom0's port {port} as {local} and notified it"
    ));
    // Give the peer a moment to take the event before the channel goes away.
    syscall::set_timer(500);
    syscall::wait(timer_mask);
    syscall::xen_evtchn_close(local).map_err(|e| format!("closing {local}: errno {e}"))?;
    Ok(())
}

/// Without Xen (bare QEMU) every gateway call must answer ENODEV, never fault.
fn no_hypervisor() -> Result<(), String> {
    let page = granted_page()?;
    let calls = [
        (
            "alloc_unbound",
            syscall::xen_evtchn_alloc_unbound(0).map(|_| ()),
        ),
        (
            "grant_access",
            syscall::xen_grant_access(page, 0, false).map(|_| ()),
        ),
        ("grant_map", {
            let mut out = [0i64; 1];
            syscall::xen_grant_map(&[XenMapRequest::default()], &mut out)
        }),
        (
            "grant_bus",
            syscall::xen_grant_bus(syscall::XEN_GRANT_WINDOW_BASE).map(|_| ()),
        ),
    ];
    for (name, r) in calls {
        if r != Err(XEN_ENODEV) {
            return Err(format!("without Xen, {name} answered {r:?}"));
        }
    }
    log("no hypervisor: the gateway answers ENODEV");
    Ok(())
}

type Xs = userland::xenstore::Client<userland::xen::GatewayTransport>;

pub fn run() -> Result<(), String> {
    let info = userland::info();
    if info.xen_event_bit == NO_BIT {
        return Err("this task has no Xen rights".into());
    }
    let xen_mask = 1u64 << info.xen_event_bit;
    let timer = (info.timer_bit != NO_BIT).then_some(info.timer_bit);
    let Some(timer_bit) = timer else {
        return Err("the self-test needs a timer bit for its deadlines".into());
    };
    let timer_mask = 1u64 << timer_bit;
    let mut xs = match userland::xen::xenstore(info.xen_event_bit, timer, 20_000) {
        Ok(xs) => xs,
        Err(XEN_ENODEV) => return no_hypervisor(),
        Err(e) => return Err(format!("attaching to xenstore: errno {e}")),
    };
    let xe = |what: &str, e: userland::xenstore::Error| format!("{what}: {e}");

    let domid = xs.read_domid().map_err(|e| xe("reading domid", e))?;
    let home = xs
        .get_domain_path(domid)
        .map_err(|e| xe("GET_DOMAIN_PATH", e))?;
    log(&format!("domain id {domid}, home {home}"));

    let key = format!("{home}/data/nc2dd-selftest");
    let value = format!("written by nc2dd domain {domid}");
    xs.write(NO_TX, &key, value.as_bytes())
        .map_err(|e| xe("write", e))?;
    let back = xs.read(NO_TX, &key).map_err(|e| xe("read back", e))?;
    if back != value.as_bytes() {
        return Err(format!("{key} read back as {back:?}"));
    }
    log(&format!("wrote and read back {key}"));

    let watched = format!("{home}/data/nc2dd-watched");
    xs.watch(&watched, "nc2dd-selftest")
        .map_err(|e| xe("watch", e))?;
    // The watch fires once when set, then for the write.
    for round in ["set", "write"] {
        if round == "write" {
            xs.write(NO_TX, &watched, b"1")
                .map_err(|e| xe("write watched key", e))?;
        }
        let ev = xs
            .next_watch_event()
            .map_err(|e| xe("waiting for the watch", e))?;
        if ev.path != watched || ev.token != "nc2dd-selftest" {
            return Err(format!("unexpected watch event {ev:?}"));
        }
        log(&format!("watch on {watched} fired ({round})"));
    }
    xs.unwatch(&watched, "nc2dd-selftest")
        .map_err(|e| xe("unwatch", e))?;

    let page = granted_page()?;
    for (i, &b) in PATTERN.iter().enumerate() {
        // SAFETY: within the page we own; volatile because dom0 will read it.
        unsafe { core::ptr::write_volatile(page.add(i), b) };
    }
    let gref = syscall::xen_grant_access(page, 0, false)
        .map_err(|e| format!("granting the page: errno {e}"))?;
    let port = syscall::xen_evtchn_alloc_unbound(0)
        .map_err(|e| format!("allocating an event channel: errno {e}"))?;
    for (k, v) in [("nc2dd-gref", gref), ("nc2dd-port", port)] {
        xs.write(
            NO_TX,
            &format!("{home}/data/{k}"),
            format!("{v}").as_bytes(),
        )
        .map_err(|e| xe("publishing", e))?;
    }
    log(&format!(
        "granted a page to dom0 as ref {gref}, event channel port {port}; waiting for the peer"
    ));

    if info.arg("xen-restart") == Some("1") && info.generation == 0 {
        // Proves the kernel releases the port and the grant of a restarted task: the next
        // generation runs the whole self-test again.
        log("stopping on purpose (generation 0) with a grant and a port held");
        syscall::panic_exit("netback: deliberate stop for the restart test");
    }
    // Wake-ups left over from the xenstore traffic above are not the peer's.
    syscall::poll(xen_mask);
    let start = syscall::uptime_ms();
    let mut reply = [0u8; REPLY.len()];
    let mut events = 0u32;
    loop {
        read_page(page, REPLY_OFFSET, &mut reply);
        if reply == REPLY && events > 0 {
            break;
        }
        if syscall::uptime_ms().saturating_sub(start) > PEER_DEADLINE_MS {
            return Err(format!(
                "no reply and event from the peer in {} s (reply {:?}, {events} events)",
                PEER_DEADLINE_MS / 1000,
                &reply
            ));
        }
        syscall::set_timer(1000);
        let got = syscall::wait(xen_mask | timer_mask);
        syscall::set_timer(0);
        if got & xen_mask != 0 {
            events += 1;
        }
    }
    let waited = syscall::uptime_ms().saturating_sub(start);
    log(&format!(
        "peer replied {:?} and notified us ({events} events, {waited} ms after publishing)",
        core::str::from_utf8(&reply).unwrap_or("?")
    ));

    syscall::xen_evtchn_send(port).map_err(|e| format!("notifying the peer: errno {e}"))?;
    let start = syscall::uptime_ms();
    loop {
        match syscall::xen_grant_end(gref) {
            Ok(()) => break,
            Err(XEN_EBUSY) if syscall::uptime_ms().saturating_sub(start) < RELEASE_DEADLINE_MS => {
                syscall::set_timer(100);
                syscall::wait(timer_mask);
            }
            Err(e) => return Err(format!("ending grant {gref}: errno {e}")),
        }
    }
    syscall::xen_evtchn_close(port).map_err(|e| format!("closing port {port}: errno {e}"))?;
    log("grant ended and port closed");
    peer_grant(&mut xs, &home, timer_mask)?;
    log::info!("xen self-test passed");
    Ok(())
}
