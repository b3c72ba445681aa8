//! `xenpeer DOMID GREF PORT`: the dom0 end of nc2dd's Xen self-test, run inside the nested bed.
//!
//! Maps grant `GREF` of domain `DOMID` through Linux's `/dev/xen/gntdev`, checks the pattern
//! netback wrote at its start, writes the reply at offset 2048, binds `PORT` of `DOMID` through
//! `/dev/xen/evtchn` and notifies it, then waits (bounded) for netback's event back and unmaps.
//! Prints `XENPEER_OK` on success; any failure prints `XENPEER_FAILED: <why>` and exits 1.
//!
//! Only Linux's ioctl ABI is used (numbers from `include/uapi/xen/gntdev.h` and `evtchn.h`:
//! `_IOC(_IOC_NONE, type, nr, size)`), through glibc's `ioctl`, `mmap`, `munmap` and `poll`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const PATTERN: &[u8] = b"nc2dd grant pattern 0123456789";
const REPLY: &[u8] = b"nc2dd peer reply";
const REPLY_OFFSET: usize = 2048;
const PAGE: usize = 4096;
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

    let mut pfd = PollFd {
        fd: evt.as_raw_fd(),
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { poll(&raw mut pfd, 1, EVENT_TIMEOUT_MS) };
    if n != 1 {
        return Err(if n == 0 {
            format!(
                "no event back from domain {domid} in {} s",
                EVENT_TIMEOUT_MS / 1000
            )
        } else {
            os_err("poll")
        });
    }
    let mut fired = [0u8; 4];
    evt.read_exact(&mut fired)
        .map_err(|e| format!("reading the fired port: {e}"))?;
    let fired = u32::from_ne_bytes(fired);
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
    Ok(())
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
