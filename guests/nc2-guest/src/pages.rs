//! Pages the task grants to the driver domain. Each is a page-aligned, zeroed heap page that is
//! never freed (a grant may outlive its use: the backend could still map it), so a
//! [`SharedMem`] over it may live for `'static`.

use alloc::format;
use alloc::string::String;
use core::alloc::Layout;
use core::ptr::NonNull;

use libnc2::shm::SharedMem;
use userland::syscall;

pub const PAGE: usize = 4096;

/// One of our pages, granted to one domain.
#[derive(Clone, Copy, Debug)]
pub struct Granted {
    pub ptr: NonNull<u8>,
    pub gref: u32,
}

pub fn page() -> Result<NonNull<u8>, String> {
    let layout = Layout::from_size_align(PAGE, PAGE).map_err(|e| format!("{e}"))?;
    // SAFETY: a layout of non-zero size.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    NonNull::new(p).ok_or_else(|| "out of heap for a page".into())
}

/// A fresh page granted to `domid`.
pub fn granted(domid: u16, readonly: bool) -> Result<Granted, String> {
    let ptr = page()?;
    let gref = syscall::xen_grant_access(ptr.as_ptr(), domid, readonly)
        .map_err(|e| format!("granting a page to domain {domid}: errno {e}"))?;
    Ok(Granted { ptr, gref })
}

/// The page as shared memory (the backend writes it concurrently).
pub fn shared(p: NonNull<u8>) -> SharedMem<'static> {
    // SAFETY: the page is page-aligned, PAGE bytes, and never freed (see the module header);
    // all our accesses through SharedMem are atomic.
    unsafe { SharedMem::from_raw(p, PAGE) }
}

/// Copies `len` bytes at `off` of a page the backend may write (bounds checked: the caller's
/// values come from the backend).
pub fn read(p: NonNull<u8>, off: usize, len: usize, out: &mut alloc::vec::Vec<u8>) -> bool {
    let Some(end) = off.checked_add(len) else {
        return false;
    };
    if end > PAGE {
        return false;
    }
    out.reserve(len);
    for i in off..end {
        // SAFETY: i < PAGE inside our page; volatile because the backend writes the page
        // behind the compiler's back.
        out.push(unsafe { core::ptr::read_volatile(p.as_ptr().add(i)) });
    }
    true
}

/// Writes `data` at the start of one of our pages (at most a page).
pub fn write(p: NonNull<u8>, data: &[u8]) -> bool {
    if data.len() > PAGE {
        return false;
    }
    for (i, &b) in data.iter().enumerate() {
        // SAFETY: i < PAGE inside our page; the backend only reads it after we publish.
        unsafe { core::ptr::write_volatile(p.as_ptr().add(i), b) };
    }
    true
}
