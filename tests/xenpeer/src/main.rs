//! `xenpeer DOMID GREF PORT`: the dom0 end of nc2dd's Xen self-test, run inside the nested bed.
//!
//! Maps grant `GREF` of domain `DOMID` through Linux's `/dev/xen/gntdev`, checks the pattern
//! netback wrote at its start, writes the reply at offset 2048, binds `PORT` of `DOMID` through
//! `/dev/xen/evtchn` and notifies it, then waits (bounded) for netback's event back and unmaps.
//!
//! Then the other direction: allocates a page granted to `DOMID` through `/dev/xen/gntalloc`
//! holding its own pattern and an unbound port for `DOMID`, publishes both with `xenstore-write`
//! under `/local/domain/DOMID/data/peer-gref` and `peer-port`, waits for nc2dd's event on that
//! port, and checks what nc2dd wrote into the page through its mapping and with a grant copy.
//!
//! Prints `XENPEER_OK` on success; any failure prints `XENPEER_FAILED: <why>` and exits 1.
//!
//! Only Linux's ioctl ABI is used (numbers from `include/uapi/xen/gntdev.h` and `evtchn.h`:
//! `_IOC(_IOC_NONE, type, nr, size)`), through glibc's `ioctl`, `mmap`, `munmap` and `poll`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::time::Instant;

const PATTERN: &[u8] = b"nc2dd grant pattern 0123456789";
const REPLY: &[u8] = b"nc2dd peer reply";
const REPLY_OFFSET: usize = 2048;
const PAGE: usize = 4096;
const PEER_PATTERN: &[u8] = b"dom0 grant pattern";
const MAPPED_WRITE: &[u8] = b"nc2dd mapped write";
const MAPPED_WRITE_OFFSET: usize = 512;
const COPY_WRITE: &[u8] = b"nc2dd grant copy";
const COPY_WRITE_OFFSET: usize = 1024;
/// How long to wait for netback's event back.
const EVENT_TIMEOUT_MS: i32 = 60_000;

const fn ioc_none(ty: u8, nr: u8, size: usize) -> u64 {
    ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

#[repr(C)]
struct GntdevMapGrantRef {
    count: u32,
    pad: u32,
    /// Out: the mmap offset of the mapping.
    index: u64,
    domid: u32,
    gref: u32,
}

#[repr(C)]
struct GntdevUnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

#[repr(C)]
struct GntallocAllocGref {
    domid: u16,
    flags: u16,
    count: u32,
    /// Out: the mmap offset.
    index: u64,
    /// Out: the grant reference.
    gref: u32,
}

#[repr(C)]
struct GntallocDeallocGref {
    index: u64,
    count: u32,
}

#[repr(C)]
struct EvtchnBindInterdomain {
    remote_domain: u32,
    remote_port: u32,
}

#[repr(C)]
struct EvtchnPort {
    port: u32,
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

const IOCTL_GNTDEV_MAP_GRANT_REF: u64 = ioc_none(b'G', 0, std::mem::size_of::<GntdevMapGrantRef>());
const IOCTL_GNTDEV_UNMAP_GRANT_REF: u64 =
    ioc_none(b'G', 1, std::mem::size_of::<GntdevUnmapGrantRef>());
const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 =
    ioc_none(b'E', 1, std::mem::size_of::<EvtchnBindInterdomain>());
const IOCTL_GNTALLOC_ALLOC_GREF: u64 = ioc_none(b'G', 5, std::mem::size_of::<GntallocAllocGref>());
const IOCTL_GNTALLOC_DEALLOC_GREF: u64 =
    ioc_none(b'G', 6, std::mem::size_of::<GntallocDeallocGref>());
const GNTALLOC_FLAG_WRITABLE: u16 = 1;
const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 = ioc_none(b'E', 2, std::mem::size_of::<EvtchnPort>());
const IOCTL_EVTCHN_UNBIND: u64 = ioc_none(b'E', 3, std::mem::size_of::<EvtchnPort>());
const IOCTL_EVTCHN_NOTIFY: u64 = ioc_none(b'E', 4, std::mem::size_of::<EvtchnPort>());

const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_SHARED: i32 = 1;
const POLLIN: i16 = 1;

unsafe extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    fn munmap(addr: *mut u8, len: usize) -> i32;
    fn poll(fds: *mut PollFd, n: u64, timeout: i32) -> i32;
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn open(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {path}: {e}"))
}

/// Waits up to `ms` for an event on `evt`; returns the local port that fired (unmasked again).
fn wait_event(evt: &mut File, ms: i32, what: &str) -> Result<u32, String> {
    let mut pfd = PollFd {
        fd: evt.as_raw_fd(),
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { poll(&raw mut pfd, 1, ms) };
    if n != 1 {
        return Err(if n == 0 {
            format!("no {what} in {} s", ms / 1000)
        } else {
            os_err("poll")
        });
    }
    let mut fired = [0u8; 4];
    evt.read_exact(&mut fired)
        .map_err(|e| format!("reading the fired port: {e}"))?;
    // Writing the port back unmasks it, as the evtchn device expects.
    evt.write_all(&fired)
        .map_err(|e| format!("unmasking the fired port: {e}"))?;
    Ok(u32::from_ne_bytes(fired))
}

fn xenstore_write(path: &str, value: &str) -> Result<(), String> {
    let st = Command::new("xenstore-write")
        .args([path, value])
        .status()
        .map_err(|e| format!("running xenstore-write: {e}"))?;
    if !st.success() {
        return Err(format!("xenstore-write {path} {value}: {st}"));
    }
    Ok(())
}

fn read_bytes(page: *const u8, off: usize, n: usize) -> Vec<u8> {
    (0..n)
        // SAFETY: callers pass in-page ranges of a live mapping; volatile: nc2dd writes it.
        .map(|i| unsafe { std::ptr::read_volatile(page.add(off + i)) })
        .collect()
}

/// The second half: our grant and our unbound port, used by nc2dd.
fn offer(domid: u32) -> Result<(), String> {
    // A fresh evtchn handle: nothing queued on the first one can be mistaken for this port's.
    let mut evt = open("/dev/xen/evtchn")?;
    let evt = &mut evt;
    let gnt = open("/dev/xen/gntalloc")?;
    let mut alloc = GntallocAllocGref {
        domid: domid as u16,
        flags: GNTALLOC_FLAG_WRITABLE,
        count: 1,
        index: 0,
        gref: 0,
    };
    // SAFETY: the argument is struct ioctl_gntalloc_alloc_gref with room for one ref.
    if unsafe { ioctl(gnt.as_raw_fd(), IOCTL_GNTALLOC_ALLOC_GREF, &raw mut alloc) } != 0 {
        return Err(os_err("IOCTL_GNTALLOC_ALLOC_GREF"));
    }
    // SAFETY: maps the page gntalloc allocated at the offset it returned; checked below.
    let page = unsafe {
        mmap(
            std::ptr::null_mut(),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            gnt.as_raw_fd(),
            alloc.index as i64,
        )
    };
    if page as isize == -1 {
        return Err(os_err("mmap of the allocated grant"));
    }
    for (i, &b) in PEER_PATTERN.iter().enumerate() {
        // SAFETY: within our mapped page.
        unsafe { std::ptr::write_volatile(page.add(i), b) };
    }
    let mut unbound = EvtchnPort { port: domid };
    // SAFETY: the argument is struct ioctl_evtchn_bind_unbound_port (remote_domain).
    let port = unsafe {
        ioctl(
            evt.as_raw_fd(),
            IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            &raw mut unbound,
        )
    };
    if port < 0 {
        return Err(os_err("IOCTL_EVTCHN_BIND_UNBOUND_PORT"));
    }
    let data = format!("/local/domain/{domid}/data");
    xenstore_write(&format!("{data}/peer-gref"), &alloc.gref.to_string())?;
    xenstore_write(&format!("{data}/peer-port"), &port.to_string())?;
    println!(
        "XENPEER: granted ref {} and unbound port {port} to domain {domid}",
        alloc.gref
    );
    // nc2dd notifies after both writes; an event without them is spurious, so wait on.
    let start = Instant::now();
    loop {
        let left = EVENT_TIMEOUT_MS.saturating_sub(start.elapsed().as_millis() as i32);
        if left <= 0 {
            return Err(format!(
                "no event with nc2dd's writes on port {port} in {} s",
                EVENT_TIMEOUT_MS / 1000
            ));
        }
        let fired = wait_event(evt, left, "event from nc2dd on the offered port")?;
        if fired != port as u32 {
            return Err(format!("event on port {fired}, expected {port}"));
        }
        let mapped = read_bytes(page, MAPPED_WRITE_OFFSET, MAPPED_WRITE.len());
        let copied = read_bytes(page, COPY_WRITE_OFFSET, COPY_WRITE.len());
        if mapped == MAPPED_WRITE && copied == COPY_WRITE {
            break;
        }
        println!(
            "XENPEER: event on port {port} before nc2dd's writes (at {MAPPED_WRITE_OFFSET} {:?}, at {COPY_WRITE_OFFSET} {:?}); waiting on",
            String::from_utf8_lossy(&mapped),
            String::from_utf8_lossy(&copied)
        );
    }
    println!(
        "XENPEER: nc2dd notified port {port}; its mapped write and grant copy are in our page"
    );
    // SAFETY: the mapping made above, unmapped once.
    if unsafe { munmap(page, PAGE) } != 0 {
        return Err(os_err("munmap"));
    }
    let mut dealloc = GntallocDeallocGref {
        index: alloc.index,
        count: 1,
    };
    // SAFETY: the argument is struct ioctl_gntalloc_dealloc_gref.
    if unsafe {
        ioctl(
            gnt.as_raw_fd(),
            IOCTL_GNTALLOC_DEALLOC_GREF,
            &raw mut dealloc,
        )
    } != 0
    {
        return Err(os_err("IOCTL_GNTALLOC_DEALLOC_GREF"));
    }
    Ok(())
}

fn run(domid: u32, gref: u32, port: u32) -> Result<(), String> {
    let gnt = open("/dev/xen/gntdev")?;
    let mut map = GntdevMapGrantRef {
        count: 1,
        pad: 0,
        index: 0,
        domid,
        gref,
    };
    // SAFETY: the argument is the kernel's struct ioctl_gntdev_map_grant_ref with one ref.
    if unsafe { ioctl(gnt.as_raw_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, &raw mut map) } != 0 {
        return Err(os_err("IOCTL_GNTDEV_MAP_GRANT_REF"));
    }
    // SAFETY: maps the granted page at the offset gntdev returned; checked below.
    let page = unsafe {
        mmap(
            std::ptr::null_mut(),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            gnt.as_raw_fd(),
            map.index as i64,
        )
    };
    if page as isize == -1 {
        return Err(os_err("mmap of the grant"));
    }
    let mut head = [0u8; PATTERN.len()];
    for (i, b) in head.iter_mut().enumerate() {
        // SAFETY: within the mapped page; volatile because the page is shared with nc2dd.
        *b = unsafe { std::ptr::read_volatile(page.add(i)) };
    }
    if head != PATTERN {
        return Err(format!(
            "the granted page starts with {:?}, not the pattern",
            String::from_utf8_lossy(&head)
        ));
    }
    println!("XENPEER: mapped grant {gref} of domain {domid}: pattern found");
    for (i, &b) in REPLY.iter().enumerate() {
        // SAFETY: within the mapped, writable page.
        unsafe { std::ptr::write_volatile(page.add(REPLY_OFFSET + i), b) };
    }

    let mut evt = open("/dev/xen/evtchn")?;
    let mut bind = EvtchnBindInterdomain {
        remote_domain: domid,
        remote_port: port,
    };
    // SAFETY: the argument is struct ioctl_evtchn_bind_interdomain.
    let local = unsafe {
        ioctl(
            evt.as_raw_fd(),
            IOCTL_EVTCHN_BIND_INTERDOMAIN,
            &raw mut bind,
        )
    };
    if local < 0 {
        return Err(os_err("IOCTL_EVTCHN_BIND_INTERDOMAIN"));
    }
    let mut notify = EvtchnPort { port: local as u32 };
    // SAFETY: the argument is struct ioctl_evtchn_notify.
    if unsafe { ioctl(evt.as_raw_fd(), IOCTL_EVTCHN_NOTIFY, &raw mut notify) } != 0 {
        return Err(os_err("IOCTL_EVTCHN_NOTIFY"));
    }
    println!("XENPEER: wrote the reply, bound port {port} as local {local} and notified");

    let fired = wait_event(&mut evt, EVENT_TIMEOUT_MS, "event back from nc2dd")?;
    if fired != local as u32 {
        return Err(format!("event on port {fired}, expected {local}"));
    }
    println!("XENPEER: event back from domain {domid} on local port {fired}");

    // SAFETY: the mapping made above, unmapped once.
    if unsafe { munmap(page, PAGE) } != 0 {
        return Err(os_err("munmap"));
    }
    let mut unmap = GntdevUnmapGrantRef {
        index: map.index,
        count: 1,
        pad: 0,
    };
    // SAFETY: the argument is struct ioctl_gntdev_unmap_grant_ref.
    if unsafe {
        ioctl(
            gnt.as_raw_fd(),
            IOCTL_GNTDEV_UNMAP_GRANT_REF,
            &raw mut unmap,
        )
    } != 0
    {
        return Err(os_err("IOCTL_GNTDEV_UNMAP_GRANT_REF"));
    }
    // SAFETY: the argument is struct ioctl_evtchn_unbind.
    if unsafe { ioctl(evt.as_raw_fd(), IOCTL_EVTCHN_UNBIND, &raw mut notify) } != 0 {
        return Err(os_err("IOCTL_EVTCHN_UNBIND"));
    }
    drop(evt);
    offer(domid)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Option<Vec<u32>> = args.iter().map(|a| a.parse().ok()).collect();
    let Some([domid, gref, port]) = nums.as_deref().and_then(|n| <[u32; 3]>::try_from(n).ok())
    else {
        eprintln!("usage: xenpeer DOMID GREF PORT");
        return ExitCode::from(2);
    };
    match run(domid, gref, port) {
        Ok(()) => {
            println!("XENPEER_OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("XENPEER_FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
