//! The Xen platform layer as the kernel uses it.
//!
//! Owns: detecting Xen ([`cpuid`]), issuing hypercalls ([`hypercall`]), the binary layouts of the
//! hypervisor interface ([`abi`]), the bring-up sequence ([`platform`]: shared info, grant frames,
//! xenstore and console parameters, the upcall vector), the PV console writer ([`console`]), and
//! the kernel-side logic of the Xen gateway: event channel delivery (2-level, and FIFO where Xen
//! offers it) and per-task port ownership ([`evtchn`]), our own grant table and the per-task window for foreign grants
//! ([`grant`]). Shared pages are touched only through [`shared`].
//!
//! Everything except the hypercall instruction itself is plain Rust over small traits (CPUID, the
//! hypercall entry, shared memory as atomics), so it is tested on the host against fakes. Values a
//! peer or the hypervisor writes into shared memory are read once, validated, then used.

pub mod abi;
pub mod console;
pub mod cpuid;
pub mod evtchn;
pub mod grant;
pub mod hypercall;
pub mod platform;
pub mod shared;
