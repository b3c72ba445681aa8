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

/// The whole path of the device-access issue on the host, in the order the kernel takes it: an
/// igb-like function is enumerated, claimed by a task, its config space read through the guard,
/// BAR0 mapped, DMA memory allocated, MSI-X routed, and two interrupts delivered with an
/// acknowledgement between them; a second task is refused the same function.
#[cfg(test)]
mod flow {
    use super::claim::{Interrupts, Request, Selector, enable_function, resolve};
    use super::config_guard::{ConfigGuard, Refusal};
    use super::dma::DmaBudget;
    use super::mmio::fake::FakeMmio;
    use super::msix::{AckAction, Delivery, MsixTable, Router, Source, install_msix};
    use super::pci::fake::{FakePci, bdf};
    use super::pci::{LEGACY_CONFIG_SIZE, enumerate};
    use crate::mem::frame::{FrameAllocator, bitmap_words};
    use std::vec;

    #[test]
    fn driver_task_gets_its_device_and_nothing_else() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let functions = enumerate(&pci, 0, 0);
        let igb = bdf(0, 4, 0);
        let request = |task, task_name| Request {
            task,
            task_name,
            name: "igb",
            selector: Selector::Ids(vec![(0x8086, 0x10c9)]),
            bar_mask: 1,
            msix_bits: vec![8, 9],
        };
        let plan = resolve(&[request(1, "nic"), request(2, "intruder")], &functions);
        assert_eq!(plan.bindings.len(), 1);
        assert_eq!(plan.refused[0].claimant().task, 2, "the same device twice");
        let binding = &plan.bindings[0];
        enable_function(&pci, binding.bdf);

        // Config space: the task reads its ids; the intruder gets nothing.
        let guard = ConfigGuard::for_task(&plan, &functions, 1);
        assert_eq!(guard.read(&pci, igb, 0, 2), Ok(0x8086));
        assert_eq!(guard.read(&pci, igb, 2, 2), Ok(0x10c9));
        let intruder = ConfigGuard::for_task(&plan, &functions, 2);
        assert_eq!(
            intruder.read(&pci, igb, 0, 4),
            Err(Refusal::NotClaimed { bdf: igb })
        );

        // BAR0 is what gets mapped.
        assert_eq!(binding.mmio[0].phys, 0xfebc_0000);
        assert_eq!(binding.mmio[0].len, 128 << 10);

        // DMA memory from the task's budget.
        let mut bits = vec![0; bitmap_words(1 << 24)];
        let mut frames = FrameAllocator::new(&mut bits);
        frames.add_free_range(1 << 20, 1 << 24);
        let mut dma = DmaBudget::new(64 << 10);
        let ring = dma.allocate(&mut frames, 4096, 4096, |_, _| {}).unwrap();
        assert_eq!(ring.bus, ring.phys);

        // MSI-X: the table lives in BAR3, which only the kernel maps.
        let Interrupts::MsiX { info, bits, .. } = &binding.interrupts else {
            panic!("igb has MSI-X");
        };
        let bar3 = FakeMmio::new(16 << 10);
        let table = MsixTable::new(&bar3, info.table_offset as usize, info.table_size);
        let mut router = Router::default();
        let msi = functions[binding.function].msi;
        let vectors = install_msix(
            &pci,
            &table,
            &mut router,
            igb,
            info,
            msi.as_ref(),
            1,
            bits,
            0,
        )
        .unwrap();

        // First interrupt: posted, entry masked until the ack; the ack unmasks; a second one
        // is posted again.
        let entry0 = Source::MsiX { bdf: igb, entry: 0 };
        let Delivery::Post { task, bit, mask } = router.interrupt(vectors[0]) else {
            panic!("not posted");
        };
        assert_eq!((task, bit, mask), (1, 8, entry0));
        table.set_masked(0, true).unwrap();
        let mut actions = vec![];
        router.acknowledge(1, 1 << 8, |a| actions.push(a));
        assert_eq!(actions, vec![AckAction::Unmask(entry0)]);
        table.set_masked(0, false).unwrap();
        assert!(matches!(
            router.interrupt(vectors[0]),
            Delivery::Post { bit: 8, .. }
        ));
    }
}
