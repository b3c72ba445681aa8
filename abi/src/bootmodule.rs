//! The boot module: how the image tool hands the servers (and the system table) to the kernel.
//!
//! The module is one file, loaded by the PVH loader as `hvm_start_info` module 0 (QEMU `-initrd`,
//! xl `ramdisk=`). Layout, all integers little-endian:
//!
//! ```text
//! offset 0   header (64 bytes)
//!            magic      [u8; 8]  = b"NC2DDBM\0"
//!            version    u32      = VERSION
//!            count      u32      number of entries
//!            total_len  u64      length of the whole module in bytes
//!            reserved   [u8; 40] zero
//! offset 64  count entries (64 bytes each)
//!            name       [u8; 40] UTF-8, NUL padded, at least one NUL
//!            offset     u64      from the start of the module, a multiple of PAGE
//!            len        u64
//!            kind       u32      EntryKind
//!            reserved   u32      zero
//! then       entry payloads, each starting on a PAGE boundary
//! ```
//!
//! Invariant checked by [`BootModule::parse`]: every entry lies inside `total_len`, which lies
//! inside the buffer; names are valid UTF-8; payloads do not overlap the header or entry table.
//! The kernel trusts the image tool, but a truncated or corrupted module must still produce an
//! error, never an out-of-bounds read.

use alloc::vec::Vec;

pub const MAGIC: [u8; 8] = *b"NC2DDBM\0";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
pub const ENTRY_LEN: usize = 64;
pub const NAME_LEN: usize = 40;
pub const PAGE: usize = 4096;
/// More entries than this is certainly a corrupted header.
pub const MAX_ENTRIES: usize = 64;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EntryKind {
    /// A server's ELF executable.
    Server = 1,
    /// The binary system table (see `system_table`).
    SystemTable = 2,
    /// A default kernel command line (UTF-8), used when the loader passes none: the way to give
    /// tasks their arguments where the loader cannot (Xen's HVM `firmware_override`).
    CommandLine = 3,
}

impl EntryKind {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Server),
            2 => Some(Self::SystemTable),
            3 => Some(Self::CommandLine),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    TooShort { len: usize },
    BadMagic,
    UnsupportedVersion(u32),
    TooManyEntries(u32),
    TotalLenOutOfBounds { total_len: u64, buffer_len: usize },
    EntryOutOfBounds { index: usize },
    EntryMisaligned { index: usize },
    BadName { index: usize },
    BadKind { index: usize, kind: u32 },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort { len } => write!(f, "boot module too short ({len} bytes)"),
            Error::BadMagic => write!(f, "boot module has no NC2DDBM magic"),
            Error::UnsupportedVersion(v) => {
                write!(f, "boot module version {v}, kernel expects {VERSION}")
            }
            Error::TooManyEntries(n) => {
                write!(f, "boot module claims {n} entries (max {MAX_ENTRIES})")
            }
            Error::TotalLenOutOfBounds {
                total_len,
                buffer_len,
            } => write!(
                f,
                "boot module says {total_len} bytes but only {buffer_len} were loaded"
            ),
            Error::EntryOutOfBounds { index } => {
                write!(f, "boot module entry {index} out of bounds")
            }
            Error::EntryMisaligned { index } => {
                write!(f, "boot module entry {index} not page aligned")
            }
            Error::BadName { index } => write!(f, "boot module entry {index} has a bad name"),
            Error::BadKind { index, kind } => {
                write!(f, "boot module entry {index} has unknown kind {kind}")
            }
        }
    }
}

/// One validated entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub kind: EntryKind,
    /// Offset of the payload from the start of the module.
    pub offset: usize,
    pub data: &'a [u8],
}

/// A validated view of a boot module.
#[derive(Clone, Copy, Debug)]
pub struct BootModule<'a> {
    buf: &'a [u8],
    count: usize,
}

// Callers check lengths first; a short read would only give 0.
fn u32_at(b: &[u8], off: usize) -> u32 {
    crate::le::u32_at(b, off).unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    crate::le::u64_at(b, off).unwrap_or(0)
}

impl<'a> BootModule<'a> {
    /// Validates the whole module once; afterwards entries can be read without further checks.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::TooShort { len: buf.len() });
        }
        if buf[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(buf, 8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let count = u32_at(buf, 12);
        if count as usize > MAX_ENTRIES {
            return Err(Error::TooManyEntries(count));
        }
        let count = count as usize;
        let total_len = u64_at(buf, 16);
        if total_len > buf.len() as u64 {
            return Err(Error::TotalLenOutOfBounds {
                total_len,
                buffer_len: buf.len(),
            });
        }
        let total = total_len as usize;
        let table_end = HEADER_LEN + count * ENTRY_LEN;
        if table_end > total {
            return Err(Error::TooShort { len: total });
        }
        let module = BootModule {
            buf: &buf[..total],
            count,
        };
        for index in 0..count {
            module.read_entry(index)?;
        }
        Ok(module)
    }

    fn read_entry(&self, index: usize) -> Result<Entry<'a>, Error> {
        let base = HEADER_LEN + index * ENTRY_LEN;
        let raw = &self.buf[base..base + ENTRY_LEN];
        let name_bytes = &raw[..NAME_LEN];
        let name_len = name_bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::BadName { index })?;
        let name =
            core::str::from_utf8(&name_bytes[..name_len]).map_err(|_| Error::BadName { index })?;
        if name.is_empty() {
            return Err(Error::BadName { index });
        }
        let offset = u64_at(raw, NAME_LEN);
        let len = u64_at(raw, NAME_LEN + 8);
        let kind_raw = u32_at(raw, NAME_LEN + 16);
        let kind = EntryKind::from_u32(kind_raw).ok_or(Error::BadKind {
            index,
            kind: kind_raw,
        })?;
        if !offset.is_multiple_of(PAGE as u64) {
            return Err(Error::EntryMisaligned { index });
        }
        let table_end = (HEADER_LEN + self.count * ENTRY_LEN) as u64;
        let end = offset
            .checked_add(len)
            .ok_or(Error::EntryOutOfBounds { index })?;
        if offset < table_end || end > self.buf.len() as u64 {
            return Err(Error::EntryOutOfBounds { index });
        }
        let (offset, end) = (offset as usize, end as usize);
        Ok(Entry {
            name,
            kind,
            offset,
            data: &self.buf[offset..end],
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `index`; `None` past the end. Entries were validated by `parse`.
    pub fn entry(&self, index: usize) -> Option<Entry<'a>> {
        if index >= self.count {
            return None;
        }
        self.read_entry(index).ok()
    }

    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + '_ {
        (0..self.count).filter_map(|i| self.entry(i))
    }

    /// The first entry of `kind` named `name`.
    pub fn find(&self, kind: EntryKind, name: &str) -> Option<Entry<'a>> {
        self.entries().find(|e| e.kind == kind && e.name == name)
    }
}

/// Builds a boot module (used by the image tool on the host).
#[derive(Default)]
pub struct Builder {
    entries: Vec<(alloc::string::String, EntryKind, Vec<u8>)>,
}

/// Why [`Builder::build`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    NameTooLong(alloc::string::String),
    EmptyName,
    TooManyEntries,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::NameTooLong(n) => {
                write!(
                    f,
                    "boot module entry name {n:?} is longer than {} bytes",
                    NAME_LEN - 1
                )
            }
            BuildError::EmptyName => write!(f, "boot module entry with an empty name"),
            BuildError::TooManyEntries => write!(f, "more than {MAX_ENTRIES} boot module entries"),
        }
    }
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: &str, kind: EntryKind, data: Vec<u8>) -> &mut Self {
        self.entries.push((name.into(), kind, data));
        self
    }

    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(BuildError::TooManyEntries);
        }
        for (name, _, _) in &self.entries {
            if name.is_empty() {
                return Err(BuildError::EmptyName);
            }
            if name.len() >= NAME_LEN || name.as_bytes().contains(&0) {
                return Err(BuildError::NameTooLong(name.clone()));
            }
        }
        let align = |n: usize| n.div_ceil(PAGE) * PAGE;
        let mut offset = align(HEADER_LEN + self.entries.len() * ENTRY_LEN);
        let mut table = Vec::new();
        for (name, kind, data) in &self.entries {
            let mut e = [0u8; ENTRY_LEN];
            e[..name.len()].copy_from_slice(name.as_bytes());
            e[NAME_LEN..NAME_LEN + 8].copy_from_slice(&(offset as u64).to_le_bytes());
            e[NAME_LEN + 8..NAME_LEN + 16].copy_from_slice(&(data.len() as u64).to_le_bytes());
            e[NAME_LEN + 16..NAME_LEN + 20].copy_from_slice(&(*kind as u32).to_le_bytes());
            table.extend_from_slice(&e);
            offset = align(offset + data.len());
        }
        let total = offset;
        let mut out = alloc::vec![0u8; total];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out[16..24].copy_from_slice(&(total as u64).to_le_bytes());
        out[HEADER_LEN..HEADER_LEN + table.len()].copy_from_slice(&table);
        let mut offset = align(HEADER_LEN + self.entries.len() * ENTRY_LEN);
        for (_, _, data) in &self.entries {
            out[offset..offset + data.len()].copy_from_slice(data);
            offset = align(offset + data.len());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        b.add("netback", EntryKind::Server, vec![1; 5000]);
        b.add("nic-ixgbe", EntryKind::Server, vec![2; 10]);
        b.add("system", EntryKind::SystemTable, vec![3; 3]);
        b.build().unwrap()
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        let m = BootModule::parse(&buf).unwrap();
        assert_eq!(m.len(), 3);
        let nb = m.find(EntryKind::Server, "netback").unwrap();
        assert_eq!(nb.data, &[1; 5000][..]);
        assert_eq!(nb.offset % PAGE, 0);
        assert_eq!(
            m.find(EntryKind::Server, "nic-ixgbe").unwrap().data,
            &[2; 10][..]
        );
        assert_eq!(
            m.find(EntryKind::SystemTable, "system").unwrap().data,
            &[3; 3][..]
        );
        assert!(m.find(EntryKind::Server, "system").is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let buf = sample();
        for len in 0..buf.len() {
            assert!(BootModule::parse(&buf[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn every_single_byte_corruption_of_the_tables_is_caught_or_harmless() {
        let buf = sample();
        let tables = HEADER_LEN + 3 * ENTRY_LEN;
        for i in 0..tables {
            for v in [0u8, 0xff, 0x41] {
                let mut b = buf.clone();
                b[i] = v;
                if let Ok(m) = BootModule::parse(&b) {
                    for e in m.entries() {
                        assert!(e.offset + e.data.len() <= b.len());
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_header_fields() {
        let mut b = sample();
        b[0] = b'X';
        assert_eq!(BootModule::parse(&b).unwrap_err(), Error::BadMagic);
        let mut b = sample();
        b[8] = 9;
        assert_eq!(
            BootModule::parse(&b).unwrap_err(),
            Error::UnsupportedVersion(9)
        );
        let mut b = sample();
        b[12] = 200;
        assert_eq!(
            BootModule::parse(&b).unwrap_err(),
            Error::TooManyEntries(200)
        );
        let mut b = sample();
        let off = HEADER_LEN + NAME_LEN;
        b[off..off + 8].copy_from_slice(&(4097u64).to_le_bytes());
        assert_eq!(
            BootModule::parse(&b).unwrap_err(),
            Error::EntryMisaligned { index: 0 }
        );
        let mut b = sample();
        b[off..off + 8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            BootModule::parse(&b).unwrap_err(),
            Error::EntryOutOfBounds { index: 0 }
        );
    }

    #[test]
    fn builder_rejects_bad_names() {
        let mut b = Builder::new();
        b.add(&"x".repeat(NAME_LEN), EntryKind::Server, vec![]);
        assert!(matches!(b.build(), Err(BuildError::NameTooLong(_))));
        let mut b = Builder::new();
        b.add("", EntryKind::Server, vec![]);
        assert_eq!(b.build(), Err(BuildError::EmptyName));
    }
}
