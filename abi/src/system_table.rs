//! The binary system table: the validated static system description, as the kernel reads it at
//! boot from the boot module. The image tool (`image::system`) is the only writer; the kernel
//! never parses configuration text.
//!
//! This module owns the byte layout, the limits that both the image tool's validator and the
//! kernel rely on, and a zero-copy decoder. [`Table::decode`] checks the whole table once
//! (bounds, checksum, every index, range, bit number and string) and then hands out small value
//! types through iterators that borrow the original bytes; nothing is copied and nothing is
//! allocated. The kernel trusts the image tool, but a corrupted or truncated boot module must
//! still give a [`DecodeError`], never a panic or an out-of-bounds read.
//!
//! # Layout (version 1, all integers little-endian, no alignment requirement)
//!
//! ```text
//! header (96 bytes)
//!   0  magic        [u8; 8] = "NC2DDSYS"
//!   8  version      u32     = VERSION
//!  12  total_len    u32     length of the whole table in bytes
//!  16  checksum     u32     FNV-1a 32 of the table with these four bytes read as zero
//!  20  reserved     u32     = 0
//!  24  memory_budget u64    bytes
//!  32  system name  StrRef
//!  40  directory    7 x (offset u32, count u32), one per Section in this order:
//!                   tasks, notifications, channels, devices, pci ids, msix, strings
//! sections: contiguous in directory order, the first at offset 96, the last ending at
//! total_len; each is `count` fixed-size records (the strings section is `count` bytes of UTF-8).
//!
//! StrRef (8)            offset u32, len u32 into the strings section (on char boundaries)
//! Range (4)             first u16, count u16 into another section
//! task (64)             name StrRef, server StrRef, priority u8, flags u8 (1 = supervisor,
//!                       2 = xen), fault bit u8, timer bit u8, xen event bit u8 (NO_BIT = none),
//!                       3 reserved, stack u64, heap u64, dma u64, grant window u64,
//!                       notifications Range, devices Range
//! notification (12)     name StrRef, bit u8, 3 reserved
//! channel (24)          name StrRef, size u64, 2 x (task u16, kick bit u8, reserved u8)
//! device (24)           name StrRef, kind u8 (1 = PCI ids, 2 = BDF), BAR mask u8, bus u8,
//!                       device u8, segment u16, function u8, reserved u8, pci ids Range,
//!                       msix Range
//! pci id (4)            vendor u16, device u16
//! msix (1)              the owning task's notification bit for that vector (vector = position)
//! ```
//!
//! Invariants a decoded [`Table`] guarantees: at least one task and at most [`MAX_TASKS`]; task 0
//! is the supervisor and no other task is; every bit number is below [`NOTIFICATION_BITS`];
//! every task index, range and string reference is in bounds; every size is a multiple of
//! [`PAGE_SIZE`] and within its limit; BAR indices are below [`MAX_BARS`]; reserved bytes are
//! zero. Semantic rules that need names (uniqueness, one source per bit, the memory budget) are
//! the image tool's job and are not re-checked here.

use core::fmt;

/// First eight bytes of every table.
pub const MAGIC: [u8; 8] = *b"NC2DDSYS";
/// Layout version; bumped on any incompatible change.
pub const VERSION: u32 = 1;
/// Size of the fixed header, which is also where the first section starts.
pub const HEADER_LEN: usize = 96;
/// Byte offset of the checksum field inside the header.
pub const CHECKSUM_OFFSET: usize = 16;

/// Every size in the description is a whole number of these.
pub const PAGE_SIZE: u64 = 4096;
/// A task's notification word is 64 bits.
pub const NOTIFICATION_BITS: u8 = 64;
/// Encodes "no bit" in the single-bit fields of a task record.
pub const NO_BIT: u8 = 0xff;
/// Task ids are small; the supervisor is task 0.
pub const MAX_TASKS: usize = 32;
/// Channels in the whole system.
pub const MAX_CHANNELS: usize = 64;
/// Priorities run from 0 (highest, the supervisor alone) to this value (lowest).
pub const MAX_PRIORITY: u8 = 15;
/// A PCI function has six BARs (0..=5).
pub const MAX_BARS: u8 = 6;
/// MSI-X vectors one device claim may route (the 82599 has 64 table entries).
pub const MAX_MSIX_PER_DEVICE: usize = 64;
/// MSI-X vectors in the whole system: each gets its own IDT vector on each CPU, and the IDT has
/// 256 of which the first 32 are exceptions and the kernel keeps some for its timer and IPIs.
pub const MAX_MSIX_TOTAL: usize = 128;
/// Device claims per task.
pub const MAX_DEVICES_PER_TASK: usize = 8;
/// PCI vendor:device ids one claim may list.
pub const MAX_PCI_IDS_PER_DEVICE: usize = 16;
/// Longest name (task, server, channel, device, notification, system) in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Smallest stack: one page (the guard page below it is extra and not counted).
pub const MIN_STACK: u64 = PAGE_SIZE;
/// Largest stack of one task.
pub const MAX_STACK: u64 = 1 << 20;
/// Largest heap of one task.
pub const MAX_HEAP: u64 = 256 << 20;
/// Largest DMA budget of one task.
pub const MAX_DMA: u64 = 1 << 30;
/// Largest channel region.
pub const MAX_CHANNEL_SIZE: u64 = 16 << 20;
/// Largest Xen grant window (virtual space for mapped grants) of one task.
pub const MAX_GRANT_WINDOW: u64 = 1 << 30;

/// Task flag: the supervisor (task 0).
pub const TASK_SUPERVISOR: u8 = 1;
/// Task flag: may use the Xen gateway.
pub const TASK_XEN: u8 = 2;
/// Device kind: claim by a list of PCI vendor:device ids.
pub const DEVICE_BY_IDS: u8 = 1;
/// Device kind: claim one function by segment:bus:device.function.
pub const DEVICE_BY_BDF: u8 = 2;

/// The sections of a table, in directory (and layout) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Tasks,
    Notifications,
    Channels,
    Devices,
    PciIds,
    Msix,
    Strings,
    /// Not a directory entry: used to name header fields in errors.
    Header,
}

impl Section {
    /// The directory entries in order.
    pub const DIRECTORY: [Section; 7] = [
        Section::Tasks,
        Section::Notifications,
        Section::Channels,
        Section::Devices,
        Section::PciIds,
        Section::Msix,
        Section::Strings,
    ];

    /// Size of one record of this section.
    pub const fn record_len(self) -> usize {
        match self {
            Section::Tasks => TaskRecord::LEN,
            Section::Notifications => NotificationRecord::LEN,
            Section::Channels => ChannelRecord::LEN,
            Section::Devices => DeviceRecord::LEN,
            Section::PciIds => PciIdRecord::LEN,
            Section::Msix | Section::Strings => 1,
            Section::Header => HEADER_LEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Section::Tasks => "tasks",
            Section::Notifications => "notifications",
            Section::Channels => "channels",
            Section::Devices => "devices",
            Section::PciIds => "pci ids",
            Section::Msix => "msix",
            Section::Strings => "strings",
            Section::Header => "header",
        }
    }
}

/// Why a table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or than the header's `total_len`.
    Truncated {
        needed: usize,
        actual: usize,
    },
    BadMagic,
    UnsupportedVersion(u32),
    /// `total_len` disagrees with the number of bytes given.
    LengthMismatch {
        header: u32,
        actual: usize,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    /// A directory entry is not where the layout says, or overflows the table.
    BadSection {
        section: Section,
        why: &'static str,
    },
    /// The strings section is not UTF-8.
    BadUtf8,
    /// Record `index` of `section` has a bad field.
    Invalid {
        section: Section,
        index: usize,
        what: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Truncated { needed, actual } => {
                write!(
                    f,
                    "system table truncated: needs {needed} bytes, has {actual}"
                )
            }
            DecodeError::BadMagic => write!(f, "not a system table (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "system table version {v} unsupported (expected {VERSION})"
                )
            }
            DecodeError::LengthMismatch { header, actual } => {
                write!(f, "system table says {header} bytes but has {actual}")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "system table checksum {stored:#010x} does not match contents ({computed:#010x})"
            ),
            DecodeError::BadSection { section, why } => {
                write!(f, "system table section {}: {why}", section.name())
            }
            DecodeError::BadUtf8 => write!(f, "system table strings are not UTF-8"),
            DecodeError::Invalid {
                section,
                index,
                what,
            } => write!(f, "system table {} record {index}: {what}", section.name()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw records: the exact on-disk fields, shared by the encoder (image tool) and the decoder. Each
// record is declared once, as its fields in layout order; `record!` derives both directions from
// that list and proves at compile time that the fields fill the record exactly, so the encoder
// and the decoder cannot disagree about an offset.

/// A fixed-size little-endian field.
trait Field: Sized {
    const SIZE: usize;
    fn read(r: &mut Reader<'_>) -> Self;
    fn write(&self, w: &mut Writer<'_>);
}

/// Reads fields front to back. The records are fixed-size arrays whose length the fields fill
/// exactly, so a short read cannot happen; if it did, it would yield zeros, never index out of
/// bounds.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                *head
            }
            None => {
                self.rest = &[];
                [0; N]
            }
        }
    }
}

/// Writes fields front to back, dropping anything past the end (which cannot happen either).
struct Writer<'a> {
    rest: &'a mut [u8],
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) {
        let rest = core::mem::take(&mut self.rest);
        let n = data.len().min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(data.get(..n).unwrap_or(&[]));
        self.rest = tail;
    }
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn read(r: &mut Reader<'_>) -> Self {
                <$t>::from_le_bytes(r.take())
            }
            fn write(&self, w: &mut Writer<'_>) {
                w.put(&self.to_le_bytes());
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64);

impl<T: Field, const N: usize> Field for [T; N] {
    const SIZE: usize = T::SIZE * N;
    fn read(r: &mut Reader<'_>) -> Self {
        core::array::from_fn(|_| T::read(r))
    }
    fn write(&self, w: &mut Writer<'_>) {
        for x in self {
            x.write(w);
        }
    }
}

/// Declares a record (or a compound field) as its fields in layout order.
macro_rules! record {
    ($(#[$meta:meta])* $name:ident, $len:expr, {
        $($(#[$fmeta:meta])* $field:ident: $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// Bytes this occupies in a table.
            pub const LEN: usize = $len;

            pub fn to_bytes(&self) -> [u8; $len] {
                let mut out = [0; $len];
                Field::write(self, &mut Writer { rest: &mut out });
                out
            }

            pub fn from_bytes(bytes: &[u8; $len]) -> Self {
                Field::read(&mut Reader { rest: bytes })
            }
        }

        impl Field for $name {
            const SIZE: usize = 0 $(+ <$ty as Field>::SIZE)*;
            fn read(r: &mut Reader<'_>) -> Self {
                $name { $($field: Field::read(r),)* }
            }
            fn write(&self, w: &mut Writer<'_>) {
                $(self.$field.write(w);)*
            }
        }

        const _: () = assert!(<$name as Field>::SIZE == $len, "fields do not fill the record");
    };
}

record!(
    /// A string in the strings section.
    StrRef, 8, {
        offset: u32,
        len: u32,
    }
);

record!(
    /// `count` records starting at `first` in another section.
    Range16, 4, {
        first: u16,
        count: u16,
    }
);

record!(
    /// Where a section lives.
    SectionEntry, 8, {
        offset: u32,
        count: u32,
    }
);

record!(
    /// The fixed header. `checksum` is written last, by [`seal`].
    Header, HEADER_LEN, {
        /// [`MAGIC`] in a real table.
        magic: [u8; 8],
        version: u32,
        total_len: u32,
        checksum: u32,
        reserved: u32,
        memory_budget: u64,
        name: StrRef,
        /// Indexed like [`Section::DIRECTORY`].
        sections: [SectionEntry; 7],
    }
);

record!(
    /// One task, as stored.
    TaskRecord, 64, {
        name: StrRef,
        server: StrRef,
        priority: u8,
        /// [`TASK_SUPERVISOR`] | [`TASK_XEN`].
        flags: u8,
        /// Bits are [`NO_BIT`] when absent.
        fault_bit: u8,
        timer_bit: u8,
        xen_event_bit: u8,
        reserved: [u8; 3],
        stack: u64,
        heap: u64,
        dma: u64,
        grant_window: u64,
        notifications: Range16,
        devices: Range16,
    }
);

record!(
    /// One named notification bit of a task.
    NotificationRecord, 12, {
        name: StrRef,
        bit: u8,
        reserved: [u8; 3],
    }
);

record!(
    /// One end of a channel: the task and the bit it receives the other end's kicks on.
    EndRecord, 4, {
        task: u16,
        kick_bit: u8,
        reserved: u8,
    }
);

record!(
    /// One channel.
    ChannelRecord, 24, {
        name: StrRef,
        size: u64,
        ends: [EndRecord; 2],
    }
);

record!(
    /// One device claim. The BDF fields are zero in a claim by ids, the id range in a claim by
    /// BDF.
    DeviceRecord, 24, {
        name: StrRef,
        /// [`DEVICE_BY_IDS`] or [`DEVICE_BY_BDF`].
        kind: u8,
        /// Bit `i` set: BAR `i`.
        bar_mask: u8,
        bus: u8,
        device: u8,
        segment: u16,
        function: u8,
        reserved: u8,
        pci_ids: Range16,
        msix: Range16,
    }
);

record!(
    /// A PCI vendor:device pair.
    PciIdRecord, 4, {
        vendor: u16,
        device: u16,
    }
);

// ---------------------------------------------------------------------------------------------
// Checksum.

/// FNV-1a 32 over `table`, reading the checksum field as zero. Catches a corrupted boot module;
/// it is not a defence against a malicious image (the image is trusted).
pub fn checksum(table: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, &b) in table.iter().enumerate() {
        let b = if (CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4).contains(&i) {
            0
        } else {
            b
        };
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Writes the checksum of `table` into its header. Does nothing to a table shorter than a header.
pub fn seal(table: &mut [u8]) {
    let sum = checksum(table).to_le_bytes();
    if let Some(field) = table.get_mut(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4) {
        field.copy_from_slice(&sum);
    }
}

// ---------------------------------------------------------------------------------------------
// The decoded view.

/// A decoded, fully checked table borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    memory_budget: u64,
    name: &'a str,
    tasks: &'a [[u8; TaskRecord::LEN]],
    notifications: &'a [[u8; NotificationRecord::LEN]],
    channels: &'a [[u8; ChannelRecord::LEN]],
    devices: &'a [[u8; DeviceRecord::LEN]],
    pools: Pools<'a>,
}

/// The sections that records point into.
#[derive(Clone, Copy, Debug)]
struct Pools<'a> {
    strings: &'a str,
    pci_ids: &'a [[u8; PciIdRecord::LEN]],
    msix: &'a [u8],
}

/// Xen gateway rights of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenRights {
    /// The bit Xen event channels bound by this task are posted on.
    pub event_bit: u8,
    /// Bytes of virtual space for mapped grants.
    pub grant_window: u64,
}

/// A task, read from its record.
#[derive(Clone, Copy, Debug)]
pub struct Task<'a> {
    /// Task index: its id without the generation.
    pub index: usize,
    pub name: &'a str,
    /// The server binary it runs.
    pub server: &'a str,
    /// 0 is the highest.
    pub priority: u8,
    pub supervisor: bool,
    pub stack: u64,
    pub heap: u64,
    pub dma: u64,
    /// Supervisor only: the bit the kernel posts when any task faults.
    pub fault_bit: Option<u8>,
    /// The bit deadlines fire on.
    pub timer_bit: Option<u8>,
    pub xen: Option<XenRights>,
    notifications: &'a [[u8; NotificationRecord::LEN]],
    devices: &'a [[u8; DeviceRecord::LEN]],
    pools: Pools<'a>,
}

/// A named notification bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification<'a> {
    pub name: &'a str,
    pub bit: u8,
}

/// PCI segment:bus:device.function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// How a device claim picks its PCI function(s).
#[derive(Clone, Copy, Debug)]
pub enum Claim<'a> {
    /// Every function whose vendor:device is in the list.
    Ids(PciIds<'a>),
    /// Exactly this function.
    Bdf(Bdf),
}

/// The vendor:device list of a claim.
#[derive(Clone, Copy, Debug)]
pub struct PciIds<'a> {
    records: &'a [[u8; PciIdRecord::LEN]],
}

impl<'a> PciIds<'a> {
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PciIdRecord> + 'a {
        self.records.iter().map(PciIdRecord::from_bytes)
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A device claim of a task.
#[derive(Clone, Copy, Debug)]
pub struct Device<'a> {
    pub name: &'a str,
    pub claim: Claim<'a>,
    /// Bit `i` set: BAR `i` is mapped into the task.
    pub bar_mask: u8,
    msix: &'a [u8],
}

impl<'a> Device<'a> {
    /// The BAR indices, ascending.
    pub fn bars(&self) -> impl Iterator<Item = u8> + 'static {
        let mask = self.bar_mask;
        (0..MAX_BARS).filter(move |i| mask & (1 << i) != 0)
    }
    /// MSI-X vector `i` is posted on the `i`th bit yielded.
    pub fn msix_bits(&self) -> impl ExactSizeIterator<Item = u8> + 'a {
        self.msix.iter().copied()
    }
}

/// One end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEnd {
    pub task: usize,
    /// The bit this end receives the other end's kicks on.
    pub kick_bit: u8,
}

/// A channel: a shared region mapped into exactly two tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel<'a> {
    pub name: &'a str,
    pub size: u64,
    pub ends: [ChannelEnd; 2],
}

impl<'a> Table<'a> {
    /// Checks `bytes` completely and returns a view of it.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header_bytes: &[u8; HEADER_LEN] = match bytes.first_chunk() {
            Some(h) => h,
            None => {
                return Err(DecodeError::Truncated {
                    needed: HEADER_LEN,
                    actual: bytes.len(),
                });
            }
        };
        let header = Header::from_bytes(header_bytes);
        if header.magic != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if header.version != VERSION {
            return Err(DecodeError::UnsupportedVersion(header.version));
        }
        let total = header.total_len as usize;
        if total > bytes.len() {
            return Err(DecodeError::Truncated {
                needed: total,
                actual: bytes.len(),
            });
        }
        if total != bytes.len() {
            return Err(DecodeError::LengthMismatch {
                header: header.total_len,
                actual: bytes.len(),
            });
        }
        let computed = checksum(bytes);
        if computed != header.checksum {
            return Err(DecodeError::ChecksumMismatch {
                stored: header.checksum,
                computed,
            });
        }
        if header.reserved != 0 {
            return Err(invalid(Section::Header, 0, "reserved field is not zero"));
        }

        // Sections: contiguous, in directory order, from the end of the header to total_len.
        let mut at = HEADER_LEN;
        let mut spans = [(0usize, 0usize); 7];
        for (i, (&section, entry)) in Section::DIRECTORY
            .iter()
            .zip(header.sections.iter())
            .enumerate()
        {
            if entry.offset as usize != at {
                return Err(DecodeError::BadSection {
                    section,
                    why: "does not start where the previous section ends",
                });
            }
            let end = (entry.count as usize)
                .checked_mul(section.record_len())
                .and_then(|len| at.checked_add(len))
                .filter(|&end| end <= total);
            let Some(end) = end else {
                return Err(DecodeError::BadSection {
                    section,
                    why: "extends past the end of the table",
                });
            };
            spans[i] = (at, end);
            at = end;
        }
        if at != total {
            return Err(DecodeError::BadSection {
                section: Section::Strings,
                why: "does not end at the end of the table",
            });
        }
        let section_bytes = |i: usize| {
            let (start, end) = spans[i];
            bytes.get(start..end).unwrap_or(&[])
        };
        let strings = core::str::from_utf8(section_bytes(6)).map_err(|_| DecodeError::BadUtf8)?;
        let pools = Pools {
            strings,
            pci_ids: section_bytes(4).as_chunks().0,
            msix: section_bytes(5),
        };
        let mut table = Table {
            memory_budget: header.memory_budget,
            name: "",
            tasks: section_bytes(0).as_chunks().0,
            notifications: section_bytes(1).as_chunks().0,
            channels: section_bytes(2).as_chunks().0,
            devices: section_bytes(3).as_chunks().0,
            pools,
        };
        table.name = pools.str(header.name).ok_or(invalid(
            Section::Header,
            0,
            "system name is not a valid string",
        ))?;
        table.check()?;
        Ok(table)
    }

    /// Everything below the section level, so that the iterators never meet a bad record.
    fn check(&self) -> Result<(), DecodeError> {
        if self.tasks.is_empty() {
            return Err(invalid(Section::Tasks, 0, "there are no tasks"));
        }
        if self.tasks.len() > MAX_TASKS {
            return Err(invalid(Section::Tasks, MAX_TASKS, "too many tasks"));
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err(invalid(
                Section::Channels,
                MAX_CHANNELS,
                "too many channels",
            ));
        }
        if !self.memory_budget.is_multiple_of(PAGE_SIZE) {
            return Err(invalid(
                Section::Header,
                0,
                "memory budget is not page-aligned",
            ));
        }
        for (index, rec) in self.tasks.iter().enumerate() {
            self.parse_task(index, rec)?;
        }
        // Every record, referenced or not, so that no iterator can meet a bad one.
        for (index, rec) in self.notifications.iter().enumerate() {
            parse_notification(self.pools, rec).ok_or(invalid(
                Section::Notifications,
                index,
                "bad name or bit",
            ))?;
        }
        let mut vectors = 0usize;
        for (index, rec) in self.devices.iter().enumerate() {
            let device = parse_device(self.pools, rec)
                .map_err(|what| invalid(Section::Devices, index, what))?;
            vectors += device.msix.len();
            if vectors > MAX_MSIX_TOTAL {
                return Err(invalid(
                    Section::Devices,
                    index,
                    "too many MSI-X vectors in all",
                ));
            }
        }
        for (index, rec) in self.channels.iter().enumerate() {
            parse_channel(self.pools, self.tasks.len(), rec)
                .map_err(|what| invalid(Section::Channels, index, what))?;
        }
        Ok(())
    }

    fn parse_task(
        &self,
        index: usize,
        bytes: &[u8; TaskRecord::LEN],
    ) -> Result<Task<'a>, DecodeError> {
        let bad = |what| invalid(Section::Tasks, index, what);
        let rec = TaskRecord::from_bytes(bytes);
        let name = self.pools.str(rec.name).ok_or(bad("bad name"))?;
        let server = self.pools.str(rec.server).ok_or(bad("bad server name"))?;
        if rec.priority > MAX_PRIORITY {
            return Err(bad("priority out of range"));
        }
        if rec.flags & !(TASK_SUPERVISOR | TASK_XEN) != 0 || rec.reserved != [0; 3] {
            return Err(bad("unknown flags or reserved bytes set"));
        }
        let supervisor = rec.flags & TASK_SUPERVISOR != 0;
        if supervisor != (index == 0) {
            return Err(bad("the supervisor must be task 0 and only task 0"));
        }
        if !page_sized(rec.stack, MIN_STACK, MAX_STACK)
            || !page_sized(rec.heap, 0, MAX_HEAP)
            || !page_sized(rec.dma, 0, MAX_DMA)
        {
            return Err(bad(
                "stack, heap or DMA size out of range or not page-aligned",
            ));
        }
        let fault_bit = optional_bit(rec.fault_bit).ok_or(bad("fault bit out of range"))?;
        if fault_bit.is_some() != supervisor {
            return Err(bad("a fault bit belongs to the supervisor alone"));
        }
        let timer_bit = optional_bit(rec.timer_bit).ok_or(bad("timer bit out of range"))?;
        let xen = if rec.flags & TASK_XEN != 0 {
            if rec.xen_event_bit >= NOTIFICATION_BITS
                || !page_sized(rec.grant_window, 0, MAX_GRANT_WINDOW)
            {
                return Err(bad("bad Xen event bit or grant window"));
            }
            Some(XenRights {
                event_bit: rec.xen_event_bit,
                grant_window: rec.grant_window,
            })
        } else {
            if rec.xen_event_bit != NO_BIT || rec.grant_window != 0 {
                return Err(bad("Xen fields set without Xen rights"));
            }
            None
        };
        let notifications = sub_range(self.notifications, rec.notifications)
            .ok_or(bad("notification range out of bounds"))?;
        if notifications.len() > usize::from(NOTIFICATION_BITS) {
            return Err(bad("more than 64 notifications"));
        }
        let devices =
            sub_range(self.devices, rec.devices).ok_or(bad("device range out of bounds"))?;
        if devices.len() > MAX_DEVICES_PER_TASK {
            return Err(bad("too many devices"));
        }
        Ok(Task {
            index,
            name,
            server,
            priority: rec.priority,
            supervisor,
            stack: rec.stack,
            heap: rec.heap,
            dma: rec.dma,
            fault_bit,
            timer_bit,
            xen,
            notifications,
            devices,
            pools: self.pools,
        })
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Bytes that all stacks, heaps, DMA budgets and channels fit in.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Tasks in index order; the first is the supervisor.
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = Task<'a>> + 'a {
        let this = *self;
        // Every record was parsed successfully by `decode`, so the fallback is never taken; it
        // only keeps this path free of panics.
        (0..self.tasks.len()).map(move |i| this.task(i).unwrap_or_else(|| this.supervisor()))
    }

    /// Task `index`, if there is one.
    pub fn task(&self, index: usize) -> Option<Task<'a>> {
        let rec = self.tasks.get(index)?;
        self.parse_task(index, rec).ok()
    }

    /// Task 0.
    pub fn supervisor(&self) -> Task<'a> {
        // `decode` proved there is a task 0 and that it parses; this default is unreachable and
        // exists so that no path can panic.
        self.tasks
            .first()
            .and_then(|rec| self.parse_task(0, rec).ok())
            .unwrap_or(Task {
                index: 0,
                name: "",
                server: "",
                priority: 0,
                supervisor: true,
                stack: MIN_STACK,
                heap: 0,
                dma: 0,
                fault_bit: None,
                timer_bit: None,
                xen: None,
                notifications: &[],
                devices: &[],
                pools: self.pools,
            })
    }

    /// Channels in table order.
    pub fn channels(&self) -> impl ExactSizeIterator<Item = Channel<'a>> + 'a {
        let pools = self.pools;
        let tasks = self.tasks.len();
        self.channels.iter().map(move |rec| {
            // Checked by `decode`; the fallback is unreachable.
            parse_channel(pools, tasks, rec).unwrap_or(Channel {
                name: "",
                size: 0,
                ends: [ChannelEnd {
                    task: 0,
                    kick_bit: 0,
                }; 2],
            })
        })
    }
}

impl<'a> Task<'a> {
    /// The task's named bits, in table order.
    pub fn notifications(&self) -> impl ExactSizeIterator<Item = Notification<'a>> + 'a {
        let pools = self.pools;
        self.notifications.iter().map(move |rec| {
            parse_notification(pools, rec).unwrap_or(Notification { name: "", bit: 0 })
        })
    }

    /// The bit named `name`, if the task has one.
    pub fn bit(&self, name: &str) -> Option<u8> {
        self.notifications().find(|n| n.name == name).map(|n| n.bit)
    }

    /// The task's device claims.
    pub fn devices(&self) -> impl ExactSizeIterator<Item = Device<'a>> + 'a {
        let pools = self.pools;
        self.devices.iter().map(move |rec| {
            parse_device(pools, rec).unwrap_or(Device {
                name: "",
                claim: Claim::Ids(PciIds { records: &[] }),
                bar_mask: 0,
                msix: &[],
            })
        })
    }
}

impl<'a> Pools<'a> {
    fn str(&self, r: StrRef) -> Option<&'a str> {
        let start = r.offset as usize;
        let end = start.checked_add(r.len as usize)?;
        let s = self.strings.get(start..end)?;
        (!s.is_empty() && s.len() <= MAX_NAME_LEN).then_some(s)
    }
}

fn invalid(section: Section, index: usize, what: &'static str) -> DecodeError {
    DecodeError::Invalid {
        section,
        index,
        what,
    }
}

fn page_sized(size: u64, min: u64, max: u64) -> bool {
    size.is_multiple_of(PAGE_SIZE) && (min..=max).contains(&size)
}

/// `Some(None)` for NO_BIT, `Some(Some(bit))` for a valid bit, `None` for anything else.
fn optional_bit(raw: u8) -> Option<Option<u8>> {
    match raw {
        NO_BIT => Some(None),
        b if b < NOTIFICATION_BITS => Some(Some(b)),
        _ => None,
    }
}

fn sub_range<T>(all: &[T], r: Range16) -> Option<&[T]> {
    let start = usize::from(r.first);
    all.get(start..start + usize::from(r.count))
}

fn parse_notification<'a>(
    pools: Pools<'a>,
    bytes: &[u8; NotificationRecord::LEN],
) -> Option<Notification<'a>> {
    let rec = NotificationRecord::from_bytes(bytes);
    let name = pools.str(rec.name)?;
    (rec.bit < NOTIFICATION_BITS && rec.reserved == [0; 3])
        .then_some(Notification { name, bit: rec.bit })
}

fn parse_device<'a>(
    pools: Pools<'a>,
    bytes: &[u8; DeviceRecord::LEN],
) -> Result<Device<'a>, &'static str> {
    let rec = DeviceRecord::from_bytes(bytes);
    let name = pools.str(rec.name).ok_or("bad name")?;
    if rec.bar_mask >> MAX_BARS != 0 {
        return Err("BAR index out of range");
    }
    if rec.reserved != 0 {
        return Err("reserved byte set");
    }
    let claim = match rec.kind {
        DEVICE_BY_IDS => {
            if rec.segment != 0 || rec.bus != 0 || rec.device != 0 || rec.function != 0 {
                return Err("BDF fields set on a claim by ids");
            }
            let records =
                sub_range(pools.pci_ids, rec.pci_ids).ok_or("pci id range out of bounds")?;
            if records.is_empty() || records.len() > MAX_PCI_IDS_PER_DEVICE {
                return Err("bad number of pci ids");
            }
            Claim::Ids(PciIds { records })
        }
        DEVICE_BY_BDF => {
            if rec.pci_ids != Range16::default() {
                return Err("pci ids set on a claim by BDF");
            }
            if rec.device > 31 || rec.function > 7 {
                return Err("BDF device or function out of range");
            }
            Claim::Bdf(Bdf {
                segment: rec.segment,
                bus: rec.bus,
                device: rec.device,
                function: rec.function,
            })
        }
        _ => return Err("unknown claim kind"),
    };
    let msix = sub_range(pools.msix, rec.msix).ok_or("msix range out of bounds")?;
    if msix.len() > MAX_MSIX_PER_DEVICE {
        return Err("too many MSI-X vectors");
    }
    if msix.iter().any(|&b| b >= NOTIFICATION_BITS) {
        return Err("MSI-X bit out of range");
    }
    Ok(Device {
        name,
        claim,
        bar_mask: rec.bar_mask,
        msix,
    })
}

fn parse_channel<'a>(
    pools: Pools<'a>,
    task_count: usize,
    bytes: &[u8; ChannelRecord::LEN],
) -> Result<Channel<'a>, &'static str> {
    let rec = ChannelRecord::from_bytes(bytes);
    let name = pools.str(rec.name).ok_or("bad name")?;
    if rec.size == 0 || !page_sized(rec.size, PAGE_SIZE, MAX_CHANNEL_SIZE) {
        return Err("size out of range or not page-aligned");
    }
    let mut ends = [ChannelEnd {
        task: 0,
        kick_bit: 0,
    }; 2];
    for (out, e) in ends.iter_mut().zip(rec.ends.iter()) {
        if usize::from(e.task) >= task_count {
            return Err("end names a task that does not exist");
        }
        if e.kick_bit >= NOTIFICATION_BITS || e.reserved != 0 {
            return Err("end has a bad kick bit");
        }
        *out = ChannelEnd {
            task: usize::from(e.task),
            kick_bit: e.kick_bit,
        };
    }
    if ends[0].task == ends[1].task {
        return Err("both ends are the same task");
    }
    Ok(Channel {
        name,
        size: rec.size,
        ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_fill_their_length() {
        let t = TaskRecord {
            name: StrRef { offset: 1, len: 2 },
            server: StrRef { offset: 3, len: 4 },
            priority: 5,
            flags: 3,
            fault_bit: 6,
            timer_bit: 7,
            xen_event_bit: 8,
            reserved: [0; 3],
            stack: 9,
            heap: 10,
            dma: 11,
            grant_window: 12,
            notifications: Range16 {
                first: 13,
                count: 14,
            },
            devices: Range16 {
                first: 15,
                count: 16,
            },
        };
        let b = t.to_bytes();
        assert_eq!(TaskRecord::from_bytes(&b), t);
        assert_eq!(&b[60..64], &[15, 0, 16, 0]);

        let d = DeviceRecord {
            name: StrRef { offset: 1, len: 2 },
            kind: 2,
            bar_mask: 0x21,
            bus: 3,
            device: 4,
            segment: 0x0506,
            function: 7,
            reserved: 0,
            pci_ids: Range16 { first: 8, count: 9 },
            msix: Range16 {
                first: 10,
                count: 11,
            },
        };
        let b = d.to_bytes();
        assert_eq!(DeviceRecord::from_bytes(&b), d);
        assert_eq!(&b[20..24], &[10, 0, 11, 0]);

        let c = ChannelRecord {
            name: StrRef { offset: 1, len: 2 },
            size: 4096,
            ends: [
                EndRecord {
                    task: 1,
                    kick_bit: 2,
                    reserved: 0,
                },
                EndRecord {
                    task: 3,
                    kick_bit: 4,
                    reserved: 0,
                },
            ],
        };
        let b = c.to_bytes();
        assert_eq!(ChannelRecord::from_bytes(&b), c);
        assert_eq!(&b[20..24], &[3, 0, 4, 0]);

        let n = NotificationRecord {
            name: StrRef { offset: 7, len: 1 },
            bit: 63,
            reserved: [0; 3],
        };
        assert_eq!(NotificationRecord::from_bytes(&n.to_bytes()), n);
        let p = PciIdRecord {
            vendor: 0x8086,
            device: 0x10fb,
        };
        assert_eq!(p.to_bytes(), [0x86, 0x80, 0xfb, 0x10]);
        assert_eq!(PciIdRecord::from_bytes(&p.to_bytes()), p);

        let mut h = Header {
            magic: MAGIC,
            version: VERSION,
            total_len: 200,
            checksum: 0xdead_beef,
            reserved: 0,
            memory_budget: 1 << 20,
            name: StrRef { offset: 0, len: 5 },
            sections: [SectionEntry::default(); 7],
        };
        h.sections[6] = SectionEntry {
            offset: 96,
            count: 104,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..8], b"NC2DDSYS");
        assert_eq!(&b[16..20], &0xdead_beef_u32.to_le_bytes());
        assert_eq!(&b[88..96], &[96, 0, 0, 0, 104, 0, 0, 0]);
        assert_eq!(Header::from_bytes(&b), h);
    }

    /// A minimal valid table: one supervisor task, built by hand so that the layout rules are
    /// exercised independently of the image tool's encoder.
    fn tiny() -> [u8; HEADER_LEN + TaskRecord::LEN + NotificationRecord::LEN + 9] {
        let mut t = [0u8; HEADER_LEN + TaskRecord::LEN + NotificationRecord::LEN + 9];
        let strings_at = HEADER_LEN + TaskRecord::LEN + NotificationRecord::LEN;
        let mut sections = [SectionEntry::default(); 7];
        let counts = [1u32, 1, 0, 0, 0, 0, 9];
        let mut at = HEADER_LEN;
        for (i, s) in Section::DIRECTORY.iter().enumerate() {
            sections[i] = SectionEntry {
                offset: at as u32,
                count: counts[i],
            };
            at += counts[i] as usize * s.record_len();
        }
        let h = Header {
            magic: MAGIC,
            version: VERSION,
            total_len: t.len() as u32,
            checksum: 0,
            reserved: 0,
            memory_budget: 1 << 20,
            name: StrRef { offset: 0, len: 3 },
            sections,
        };
        t[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        let task = TaskRecord {
            name: StrRef { offset: 3, len: 3 },
            server: StrRef { offset: 3, len: 3 },
            priority: 0,
            flags: TASK_SUPERVISOR,
            fault_bit: 0,
            timer_bit: NO_BIT,
            xen_event_bit: NO_BIT,
            stack: PAGE_SIZE,
            notifications: Range16 { first: 0, count: 1 },
            ..TaskRecord::default()
        };
        t[HEADER_LEN..HEADER_LEN + TaskRecord::LEN].copy_from_slice(&task.to_bytes());
        let n = NotificationRecord {
            name: StrRef { offset: 6, len: 3 },
            bit: 0,
            reserved: [0; 3],
        };
        t[HEADER_LEN + TaskRecord::LEN..strings_at].copy_from_slice(&n.to_bytes());
        t[strings_at..].copy_from_slice(b"sysjefflt");
        seal(&mut t);
        t
    }

    #[test]
    fn hand_built_table_decodes() {
        let bytes = tiny();
        let table = Table::decode(&bytes).unwrap();
        assert_eq!(table.name(), "sys");
        let sup = table.supervisor();
        assert_eq!(
            (sup.name, sup.server, sup.fault_bit),
            ("jef", "jef", Some(0))
        );
        assert_eq!(sup.bit("flt"), Some(0));
        assert_eq!(table.tasks().count(), 1);
        assert_eq!(table.channels().count(), 0);
    }

    #[test]
    fn checksum_and_length_are_checked() {
        let mut bytes = tiny();
        bytes[HEADER_LEN + 16] ^= 1;
        assert!(matches!(
            Table::decode(&bytes),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        let bytes = tiny();
        assert!(matches!(
            Table::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            Table::decode(&bytes[..10]).unwrap_err(),
            DecodeError::Truncated {
                needed: HEADER_LEN,
                actual: 10
            }
        );
    }

    #[test]
    fn supervisor_flag_only_on_task_zero() {
        let mut bytes = tiny();
        bytes[HEADER_LEN + 17] = 0; // flags
        seal(&mut bytes);
        assert_eq!(
            Table::decode(&bytes).unwrap_err(),
            invalid(
                Section::Tasks,
                0,
                "the supervisor must be task 0 and only task 0"
            )
        );
    }

    #[test]
    fn string_refs_must_be_in_bounds() {
        let mut bytes = tiny();
        bytes[HEADER_LEN] = 8; // name offset 8, len 3: runs past the pool
        seal(&mut bytes);
        assert_eq!(
            Table::decode(&bytes).unwrap_err(),
            invalid(Section::Tasks, 0, "bad name")
        );
    }
}
