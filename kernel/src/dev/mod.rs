//! Device access for user-mode drivers (ACPI, PCI, claims, MSI-X, time).
//!
//! Everything here is hardware-independent logic: the hardware edges are traits that the kernel
//! implements over port I/O, its identity map and its page tables, and that host tests implement
//! over plain memory. The flow at boot is:
//!
//! 1. [`acpi`] summarises the platform (APICs, ECAM regions, HPET) or falls back to the
//!    architectural defaults when there is no RSDP (Xen HVM with `firmware_override`).
//! 2. [`pci`] enumerates every function through a [`pci::ConfigAccess`]; [`pci_access`]
//!    implements it for ECAM (over [`mmio`]) and for ports 0xCF8/0xCFC (over a port trait).
//!    [`bar_assign`] places BARs no firmware assigned (Xen HVM without hvmloader).
//! 3. [`claim`] binds the system table's device claims to enumerated functions, one owner each,
//!    and says which MMIO pages to map into which task.
//! 4. [`config_guard`] checks every config-space access a driver task asks for.
//! 5. [`msix`] programs MSI-X (or MSI) messages and routes IDT vectors to notification bits with
//!    the "masked until acknowledged" rule.
//! 6. [`dma`] hands out each task's budget of contiguous, zeroed DMA memory with bus addresses.
//! 7. [`time`] turns the TSC into a monotonic nanosecond clock and keeps per-task deadlines.

pub mod acpi;
pub mod bar_assign;
pub mod claim;
pub mod config_guard;
pub mod dma;
pub mod mmio;
pub mod msix;
pub mod pci;
pub mod pci_access;
pub mod time;
