//! Parsing of the PVH `hvm_start_info` block that Xen or QEMU leaves for us (address in EBX).
//!
//! Owns: reading the start info, its module list, memory map and command line out of physical
//! memory into fixed-size local copies. Everything is read once through [`PhysRead`] and checked
//! (magic, version, counts, string lengths), so later boot code works on plain validated values and
//! never dereferences a loader-provided pointer again.
//!
//! Layout (xen/include/public/arch-x86/hvm/start_info.h): magic, version, flags, nr_modules (u32
//! each), modlist_paddr, cmdline_paddr, rsdp_paddr (u64), then for version >= 1 memmap_paddr (u64)
//! and memmap_entries (u32). Module entries are 32 bytes, memory map entries 24 bytes.

/// `hvm_start_info.magic`: "xEn3" with the high bit of the last byte set.
pub const MAGIC: u32 = 0x336e_c578;
pub const MAX_MEMMAP: usize = 128;
pub const MAX_MODULES: usize = 8;
pub const MAX_CMDLINE: usize = 1024;

/// Reads bytes of guest-physical memory. The kernel implements it over its identity map; host tests
/// over a byte vector.
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`; `false` if that range is not readable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Unreadable {
        what: &'static str,
        paddr: u64,
    },
    BadMagic(u32),
    /// Version 0 has no memory map; Xen's XENMEM_memory_map must provide one instead.
    NoMemoryMap,
    TooManyMemmapEntries(u32),
    TooManyModules(u32),
    CmdlineTooLong,
    CmdlineNotUtf8,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Unreadable { what, paddr } => {
                write!(f, "start info: cannot read {what} at {paddr:#x}")
            }
            Error::BadMagic(m) => write!(
                f,
                "start info: bad magic {m:#x} (expected {MAGIC:#x}); not booted through PVH?"
            ),
            Error::NoMemoryMap => write!(
                f,
                "start info version 0 carries no memory map, and XENMEM_memory_map \
                 (the fallback under Xen) did not provide one"
            ),
            Error::TooManyMemmapEntries(n) => {
                write!(f, "start info: {n} memory map entries (max {MAX_MEMMAP})")
            }
            Error::TooManyModules(n) => write!(f, "start info: {n} modules (max {MAX_MODULES})"),
            Error::CmdlineTooLong => {
                write!(
                    f,
                    "start info: command line longer than {MAX_CMDLINE} bytes"
                )
            }
            Error::CmdlineNotUtf8 => write!(f, "start info: command line is not UTF-8"),
        }
    }
}

/// E820-style memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    Ram,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl MemoryType {
    pub fn from_raw(t: u32) -> Self {
        match t {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            other => Self::Other(other),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub len: u64,
    pub kind: MemoryType,
}

impl MemoryRegion {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
}

/// A validated copy of the start info.
#[derive(Clone, Debug)]
pub struct StartInfo {
    pub paddr: u64,
    pub version: u32,
    pub flags: u32,
    pub rsdp_paddr: u64,
    pub cmdline_paddr: u64,
    memmap: [MemoryRegion; MAX_MEMMAP],
    memmap_len: usize,
    /// Where the loader put the memory map (to keep it out of the frame allocator).
    pub memmap_paddr: u64,
    modules: [Module; MAX_MODULES],
    modules_len: usize,
    pub modlist_paddr: u64,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
}

const START_INFO_V0_LEN: usize = 40;
const START_INFO_V1_LEN: usize = 56;
const MODULE_ENTRY_LEN: usize = 32;
const MEMMAP_ENTRY_LEN: usize = 24;

// Reads from the fixed-size local copies above: always in bounds.
fn u32_at(b: &[u8], off: usize) -> u32 {
    nc2dd_abi::le::u32_at(b, off).unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    nc2dd_abi::le::u64_at(b, off).unwrap_or(0)
}

impl StartInfo {
    /// Reads and validates the start info at `paddr`.
    pub fn parse(mem: &impl PhysRead, paddr: u64) -> Result<Self, Error> {
        Self::parse_inner(mem, paddr, None)
    }

    /// Like [`Self::parse`], but a version 0 start info (which has no memory map) takes
    /// `memory_map` instead: what Xen's `XENMEM_memory_map` reported. A version 1 start info
    /// keeps its own map.
    pub fn parse_with_memory_map(
        mem: &impl PhysRead,
        paddr: u64,
        memory_map: &[MemoryRegion],
    ) -> Result<Self, Error> {
        if memory_map.len() > MAX_MEMMAP {
            return Err(Error::TooManyMemmapEntries(memory_map.len() as u32));
        }
        Self::parse_inner(mem, paddr, Some(memory_map))
    }

    fn parse_inner(
        mem: &impl PhysRead,
        paddr: u64,
        fallback: Option<&[MemoryRegion]>,
    ) -> Result<Self, Error> {
        let mut hdr = [0u8; START_INFO_V1_LEN];
        if !mem.read(paddr, &mut hdr[..START_INFO_V0_LEN]) {
            return Err(Error::Unreadable {
                what: "start info",
                paddr,
            });
        }
        let magic = u32_at(&hdr, 0);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = u32_at(&hdr, 4);
        if version == 0 && fallback.is_none() {
            return Err(Error::NoMemoryMap);
        }
        if version != 0 && !mem.read(paddr, &mut hdr) {
            return Err(Error::Unreadable {
                what: "start info v1 fields",
                paddr,
            });
        }
        let mut si = StartInfo {
            paddr,
            version,
            flags: u32_at(&hdr, 8),
            rsdp_paddr: u64_at(&hdr, 32),
            cmdline_paddr: u64_at(&hdr, 24),
            memmap: [MemoryRegion {
                start: 0,
                len: 0,
                kind: MemoryType::Reserved,
            }; MAX_MEMMAP],
            memmap_len: 0,
            memmap_paddr: u64_at(&hdr, 40),
            modules: [Module {
                paddr: 0,
                size: 0,
                cmdline_paddr: 0,
            }; MAX_MODULES],
            modules_len: 0,
            modlist_paddr: u64_at(&hdr, 16),
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
        };

        let nr_modules = u32_at(&hdr, 12);
        if nr_modules as usize > MAX_MODULES {
            return Err(Error::TooManyModules(nr_modules));
        }
        for i in 0..nr_modules as usize {
            let mut e = [0u8; MODULE_ENTRY_LEN];
            let at = si.modlist_paddr + (i * MODULE_ENTRY_LEN) as u64;
            if !mem.read(at, &mut e) {
                return Err(Error::Unreadable {
                    what: "module list",
                    paddr: at,
                });
            }
            si.modules[i] = Module {
                paddr: u64_at(&e, 0),
                size: u64_at(&e, 8),
                cmdline_paddr: u64_at(&e, 16),
            };
        }
        si.modules_len = nr_modules as usize;

        if version == 0 {
            let map = fallback.unwrap_or(&[]);
            si.memmap[..map.len()].copy_from_slice(map);
            si.memmap_len = map.len();
            si.memmap_paddr = 0;
        }
        // Version 0 ends before the memory map fields (zeroed above), so this reads no entries.
        let entries = u32_at(&hdr, 48);
        if entries as usize > MAX_MEMMAP {
            return Err(Error::TooManyMemmapEntries(entries));
        }
        for i in 0..entries as usize {
            let mut e = [0u8; MEMMAP_ENTRY_LEN];
            let at = si.memmap_paddr + (i * MEMMAP_ENTRY_LEN) as u64;
            if !mem.read(at, &mut e) {
                return Err(Error::Unreadable {
                    what: "memory map",
                    paddr: at,
                });
            }
            si.memmap[i] = MemoryRegion {
                start: u64_at(&e, 0),
                len: u64_at(&e, 8),
                kind: MemoryType::from_raw(u32_at(&e, 16)),
            };
        }
        if version != 0 {
            si.memmap_len = entries as usize;
        }

        if si.cmdline_paddr != 0 {
            si.cmdline_len = read_c_string(mem, si.cmdline_paddr, &mut si.cmdline)?;
            core::str::from_utf8(&si.cmdline[..si.cmdline_len])
                .map_err(|_| Error::CmdlineNotUtf8)?;
        }
        Ok(si)
    }

    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.memmap[..self.memmap_len]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.modules_len]
    }

    /// The kernel command line ("" when the loader gave none).
    pub fn cmdline(&self) -> &str {
        // Validated as UTF-8 in `parse`.
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Total bytes of RAM the memory map reports.
    pub fn ram_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|r| r.kind == MemoryType::Ram)
            .map(|r| r.len)
            .sum()
    }
}

/// Reads a NUL-terminated string of at most `buf.len()` bytes; returns its length.
fn read_c_string(mem: &impl PhysRead, paddr: u64, buf: &mut [u8]) -> Result<usize, Error> {
    for (i, slot) in buf.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        if !mem.read(paddr + i as u64, &mut b) {
            return Err(Error::Unreadable {
                what: "command line",
                paddr,
            });
        }
        if b[0] == 0 {
            return Ok(i);
        }
        *slot = b[0];
    }
    Err(Error::CmdlineTooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake physical memory: one buffer at physical address `base`.
    struct FakeMem {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysRead for FakeMem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = paddr.checked_sub(self.base) else {
                return false;
            };
            let off = off as usize;
            match self.bytes.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    const BASE: u64 = 0x1000;

    fn put32(m: &mut FakeMem, at: u64, v: u32) {
        let o = (at - m.base) as usize;
        m.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(m: &mut FakeMem, at: u64, v: u64) {
        let o = (at - m.base) as usize;
        m.bytes[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A start info like QEMU's: two RAM regions, a reserved one, one module, a command line.
    fn qemu_like() -> FakeMem {
        let mut m = FakeMem {
            base: BASE,
            bytes: vec![0; 4096],
        };
        put32(&mut m, BASE, MAGIC);
        put32(&mut m, BASE + 4, 1);
        put32(&mut m, BASE + 12, 1);
        put64(&mut m, BASE + 16, BASE + 0x100); // modlist
        put64(&mut m, BASE + 24, BASE + 0x400); // cmdline
        put64(&mut m, BASE + 32, 0xf5250); // rsdp
        put64(&mut m, BASE + 40, BASE + 0x200); // memmap
        put32(&mut m, BASE + 48, 3);
        put64(&mut m, BASE + 0x100, 0x0700_0000);
        put64(&mut m, BASE + 0x108, 12345);
        let map = [
            (0u64, 0x9fc00u64, 1u32),
            (0x100000, 0x7ee0000, 1),
            (0xfffc0000, 0x40000, 2),
        ];
        for (i, (s, l, t)) in map.iter().enumerate() {
            let at = BASE + 0x200 + (i as u64) * 24;
            put64(&mut m, at, *s);
            put64(&mut m, at + 8, *l);
            put32(&mut m, at + 16, *t);
        }
        let cmd = b"console=ttyS0 nc2dd.test=boot\0";
        m.bytes[0x400..0x400 + cmd.len()].copy_from_slice(cmd);
        m
    }

    #[test]
    fn parses_a_qemu_like_start_info() {
        let si = StartInfo::parse(&qemu_like(), BASE).unwrap();
        assert_eq!(si.version, 1);
        assert_eq!(si.modules().len(), 1);
        assert_eq!(si.modules()[0].size, 12345);
        assert_eq!(si.memory_map().len(), 3);
        assert_eq!(si.memory_map()[2].kind, MemoryType::Reserved);
        assert_eq!(si.ram_bytes(), 0x9fc00 + 0x7ee0000);
        assert_eq!(si.cmdline(), "console=ttyS0 nc2dd.test=boot");
        assert_eq!(si.rsdp_paddr, 0xf5250);
    }

    #[test]
    fn version_zero_asks_for_the_hypercall_path() {
        let mut m = qemu_like();
        put32(&mut m, BASE + 4, 0);
        let err = StartInfo::parse(&m, BASE).unwrap_err();
        assert_eq!(err, Error::NoMemoryMap);
        assert!(format!("{err}").contains("XENMEM_memory_map"));
    }

    #[test]
    fn version_zero_takes_the_hypervisors_memory_map() {
        let mut m = qemu_like();
        put32(&mut m, BASE + 4, 0);
        let map = [
            MemoryRegion {
                start: 0,
                len: 0x400_0000,
                kind: MemoryType::Ram,
            },
            MemoryRegion {
                start: 0xfeff_8000,
                len: 0x8000,
                kind: MemoryType::Reserved,
            },
        ];
        let si = StartInfo::parse_with_memory_map(&m, BASE, &map).unwrap();
        assert_eq!(si.version, 0);
        assert_eq!(si.memory_map(), &map);
        assert_eq!(si.memmap_paddr, 0);
        assert_eq!(si.modules().len(), 1, "the v0 fields are still read");
        assert_eq!(si.cmdline(), "console=ttyS0 nc2dd.test=boot");
        // A version 1 start info keeps its own map.
        let si = StartInfo::parse_with_memory_map(&qemu_like(), BASE, &map).unwrap();
        assert_eq!(si.memory_map().len(), 3);
        let too_many = vec![map[0]; MAX_MEMMAP + 1];
        assert_eq!(
            StartInfo::parse_with_memory_map(&m, BASE, &too_many).unwrap_err(),
            Error::TooManyMemmapEntries(MAX_MEMMAP as u32 + 1)
        );
    }

    #[test]
    fn rejects_bad_magic_and_counts() {
        let mut m = qemu_like();
        put32(&mut m, BASE, 0x1234);
        assert_eq!(
            StartInfo::parse(&m, BASE).unwrap_err(),
            Error::BadMagic(0x1234)
        );
        let mut m = qemu_like();
        put32(&mut m, BASE + 48, 100_000);
        assert_eq!(
            StartInfo::parse(&m, BASE).unwrap_err(),
            Error::TooManyMemmapEntries(100_000)
        );
        let mut m = qemu_like();
        put32(&mut m, BASE + 12, 9);
        assert_eq!(
            StartInfo::parse(&m, BASE).unwrap_err(),
            Error::TooManyModules(9)
        );
    }

    #[test]
    fn unreadable_pointers_are_errors() {
        let mut m = qemu_like();
        put64(&mut m, BASE + 40, 0xdead_0000);
        assert!(matches!(
            StartInfo::parse(&m, BASE),
            Err(Error::Unreadable {
                what: "memory map",
                ..
            })
        ));
        assert!(matches!(
            StartInfo::parse(&m, 0x10),
            Err(Error::Unreadable { .. })
        ));
    }

    #[test]
    fn unterminated_cmdline_is_too_long() {
        let mut m = qemu_like();
        m.bytes.resize(0x400 + MAX_CMDLINE + 10, b'a');
        for b in &mut m.bytes[0x400..] {
            *b = b'a';
        }
        assert_eq!(
            StartInfo::parse(&m, BASE).unwrap_err(),
            Error::CmdlineTooLong
        );
    }

    #[test]
    fn missing_cmdline_is_empty() {
        let mut m = qemu_like();
        put64(&mut m, BASE + 24, 0);
        assert_eq!(StartInfo::parse(&m, BASE).unwrap().cmdline(), "");
    }
}
