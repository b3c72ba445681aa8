//! The checked configuration-space access a driver task gets.
//!
//! Owns: deciding whether a task's (bdf, offset, width) request may reach the hardware. A task
//! may read anything in the configuration space of a function it claimed, and write most of it;
//! it may never touch another function, and it may not write the registers through which the
//! kernel keeps its guarantees:
//!
//! - the BARs and the expansion ROM BAR (they decide which physical addresses the device decodes:
//!   moved, they could overlay kernel memory or another task's device);
//! - the command register's I/O-space, memory-space and bus-master bits (the kernel enables
//!   decoding and DMA when it grants the device, and turns them off when it takes it back); the
//!   other command bits (e.g. INTx disable) stay the driver's;
//! - the MSI-X and MSI capabilities (message address and data decide which vector fires, and
//!   therefore which task is notified);
//! - SR-IOV and resizable-BAR extended capabilities (they create or resize BARs).
//!
//! Invariants: every request is checked against the claimed function's own configuration size
//! (4 KiB with ECAM, 256 bytes without); accesses are 1, 2 or 4 bytes and naturally aligned; a
//! refused request has no effect on the hardware; the refusal says what and why.

use alloc::vec::Vec;
use core::fmt;

use super::claim::Plan;
use super::pci::{Bdf, ConfigAccess, Function, HeaderKind, MsixInfo, cap, reg};

/// Command register bits the kernel owns: I/O space, memory space, bus master.
pub const KERNEL_COMMAND_BITS: u16 = 0b111;

/// Bytes of the SR-IOV extended capability.
const SRIOV_LEN: u16 = 0x40;
/// Bytes of the resizable-BAR extended capability with its maximum six entries.
const RESIZABLE_BAR_LEN: u16 = 4 + 6 * 8;

/// Why a configuration access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The function is not one of the task's.
    NotClaimed {
        bdf: Bdf,
    },
    BadWidth {
        width: u8,
    },
    Unaligned {
        offset: u16,
        width: u8,
    },
    OutOfRange {
        offset: u16,
        width: u8,
        size: u16,
    },
    /// The write touches a register the kernel owns.
    Protected {
        offset: u16,
        width: u8,
        register: &'static str,
    },
    /// The write would change command bits the kernel owns.
    CommandBits {
        changed: u16,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::NotClaimed { bdf } => write!(
                f,
                "{:04x}:{:02x}:{:02x}.{} is not a device this task claimed",
                bdf.segment, bdf.bus, bdf.device, bdf.function
            ),
            Refusal::BadWidth { width } => {
                write!(f, "access width {width} is not 1, 2 or 4 bytes")
            }
            Refusal::Unaligned { offset, width } => {
                write!(
                    f,
                    "offset {offset:#x} is not aligned to the {width}-byte width"
                )
            }
            Refusal::OutOfRange {
                offset,
                width,
                size,
            } => write!(
                f,
                "{width} bytes at {offset:#x} run past the {size}-byte configuration space"
            ),
            Refusal::Protected {
                offset,
                width,
                register,
            } => write!(
                f,
                "write of {width} bytes at {offset:#x} touches the {register}, which the kernel owns"
            ),
            Refusal::CommandBits { changed } => write!(
                f,
                "write would change command bits {changed:#x} (I/O, memory decode, bus master), \
                 which the kernel owns"
            ),
        }
    }
}

/// A write-protected byte range of one function's configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Protected {
    start: u16,
    end: u16,
    register: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Guarded {
    bdf: Bdf,
    size: u16,
    protected: Vec<Protected>,
}

/// The configuration access rules for one task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigGuard {
    functions: Vec<Guarded>,
}

impl ConfigGuard {
    /// Rules for a task that claimed `functions` (from `dev::claim`).
    pub fn new<'a>(functions: impl IntoIterator<Item = &'a Function>) -> ConfigGuard {
        let functions = functions.into_iter().map(guarded).collect();
        ConfigGuard { functions }
    }

    /// Rules for `task` from a claim plan over the enumerated `functions`.
    pub fn for_task(plan: &Plan<'_>, functions: &[Function], task: usize) -> ConfigGuard {
        ConfigGuard::new(
            plan.for_task(task)
                .filter_map(|b| functions.get(b.function)),
        )
    }

    /// Checks a read; `Ok` means it may be forwarded.
    pub fn check_read(&self, bdf: Bdf, offset: u16, width: u8) -> Result<(), Refusal> {
        self.locate(bdf, offset, width).map(|_| ())
    }

    /// Checks a write except for the command-bit rule, which needs the current command value
    /// (see [`ConfigGuard::write`]).
    pub fn check_write(&self, bdf: Bdf, offset: u16, width: u8) -> Result<(), Refusal> {
        let g = self.locate(bdf, offset, width)?;
        let end = offset + u16::from(width);
        match g.protected.iter().find(|p| offset < p.end && p.start < end) {
            Some(p) => Err(Refusal::Protected {
                offset,
                width,
                register: p.register,
            }),
            None => Ok(()),
        }
    }

    /// Reads `width` bytes at `offset` of `bdf` if the task may.
    pub fn read<A: ConfigAccess + ?Sized>(
        &self,
        access: &A,
        bdf: Bdf,
        offset: u16,
        width: u8,
    ) -> Result<u32, Refusal> {
        self.check_read(bdf, offset, width)?;
        let dword = access.read32(bdf, offset & !3);
        let value = dword >> (u32::from(offset & 3) * 8);
        Ok(match width {
            1 => value & 0xFF,
            2 => value & 0xFFFF,
            _ => value,
        })
    }

    /// Writes the low `width` bytes of `value` at `offset` of `bdf` if the task may.
    pub fn write<A: ConfigAccess + ?Sized>(
        &self,
        access: &A,
        bdf: Bdf,
        offset: u16,
        width: u8,
        value: u32,
    ) -> Result<(), Refusal> {
        self.check_write(bdf, offset, width)?;
        // The command register is the low half of dword 4; only its byte 0 holds kernel bits.
        if offset <= reg::COMMAND && reg::COMMAND < offset + u16::from(width) {
            let current = (access.read32(bdf, reg::COMMAND) & 0xFFFF) as u16;
            let new_low = (value >> (u32::from(reg::COMMAND - offset) * 8)) as u16;
            let changed = (current ^ new_low) & KERNEL_COMMAND_BITS;
            if changed != 0 {
                return Err(Refusal::CommandBits { changed });
            }
        }
        if width == 4 {
            access.write32(bdf, offset, value);
        } else {
            access.write_narrow(bdf, offset, width, value);
        }
        Ok(())
    }

    fn locate(&self, bdf: Bdf, offset: u16, width: u8) -> Result<&Guarded, Refusal> {
        let g = self
            .functions
            .iter()
            .find(|g| g.bdf == bdf)
            .ok_or(Refusal::NotClaimed { bdf })?;
        if !matches!(width, 1 | 2 | 4) {
            return Err(Refusal::BadWidth { width });
        }
        if !offset.is_multiple_of(u16::from(width)) {
            return Err(Refusal::Unaligned { offset, width });
        }
        if u32::from(offset) + u32::from(width) > u32::from(g.size) {
            return Err(Refusal::OutOfRange {
                offset,
                width,
                size: g.size,
            });
        }
        Ok(g)
    }
}

fn guarded(f: &Function) -> Guarded {
    let mut protected = Vec::new();
    let mut protect = |start: u16, len: u16, register| {
        protected.push(Protected {
            start,
            end: start.saturating_add(len),
            register,
        })
    };
    match f.kind {
        HeaderKind::Endpoint => {
            protect(reg::BAR0, 24, "BARs");
            protect(reg::ROM, 4, "expansion ROM BAR");
        }
        // Claims only bind endpoints; anything else gets its whole type-specific header guarded.
        _ => protect(reg::BAR0, 0x30, "bridge windows and BARs"),
    }
    if let Some(m) = &f.msix {
        protect(m.offset, MsixInfo::LEN, "MSI-X capability");
    }
    if let Some(m) = &f.msi {
        protect(m.offset, m.len(), "MSI capability");
    }
    for c in &f.ext_capabilities {
        match c.id {
            cap::EXT_SRIOV => protect(c.offset, SRIOV_LEN, "SR-IOV capability"),
            cap::EXT_RESIZABLE_BAR => {
                protect(c.offset, RESIZABLE_BAR_LEN, "resizable BAR capability")
            }
            _ => {}
        }
    }
    Guarded {
        bdf: f.bdf,
        size: f.config_size,
        protected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::pci::fake::{FakePci, bdf};
    use crate::dev::pci::{ECAM_CONFIG_SIZE, LEGACY_CONFIG_SIZE, read_function};

    fn setup(size: u16) -> (FakePci, ConfigGuard) {
        let pci = FakePci::machine(size);
        let igb = read_function(&pci, bdf(0, 4, 0)).unwrap();
        let guard = ConfigGuard::new([&igb]);
        // Only what the guard lets through should be seen from here on (not the BAR sizing).
        pci.writes.borrow_mut().clear();
        (pci, guard)
    }

    #[test]
    fn guards_follow_the_claim_plan() {
        use crate::dev::claim::{Request, Selector, resolve};
        use crate::dev::pci::enumerate;
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let fs = enumerate(&pci, 0, 0);
        let requests = [
            Request {
                task: 1,
                task_name: "nic",
                name: "igb",
                selector: Selector::Ids(std::vec![(0x8086, 0x10c9)]),
                bar_mask: 1,
                msix_bits: std::vec![],
            },
            Request {
                task: 2,
                task_name: "other",
                name: "smbus",
                selector: Selector::Bdf(bdf(0, 0x1f, 3)),
                bar_mask: 0,
                msix_bits: std::vec![],
            },
        ];
        let plan = resolve(&requests, &fs);
        let nic = ConfigGuard::for_task(&plan, &fs, 1);
        let other = ConfigGuard::for_task(&plan, &fs, 2);
        assert_eq!(nic.read(&pci, bdf(0, 4, 0), 0, 4), Ok(0x10c9_8086));
        assert_eq!(
            other.read(&pci, bdf(0, 4, 0), 0, 4),
            Err(Refusal::NotClaimed { bdf: bdf(0, 4, 0) })
        );
        assert_eq!(
            nic.read(&pci, bdf(0, 0x1f, 3), 0, 4),
            Err(Refusal::NotClaimed {
                bdf: bdf(0, 0x1f, 3)
            })
        );
        assert_eq!(other.read(&pci, bdf(0, 0x1f, 3), 0, 2), Ok(0x8086));
        assert_eq!(ConfigGuard::for_task(&plan, &fs, 3), ConfigGuard::default());
    }

    #[test]
    fn claimed_function_reads_ids_at_every_width() {
        let (pci, g) = setup(LEGACY_CONFIG_SIZE);
        let igb = bdf(0, 4, 0);
        assert_eq!(g.read(&pci, igb, 0, 4), Ok(0x10c9_8086));
        assert_eq!(g.read(&pci, igb, 0, 2), Ok(0x8086));
        assert_eq!(g.read(&pci, igb, 2, 2), Ok(0x10c9));
        assert_eq!(g.read(&pci, igb, 0xb, 1), Ok(0x02));
        // Reading BARs and the MSI-X capability is fine.
        assert_eq!(g.read(&pci, igb, 0x10, 4), Ok(0xfebc_0000));
        assert_eq!(g.read(&pci, igb, 0x74, 4), Ok(3));
    }

    #[test]
    fn other_functions_are_refused() {
        let (pci, g) = setup(LEGACY_CONFIG_SIZE);
        let sata = bdf(0, 0x1f, 2);
        assert_eq!(
            g.read(&pci, sata, 0, 4),
            Err(Refusal::NotClaimed { bdf: sata })
        );
        assert_eq!(
            g.write(&pci, bdf(0, 4, 1), 0x3c, 1, 0),
            Err(Refusal::NotClaimed { bdf: bdf(0, 4, 1) })
        );
        assert!(pci.writes.borrow().is_empty());
        let msg = std::format!("{}", Refusal::NotClaimed { bdf: sata });
        assert_eq!(msg, "0000:00:1f.2 is not a device this task claimed");
    }

    #[test]
    fn width_alignment_and_range_are_checked() {
        let (pci, g) = setup(LEGACY_CONFIG_SIZE);
        let igb = bdf(0, 4, 0);
        assert_eq!(g.read(&pci, igb, 0, 3), Err(Refusal::BadWidth { width: 3 }));
        assert_eq!(g.read(&pci, igb, 0, 8), Err(Refusal::BadWidth { width: 8 }));
        assert_eq!(
            g.read(&pci, igb, 2, 4),
            Err(Refusal::Unaligned {
                offset: 2,
                width: 4
            })
        );
        assert_eq!(
            g.read(&pci, igb, 1, 2),
            Err(Refusal::Unaligned {
                offset: 1,
                width: 2
            })
        );
        assert_eq!(g.read(&pci, igb, 0xfc, 4), Ok(0));
        assert_eq!(
            g.read(&pci, igb, 0x100, 4),
            Err(Refusal::OutOfRange {
                offset: 0x100,
                width: 4,
                size: 256
            })
        );
        assert_eq!(
            g.read(&pci, igb, 0xfffe, 2),
            Err(Refusal::OutOfRange {
                offset: 0xfffe,
                width: 2,
                size: 256
            })
        );
        // With ECAM the whole 4 KiB is reachable, and not a byte more.
        let (pci, g) = setup(ECAM_CONFIG_SIZE);
        assert_eq!(g.read(&pci, igb, 0x100, 4), Ok(0x1601_0001));
        assert_eq!(g.read(&pci, igb, 0xfff, 1), Ok(0));
        assert!(matches!(
            g.read(&pci, igb, 0x1000, 1),
            Err(Refusal::OutOfRange { .. })
        ));
    }

    #[test]
    fn bar_rom_msi_and_msix_writes_are_refused() {
        let (pci, g) = setup(ECAM_CONFIG_SIZE);
        let igb = bdf(0, 4, 0);
        let cases: [(u16, u8, &str); 9] = [
            (0x10, 4, "BARs"),
            (0x24, 4, "BARs"),
            (0x1e, 2, "BARs"),
            (0x30, 4, "expansion ROM BAR"),
            (0x72, 2, "MSI-X capability"),
            (0x74, 4, "MSI-X capability"),
            (0x78, 4, "MSI-X capability"),
            (0x5c, 2, "MSI capability"),
            (0x164, 4, "SR-IOV capability"),
        ];
        for (offset, width, register) in cases {
            assert_eq!(
                g.write(&pci, igb, offset, width, 0xFFFF_FFFF),
                Err(Refusal::Protected {
                    offset,
                    width,
                    register
                }),
                "{offset:#x}"
            );
        }
        assert!(
            pci.writes.borrow().is_empty(),
            "a refused write reached the device"
        );
        // Just past the MSI-X capability (12 bytes at 0x70) and between BARs and ROM is allowed.
        assert_eq!(g.write(&pci, igb, 0x7c, 4, 0), Ok(()));
        assert_eq!(g.write(&pci, igb, 0x2c, 4, 0), Ok(()));
        let msg = std::format!("{}", g.write(&pci, igb, 0x10, 4, 0).unwrap_err());
        assert_eq!(
            msg,
            "write of 4 bytes at 0x10 touches the BARs, which the kernel owns"
        );
    }

    #[test]
    fn command_kernel_bits_are_refused_other_bits_forwarded() {
        let (pci, g) = setup(LEGACY_CONFIG_SIZE);
        let igb = bdf(0, 4, 0);
        pci.set(igb, reg::COMMAND, 0x0010_0006); // memory + bus master on
        // Turning bus mastering off, or I/O decode on, is the kernel's business.
        assert_eq!(
            g.write(&pci, igb, reg::COMMAND, 2, 0x0002),
            Err(Refusal::CommandBits { changed: 0x4 })
        );
        assert_eq!(
            g.write(&pci, igb, reg::COMMAND, 1, 0x07),
            Err(Refusal::CommandBits { changed: 0x1 })
        );
        assert_eq!(
            g.write(&pci, igb, reg::COMMAND, 4, 0x0000_0000),
            Err(Refusal::CommandBits { changed: 0x6 })
        );
        assert_eq!(pci.get(igb, reg::COMMAND) & 0xFFFF, 0x0006);
        // Setting INTx disable while keeping the kernel's bits goes through.
        assert_eq!(g.write(&pci, igb, reg::COMMAND, 2, 0x0406), Ok(()));
        assert_eq!(pci.get(igb, reg::COMMAND) & 0xFFFF, 0x0406);
        // The high byte of the command register carries no kernel bits.
        assert_eq!(g.write(&pci, igb, reg::COMMAND + 1, 1, 0x00), Ok(()));
        assert_eq!(pci.get(igb, reg::COMMAND) & 0xFFFF, 0x0006);
        // Status (write-1-to-clear) is the driver's.
        assert_eq!(g.write(&pci, igb, reg::STATUS, 2, 0x8000), Ok(()));
    }

    #[test]
    fn interrupt_line_and_device_specific_space_are_writable() {
        let (pci, g) = setup(LEGACY_CONFIG_SIZE);
        let igb = bdf(0, 4, 0);
        assert_eq!(g.write(&pci, igb, 0x3c, 1, 0x0b), Ok(()));
        assert_eq!(g.read(&pci, igb, 0x3c, 1), Ok(0x0b));
        assert_eq!(g.write(&pci, igb, 0xe0, 4, 0x1234_5678), Ok(()));
        assert_eq!(g.read(&pci, igb, 0xe2, 2), Ok(0x1234));
    }
}
