//! Message-signalled interrupts: programming MSI-X (and MSI as the fallback) and routing IDT
//! vectors to task notification bits.
//!
//! Owns three things:
//!
//! - the x86 message format ([`message`]): address `0xFEE00000 | dest APIC id << 12` (physical
//!   destination, no redirection hint), data = vector with fixed delivery and edge trigger;
//! - the device side: the 16-byte MSI-X table entry (address low, address high, data, vector
//!   control whose bit 0 masks) through an [`Mmio`], the MSI-X enable and function-mask bits in
//!   the capability's message control, and the MSI capability's registers, both through a
//!   [`ConfigAccess`];
//! - the [`Router`]: which IDT vector belongs to which (task, notification bit) and source, with
//!   the rule that an interrupt stays masked from its arrival until the task acknowledges it.
//!
//! Invariants: an MSI-X entry is masked while its address and data are written, so the device
//! never sends a half-written message; a routed vector is in `FIRST_VECTOR..=LAST_VECTOR`; a
//! vector's state is Armed (source unmasked) or Posted (source masked, bit posted, maybe another
//! interrupt pending behind it), and only an acknowledgement leaves Posted.

use core::fmt;

use super::mmio::Mmio;
use super::pci::{Bdf, ConfigAccess, MsiInfo, MsixInfo};

/// Bytes per MSI-X table entry.
pub const ENTRY_SIZE: usize = 16;
const ENTRY_ADDRESS_LOW: usize = 0;
const ENTRY_ADDRESS_HIGH: usize = 4;
const ENTRY_DATA: usize = 8;
const ENTRY_CONTROL: usize = 12;
const ENTRY_MASKED: u32 = 1;

/// Message control bits (the high half of the capability's first dword).
const MSIX_ENABLE: u32 = 1 << 31;
const MSIX_FUNCTION_MASK: u32 = 1 << 30;
const MSI_ENABLE: u32 = 1 << 16;
const MSI_MME_SHIFT: u32 = 16 + 4;
const MSI_MME_MASK: u32 = 0b111 << MSI_MME_SHIFT;

/// The local APIC's MSI address window.
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;
/// First IDT vector handed to devices.
pub const FIRST_VECTOR: u8 = 64;
/// Last IDT vector handed to devices.
pub const LAST_VECTOR: u8 = 191;
/// Routable vectors.
pub const VECTORS: usize = (LAST_VECTOR - FIRST_VECTOR) as usize + 1;

/// An MSI message: where the device writes and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub address: u64,
    pub data: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// Vectors 0..=31 are exceptions and never device interrupts.
    ReservedVector(u8),
    /// Entry beyond the MSI-X table.
    NoSuchEntry { entry: u16, table_size: u16 },
    /// MSI message counts are powers of two up to what the function supports.
    BadVectorCount { count: u8, max: u8 },
    /// With several MSI messages the device sets the low bits of the data: the first vector must
    /// be aligned to the count.
    UnalignedVector { vector: u8, count: u8 },
    /// A 32-bit MSI capability cannot hold this address.
    AddressTooHigh(u64),
    /// The MSI capability has no per-vector mask bits.
    NoMasking,
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MsiError::ReservedVector(v) => write!(f, "vector {v} is reserved for exceptions"),
            MsiError::NoSuchEntry { entry, table_size } => write!(
                f,
                "MSI-X entry {entry} is beyond the {table_size}-entry table"
            ),
            MsiError::BadVectorCount { count, max } => write!(
                f,
                "{count} MSI vectors: must be a power of two no larger than {max}"
            ),
            MsiError::UnalignedVector { vector, count } => write!(
                f,
                "first MSI vector {vector} is not aligned to the {count}-vector block"
            ),
            MsiError::AddressTooHigh(a) => {
                write!(f, "MSI address {a:#x} does not fit a 32-bit capability")
            }
            MsiError::NoMasking => write!(f, "the MSI capability has no per-vector masking"),
        }
    }
}

/// The message that delivers `vector` to the local APIC `dest_apic` (fixed delivery, edge
/// triggered, physical destination mode).
pub fn message(dest_apic: u8, vector: u8) -> Result<Message, MsiError> {
    if vector < 32 {
        return Err(MsiError::ReservedVector(vector));
    }
    Ok(Message {
        address: MSI_ADDRESS_BASE | (u64::from(dest_apic) << 12),
        data: u32::from(vector),
    })
}

/// An MSI-X table inside a mapped BAR.
pub struct MsixTable<M: Mmio> {
    mmio: M,
    /// Byte offset of entry 0 in `mmio`.
    offset: usize,
    size: u16,
}

impl<M: Mmio> MsixTable<M> {
    /// The table of `size` entries at byte `offset` of the mapping `mmio`.
    pub fn new(mmio: M, offset: usize, size: u16) -> Self {
        MsixTable { mmio, offset, size }
    }

    fn entry(&self, entry: u16) -> Result<usize, MsiError> {
        if entry >= self.size {
            return Err(MsiError::NoSuchEntry {
                entry,
                table_size: self.size,
            });
        }
        Ok(self.offset + usize::from(entry) * ENTRY_SIZE)
    }

    /// Writes `msg` into `entry` and leaves the entry masked.
    pub fn program(&self, entry: u16, msg: Message) -> Result<(), MsiError> {
        let at = self.entry(entry)?;
        let control = self.mmio.read32(at + ENTRY_CONTROL);
        self.mmio
            .write32(at + ENTRY_CONTROL, control | ENTRY_MASKED);
        self.mmio
            .write32(at + ENTRY_ADDRESS_LOW, msg.address as u32);
        self.mmio
            .write32(at + ENTRY_ADDRESS_HIGH, (msg.address >> 32) as u32);
        self.mmio.write32(at + ENTRY_DATA, msg.data);
        Ok(())
    }

    /// Sets or clears `entry`'s mask bit, keeping the reserved control bits.
    pub fn set_masked(&self, entry: u16, masked: bool) -> Result<(), MsiError> {
        let at = self.entry(entry)? + ENTRY_CONTROL;
        let control = self.mmio.read32(at);
        let new = if masked {
            control | ENTRY_MASKED
        } else {
            control & !ENTRY_MASKED
        };
        self.mmio.write32(at, new);
        Ok(())
    }

    pub fn is_masked(&self, entry: u16) -> Result<bool, MsiError> {
        let at = self.entry(entry)? + ENTRY_CONTROL;
        Ok(self.mmio.read32(at) & ENTRY_MASKED != 0)
    }

    /// Masks every entry (before enabling MSI-X, and when a task is stopped).
    pub fn mask_all(&self) {
        for entry in 0..self.size {
            let _ = self.set_masked(entry, true);
        }
    }

    /// The message currently in `entry`.
    pub fn read(&self, entry: u16) -> Result<Message, MsiError> {
        let at = self.entry(entry)?;
        let low = self.mmio.read32(at + ENTRY_ADDRESS_LOW);
        let high = self.mmio.read32(at + ENTRY_ADDRESS_HIGH);
        Ok(Message {
            address: (u64::from(high) << 32) | u64::from(low),
            data: self.mmio.read32(at + ENTRY_DATA),
        })
    }
}

/// Whether `entry`'s pending bit is set in the PBA at byte `offset` of `mmio`.
pub fn pending<M: Mmio>(mmio: &M, offset: usize, entry: u16) -> bool {
    let word = mmio.read32(offset + usize::from(entry / 32) * 4);
    word & (1 << (entry % 32)) != 0
}

/// Sets MSI-X's enable and function-mask bits, leaving the rest of message control alone. MSI is
/// turned off first when `msi` is given: a function must never have both enabled.
pub fn set_msix_control<A: ConfigAccess + ?Sized>(
    config: &A,
    bdf: Bdf,
    msix: &MsixInfo,
    msi: Option<&MsiInfo>,
    enable: bool,
    function_mask: bool,
) {
    if let (Some(msi), true) = (msi, enable) {
        let c = config.read32(bdf, msi.offset);
        if c & MSI_ENABLE != 0 {
            config.write32(bdf, msi.offset, c & !MSI_ENABLE);
        }
    }
    let mut c = config.read32(bdf, msix.offset) & !(MSIX_ENABLE | MSIX_FUNCTION_MASK);
    if enable {
        c |= MSIX_ENABLE;
    }
    if function_mask {
        c |= MSIX_FUNCTION_MASK;
    }
    config.write32(bdf, msix.offset, c);
}

/// Programs the MSI capability for `count` consecutive vectors starting at `msg`'s vector, and
/// enables it (masking every vector first when the capability can).
pub fn program_msi<A: ConfigAccess + ?Sized>(
    config: &A,
    bdf: Bdf,
    msi: &MsiInfo,
    msg: Message,
    count: u8,
) -> Result<(), MsiError> {
    if count == 0 || !count.is_power_of_two() || count > msi.max_vectors {
        return Err(MsiError::BadVectorCount {
            count,
            max: msi.max_vectors,
        });
    }
    let vector = (msg.data & 0xFF) as u8;
    if vector < 32 {
        return Err(MsiError::ReservedVector(vector));
    }
    if !vector.is_multiple_of(count) {
        return Err(MsiError::UnalignedVector { vector, count });
    }
    if !msi.is_64bit && msg.address >> 32 != 0 {
        return Err(MsiError::AddressTooHigh(msg.address));
    }
    let control = config.read32(bdf, msi.offset) & !(MSI_ENABLE | MSI_MME_MASK);
    config.write32(bdf, msi.offset, control);
    if let Some(mask) = msi.mask_offset() {
        config.write32(bdf, mask, u32::MAX);
    }
    config.write32(bdf, msi.offset + 4, msg.address as u32);
    if msi.is_64bit {
        config.write32(bdf, msi.offset + 8, (msg.address >> 32) as u32);
    }
    config.write_narrow(bdf, msi.data_offset(), 2, msg.data & 0xFFFF);
    let mme = count.trailing_zeros();
    config.write32(
        bdf,
        msi.offset,
        control | (mme << MSI_MME_SHIFT) | MSI_ENABLE,
    );
    Ok(())
}

/// Masks or unmasks MSI message `index` through the per-vector mask bits.
pub fn set_msi_masked<A: ConfigAccess + ?Sized>(
    config: &A,
    bdf: Bdf,
    msi: &MsiInfo,
    index: u8,
    masked: bool,
) -> Result<(), MsiError> {
    let at = msi.mask_offset().ok_or(MsiError::NoMasking)?;
    if index >= msi.max_vectors {
        return Err(MsiError::BadVectorCount {
            count: index + 1,
            max: msi.max_vectors,
        });
    }
    let bits = config.read32(bdf, at);
    let new = if masked {
        bits | (1 << index)
    } else {
        bits & !(1 << index)
    };
    config.write32(bdf, at, new);
    Ok(())
}

/// Where an interrupt comes from, so that it can be masked at the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// MSI-X table entry of a function.
    MsiX { bdf: Bdf, entry: u16 },
    /// MSI message of a function (masked through per-vector mask bits when it has them; without
    /// them the router's pending state is the only guard).
    Msi { bdf: Bdf, index: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Source unmasked; the next interrupt is posted.
    Armed,
    /// Posted, source masked, waiting for the task's acknowledgement; `pending` when another
    /// interrupt arrived meanwhile (possible only where the source cannot be masked).
    Posted { pending: bool },
}

/// One routed vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub task: usize,
    pub bit: u8,
    pub source: Source,
    state: State,
}

/// What the interrupt handler must do for a vector that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Mask `mask` at the source and post `bit` to `task`.
    Post { task: usize, bit: u8, mask: Source },
    /// Already posted and not yet acknowledged: remembered, nothing else to do.
    Pending,
    /// No route: nothing to do but the end-of-interrupt.
    Spurious,
}

/// What an acknowledgement makes the kernel do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckAction {
    /// Unmask the source: the vector is armed again.
    Unmask(Source),
    /// An interrupt arrived while posted: post the bit again at once, source still masked.
    Repost { task: usize, bit: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// All of `FIRST_VECTOR..=LAST_VECTOR` are in use.
    Exhausted,
    /// The source already has a vector.
    AlreadyRouted {
        vector: u8,
    },
    BadBit(u8),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RouteError::Exhausted => write!(
                f,
                "no free interrupt vector in {FIRST_VECTOR}..={LAST_VECTOR}"
            ),
            RouteError::AlreadyRouted { vector } => {
                write!(f, "the source is already routed to vector {vector}")
            }
            RouteError::BadBit(b) => write!(f, "notification bit {b} is not below 64"),
        }
    }
}

/// IDT vector to (task, notification bit, source), with the per-vector masking state.
pub struct Router {
    routes: [Option<Route>; VECTORS],
}

impl Default for Router {
    fn default() -> Self {
        Router {
            routes: [None; VECTORS],
        }
    }
}

impl Router {
    /// Gives `source` the lowest free vector, delivering to `task`'s `bit`. The route starts
    /// Armed: the caller unmasks the source once the message is programmed.
    pub fn allocate(&mut self, task: usize, bit: u8, source: Source) -> Result<u8, RouteError> {
        if bit >= 64 {
            return Err(RouteError::BadBit(bit));
        }
        if let Some(vector) = self.vector_of(source) {
            return Err(RouteError::AlreadyRouted { vector });
        }
        let slot = self
            .routes
            .iter()
            .position(Option::is_none)
            .ok_or(RouteError::Exhausted)?;
        self.routes[slot] = Some(Route {
            task,
            bit,
            source,
            state: State::Armed,
        });
        Ok(FIRST_VECTOR + slot as u8)
    }

    /// The vector `source` is routed to.
    pub fn vector_of(&self, source: Source) -> Option<u8> {
        self.routes
            .iter()
            .position(|r| r.is_some_and(|r| r.source == source))
            .map(|slot| FIRST_VECTOR + slot as u8)
    }

    pub fn route(&self, vector: u8) -> Option<&Route> {
        let slot = usize::from(vector.checked_sub(FIRST_VECTOR)?);
        self.routes.get(slot)?.as_ref()
    }

    /// Vector `vector` fired.
    pub fn interrupt(&mut self, vector: u8) -> Delivery {
        let Some(slot) = vector.checked_sub(FIRST_VECTOR).map(usize::from) else {
            return Delivery::Spurious;
        };
        let Some(Some(route)) = self.routes.get_mut(slot) else {
            return Delivery::Spurious;
        };
        match route.state {
            State::Armed => {
                route.state = State::Posted { pending: false };
                Delivery::Post {
                    task: route.task,
                    bit: route.bit,
                    mask: route.source,
                }
            }
            State::Posted { .. } => {
                route.state = State::Posted { pending: true };
                Delivery::Pending
            }
        }
    }

    /// `task` acknowledges the notification bits in `bits`; `act` is called for each vector that
    /// was waiting on one of them.
    pub fn acknowledge(&mut self, task: usize, bits: u64, mut act: impl FnMut(AckAction)) {
        for route in self.routes.iter_mut().flatten() {
            if route.task != task || bits & (1 << route.bit) == 0 {
                continue;
            }
            match route.state {
                State::Armed => {}
                State::Posted { pending: true } => {
                    route.state = State::Posted { pending: false };
                    act(AckAction::Repost {
                        task: route.task,
                        bit: route.bit,
                    });
                }
                State::Posted { pending: false } => {
                    route.state = State::Armed;
                    act(AckAction::Unmask(route.source));
                }
            }
        }
    }

    /// Frees `vector` (when setting up its source failed).
    pub fn release(&mut self, vector: u8) {
        if let Some(slot) = vector
            .checked_sub(FIRST_VECTOR)
            .and_then(|s| self.routes.get_mut(usize::from(s)))
        {
            *slot = None;
        }
    }

    /// `task` stopped (fault or restart): its vectors stay routed but wait, masked, for the next
    /// instance's first acknowledgement. `mask` is called for each source to mask.
    pub fn quiesce_task(&mut self, task: usize, mut mask: impl FnMut(Source)) {
        for route in self.routes.iter_mut().flatten() {
            if route.task == task {
                route.state = State::Posted { pending: false };
                mask(route.source);
            }
        }
    }
}

/// Why [`install_msix`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    Route(RouteError),
    Msi(MsiError),
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Route(e) => e.fmt(f),
            InstallError::Msi(e) => e.fmt(f),
        }
    }
}

/// Routes MSI-X vector `i` of `bdf` to `task`'s `bits[i]` on the local APIC `dest_apic`: enables
/// MSI-X with the function masked (MSI off), masks every entry, programs one entry per bit, then
/// unmasks those entries and the function. Returns the IDT vector of each entry. On failure the
/// vectors taken so far are released and MSI-X is left enabled but function-masked, so the device
/// cannot signal.
#[allow(clippy::too_many_arguments)]
pub fn install_msix<A: ConfigAccess + ?Sized, M: Mmio>(
    config: &A,
    table: &MsixTable<M>,
    router: &mut Router,
    bdf: Bdf,
    info: &MsixInfo,
    msi: Option<&MsiInfo>,
    task: usize,
    bits: &[u8],
    dest_apic: u8,
) -> Result<alloc::vec::Vec<u8>, InstallError> {
    set_msix_control(config, bdf, info, msi, true, true);
    table.mask_all();
    let mut vectors = alloc::vec::Vec::with_capacity(bits.len());
    let mut program = |vectors: &mut alloc::vec::Vec<u8>| -> Result<(), InstallError> {
        for (entry, &bit) in bits.iter().enumerate() {
            let entry = u16::try_from(entry).map_err(|_| {
                InstallError::Msi(MsiError::NoSuchEntry {
                    entry: u16::MAX,
                    table_size: info.table_size,
                })
            })?;
            let vector = router
                .allocate(task, bit, Source::MsiX { bdf, entry })
                .map_err(InstallError::Route)?;
            vectors.push(vector);
            let msg = message(dest_apic, vector).map_err(InstallError::Msi)?;
            table.program(entry, msg).map_err(InstallError::Msi)?;
        }
        Ok(())
    };
    if let Err(e) = program(&mut vectors) {
        for &v in &vectors {
            router.release(v);
        }
        return Err(e);
    }
    for entry in 0..vectors.len() as u16 {
        table.set_masked(entry, false).map_err(InstallError::Msi)?;
    }
    set_msix_control(config, bdf, info, msi, true, false);
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::mmio::fake::FakeMmio;
    use crate::dev::pci::fake::{FakeFunction, FakePci, bdf};
    use crate::dev::pci::{LEGACY_CONFIG_SIZE, read_function};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn x86_message_format() {
        assert_eq!(
            message(2, 0x41),
            Ok(Message {
                address: 0xFEE0_2000,
                data: 0x41
            })
        );
        assert_eq!(message(0xff, 191).unwrap().address, 0xFEEF_F000);
        assert_eq!(message(0, 31), Err(MsiError::ReservedVector(31)));
    }

    #[test]
    fn table_entries_are_written_masked_and_unmasked_alone() {
        let mmio = FakeMmio::new(0x4000);
        mmio.set(16 + 12, 0xABCD_0000); // reserved control bits must survive
        let table = MsixTable::new(&mmio, 0, 10);
        table.program(1, message(0, 0x42).unwrap()).unwrap();
        // The mask went in before the address and data.
        assert_eq!(
            *mmio.writes.borrow(),
            vec![(28, 0xABCD_0001), (16, 0xFEE0_0000), (20, 0), (24, 0x42)]
        );
        assert_eq!(table.is_masked(1), Ok(true));
        assert_eq!(table.read(1).unwrap(), message(0, 0x42).unwrap());
        table.set_masked(1, false).unwrap();
        assert_eq!(mmio.get(28), 0xABCD_0000);
        assert_eq!(table.is_masked(1), Ok(false));
        assert_eq!(
            table.program(10, message(0, 0x42).unwrap()),
            Err(MsiError::NoSuchEntry {
                entry: 10,
                table_size: 10
            })
        );
        table.mask_all();
        assert!((0..10).all(|e| table.is_masked(e) == Ok(true)));
        mmio.set(0x2000, 1 << 3);
        assert!(pending(&mmio, 0x2000, 3));
        assert!(!pending(&mmio, 0x2000, 4));
    }

    #[test]
    fn msix_enable_and_function_mask_in_message_control() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let b = bdf(0, 4, 0);
        let f = read_function(&pci, b).unwrap();
        let (msix, msi) = (f.msix.unwrap(), f.msi.unwrap());
        pci.set(b, msi.offset, pci.get(b, msi.offset) | MSI_ENABLE);
        set_msix_control(&pci, b, &msix, Some(&msi), true, true);
        assert_eq!(pci.get(b, 0x70) >> 30, 0b11);
        assert_eq!(pci.get(b, 0x70) & 0xFFFF_00FF, 0xC009_0011);
        assert_eq!(pci.get(b, msi.offset) & MSI_ENABLE, 0, "MSI left on");
        set_msix_control(&pci, b, &msix, None, true, false);
        assert_eq!(pci.get(b, 0x70) >> 30, 0b10);
        set_msix_control(&pci, b, &msix, None, false, false);
        assert_eq!(pci.get(b, 0x70) >> 30, 0);
    }

    #[test]
    fn msi_fallback_writer() {
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        let b = bdf(0, 3, 0);
        // 64-bit, per-vector mask, 4 vectors capable.
        pci.add(
            b,
            FakeFunction::new(1, 2, 2, 0, 0).capability(0x50, &[0x0184_0005, 0, 0, 0, 0, 0]),
        );
        let msi = read_function(&pci, b).unwrap().msi.unwrap();
        program_msi(&pci, b, &msi, message(1, 0x44).unwrap(), 4).unwrap();
        assert_eq!(pci.get(b, 0x54), 0xFEE0_1000);
        assert_eq!(pci.get(b, 0x58), 0);
        assert_eq!(pci.get(b, 0x5c) & 0xFFFF, 0x44);
        assert_eq!(pci.get(b, 0x60), u32::MAX, "vectors start masked");
        let control = pci.get(b, 0x50) >> 16;
        assert_eq!(control & 1, 1);
        assert_eq!((control >> 4) & 7, 2);
        set_msi_masked(&pci, b, &msi, 1, false).unwrap();
        assert_eq!(pci.get(b, 0x60), !2);
        assert_eq!(
            program_msi(&pci, b, &msi, message(1, 0x45).unwrap(), 4),
            Err(MsiError::UnalignedVector {
                vector: 0x45,
                count: 4
            })
        );
        assert_eq!(
            program_msi(&pci, b, &msi, message(1, 0x44).unwrap(), 3),
            Err(MsiError::BadVectorCount { count: 3, max: 4 })
        );
        assert_eq!(
            program_msi(&pci, b, &msi, message(1, 0x44).unwrap(), 8),
            Err(MsiError::BadVectorCount { count: 8, max: 4 })
        );

        // 32-bit, no masking.
        let c = bdf(0, 4, 0);
        pci.add(
            c,
            FakeFunction::new(1, 2, 2, 0, 0).capability(0x50, &[0x0000_0005, 0, 0]),
        );
        let msi = read_function(&pci, c).unwrap().msi.unwrap();
        program_msi(&pci, c, &msi, message(0, 0x50).unwrap(), 1).unwrap();
        assert_eq!(pci.get(c, 0x58) & 0xFFFF, 0x50);
        let high = Message {
            address: 1 << 32,
            data: 0x50,
        };
        assert_eq!(
            program_msi(&pci, c, &msi, high, 1),
            Err(MsiError::AddressTooHigh(1 << 32))
        );
        assert_eq!(
            set_msi_masked(&pci, c, &msi, 0, true),
            Err(MsiError::NoMasking)
        );
    }

    #[test]
    fn install_programs_routes_and_unmasks_igb_vectors() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let b = bdf(0, 4, 0);
        let f = read_function(&pci, b).unwrap();
        let (info, msi) = (f.msix.unwrap(), f.msi.unwrap());
        let mmio = FakeMmio::new(0x4000);
        let table = MsixTable::new(&mmio, info.table_offset as usize, info.table_size);
        let mut router = Router::default();
        router.allocate(9, 1, src(99)).unwrap(); // someone else holds vector 64
        let vectors = install_msix(
            &pci,
            &table,
            &mut router,
            b,
            &info,
            Some(&msi),
            1,
            &[5, 6, 7],
            2,
        )
        .unwrap();
        assert_eq!(vectors, vec![65, 66, 67]);
        for (entry, &v) in vectors.iter().enumerate() {
            let entry = entry as u16;
            assert_eq!(table.read(entry).unwrap(), message(2, v).unwrap());
            assert_eq!(table.is_masked(entry), Ok(false));
            assert_eq!(
                router.route(v).unwrap().source,
                Source::MsiX { bdf: b, entry }
            );
        }
        // Unused entries stay masked; MSI-X is on and the function unmasked.
        assert!((3..10).all(|e| table.is_masked(e) == Ok(true)));
        assert_eq!(pci.get(b, 0x70) >> 30, 0b10);
        // The interrupt of entry 1 posts bit 6 and asks for entry 1 to be masked.
        assert_eq!(
            router.interrupt(66),
            Delivery::Post {
                task: 1,
                bit: 6,
                mask: Source::MsiX { bdf: b, entry: 1 }
            }
        );

        // More bits than table entries: nothing stays routed, the function stays masked.
        let mut router = Router::default();
        let bits: Vec<u8> = (0..11).collect();
        assert_eq!(
            install_msix(&pci, &table, &mut router, b, &info, None, 1, &bits, 0),
            Err(InstallError::Msi(MsiError::NoSuchEntry {
                entry: 10,
                table_size: 10
            }))
        );
        assert_eq!(router.vector_of(Source::MsiX { bdf: b, entry: 0 }), None);
        assert_eq!(pci.get(b, 0x70) >> 30, 0b11);
    }

    fn src(entry: u16) -> Source {
        Source::MsiX {
            bdf: bdf(0, 4, 0),
            entry,
        }
    }

    #[test]
    fn vectors_come_from_the_device_range_until_exhausted() {
        let mut r = Router::default();
        assert_eq!(r.allocate(1, 3, src(0)), Ok(FIRST_VECTOR));
        assert_eq!(r.allocate(1, 4, src(1)), Ok(FIRST_VECTOR + 1));
        assert_eq!(
            r.allocate(2, 3, src(1)),
            Err(RouteError::AlreadyRouted {
                vector: FIRST_VECTOR + 1
            })
        );
        assert_eq!(r.allocate(1, 64, src(2)), Err(RouteError::BadBit(64)));
        for e in 2..VECTORS as u16 {
            r.allocate(1, 5, src(e)).unwrap();
        }
        assert_eq!(r.vector_of(src(127)), Some(LAST_VECTOR));
        assert_eq!(r.allocate(1, 5, src(500)), Err(RouteError::Exhausted));
        assert_eq!(r.route(FIRST_VECTOR).unwrap().bit, 3);
        assert!(r.route(FIRST_VECTOR - 1).is_none());
        assert!(r.route(LAST_VECTOR + 1).is_none());
    }

    fn acks(r: &mut Router, task: usize, bits: u64) -> Vec<AckAction> {
        let mut out = Vec::new();
        r.acknowledge(task, bits, |a| out.push(a));
        out
    }

    #[test]
    fn interrupt_masks_until_acknowledged() {
        let mut r = Router::default();
        let v = r.allocate(1, 3, src(0)).unwrap();
        assert_eq!(
            r.interrupt(v),
            Delivery::Post {
                task: 1,
                bit: 3,
                mask: src(0)
            }
        );
        // Another task's ack, or an ack of another bit, changes nothing.
        assert!(acks(&mut r, 2, 1 << 3).is_empty());
        assert!(acks(&mut r, 1, 1 << 4).is_empty());
        assert_eq!(acks(&mut r, 1, 1 << 3), vec![AckAction::Unmask(src(0))]);
        // Armed again: the next interrupt is posted; an ack while armed does nothing.
        assert!(acks(&mut r, 1, 1 << 3).is_empty());
        assert!(matches!(r.interrupt(v), Delivery::Post { .. }));
        assert_eq!(r.interrupt(v + 1), Delivery::Spurious);
        assert_eq!(r.interrupt(10), Delivery::Spurious);
    }

    #[test]
    fn second_interrupt_before_ack_stays_pending() {
        let mut r = Router::default();
        let v = r.allocate(1, 3, src(0)).unwrap();
        assert!(matches!(r.interrupt(v), Delivery::Post { .. }));
        assert_eq!(r.interrupt(v), Delivery::Pending);
        assert_eq!(r.interrupt(v), Delivery::Pending);
        // The ack delivers the one pending interrupt again, still masked.
        assert_eq!(
            acks(&mut r, 1, 1 << 3),
            vec![AckAction::Repost { task: 1, bit: 3 }]
        );
        assert_eq!(acks(&mut r, 1, 1 << 3), vec![AckAction::Unmask(src(0))]);
        assert!(matches!(r.interrupt(v), Delivery::Post { .. }));
    }

    #[test]
    fn one_ack_covers_several_bits_and_quiesce_masks_a_stopped_task() {
        let mut r = Router::default();
        let a = r.allocate(1, 3, src(0)).unwrap();
        let b = r.allocate(1, 4, src(1)).unwrap();
        let c = r.allocate(2, 3, src(2)).unwrap();
        for v in [a, b, c] {
            r.interrupt(v);
        }
        assert_eq!(
            acks(&mut r, 1, (1 << 3) | (1 << 4)),
            vec![AckAction::Unmask(src(0)), AckAction::Unmask(src(1))]
        );
        let mut masked = Vec::new();
        r.quiesce_task(1, |s| masked.push(s));
        assert_eq!(masked, vec![src(0), src(1)]);
        // Until the restarted task acknowledges, nothing is posted.
        assert_eq!(r.interrupt(a), Delivery::Pending);
        assert_eq!(
            acks(&mut r, 1, 1 << 3),
            vec![AckAction::Repost { task: 1, bit: 3 }]
        );
    }
}
