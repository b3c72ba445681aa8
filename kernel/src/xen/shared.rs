//! A 4 KiB page shared with the hypervisor, seen as 512 atomic 64-bit words.
//!
//! Owns: the only way the Xen code touches shared pages (shared info, our grant table frames).
//! Xen writes these pages concurrently, so no plain reference to their contents is ever formed:
//! every access is an atomic load, store or read-modify-write on an aligned word, which is also
//! what the hypervisor's own locked bit operations interoperate with. Byte-sized fields are
//! updated through read-modify-writes of their containing word.

use core::sync::atomic::AtomicU64;

pub const WORDS_PER_PAGE: usize = 512;

/// Atomic view of one shared page.
#[derive(Clone, Copy)]
pub struct SharedPage<'a> {
    words: &'a [AtomicU64; WORDS_PER_PAGE],
}

impl<'a> SharedPage<'a> {
    /// A view over words the caller already holds (host tests, or a page the kernel owns).
    pub fn new(words: &'a [AtomicU64; WORDS_PER_PAGE]) -> Self {
        Self { words }
    }

    /// A view over the page mapped at `va`.
    ///
    /// # Safety
    /// `va` must be 4 KiB aligned and mapped readable and writable for `'a`, and nobody in this
    /// kernel may access the page other than through atomic views.
    pub unsafe fn from_ptr(va: *mut u8) -> Self {
        // SAFETY: AtomicU64 has the size and alignment of u64, the page is aligned and mapped
        // for 'a (caller's contract), and all accesses through the view are atomic.
        let words = unsafe { &*va.cast::<[AtomicU64; WORDS_PER_PAGE]>() };
        Self { words }
    }

    /// The word at byte offset `off`. Offsets come from layout constants, so a misaligned or
    /// out-of-page one is a bug in this crate, not peer input.
    pub fn word(&self, off: usize) -> &'a AtomicU64 {
        debug_assert!(
            off.is_multiple_of(8),
            "unaligned shared word offset {off:#x}"
        );
        &self.words[off / 8]
    }

    /// The word with index `i`.
    pub fn word_at(&self, i: usize) -> &'a AtomicU64 {
        &self.words[i]
    }
}

/// A zero-filled page of atomics, for host tests and for pages the kernel allocates itself.
#[cfg(test)]
pub fn zeroed_page() -> alloc::boxed::Box<[AtomicU64; WORDS_PER_PAGE]> {
    alloc::boxed::Box::new(core::array::from_fn(|_| AtomicU64::new(0)))
}
