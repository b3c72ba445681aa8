//! The platform summary from ACPI: where the APICs are, which CPUs exist, where PCIe ECAM lives
//! and where the HPET is.
//!
//! Owns: turning the RSDP from the start info into a [`Platform`]. The `acpi` crate finds the
//! tables (RSDP, RSDT/XSDT) and checks each table's signature and checksum; this module then reads
//! the bodies of the MADT, MCFG and HPET tables itself, from the byte slice the crate mapped,
//! with every offset bounds-checked. (The crate's own MADT iterator trusts each entry's length: a
//! zero-length entry would loop forever, and its MCFG and HPET readers can panic on odd tables.)
//!
//! Invariants: [`discover`] never fails and never panics on bad tables. Whatever it cannot learn
//! from ACPI is replaced by the architectural default and recorded as a [`Fallback`], each of which
//! is logged once. No RSDP at all (Xen HVM booted through `firmware_override`, see the testbed
//! notes) gives the local APIC at 0xFEE00000, one IO-APIC at 0xFEC00000 with GSI base 0, and PCI
//! configuration through the legacy 0xCF8/0xCFC ports.

use ::acpi::sdt::{SdtHeader, Signature};
use ::acpi::{AcpiError, AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::fmt;

use nc2dd_abi::system_table::Bdf;

/// The local APIC's architectural physical address.
pub const DEFAULT_LOCAL_APIC: u64 = 0xFEE0_0000;
/// The first IO-APIC's conventional physical address.
pub const DEFAULT_IO_APIC: u64 = 0xFEC0_0000;

/// Length of the common SDT header.
const SDT_HEADER_LEN: usize = 36;
/// ACPI 2.0+ RSDP length.
const RSDP_V2_LEN: usize = 36;

/// One IO-APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u64,
    /// First global system interrupt this IO-APIC serves.
    pub gsi_base: u32,
}

/// One processor's local APIC, from a MADT local APIC or local x2APIC entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processor {
    pub apic_id: u32,
    /// ACPI processor UID.
    pub uid: u32,
    /// Usable now (flags bit 0).
    pub enabled: bool,
    /// Not enabled, but may be brought online (flags bit 1).
    pub online_capable: bool,
}

/// An ISA IRQ wired to a different GSI (or polarity/trigger) than identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2.
    pub flags: u16,
}

/// One MCFG entry: the ECAM window for a range of buses of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
    /// Physical address of bus `bus_start`'s configuration space.
    pub base: u64,
}

impl EcamRegion {
    /// Physical address of `bdf`'s 4 KiB configuration space, if this region covers it.
    pub fn function_base(&self, bdf: Bdf) -> Option<u64> {
        if bdf.segment != self.segment
            || !(self.bus_start..=self.bus_end).contains(&bdf.bus)
            || bdf.device > 31
            || bdf.function > 7
        {
            return None;
        }
        let index = (u64::from(bdf.bus - self.bus_start) << 8)
            | (u64::from(bdf.device) << 3)
            | u64::from(bdf.function);
        self.base.checked_add(index << 12)
    }

    /// Bytes of physical address space the region spans (1 MiB per bus).
    pub fn len(&self) -> u64 {
        (u64::from(self.bus_end) - u64::from(self.bus_start) + 1) << 20
    }

    /// Never true: a region covers at least one bus.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The HPET as the ACPI HPET table describes it. The period is read from the device itself (see
/// `dev::time::Hpet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetDescription {
    /// Physical address of the register block (1 KiB).
    pub base: u64,
    /// A copy of the general capabilities and ID register's low half.
    pub block_id: u32,
    pub number: u8,
    /// Minimum periodic tick the firmware vouches for, in main-counter ticks.
    pub min_tick: u16,
}

/// How PCI configuration space is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigMechanism {
    /// Memory-mapped, 4 KiB per function, through [`Platform::ecam`].
    Ecam,
    /// Ports 0xCF8/0xCFC, 256 bytes per function, segment 0 only.
    LegacyPorts,
}

/// Something ACPI did not tell us, and the default that replaced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The start info has no RSDP (Xen HVM through `firmware_override`).
    NoRsdp,
    /// The RSDP or the root table it points to is unusable.
    BadRoot(&'static str),
    /// No valid MADT: default APIC addresses, no processor list.
    NoMadt(&'static str),
    /// The MADT has a malformed entry at this byte offset; entries from there on were ignored.
    MadtTruncated { offset: usize },
    /// The MADT lists no IO-APIC: the default one is assumed.
    NoIoApic,
    /// No valid MCFG: legacy configuration ports.
    NoMcfg(&'static str),
    /// An MCFG entry was skipped.
    BadMcfgEntry { index: usize, why: &'static str },
    /// The HPET table exists but is unusable.
    BadHpet(&'static str),
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fallback::NoRsdp => write!(
                f,
                "no RSDP: local APIC {DEFAULT_LOCAL_APIC:#x}, IO-APIC {DEFAULT_IO_APIC:#x}, \
                 PCI through ports 0xcf8/0xcfc"
            ),
            Fallback::BadRoot(why) => write!(
                f,
                "ACPI root unusable ({why}): architectural APIC addresses, PCI through ports"
            ),
            Fallback::NoMadt(why) => write!(
                f,
                "no usable MADT ({why}): architectural APIC addresses, boot CPU only"
            ),
            Fallback::MadtTruncated { offset } => write!(
                f,
                "MADT entry at byte {offset} is malformed; the rest of the MADT is ignored"
            ),
            Fallback::NoIoApic => {
                write!(
                    f,
                    "MADT lists no IO-APIC: assuming one at {DEFAULT_IO_APIC:#x}"
                )
            }
            Fallback::NoMcfg(why) => write!(f, "no usable MCFG ({why}): PCI through ports"),
            Fallback::BadMcfgEntry { index, why } => {
                write!(f, "MCFG entry {index} skipped: {why}")
            }
            Fallback::BadHpet(why) => write!(f, "HPET table ignored: {why}"),
        }
    }
}

/// What the kernel needs to know about the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The RSDP revision when ACPI was used.
    pub acpi_revision: Option<u8>,
    pub local_apic: u64,
    /// Never empty.
    pub io_apics: Vec<IoApic>,
    /// In MADT order; empty when there is no MADT (only the boot CPU is known then).
    pub processors: Vec<Processor>,
    pub irq_overrides: Vec<IrqOverride>,
    /// Dual 8259 PICs present (MADT flag PCAT_COMPAT), which must be masked.
    pub legacy_pics: bool,
    pub ecam: Vec<EcamRegion>,
    pub hpet: Option<HpetDescription>,
    /// What was defaulted, in the order it was noticed.
    pub fallbacks: Vec<Fallback>,
}

impl Platform {
    /// The summary without ACPI.
    pub fn defaults(reason: Fallback) -> Platform {
        let mut p = Platform {
            acpi_revision: None,
            local_apic: DEFAULT_LOCAL_APIC,
            io_apics: alloc::vec![IoApic {
                id: 0,
                address: DEFAULT_IO_APIC,
                gsi_base: 0,
            }],
            processors: Vec::new(),
            irq_overrides: Vec::new(),
            legacy_pics: true,
            ecam: Vec::new(),
            hpet: None,
            fallbacks: Vec::new(),
        };
        p.note(reason);
        p
    }

    pub fn config_mechanism(&self) -> ConfigMechanism {
        if self.ecam.is_empty() {
            ConfigMechanism::LegacyPorts
        } else {
            ConfigMechanism::Ecam
        }
    }

    /// The ECAM region covering `bdf`, if any.
    pub fn ecam_for(&self, bdf: Bdf) -> Option<&EcamRegion> {
        self.ecam.iter().find(|r| r.function_base(bdf).is_some())
    }

    fn note(&mut self, fallback: Fallback) {
        log::warn!("acpi: {fallback}");
        self.fallbacks.push(fallback);
    }
}

impl fmt::Display for Platform {
    /// One boot-log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.acpi_revision {
            Some(r) => write!(f, "ACPI rev {r}")?,
            None => write!(f, "no ACPI")?,
        }
        write!(f, ", LAPIC {:#x}", self.local_apic)?;
        for io in &self.io_apics {
            write!(
                f,
                ", IO-APIC {} at {:#x} GSI {}",
                io.id, io.address, io.gsi_base
            )?;
        }
        let enabled = self.processors.iter().filter(|p| p.enabled).count();
        write!(f, ", {enabled} CPUs")?;
        match self.config_mechanism() {
            ConfigMechanism::Ecam => {
                for r in &self.ecam {
                    write!(
                        f,
                        ", ECAM {:04x}:{:02x}-{:02x} at {:#x}",
                        r.segment, r.bus_start, r.bus_end, r.base
                    )?;
                }
            }
            ConfigMechanism::LegacyPorts => write!(f, ", PCI via 0xcf8")?,
        }
        if let Some(h) = &self.hpet {
            write!(f, ", HPET at {:#x}", h.base)?;
        }
        Ok(())
    }
}

/// Declares a table type that is just the SDT header, so that the crate validates the header and
/// checksum and maps the whole table, while the body is read from bytes by this module.
macro_rules! raw_table {
    ($name:ident, $signature:ident) => {
        #[repr(transparent)]
        struct $name {
            header: SdtHeader,
        }

        // SAFETY: the type is exactly the SDT header that every table starts with (36 bytes,
        // alignment 1), which the crate maps before checking the signature; nothing past the
        // header is ever read through this type.
        unsafe impl AcpiTable for $name {
            const SIGNATURE: Signature = Signature::$signature;
            fn header(&self) -> &SdtHeader {
                &self.header
            }
        }
    };
}

raw_table!(RawMadt, MADT);
raw_table!(RawMcfg, MCFG);
raw_table!(RawHpet, HPET);

/// The whole table the crate mapped and checksummed.
fn table_bytes<H: AcpiHandler, T>(mapping: &PhysicalMapping<H, T>) -> &[u8] {
    // SAFETY: `AcpiHandler::map_physical_region` maps at least `region_length` bytes at
    // `virtual_start`, and the crate asked for the length the table's header gives (that is what it
    // just checksummed). The bytes stay mapped until `mapping` is dropped, which the borrow of the
    // returned slice prevents. Firmware tables are not written while the kernel reads them.
    unsafe {
        core::slice::from_raw_parts(
            mapping.virtual_start().as_ptr().cast::<u8>(),
            mapping.region_length(),
        )
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

fn acpi_error(e: &AcpiError) -> &'static str {
    match e {
        AcpiError::NoValidRsdp | AcpiError::RsdpIncorrectSignature => "bad RSDP signature",
        AcpiError::RsdpInvalidOemId => "RSDP OEM id is not text",
        AcpiError::RsdpInvalidChecksum => "RSDP checksum mismatch",
        AcpiError::SdtInvalidSignature(_) => "root table has the wrong signature",
        AcpiError::SdtInvalidOemId(_) | AcpiError::SdtInvalidTableId(_) => {
            "table OEM ids are not text"
        }
        AcpiError::SdtInvalidChecksum(_) => "table checksum mismatch",
        AcpiError::TableMissing(_) => "table missing",
        _ => "table unusable",
    }
}

/// Summarises the platform from the RSDP at physical address `rsdp` (0: none).
///
/// # Safety
///
/// `rsdp` must be 0 or the physical address the firmware or hypervisor gave for the RSDP, and
/// `handler` must map any physical address that the ACPI tables reached from it name (the kernel's
/// handler reads through its identity map). A bad table is handled; a bad mapping is not.
pub unsafe fn discover<H: AcpiHandler>(handler: H, rsdp: u64) -> Platform {
    if rsdp == 0 {
        return Platform::defaults(Fallback::NoRsdp);
    }
    let Ok(address) = usize::try_from(rsdp) else {
        return Platform::defaults(Fallback::BadRoot("RSDP address too large"));
    };
    // The crate checksums `length` bytes of an ACPI 2.0 RSDP after mapping only 36: reject a
    // length that would make it read past what it mapped.
    {
        // SAFETY: the caller vouches that `rsdp` is where the RSDP is and that the handler maps it;
        // an RSDP is at least 20 bytes and a 2.0+ one 36, and only a 36-byte array is read.
        let raw = unsafe { handler.map_physical_region::<[u8; RSDP_V2_LEN]>(address, RSDP_V2_LEN) };
        let bytes: &[u8] = &raw[..];
        if bytes.get(..8) != Some(b"RSD PTR ".as_slice()) {
            return Platform::defaults(Fallback::BadRoot("bad RSDP signature"));
        }
        let revision = bytes.get(15).copied().unwrap_or(0);
        if revision > 0 && u32_at(bytes, 20) != Some(RSDP_V2_LEN as u32) {
            return Platform::defaults(Fallback::BadRoot("RSDP length is not 36"));
        }
    }
    // SAFETY: checked above to hold a well-formed RSDP header; the caller's contract covers the
    // rest.
    let tables = match unsafe { AcpiTables::from_rsdp(handler, address) } {
        Ok(t) => t,
        Err(e) => return Platform::defaults(Fallback::BadRoot(acpi_error(&e))),
    };
    let mut platform = Platform {
        acpi_revision: Some(tables.revision()),
        local_apic: DEFAULT_LOCAL_APIC,
        io_apics: Vec::new(),
        processors: Vec::new(),
        irq_overrides: Vec::new(),
        legacy_pics: true,
        ecam: Vec::new(),
        hpet: None,
        fallbacks: Vec::new(),
    };

    match tables.find_table::<RawMadt>() {
        Ok(madt) => parse_madt(table_bytes(&madt), &mut platform),
        Err(e) => platform.note(Fallback::NoMadt(acpi_error(&e))),
    }
    if platform.io_apics.is_empty() {
        platform.note(Fallback::NoIoApic);
        platform.io_apics.push(IoApic {
            id: 0,
            address: DEFAULT_IO_APIC,
            gsi_base: 0,
        });
    }

    match tables.find_table::<RawMcfg>() {
        Ok(mcfg) => parse_mcfg(table_bytes(&mcfg), &mut platform),
        Err(e) => platform.note(Fallback::NoMcfg(acpi_error(&e))),
    }

    // The HPET is optional (the PIT serves as the reference timer without it): absence is not a
    // fallback worth a warning.
    if let Ok(hpet) = tables.find_table::<RawHpet>() {
        match parse_hpet(table_bytes(&hpet)) {
            Ok(h) => platform.hpet = Some(h),
            Err(why) => platform.note(Fallback::BadHpet(why)),
        }
    }
    log::info!("acpi: {platform}");
    platform
}

/// MADT body: local APIC address (u32 at 36), flags (u32 at 40), entries from 44.
fn parse_madt(bytes: &[u8], platform: &mut Platform) {
    const ENTRIES: usize = SDT_HEADER_LEN + 8;
    let (Some(lapic), Some(flags)) = (
        u32_at(bytes, SDT_HEADER_LEN),
        u32_at(bytes, SDT_HEADER_LEN + 4),
    ) else {
        platform.note(Fallback::NoMadt("too short"));
        return;
    };
    platform.local_apic = u64::from(lapic);
    platform.legacy_pics = flags & 1 != 0;
    let mut at = ENTRIES;
    while at < bytes.len() {
        let kind = bytes.get(at).copied().unwrap_or(0);
        let len = usize::from(bytes.get(at + 1).copied().unwrap_or(0));
        let Some(entry) = bytes.get(at..at + len).filter(|_| len >= 2) else {
            platform.note(Fallback::MadtTruncated { offset: at });
            return;
        };
        if parse_madt_entry(kind, entry, platform).is_none() {
            platform.note(Fallback::MadtTruncated { offset: at });
            return;
        }
        at += len;
    }
}

/// One MADT entry; `None` when it is too short for its type. Unknown types are skipped.
fn parse_madt_entry(kind: u8, e: &[u8], platform: &mut Platform) -> Option<()> {
    match kind {
        // Processor local APIC: uid u8 @2, APIC id u8 @3, flags u32 @4.
        0 => {
            let flags = u32_at(e, 4)?;
            platform.processors.push(Processor {
                apic_id: u32::from(*e.get(3)?),
                uid: u32::from(*e.get(2)?),
                enabled: flags & 1 != 0,
                online_capable: flags & 2 != 0,
            });
        }
        // IO-APIC: id u8 @2, address u32 @4, GSI base u32 @8.
        1 => platform.io_apics.push(IoApic {
            id: *e.get(2)?,
            address: u64::from(u32_at(e, 4)?),
            gsi_base: u32_at(e, 8)?,
        }),
        // Interrupt source override: bus u8 @2 (0 = ISA), source u8 @3, GSI u32 @4, flags u16 @8.
        2 => platform.irq_overrides.push(IrqOverride {
            isa_irq: *e.get(3)?,
            gsi: u32_at(e, 4)?,
            flags: u16_at(e, 8)?,
        }),
        // Local APIC address override: u64 @4.
        5 => platform.local_apic = u64_at(e, 4)?,
        // Processor local x2APIC: x2APIC id u32 @4, flags u32 @8, uid u32 @12.
        9 => {
            let flags = u32_at(e, 8)?;
            platform.processors.push(Processor {
                apic_id: u32_at(e, 4)?,
                uid: u32_at(e, 12)?,
                enabled: flags & 1 != 0,
                online_capable: flags & 2 != 0,
            });
        }
        _ => {}
    }
    Some(())
}

/// MCFG body: 8 reserved bytes, then 16-byte entries (base u64, segment u16, start bus u8, end
/// bus u8, reserved u32).
fn parse_mcfg(bytes: &[u8], platform: &mut Platform) {
    let body = bytes.get(SDT_HEADER_LEN + 8..).unwrap_or(&[]);
    for (index, e) in body.chunks_exact(16).enumerate() {
        let (Some(base), Some(segment)) = (u64_at(e, 0), u16_at(e, 8)) else {
            continue;
        };
        let (bus_start, bus_end) = (e[10], e[11]);
        let why = if bus_start > bus_end {
            Some("bus range is reversed")
        } else if base == 0 || base & 0xF_FFFF != 0 {
            Some("base is zero or not 1 MiB aligned")
        } else if base
            .checked_add(
                EcamRegion {
                    segment,
                    bus_start,
                    bus_end,
                    base,
                }
                .len(),
            )
            .is_none()
        {
            Some("region wraps the address space")
        } else {
            None
        };
        match why {
            Some(why) => platform.note(Fallback::BadMcfgEntry { index, why }),
            None => platform.ecam.push(EcamRegion {
                segment,
                bus_start,
                bus_end,
                base,
            }),
        }
    }
    if platform.ecam.is_empty() {
        platform.note(Fallback::NoMcfg("no valid entries"));
    }
}

/// HPET body: block id u32 @36, generic address @40 (space id u8, ..., address u64 @44),
/// number u8 @52, minimum tick u16 @53.
fn parse_hpet(bytes: &[u8]) -> Result<HpetDescription, &'static str> {
    let short = "table too short";
    let block_id = u32_at(bytes, 36).ok_or(short)?;
    let space = *bytes.get(40).ok_or(short)?;
    let base = u64_at(bytes, 44).ok_or(short)?;
    let number = *bytes.get(52).ok_or(short)?;
    let min_tick = u16_at(bytes, 53).ok_or(short)?;
    if space != 0 {
        return Err("registers are not in system memory");
    }
    if base == 0 || base & 0x3FF != 0 {
        return Err("base is zero or not 1 KiB aligned");
    }
    Ok(HpetDescription {
        base,
        block_id,
        number,
        min_tick,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::ptr::NonNull;
    use std::rc::Rc;
    use std::vec;

    /// Physical address where the synthesized memory starts.
    pub const BASE: usize = 0xE_0000;

    /// "Physical memory" in a host buffer; addresses outside it are a test bug.
    #[derive(Clone)]
    pub struct HostMemory {
        mem: Rc<Vec<u8>>,
    }

    impl AcpiHandler for HostMemory {
        unsafe fn map_physical_region<T>(
            &self,
            pa: usize,
            size: usize,
        ) -> PhysicalMapping<Self, T> {
            let off = pa.checked_sub(BASE).expect("below the synthesized memory");
            assert!(
                off + size <= self.mem.len(),
                "beyond the synthesized memory"
            );
            // Align 1 for every type mapped here (packed ACPI structs and byte arrays).
            assert_eq!(core::mem::align_of::<T>(), 1);
            let ptr = NonNull::new(self.mem[off..].as_ptr().cast_mut().cast::<T>()).unwrap();
            // SAFETY: `ptr` points at `size` bytes inside the buffer that this handler (and so the
            // mapping) keeps alive; mappings are only read.
            unsafe { PhysicalMapping::new(pa, ptr, size, size, self.clone()) }
        }
        fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
    }

    fn checksum_fix(table: &mut [u8], at: usize) {
        table[at] = 0;
        let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        table[at] = 0u8.wrapping_sub(sum);
    }

    /// An SDT: header with `signature`, then `body`, checksummed.
    pub fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; SDT_HEADER_LEN];
        t[..4].copy_from_slice(signature);
        let len = (SDT_HEADER_LEN + body.len()) as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        t[10..16].copy_from_slice(b"NC2DD ");
        t[16..24].copy_from_slice(b"TESTTBL ");
        t.extend_from_slice(body);
        checksum_fix(&mut t, 9);
        t
    }

    pub fn madt_body(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    }

    pub fn lapic_entry(uid: u8, apic: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![0, 8, uid, apic];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    pub fn ioapic_entry(id: u8, address: u32, gsi: u32) -> Vec<u8> {
        let mut e = vec![1, 12, id, 0];
        e.extend_from_slice(&address.to_le_bytes());
        e.extend_from_slice(&gsi.to_le_bytes());
        e
    }

    pub fn iso_entry(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
        let mut e = vec![2, 10, 0, irq];
        e.extend_from_slice(&gsi.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    pub fn mcfg_body(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        for &(base, seg, start, end) in entries {
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&seg.to_le_bytes());
            b.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        b
    }

    pub fn hpet_body(space: u8, base: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0x8086_A201u32.to_le_bytes());
        b.extend_from_slice(&[space, 64, 0, 0]);
        b.extend_from_slice(&base.to_le_bytes());
        b.push(0); // number
        b.extend_from_slice(&0x80u16.to_le_bytes());
        b.push(0); // page protection
        b
    }

    /// RSDP (revision 2) at BASE, XSDT at BASE + 0x40, then `tables` at 0x100 steps.
    pub fn memory(tables: &[Vec<u8>]) -> HostMemory {
        memory_rev(2, tables)
    }

    /// Like [`memory`]; revision 0 gives an ACPI 1.0 RSDP and a 32-bit RSDT instead.
    pub fn memory_rev(revision: u8, tables: &[Vec<u8>]) -> HostMemory {
        let mut mem = vec![0u8; 0x100 + 0x100 * tables.len().max(1)];
        let xsdt_pa = (BASE + 0x40) as u64;
        let mut rsdp = vec![0u8; RSDP_V2_LEN];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[9..15].copy_from_slice(b"NC2DD ");
        rsdp[15] = revision;
        rsdp[16..20].copy_from_slice(&((BASE + 0x40) as u32).to_le_bytes());
        rsdp[20..24].copy_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
        rsdp[24..32].copy_from_slice(&xsdt_pa.to_le_bytes());
        checksum_fix(&mut rsdp[..20], 8);
        checksum_fix(&mut rsdp, 32);
        mem[..RSDP_V2_LEN].copy_from_slice(&rsdp);
        let mut pointers = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            assert!(t.len() <= 0x100);
            let off = 0x100 * (i + 1);
            mem[off..off + t.len()].copy_from_slice(t);
            if revision == 0 {
                pointers.extend_from_slice(&((BASE + off) as u32).to_le_bytes());
            } else {
                pointers.extend_from_slice(&((BASE + off) as u64).to_le_bytes());
            }
        }
        let xsdt = sdt(if revision == 0 { b"RSDT" } else { b"XSDT" }, &pointers);
        assert!(xsdt.len() <= 0xC0);
        mem[0x40..0x40 + xsdt.len()].copy_from_slice(&xsdt);
        HostMemory { mem: Rc::new(mem) }
    }

    fn discover_in(mem: HostMemory) -> Platform {
        // SAFETY: BASE holds the synthesized RSDP and every table it leads to lies inside `mem`,
        // which the handler maps.
        unsafe { discover(mem, BASE as u64) }
    }

    fn qemu_like() -> HostMemory {
        memory(&[
            sdt(
                b"APIC",
                &madt_body(&[
                    lapic_entry(0, 0, 1),
                    lapic_entry(1, 2, 1),
                    lapic_entry(2, 4, 2),
                    ioapic_entry(0, 0xFEC0_0000, 0),
                    iso_entry(0, 2, 0),
                    iso_entry(9, 9, 0xd),
                ]),
            ),
            sdt(b"MCFG", &mcfg_body(&[(0xB000_0000, 0, 0, 0xff)])),
            sdt(b"HPET", &hpet_body(0, 0xFED0_0000)),
        ])
    }

    #[test]
    fn full_tables_give_apics_cpus_ecam_and_hpet() {
        let p = discover_in(qemu_like());
        assert_eq!(p.acpi_revision, Some(2));
        assert_eq!(p.local_apic, 0xFEE0_0000);
        assert_eq!(
            p.io_apics,
            vec![IoApic {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0
            }]
        );
        let ids: Vec<_> = p
            .processors
            .iter()
            .map(|c| (c.apic_id, c.enabled))
            .collect();
        assert_eq!(ids, vec![(0, true), (2, true), (4, false)]);
        assert!(p.processors[2].online_capable);
        assert_eq!(p.irq_overrides[0].gsi, 2);
        assert_eq!(p.irq_overrides[1].flags, 0xd);
        assert!(p.legacy_pics);
        assert_eq!(p.config_mechanism(), ConfigMechanism::Ecam);
        assert_eq!(
            p.ecam,
            vec![EcamRegion {
                segment: 0,
                bus_start: 0,
                bus_end: 0xff,
                base: 0xB000_0000
            }]
        );
        assert_eq!(p.hpet.unwrap().base, 0xFED0_0000);
        assert_eq!(p.hpet.unwrap().block_id, 0x8086_A201);
        assert!(p.fallbacks.is_empty(), "{:?}", p.fallbacks);
        let line = std::format!("{p}");
        assert!(line.contains("ECAM 0000:00-ff at 0xb0000000"), "{line}");
        assert!(line.contains("2 CPUs"), "{line}");
    }

    #[test]
    fn acpi_1_rsdt_is_followed_too() {
        let p = discover_in(memory_rev(
            0,
            &[sdt(b"APIC", &madt_body(&[ioapic_entry(1, 0xFEC0_0000, 0)]))],
        ));
        assert_eq!(p.acpi_revision, Some(0));
        assert_eq!(p.io_apics[0].id, 1);
        assert_eq!(p.fallbacks, vec![Fallback::NoMcfg("table missing")]);
    }

    #[test]
    fn ecam_addresses_follow_bus_device_function() {
        let r = EcamRegion {
            segment: 0,
            bus_start: 0x10,
            bus_end: 0x1f,
            base: 0xB000_0000,
        };
        let bdf = |bus, device, function| Bdf {
            segment: 0,
            bus,
            device,
            function,
        };
        assert_eq!(r.function_base(bdf(0x10, 0, 0)), Some(0xB000_0000));
        assert_eq!(
            r.function_base(bdf(0x11, 4, 1)),
            Some(0xB000_0000 + (1 << 20) + (4 << 15) + (1 << 12))
        );
        assert_eq!(r.function_base(bdf(0x0f, 0, 0)), None);
        assert_eq!(r.function_base(bdf(0x20, 0, 0)), None);
        assert_eq!(r.function_base(bdf(0x10, 32, 0)), None);
        assert_eq!(
            r.function_base(Bdf {
                segment: 1,
                ..bdf(0x10, 0, 0)
            }),
            None
        );
        assert_eq!(r.len(), 16 << 20);
    }

    #[test]
    fn no_rsdp_gives_architectural_defaults_and_legacy_ports() {
        // SAFETY: an RSDP of 0 is never mapped.
        let p = unsafe { discover(memory(&[]), 0) };
        assert_eq!(p.acpi_revision, None);
        assert_eq!(p.local_apic, DEFAULT_LOCAL_APIC);
        assert_eq!(p.io_apics[0].address, DEFAULT_IO_APIC);
        assert_eq!(p.config_mechanism(), ConfigMechanism::LegacyPorts);
        assert_eq!(p.fallbacks, vec![Fallback::NoRsdp]);
        assert!(std::format!("{}", p.fallbacks[0]).contains("no RSDP"));
    }

    #[test]
    fn corrupt_rsdp_or_root_falls_back_with_a_reason() {
        let mem = qemu_like();
        let mut bytes = (*mem.mem).clone();
        bytes[20] = 99; // RSDP length
        let p = discover_in(HostMemory {
            mem: Rc::new(bytes.clone()),
        });
        assert_eq!(
            p.fallbacks,
            vec![Fallback::BadRoot("RSDP length is not 36")]
        );

        let mut bytes = (*mem.mem).clone();
        bytes[0x40 + 40] ^= 0x55; // XSDT body byte: checksum now wrong
        let p = discover_in(HostMemory {
            mem: Rc::new(bytes.clone()),
        });
        assert_eq!(
            p.fallbacks,
            vec![Fallback::BadRoot("table checksum mismatch")]
        );

        let mut bytes = (*mem.mem).clone();
        bytes[0] = b'X';
        let p = discover_in(HostMemory {
            mem: Rc::new(bytes),
        });
        assert_eq!(p.fallbacks, vec![Fallback::BadRoot("bad RSDP signature")]);
        assert_eq!(p.local_apic, DEFAULT_LOCAL_APIC);
    }

    #[test]
    fn missing_madt_and_mcfg_are_defaulted() {
        let p = discover_in(memory(&[sdt(b"FAKE", &[1, 2, 3])]));
        assert_eq!(p.acpi_revision, Some(2));
        assert_eq!(
            p.fallbacks,
            vec![
                Fallback::NoMadt("table missing"),
                Fallback::NoIoApic,
                Fallback::NoMcfg("table missing")
            ]
        );
        assert_eq!(p.io_apics[0].address, DEFAULT_IO_APIC);
        assert_eq!(p.hpet, None);
    }

    #[test]
    fn bad_table_checksum_is_treated_as_missing() {
        let mut madt = sdt(b"APIC", &madt_body(&[ioapic_entry(3, 0xFEC0_1000, 24)]));
        madt[40] ^= 1;
        let p = discover_in(memory(&[madt]));
        assert_eq!(p.fallbacks[0], Fallback::NoMadt("table missing"));
    }

    #[test]
    fn malformed_madt_entries_stop_parsing_without_looping_or_panicking() {
        // A zero-length entry after one good IO-APIC.
        let mut body = madt_body(&[ioapic_entry(3, 0xFEC0_1000, 24)]);
        body.extend_from_slice(&[0, 0, 0, 0]);
        let p = discover_in(memory(&[sdt(b"APIC", &body)]));
        assert_eq!(
            p.io_apics,
            vec![IoApic {
                id: 3,
                address: 0xFEC0_1000,
                gsi_base: 24
            }]
        );
        assert!(
            p.fallbacks
                .contains(&Fallback::MadtTruncated { offset: 56 })
        );

        // An entry whose length runs past the table, and a local APIC entry too short for its type.
        for bad in [vec![1u8, 40, 0, 0], vec![0u8, 4, 0, 0]] {
            let mut body = madt_body(&[]);
            body.extend_from_slice(&bad);
            let p = discover_in(memory(&[sdt(b"APIC", &body)]));
            assert!(
                p.fallbacks
                    .contains(&Fallback::MadtTruncated { offset: 44 })
            );
            assert!(p.fallbacks.contains(&Fallback::NoIoApic));
        }

        // A MADT shorter than its fixed part.
        let p = discover_in(memory(&[sdt(b"APIC", &[0, 0])]));
        assert_eq!(p.fallbacks[0], Fallback::NoMadt("too short"));
    }

    #[test]
    fn x2apic_entries_and_lapic_override_are_read() {
        let mut x2 = vec![9u8, 16, 0, 0];
        x2.extend_from_slice(&300u32.to_le_bytes());
        x2.extend_from_slice(&1u32.to_le_bytes());
        x2.extend_from_slice(&7u32.to_le_bytes());
        let mut ovr = vec![5u8, 12, 0, 0];
        ovr.extend_from_slice(&0xFEE1_0000u64.to_le_bytes());
        let p = discover_in(memory(&[sdt(
            b"APIC",
            &madt_body(&[x2, ovr, ioapic_entry(0, 0xFEC0_0000, 0)]),
        )]));
        assert_eq!(p.local_apic, 0xFEE1_0000);
        assert_eq!(
            p.processors,
            vec![Processor {
                apic_id: 300,
                uid: 7,
                enabled: true,
                online_capable: false
            }]
        );
    }

    #[test]
    fn bad_mcfg_entries_are_skipped_and_named() {
        let p = discover_in(memory(&[sdt(
            b"MCFG",
            &mcfg_body(&[
                (0xB000_0000, 0, 5, 4),
                (0xB000_1000, 0, 0, 0),
                (0xC000_0000, 1, 0, 0x3f),
            ]),
        )]));
        assert_eq!(p.ecam.len(), 1);
        assert_eq!(p.ecam[0].segment, 1);
        assert!(p.fallbacks.contains(&Fallback::BadMcfgEntry {
            index: 0,
            why: "bus range is reversed"
        }));
        assert!(p.fallbacks.contains(&Fallback::BadMcfgEntry {
            index: 1,
            why: "base is zero or not 1 MiB aligned"
        }));
        let bdf = Bdf {
            segment: 1,
            bus: 2,
            device: 0,
            function: 0,
        };
        assert_eq!(p.ecam_for(bdf).map(|r| r.base), Some(0xC000_0000));
    }

    #[test]
    fn hpet_outside_memory_space_is_ignored_with_a_reason() {
        let p = discover_in(memory(&[sdt(b"HPET", &hpet_body(1, 0x40))]));
        assert_eq!(p.hpet, None);
        assert!(
            p.fallbacks
                .contains(&Fallback::BadHpet("registers are not in system memory"))
        );
        let p = discover_in(memory(&[sdt(b"HPET", &hpet_body(0, 0)[..10])]));
        assert!(p.fallbacks.contains(&Fallback::BadHpet("table too short")));
    }
}
