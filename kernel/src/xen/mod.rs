//! The Xen platform layer as the kernel uses it.
//!
//! Owns: detecting Xen ([`cpuid`]), issuing hypercalls ([`hypercall`]), the binary layouts of the
//! hypervisor interface ([`abi`]), the bring-up sequence ([`platform`]: shared info, grant frames,
//! xenstore and console parameters, the upcall vector), the PV console writer ([`console`]), and
//! the kernel-side logic of the Xen gateway: event channel delivery (2-level, and FIFO where Xen
//! offers it) and per-task port ownership ([`evtchn`]), our own grant table and the per-task
//! window for foreign grants ([`grant`]). Shared pages are touched only through [`shared`].
//!
//! Everything except the hypercall instruction itself is plain Rust over small traits (CPUID, the
//! hypercall entry, shared memory as atomics), so it is tested on the host against fakes. Values a
//! peer or the hypervisor writes into shared memory are read once, validated, then used.
//!
//! How boot code and the gateway use it:
//! 1. `cpuid::detect(&NativeCpuid)`; map a page writable and executable and
//!    `HypercallPage::install` it with the MSR from leaf base+2.
//! 2. `platform::bring_up` with guest frames in a physmap hole for shared info and grant frames
//!    and an IDT vector; map those frames and the xenstore/console pages it reports.
//! 3. `evtchn::SharedInfo2L` over the shared info page (or `platform::try_fifo` and
//!    `evtchn::fifo::FifoView`); the vector's handler calls `EventChannels::upcall` (or
//!    `upcall_fifo`) and posts the bits it gets to each task's notifications.
//! 4. Gateway calls from a task with Xen rights go through `EventChannels` (bind, send, unmask,
//!    close: ownership checked), `grant::table::GrantTable` (grant/end access of its own pages)
//!    and its `grant::window::GrantWindow` (batched map, unmap, copy: every entry checked before
//!    one hypercall). The kernel maps or unmaps window pages in the task's page tables around
//!    those calls.

pub mod abi;
pub mod console;
pub mod cpuid;
pub mod evtchn;
pub mod grant;
pub mod hypercall;
pub mod platform;
pub mod shared;
