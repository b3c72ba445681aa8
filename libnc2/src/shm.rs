//! Shared memory access: the only place that touches peer-writable memory.
//!
//! A [`SharedMem`] is a bounds-checked window onto memory that a peer may
//! write at any time. No `&T` to plain data ever points into it: every access
//! is an atomic load or store of an aligned `u32`/`u64`, so a concurrent
//! (possibly hostile) writer is a well-defined race, never undefined
//! behaviour. Callers copy what they need into private memory once and then
//! validate the copy.
//!
//! Invariants: the base is 8-byte aligned and the length a multiple of 8.
//! Offsets passed to the accessors are computed by this crate from masked
//! indices, never taken from the peer; an out-of-range offset is a bug in
//! this crate and panics rather than reading out of bounds.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A window onto shared memory, valid for lifetime `'a`.
#[derive(Clone, Copy, Debug)]
pub struct SharedMem<'a> {
    base: NonNull<u8>,
    len: usize,
    _life: PhantomData<&'a [AtomicU64]>,
}

// SAFETY: all accesses through SharedMem are atomic, so sharing the window
// between threads cannot create a data race.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as for Send: every access is atomic.
unsafe impl Sync for SharedMem<'_> {}

impl<'a> SharedMem<'a> {
    /// Wraps raw shared memory (e.g. a mapped grant or a channel region).
    ///
    /// # Safety
    /// `base` must be 8-byte aligned, `len` a multiple of 8, and the range
    /// `base..base+len` must stay mapped, readable and writable for `'a`.
    /// Other parties may write it concurrently, but only through atomic or
    /// hardware accesses (a peer domain, a device, or another `SharedMem`).
    pub unsafe fn from_raw(base: NonNull<u8>, len: usize) -> Self {
        assert!(
            (base.as_ptr() as usize).is_multiple_of(8),
            "shared memory must be 8-byte aligned"
        );
        assert!(
            len.is_multiple_of(8),
            "shared memory length must be a multiple of 8"
        );
        SharedMem {
            base,
            len,
            _life: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-window `off..off+len`, or `None` if it does not fit or is not
    /// 8-byte aligned.
    pub fn sub(&self, off: usize, len: usize) -> Option<SharedMem<'a>> {
        let end = off.checked_add(len)?;
        if end > self.len || !off.is_multiple_of(8) || !len.is_multiple_of(8) {
            return None;
        }
        // SAFETY: off <= self.len, so the pointer stays inside (or one past)
        // the original allocation and is non-null.
        let base = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off)) };
        Some(SharedMem {
            base,
            len,
            _life: PhantomData,
        })
    }

    fn check(&self, off: usize, size: usize, align: usize) {
        assert!(
            off.is_multiple_of(align) && off.checked_add(size).is_some_and(|e| e <= self.len),
            "shared memory access out of range: off {off} size {size} len {}",
            self.len
        );
    }

    fn u32_cell(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: in range and 4-aligned (checked above; base is 8-aligned);
        // the memory is valid for 'a per from_raw's contract and only ever
        // accessed atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off).cast::<u32>()) }
    }

    fn u64_cell(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: in range and 8-aligned (checked above); valid for 'a and
        // only ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast::<u64>()) }
    }

    /// Atomic load of the `u32` at `off` (4-aligned).
    #[inline]
    pub fn load_u32(&self, off: usize, order: Ordering) -> u32 {
        self.u32_cell(off).load(order)
    }

    /// Atomic store of a `u32` at `off` (4-aligned).
    #[inline]
    pub fn store_u32(&self, off: usize, val: u32, order: Ordering) {
        self.u32_cell(off).store(val, order)
    }

    /// Atomic load of the `u64` at `off` (8-aligned).
    #[inline]
    pub fn load_u64(&self, off: usize, order: Ordering) -> u64 {
        self.u64_cell(off).load(order)
    }

    /// Atomic store of a `u64` at `off` (8-aligned).
    #[inline]
    pub fn store_u64(&self, off: usize, val: u64, order: Ordering) {
        self.u64_cell(off).store(val, order)
    }

    /// Copies `dst.len()` bytes from `off` into private memory, each word
    /// read exactly once (relaxed). `off` and `dst.len()` must be multiples
    /// of 4; 8-byte words are used where the alignment allows.
    #[inline]
    pub fn read_into(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len(), 4);
        assert!(
            dst.len().is_multiple_of(4),
            "shared memory copies are whole words"
        );
        let mut pos = 0;
        if !off.is_multiple_of(8) && !dst.is_empty() {
            let w = self.load_u32(off, Ordering::Relaxed);
            dst[..4].copy_from_slice(&w.to_ne_bytes());
            pos = 4;
        }
        let words = (dst.len() - pos) / 8;
        for i in 0..words {
            let w = self.load_u64(off + pos + i * 8, Ordering::Relaxed);
            dst[pos + i * 8..pos + i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        pos += words * 8;
        if pos < dst.len() {
            let w = self.load_u32(off + pos, Ordering::Relaxed);
            dst[pos..pos + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }

    /// Copies `src` into shared memory at `off` (relaxed word stores).
    /// Same alignment rules as [`SharedMem::read_into`].
    #[inline]
    pub fn write_from(&self, off: usize, src: &[u8]) {
        self.check(off, src.len(), 4);
        assert!(
            src.len().is_multiple_of(4),
            "shared memory copies are whole words"
        );
        let mut pos = 0;
        if !off.is_multiple_of(8) && !src.is_empty() {
            let w = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
            self.store_u32(off, w, Ordering::Relaxed);
            pos = 4;
        }
        let words = (src.len() - pos) / 8;
        for i in 0..words {
            let b = &src[pos + i * 8..pos + i * 8 + 8];
            let w = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            self.store_u64(off + pos + i * 8, w, Ordering::Relaxed);
        }
        pos += words * 8;
        if pos < src.len() {
            let b = &src[pos..pos + 4];
            self.store_u32(
                off + pos,
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::Relaxed,
            );
        }
    }

    /// Reads one byte (through the containing aligned word).
    pub fn read_u8(&self, off: usize) -> u8 {
        let w = self.load_u32(off & !3, Ordering::Relaxed).to_ne_bytes();
        w[off & 3]
    }

    /// Fills `off..off+len` with zeros (both multiples of 4).
    pub fn zero(&self, off: usize, len: usize) {
        self.check(off, len, 4);
        let mut p = off;
        while p < off + len {
            self.store_u32(p, 0, Ordering::Relaxed);
            p += 4;
        }
    }
}

/// Heap-backed shared memory for host tests, benchmarks and simulations:
/// ordinary pages that two threads can share through [`SharedMem`] windows.
pub struct OwnedRegion {
    words: Box<[AtomicU64]>,
}

impl OwnedRegion {
    /// A zeroed region of `len` bytes (rounded up to a multiple of 8).
    pub fn new(len: usize) -> Self {
        let n = len.div_ceil(8);
        let mut v = Vec::with_capacity(n);
        v.resize_with(n, || AtomicU64::new(0));
        OwnedRegion {
            words: v.into_boxed_slice(),
        }
    }

    /// A window over the whole region.
    pub fn mem(&self) -> SharedMem<'_> {
        let len = self.words.len() * 8;
        let base = NonNull::from(&self.words[..]).cast::<u8>();
        // SAFETY: the boxed slice of AtomicU64 is 8-aligned, `len` bytes long,
        // lives as long as the returned borrow of self, and is only accessed
        // atomically.
        unsafe { SharedMem::from_raw(base, len) }
    }
}
