//! PCI configuration access and enumeration.
//!
//! Owns: the [`ConfigAccess`] edge (the kernel implements it over ECAM and over ports
//! 0xCF8/0xCFC; [`legacy_port_address`] composes the port mechanism's address), and
//! [`enumerate`], which walks every bus reachable from a root bus and describes each function:
//! ids, class, BARs (sized), capabilities, MSI and MSI-X.
//!
//! The `pci_types` crate decodes the common header (ids, header type, multi-function bit, class,
//! status, bridge bus numbers). BAR sizing and the capability walk are done here instead, because
//! the crate's versions panic on a reserved BAR type or a 64-bit BAR that reads back all zeros, and
//! its capability iterator follows a looping list forever; devices are hardware, and a kernel must
//! not hang on a broken one.
//!
//! Invariants: enumeration reads every register once per purpose and never panics; every loop is
//! bounded (buses by a visited set, capability lists by their maximum possible length). BAR
//! sizing turns memory and I/O decoding off while the BAR reads all ones and restores the
//! original BAR and command values, so a device never decodes a bogus address.

use alloc::vec::Vec;
use core::fmt;

pub use nc2dd_abi::system_table::Bdf;
use pci_types::{
    BaseClass, CommandRegister, ConfigRegionAccess, HeaderType, PciAddress, PciHeader,
    PciPciBridgeHeader, SubClass,
};

/// Configuration space per function through the legacy ports.
pub const LEGACY_CONFIG_SIZE: u16 = 256;
/// Configuration space per function through ECAM.
pub const ECAM_CONFIG_SIZE: u16 = 4096;

/// Header offsets this module and its users name.
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const BAR0: u16 = 0x10;
    /// Type-0 expansion ROM base address.
    pub const ROM: u16 = 0x30;
    pub const CAPABILITIES: u16 = 0x34;
    /// First extended capability (ECAM only).
    pub const EXTENDED: u16 = 0x100;
}

/// Capability ids.
pub mod cap {
    pub const MSI: u8 = 0x05;
    pub const MSIX: u8 = 0x11;
    /// Extended capability: single-root I/O virtualisation (its VF BARs place memory).
    pub const EXT_SRIOV: u16 = 0x0010;
    /// Extended capability: resizable BAR.
    pub const EXT_RESIZABLE_BAR: u16 = 0x0015;
}

/// Dword access to PCI configuration space.
///
/// Callers pass a 4-byte-aligned `offset` below [`config_size`](Self::config_size); an
/// implementation must still refuse anything else (read all ones, drop the write) rather than
/// touch another function. Reads of an absent function return all ones, as the hardware does.
pub trait ConfigAccess {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);

    /// 4096 where ECAM covers `bdf`, 256 through the legacy ports.
    fn config_size(&self, _bdf: Bdf) -> u16 {
        LEGACY_CONFIG_SIZE
    }

    /// Writes `width` (1 or 2) bytes at `offset` (aligned to `width`).
    ///
    /// This default is a read-modify-write of the containing dword, which would write back, and so
    /// clear, any write-1-to-clear bits it read in the other bytes. It keeps the status register
    /// (the one such register every function has) at zero unless it is the target, so command
    /// writes do not clear status bits; implementations should override it with a native-width
    /// access (both ECAM and the port mechanism have one), which has no such hazard.
    fn write_narrow(&self, bdf: Bdf, offset: u16, width: u8, value: u32) {
        let aligned = offset & !3;
        let shift = u32::from(offset & 3) * 8;
        let mask = match width {
            1 => 0xFFu32,
            2 => 0xFFFF,
            _ => return,
        } << shift;
        let mut current = self.read32(bdf, aligned);
        if aligned == reg::COMMAND {
            current &= 0x0000_FFFF;
        }
        self.write32(bdf, aligned, (current & !mask) | ((value << shift) & mask));
    }
}

impl<A: ConfigAccess + ?Sized> ConfigAccess for &A {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        (**self).read32(bdf, offset)
    }
    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        (**self).write32(bdf, offset, value)
    }
    fn config_size(&self, bdf: Bdf) -> u16 {
        (**self).config_size(bdf)
    }
    fn write_narrow(&self, bdf: Bdf, offset: u16, width: u8, value: u32) {
        (**self).write_narrow(bdf, offset, width, value)
    }
}

/// The value to write to port 0xCF8 to reach the dword at `offset` of `bdf`; the data is then at
/// port 0xCFC (+ `offset & 3` for a narrow access). `None` for what the ports cannot reach.
pub fn legacy_port_address(bdf: Bdf, offset: u16) -> Option<u32> {
    if bdf.segment != 0 || bdf.device > 31 || bdf.function > 7 || offset >= LEGACY_CONFIG_SIZE {
        return None;
    }
    Some(
        0x8000_0000
            | (u32::from(bdf.bus) << 16)
            | (u32::from(bdf.device) << 11)
            | (u32::from(bdf.function) << 8)
            | u32::from(offset & 0xFC),
    )
}

/// Lets `pci_types` read through a [`ConfigAccess`].
struct Types<'a, A: ?Sized>(&'a A);

fn bdf_of(address: PciAddress) -> Bdf {
    Bdf {
        segment: address.segment(),
        bus: address.bus(),
        device: address.device(),
        function: address.function(),
    }
}

fn address_of(bdf: Bdf) -> PciAddress {
    PciAddress::new(bdf.segment, bdf.bus, bdf.device, bdf.function)
}

impl<A: ConfigAccess + ?Sized> ConfigRegionAccess for Types<'_, A> {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        self.0.read32(bdf_of(address), offset)
    }
    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        self.0.write32(bdf_of(address), offset, value)
    }
}

/// What kind of header a function has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    Endpoint,
    /// A PCI-to-PCI bridge and the buses behind it.
    Bridge {
        secondary: u8,
        subordinate: u8,
    },
    CardBus,
    Unknown(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Memory32,
    Memory64,
    Io,
}

/// A decoded, sized BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Slot 0..=5 (a 64-bit BAR also uses the next slot).
    pub index: u8,
    pub kind: BarKind,
    /// Bus address (I/O port for [`BarKind::Io`]); 0 means unassigned.
    pub address: u64,
    /// Bytes decoded; a power of two.
    pub size: u64,
    pub prefetchable: bool,
}

impl Bar {
    pub fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }
}

/// One entry of the capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: u16,
}

/// One entry of the extended capability list (ECAM only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapability {
    pub id: u16,
    pub offset: u16,
}

/// The MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiInfo {
    pub offset: u16,
    pub is_64bit: bool,
    pub per_vector_mask: bool,
    /// Vectors the function can use (1..=32, a power of two).
    pub max_vectors: u8,
}

impl MsiInfo {
    /// Bytes the capability structure occupies.
    pub fn len(&self) -> u16 {
        match (self.is_64bit, self.per_vector_mask) {
            (false, false) => 0x0A,
            (true, false) => 0x0E,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }

    /// Never true: the structure has at least a header and an address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the message data register.
    pub fn data_offset(&self) -> u16 {
        self.offset + if self.is_64bit { 0x0C } else { 0x08 }
    }

    /// Offset of the mask bits register, when per-vector masking exists.
    pub fn mask_offset(&self) -> Option<u16> {
        self.per_vector_mask
            .then_some(self.offset + if self.is_64bit { 0x10 } else { 0x0C })
    }
}

/// The MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixInfo {
    pub offset: u16,
    /// Table entries (1..=2048).
    pub table_size: u16,
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
}

impl MsixInfo {
    /// Bytes the capability structure occupies.
    pub const LEN: u16 = 12;

    /// Bytes of the table (16 per entry).
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * 16
    }

    /// Bytes of the pending bit array (one bit per entry, in whole qwords).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }
}

/// One PCI function as enumeration found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    pub class: BaseClass,
    pub subclass: SubClass,
    pub prog_if: u8,
    pub kind: HeaderKind,
    /// Function 0's multi-function bit (as read from this function's header).
    pub multifunction: bool,
    /// Implemented BARs in slot order.
    pub bars: Vec<Bar>,
    pub capabilities: Vec<Capability>,
    pub ext_capabilities: Vec<ExtCapability>,
    pub msi: Option<MsiInfo>,
    pub msix: Option<MsixInfo>,
    /// Bytes of configuration space reachable for this function.
    pub config_size: u16,
    /// What looked wrong while reading it (the rest of the description is still valid).
    pub problems: Vec<&'static str>,
}

impl Function {
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }

    pub fn is_endpoint(&self) -> bool {
        self.kind == HeaderKind::Endpoint
    }

    /// The boot-log line, e.g.
    /// `00:04.0 8086:10c9 class 02:00 BAR0 mem 0xfebc0000 128K ... msix 10`.
    pub fn log_line(&self) -> LogLine<'_> {
        LogLine(self)
    }
}

/// Most capabilities a 256-byte space can hold (each is at least 4 bytes, after the header).
const MAX_CAPABILITIES: usize = (256 - 0x40) / 4;
/// Most extended capabilities a 4 KiB space can hold.
const MAX_EXT_CAPABILITIES: usize = (4096 - 0x100) / 4;

/// Every function reachable from `root_bus` of `segment`, in bus, device, function order of
/// discovery (a bridge's buses are scanned after the bus it sits on).
pub fn enumerate<A: ConfigAccess + ?Sized>(
    access: &A,
    segment: u16,
    root_bus: u8,
) -> Vec<Function> {
    let mut found = Vec::new();
    let mut visited = [false; 256];
    let mut pending = Vec::new();
    pending.push(root_bus);
    while let Some(bus) = pending.pop() {
        if core::mem::replace(&mut visited[usize::from(bus)], true) {
            continue;
        }
        let first_new = found.len();
        scan_bus(access, segment, bus, &mut found);
        // Push in reverse so that buses are scanned in the order their bridges were found.
        for f in found[first_new..].iter().rev() {
            if let HeaderKind::Bridge { secondary, .. } = f.kind {
                // A secondary bus at or below its own bus is unconfigured or looping.
                if secondary > bus && !visited[usize::from(secondary)] {
                    pending.push(secondary);
                }
            }
        }
    }
    found
}

fn scan_bus<A: ConfigAccess + ?Sized>(access: &A, segment: u16, bus: u8, out: &mut Vec<Function>) {
    for device in 0..32 {
        let bdf = |function| Bdf {
            segment,
            bus,
            device,
            function,
        };
        let Some(f0) = read_function(access, bdf(0)) else {
            continue;
        };
        let multi = f0.multifunction;
        out.push(f0);
        if multi {
            for function in 1..8 {
                if let Some(f) = read_function(access, bdf(function)) {
                    out.push(f);
                }
            }
        }
    }
}

/// Describes the function at `bdf`, or `None` if nothing answers there.
pub fn read_function<A: ConfigAccess + ?Sized>(access: &A, bdf: Bdf) -> Option<Function> {
    let t = Types(access);
    let header = PciHeader::new(address_of(bdf));
    let (vendor, device) = header.id(&t);
    if vendor == 0xFFFF || vendor == 0 {
        return None;
    }
    let (revision, class, subclass, prog_if) = header.revision_and_class(&t);
    let kind = match header.header_type(&t) {
        HeaderType::Endpoint => HeaderKind::Endpoint,
        HeaderType::PciPciBridge => {
            let b = PciPciBridgeHeader::from_header(PciHeader::new(address_of(bdf)), &t);
            match b {
                Some(b) => HeaderKind::Bridge {
                    secondary: b.secondary_bus_number(&t),
                    subordinate: b.subordinate_bus_number(&t),
                },
                None => HeaderKind::Unknown(1),
            }
        }
        HeaderType::CardBusBridge => HeaderKind::CardBus,
        HeaderType::Unknown(x) => HeaderKind::Unknown(x),
        _ => HeaderKind::Unknown(0x7F),
    };
    let mut f = Function {
        bdf,
        vendor,
        device,
        revision,
        class,
        subclass,
        prog_if,
        kind,
        multifunction: header.has_multiple_functions(&t),
        bars: Vec::new(),
        capabilities: Vec::new(),
        ext_capabilities: Vec::new(),
        msi: None,
        msix: None,
        config_size: access.config_size(bdf).min(ECAM_CONFIG_SIZE),
        problems: Vec::new(),
    };
    let slots = match kind {
        HeaderKind::Endpoint => 6,
        HeaderKind::Bridge { .. } => 2,
        _ => 0,
    };
    if slots > 0 {
        size_bars(access, &mut f, slots);
    }
    if header.status(&t).has_capability_list() && kind != HeaderKind::CardBus {
        walk_capabilities(access, &mut f);
    }
    if f.config_size >= ECAM_CONFIG_SIZE {
        walk_ext_capabilities(access, &mut f);
    }
    Some(f)
}

fn size_bars<A: ConfigAccess + ?Sized>(access: &A, f: &mut Function, slots: u8) {
    let bdf = f.bdf;
    let command = access.read32(bdf, reg::COMMAND) & 0xFFFF;
    let decode = u32::from((CommandRegister::IO_ENABLE | CommandRegister::MEMORY_ENABLE).bits());
    // The status half is written as zero: its bits are write-1-to-clear.
    if command & decode != 0 {
        access.write32(bdf, reg::COMMAND, command & !decode);
    }
    let mut slot = 0u8;
    while slot < slots {
        let offset = reg::BAR0 + u16::from(slot) * 4;
        let raw = access.read32(bdf, offset);
        let probe = |offset: u16, restore: u32| {
            access.write32(bdf, offset, 0xFFFF_FFFF);
            let r = access.read32(bdf, offset);
            access.write32(bdf, offset, restore);
            r
        };
        let index = slot;
        slot += 1;
        if raw & 1 == 1 {
            let mask = probe(offset, raw) & !0x3;
            if mask != 0 {
                f.bars.push(Bar {
                    index,
                    kind: BarKind::Io,
                    address: u64::from(raw & !0x3),
                    size: 1 << mask.trailing_zeros(),
                    prefetchable: false,
                });
            }
            continue;
        }
        let prefetchable = raw & 0x8 != 0;
        match (raw >> 1) & 3 {
            // 0b01 is the old "below 1 MiB" type: a 32-bit BAR.
            0 | 1 => {
                let mask = probe(offset, raw) & !0xF;
                if mask != 0 {
                    f.bars.push(Bar {
                        index,
                        kind: BarKind::Memory32,
                        address: u64::from(raw & !0xF),
                        size: 1 << mask.trailing_zeros(),
                        prefetchable,
                    });
                }
            }
            2 => {
                if slot >= slots {
                    f.problems.push("64-bit BAR in the last slot");
                    continue;
                }
                let high = access.read32(bdf, offset + 4);
                // Both halves read all ones together: the size can exceed 4 GiB.
                access.write32(bdf, offset, 0xFFFF_FFFF);
                access.write32(bdf, offset + 4, 0xFFFF_FFFF);
                let low_mask = access.read32(bdf, offset) & !0xF;
                let high_mask = access.read32(bdf, offset + 4);
                access.write32(bdf, offset, raw);
                access.write32(bdf, offset + 4, high);
                slot += 1;
                let mask = (u64::from(high_mask) << 32) | u64::from(low_mask);
                if mask != 0 {
                    f.bars.push(Bar {
                        index,
                        kind: BarKind::Memory64,
                        address: (u64::from(high) << 32) | u64::from(raw & !0xF),
                        size: 1 << mask.trailing_zeros(),
                        prefetchable,
                    });
                }
            }
            _ => f.problems.push("BAR with the reserved memory type"),
        }
    }
    if command & decode != 0 {
        access.write32(bdf, reg::COMMAND, command);
    }
}

fn walk_capabilities<A: ConfigAccess + ?Sized>(access: &A, f: &mut Function) {
    let bdf = f.bdf;
    let mut at = (access.read32(bdf, reg::CAPABILITIES) & 0xFC) as u16;
    let mut steps = 0;
    while at >= 0x40 {
        if steps == MAX_CAPABILITIES {
            f.problems.push("capability list loops");
            return;
        }
        steps += 1;
        let dword = access.read32(bdf, at);
        let id = (dword & 0xFF) as u8;
        let control = (dword >> 16) as u16;
        f.capabilities.push(Capability { id, offset: at });
        match id {
            cap::MSI if f.msi.is_none() => {
                let mmc = ((control >> 1) & 7).min(5);
                f.msi = Some(MsiInfo {
                    offset: at,
                    is_64bit: control & (1 << 7) != 0,
                    per_vector_mask: control & (1 << 8) != 0,
                    max_vectors: 1 << mmc,
                });
            }
            cap::MSIX if f.msix.is_none() => {
                let table = access.read32(bdf, at + 4);
                let pba = access.read32(bdf, at + 8);
                if table & 7 > 5 || pba & 7 > 5 {
                    f.problems.push("MSI-X table or PBA names a reserved BAR");
                } else {
                    f.msix = Some(MsixInfo {
                        offset: at,
                        table_size: (control & 0x7FF) + 1,
                        table_bar: (table & 7) as u8,
                        table_offset: table & !7,
                        pba_bar: (pba & 7) as u8,
                        pba_offset: pba & !7,
                    });
                }
            }
            _ => {}
        }
        at = ((dword >> 8) & 0xFC) as u16;
    }
}

fn walk_ext_capabilities<A: ConfigAccess + ?Sized>(access: &A, f: &mut Function) {
    let bdf = f.bdf;
    let mut at = reg::EXTENDED;
    for _ in 0..MAX_EXT_CAPABILITIES {
        let dword = access.read32(bdf, at);
        if dword == 0 || dword == 0xFFFF_FFFF {
            return;
        }
        let id = (dword & 0xFFFF) as u16;
        if id != 0 {
            f.ext_capabilities.push(ExtCapability { id, offset: at });
        }
        let next = ((dword >> 20) & 0xFFC) as u16;
        if next < reg::EXTENDED {
            return;
        }
        at = next;
    }
    f.problems.push("extended capability list loops");
}

/// Logs one line per function (the boot log's device list).
pub fn log_all(functions: &[Function]) {
    for f in functions {
        log::info!("pci: {}", f.log_line());
    }
}

/// Formats a size as the largest whole binary unit: `128K`, `1M`, `32`.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if s >= 1 << shift && s.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", s >> shift);
            }
        }
        write!(f, "{s}")
    }
}

/// See [`Function::log_line`].
pub struct LogLine<'a>(&'a Function);

impl fmt::Display for LogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let func = self.0;
        let b = func.bdf;
        if b.segment != 0 {
            write!(f, "{:04x}:", b.segment)?;
        }
        write!(
            f,
            "{:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}:{:02x}",
            b.bus, b.device, b.function, func.vendor, func.device, func.class, func.subclass
        )?;
        for bar in &func.bars {
            let kind = match bar.kind {
                BarKind::Memory32 => "mem",
                BarKind::Memory64 => "mem64",
                BarKind::Io => "io",
            };
            write!(
                f,
                " BAR{} {kind} {:#x} {}",
                bar.index,
                bar.address,
                Size(bar.size)
            )?;
            if bar.prefetchable {
                write!(f, " pref")?;
            }
        }
        if let HeaderKind::Bridge {
            secondary,
            subordinate,
        } = func.kind
        {
            write!(f, " bridge {secondary:02x}-{subordinate:02x}")?;
        }
        if let Some(m) = &func.msi {
            write!(f, " msi {}", m.max_vectors)?;
        }
        if let Some(m) = &func.msix {
            write!(f, " msix {}", m.table_size)?;
        }
        for p in &func.problems {
            write!(f, " [{p}]")?;
        }
        Ok(())
    }
}

/// A software PCI bus for host tests: functions with BARs that size like hardware.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use core::cell::RefCell;
    use std::collections::BTreeMap;

    pub struct FakeFunction {
        pub config: [u32; 1024],
        /// Writable bits of each BAR slot; the rest read back from `config` unchanged.
        pub bar_masks: [u32; 6],
    }

    impl FakeFunction {
        /// A type-0 function with `vendor:device`, class and header type byte.
        pub fn new(vendor: u16, device: u16, class: u8, subclass: u8, header_type: u8) -> Self {
            let mut config = [0u32; 1024];
            config[0] = u32::from(vendor) | (u32::from(device) << 16);
            config[2] = (u32::from(class) << 24) | (u32::from(subclass) << 16) | 1;
            config[3] = u32::from(header_type) << 16;
            FakeFunction {
                config,
                bar_masks: [0; 6],
            }
        }

        /// A 32-bit memory BAR of `size` bytes at `address`.
        pub fn mem32(mut self, slot: usize, address: u32, size: u32) -> Self {
            self.config[4 + slot] = address;
            self.bar_masks[slot] = !(size - 1) & !0xF;
            self
        }

        /// A 64-bit (optionally prefetchable) memory BAR in `slot` and `slot + 1`.
        pub fn mem64(mut self, slot: usize, address: u64, size: u64, pref: bool) -> Self {
            let mask = !(size - 1);
            let flags = 0b100 | if pref { 0b1000 } else { 0 };
            self.config[4 + slot] = (address as u32 & !0xF) | flags;
            self.config[5 + slot] = (address >> 32) as u32;
            self.bar_masks[slot] = mask as u32 & !0xF;
            self.bar_masks[slot + 1] = (mask >> 32) as u32;
            self
        }

        /// An I/O BAR of `size` ports at `port`.
        pub fn io(mut self, slot: usize, port: u32, size: u32) -> Self {
            self.config[4 + slot] = port | 1;
            self.bar_masks[slot] = !(size - 1) & !0x3;
            self
        }

        /// Appends the capability `words` (first word's bits 15:8 are filled in) at `offset`,
        /// linking it after the last one.
        pub fn capability(mut self, offset: u16, words: &[u32]) -> Self {
            self.config[1] |= 1 << 20; // status: capability list
            let mut link = 0x34usize;
            let mut at = (self.config[0x34 / 4] & 0xFC) as usize;
            while at != 0 {
                link = at + 1;
                at = ((self.config[at / 4] >> 8) & 0xFC) as usize;
            }
            self.set_byte(link, offset as u8);
            for (i, w) in words.iter().enumerate() {
                self.config[offset as usize / 4 + i] = *w;
            }
            self.config[offset as usize / 4] &= !0xFF00;
            self
        }

        pub fn set_byte(&mut self, at: usize, value: u8) {
            let shift = (at % 4) * 8;
            let w = &mut self.config[at / 4];
            *w = (*w & !(0xFF << shift)) | (u32::from(value) << shift);
        }
    }

    /// The bus: absent functions read all ones.
    pub struct FakePci {
        pub functions: RefCell<BTreeMap<Bdf, FakeFunction>>,
        pub size: u16,
        /// Every write in order.
        pub writes: RefCell<Vec<(Bdf, u16, u32)>>,
    }

    pub fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            segment: 0,
            bus,
            device,
            function,
        }
    }

    impl FakePci {
        pub fn new(size: u16) -> Self {
            FakePci {
                functions: RefCell::new(BTreeMap::new()),
                size,
                writes: RefCell::new(Vec::new()),
            }
        }

        pub fn add(&self, bdf: Bdf, f: FakeFunction) {
            self.functions.borrow_mut().insert(bdf, f);
        }

        pub fn get(&self, bdf: Bdf, offset: u16) -> u32 {
            self.functions.borrow()[&bdf].config[usize::from(offset / 4)]
        }

        pub fn set(&self, bdf: Bdf, offset: u16, value: u32) {
            self.functions.borrow_mut().get_mut(&bdf).unwrap().config[usize::from(offset / 4)] =
                value;
        }

        /// The machine the tests share:
        /// - 00:00.0 host bridge 8086:29c0;
        /// - 00:04.0 igb-like 8086:10c9: BAR0 128K, BAR1 128K, BAR2 I/O 32, BAR3 16K MSI-X;
        ///   PM, MSI (64-bit, maskable), MSI-X (10 vectors, table BAR3+0, PBA BAR3+0x2000), PCIe;
        ///   extended AER and SR-IOV;
        /// - 00:05.0 single-function device that answers on every function number;
        /// - 00:1e.0 PCI bridge to bus 01, behind it 01:00.0 with a prefetchable 64-bit BAR
        ///   above 4 GiB;
        /// - 00:1f.0 multi-function: .0 ISA bridge, .2 SATA (I/O BARs + 4K BAR5), .3 SMBus; .1
        ///   absent.
        pub fn machine(size: u16) -> Self {
            let pci = FakePci::new(size);
            pci.add(bdf(0, 0, 0), FakeFunction::new(0x8086, 0x29c0, 6, 0, 0));
            let mut igb = FakeFunction::new(0x8086, 0x10c9, 2, 0, 0)
                .mem32(0, 0xfebc_0000, 128 << 10)
                .mem32(1, 0xfeba_0000, 128 << 10)
                .io(2, 0xc000, 32)
                .mem32(3, 0xfebf_0000, 16 << 10)
                .capability(0x40, &[0x0003_0001, 0])
                // MSI: 64-bit, per-vector mask, 1 vector.
                .capability(0x50, &[0x0180_0005, 0, 0, 0, 0, 0])
                // MSI-X: 10 entries, table BAR3 + 0, PBA BAR3 + 0x2000.
                .capability(0x70, &[0x0009_0011, 3, 0x2003])
                .capability(0xa0, &[0x0002_0010, 0, 0]);
            // AER at 0x100 -> SR-IOV at 0x160.
            igb.config[0x100 / 4] = 0x1601_0001;
            igb.config[0x160 / 4] = 0x0001_0010;
            pci.add(bdf(0, 4, 0), igb);
            for function in 0..8 {
                pci.add(
                    bdf(0, 5, function),
                    FakeFunction::new(0x1234, 0x1111, 3, 0, 0).mem32(0, 0xfd00_0000, 16 << 20),
                );
            }
            let mut bridge = FakeFunction::new(0x8086, 0x244e, 6, 4, 1);
            bridge.config[6] = 0x0001_0100; // primary 0, secondary 1, subordinate 1
            pci.add(bdf(0, 0x1e, 0), bridge);
            pci.add(
                bdf(1, 0, 0),
                FakeFunction::new(0x1af4, 0x1041, 2, 0, 0).mem64(0, 0x8_0000_0000, 16 << 10, true),
            );
            pci.add(
                bdf(0, 0x1f, 0),
                FakeFunction::new(0x8086, 0x2918, 6, 1, 0x80),
            );
            pci.add(
                bdf(0, 0x1f, 2),
                FakeFunction::new(0x8086, 0x2922, 1, 6, 0)
                    .io(4, 0xd000, 32)
                    .mem32(5, 0xfebf_5000, 4 << 10),
            );
            pci.add(
                bdf(0, 0x1f, 3),
                FakeFunction::new(0x8086, 0x2930, 0xc, 5, 0).io(4, 0x700, 64),
            );
            pci
        }
    }

    impl ConfigAccess for FakePci {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            assert_eq!(offset % 4, 0, "unaligned config read");
            assert!(offset < self.size, "config read beyond the space");
            self.functions
                .borrow()
                .get(&bdf)
                .map_or(0xFFFF_FFFF, |f| f.config[usize::from(offset / 4)])
        }

        fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned config write");
            assert!(offset < self.size, "config write beyond the space");
            self.writes.borrow_mut().push((bdf, offset, value));
            let mut all = self.functions.borrow_mut();
            let Some(f) = all.get_mut(&bdf) else { return };
            let i = usize::from(offset / 4);
            let endpoint = (f.config[3] >> 16) & 0x7F == 0;
            let slots = if endpoint { 6 } else { 2 };
            if (4..4 + slots).contains(&i) {
                let mask = f.bar_masks[i - 4];
                f.config[i] = (f.config[i] & !mask) | (value & mask);
            } else if i == 1 {
                // Status bits are write-1-to-clear.
                let status = (f.config[1] >> 16) & !(value >> 16);
                f.config[1] = (status << 16) | (value & 0xFFFF);
            } else {
                f.config[i] = value;
            }
        }

        fn config_size(&self, _bdf: Bdf) -> u16 {
            self.size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;
    use std::format;
    use std::vec;

    fn ids(fs: &[Function]) -> Vec<String> {
        fs.iter()
            .map(|f| {
                format!(
                    "{:02x}:{:02x}.{} {:04x}:{:04x}",
                    f.bdf.bus, f.bdf.device, f.bdf.function, f.vendor, f.device
                )
            })
            .collect()
    }

    #[test]
    fn enumeration_follows_bridges_and_multifunction_bits() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let fs = enumerate(&pci, 0, 0);
        assert_eq!(
            ids(&fs),
            vec![
                "00:00.0 8086:29c0",
                "00:04.0 8086:10c9",
                "00:05.0 1234:1111",
                "00:1e.0 8086:244e",
                "00:1f.0 8086:2918",
                "00:1f.2 8086:2922",
                "00:1f.3 8086:2930",
                "01:00.0 1af4:1041",
            ]
        );
        let bridge = &fs[3];
        assert_eq!(
            bridge.kind,
            HeaderKind::Bridge {
                secondary: 1,
                subordinate: 1
            }
        );
        assert!(fs[4].multifunction);
        assert_eq!((fs[5].class, fs[5].subclass), (1, 6));
    }

    #[test]
    fn igb_bars_are_sized_and_restored() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let igb_bdf = bdf(0, 4, 0);
        pci.set(igb_bdf, reg::COMMAND, 0x0010_0007); // decoding and bus master on
        let before: Vec<u32> = (0..6).map(|i| pci.get(igb_bdf, 0x10 + 4 * i)).collect();
        let f = read_function(&pci, igb_bdf).unwrap();
        let bars: Vec<_> = f
            .bars
            .iter()
            .map(|b| (b.index, b.kind, b.address, b.size))
            .collect();
        assert_eq!(
            bars,
            vec![
                (0, BarKind::Memory32, 0xfebc_0000, 128 << 10),
                (1, BarKind::Memory32, 0xfeba_0000, 128 << 10),
                (2, BarKind::Io, 0xc000, 32),
                (3, BarKind::Memory32, 0xfebf_0000, 16 << 10),
            ]
        );
        let after: Vec<u32> = (0..6).map(|i| pci.get(igb_bdf, 0x10 + 4 * i)).collect();
        assert_eq!(before, after);
        assert_eq!(pci.get(igb_bdf, reg::COMMAND) & 0xFFFF, 7);
        // Decoding was off while any BAR held all ones.
        let writes = pci.writes.borrow();
        let first_probe = writes.iter().position(|w| w.2 == 0xFFFF_FFFF).unwrap();
        assert_eq!(writes[first_probe - 1], (igb_bdf, reg::COMMAND, 0x0004));
        assert_eq!(*writes.last().unwrap(), (igb_bdf, reg::COMMAND, 0x0007));
    }

    #[test]
    fn sixty_four_bit_prefetchable_bar_above_4g() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let f = read_function(&pci, bdf(1, 0, 0)).unwrap();
        assert_eq!(
            f.bars,
            vec![Bar {
                index: 0,
                kind: BarKind::Memory64,
                address: 0x8_0000_0000,
                size: 16 << 10,
                prefetchable: true
            }]
        );
        // A BAR larger than 4 GiB sizes through the upper half.
        let big = FakeFunction::new(1, 2, 3, 0, 0).mem64(2, 0x40_0000_0000, 8 << 30, true);
        pci.add(bdf(2, 0, 0), big);
        let f = read_function(&pci, bdf(2, 0, 0)).unwrap();
        assert_eq!(f.bars[0].size, 8 << 30);
        assert_eq!(f.bars[0].index, 2);
    }

    #[test]
    fn capabilities_msi_and_msix_are_decoded() {
        let pci = FakePci::machine(ECAM_CONFIG_SIZE);
        let f = read_function(&pci, bdf(0, 4, 0)).unwrap();
        let caps: Vec<_> = f.capabilities.iter().map(|c| (c.id, c.offset)).collect();
        assert_eq!(caps, vec![(1, 0x40), (5, 0x50), (0x11, 0x70), (0x10, 0xa0)]);
        assert_eq!(
            f.msix,
            Some(MsixInfo {
                offset: 0x70,
                table_size: 10,
                table_bar: 3,
                table_offset: 0,
                pba_bar: 3,
                pba_offset: 0x2000
            })
        );
        let msi = f.msi.unwrap();
        assert!(msi.is_64bit && msi.per_vector_mask);
        assert_eq!(
            (msi.len(), msi.data_offset(), msi.mask_offset()),
            (0x18, 0x5c, Some(0x60))
        );
        let ext: Vec<_> = f
            .ext_capabilities
            .iter()
            .map(|c| (c.id, c.offset))
            .collect();
        assert_eq!(ext, vec![(1, 0x100), (cap::EXT_SRIOV, 0x160)]);
        assert_eq!(f.config_size, ECAM_CONFIG_SIZE);
        // Without ECAM the extended list is not reachable.
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        assert!(
            read_function(&pci, bdf(0, 4, 0))
                .unwrap()
                .ext_capabilities
                .is_empty()
        );
    }

    #[test]
    fn looping_capability_list_and_reserved_bar_type_are_reported_not_fatal() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let mut f = FakeFunction::new(1, 2, 3, 0, 0)
            .capability(0x40, &[0x0000_0009])
            .capability(0x48, &[0x0000_0009]);
        f.set_byte(0x49, 0x40); // 0x48 -> 0x40 -> 0x48 ...
        f.config[4] = 0x6; // memory BAR, reserved type 0b11
        f.bar_masks[0] = 0xFFFF_F000;
        pci.add(bdf(3, 0, 0), f);
        let f = read_function(&pci, bdf(3, 0, 0)).unwrap();
        assert!(f.problems.contains(&"capability list loops"));
        assert!(f.problems.contains(&"BAR with the reserved memory type"));
        assert!(f.bars.is_empty());

        // A bridge whose secondary bus points back at its own bus does not loop enumeration.
        let mut b = FakeFunction::new(0x8086, 0x244e, 6, 4, 1);
        b.config[6] = 0x0000_0000;
        pci.add(bdf(1, 1, 0), b);
        let fs = enumerate(&pci, 0, 0);
        assert_eq!(fs.iter().filter(|f| f.bdf == bdf(1, 1, 0)).count(), 1);
    }

    #[test]
    fn log_line_names_bdf_ids_class_bars_and_msix() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let f = read_function(&pci, bdf(0, 4, 0)).unwrap();
        assert_eq!(
            format!("{}", f.log_line()),
            "00:04.0 8086:10c9 class 02:00 BAR0 mem 0xfebc0000 128K BAR1 mem 0xfeba0000 128K \
             BAR2 io 0xc000 32 BAR3 mem 0xfebf0000 16K msi 1 msix 10"
        );
        let f = read_function(&pci, bdf(1, 0, 0)).unwrap();
        assert_eq!(
            format!("{}", f.log_line()),
            "01:00.0 1af4:1041 class 02:00 BAR0 mem64 0x800000000 16K pref"
        );
        let f = read_function(&pci, bdf(0, 0x1e, 0)).unwrap();
        assert!(format!("{}", f.log_line()).ends_with("class 06:04 bridge 01-01"));
        assert_eq!(format!("{}", Size(3 << 20)), "3M");
        assert_eq!(format!("{}", Size(1536)), "1536");
    }

    #[test]
    fn legacy_port_addresses() {
        assert_eq!(legacy_port_address(bdf(0, 4, 0), 0), Some(0x8000_2000));
        assert_eq!(
            legacy_port_address(bdf(1, 0x1f, 7), 0xFF),
            Some(0x8001_FFFC)
        );
        assert_eq!(legacy_port_address(bdf(0, 0, 0), 0x100), None);
        let mut far = bdf(0, 0, 0);
        far.segment = 1;
        assert_eq!(legacy_port_address(far, 0), None);
    }

    #[test]
    fn narrow_write_default_keeps_status_bits() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let b = bdf(0, 4, 0);
        pci.set(b, reg::COMMAND, 0x8010_0002); // a status error bit and the cap-list bit set
        pci.write_narrow(b, reg::COMMAND, 2, 0x0406);
        assert_eq!(pci.get(b, reg::COMMAND), 0x8010_0406);
        pci.write_narrow(b, 0x3d, 1, 0x7f);
        assert_eq!(pci.get(b, 0x3c) & 0xFF00, 0x7f00);
    }
}
