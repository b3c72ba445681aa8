//! Loading a server's ELF image: which pages to map with which rights, and what to copy in.
//!
//! Owns: the checked load plan of one ELF64 executable. The image tool built the servers, but the
//! kernel still treats an image as data to validate: every PT_LOAD segment must lie inside the
//! user image window, have its file bytes inside the file, never be writable and executable at
//! once (W^X), and never share a page with another segment; the entry point must be in an
//! executable segment. A violation is an error naming the segment, never a panic.

use alloc::vec::Vec;

use nc2dd_abi::elf::{self as headers, PF_W, PF_X, PT_LOAD};

pub const PAGE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf64,
    Truncated,
    NoSegments,
    OutsideWindow { index: usize },
    FileRangeOutOfBounds { index: usize },
    WriteAndExecute { index: usize },
    Overlap { index: usize },
    FileLargerThanMemory { index: usize },
    MisalignedOffset { index: usize },
    EntryNotExecutable(u64),
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => write!(f, "not an x86-64 ELF64 executable"),
            ElfError::Truncated => write!(f, "ELF headers truncated"),
            ElfError::NoSegments => write!(f, "no loadable segments"),
            ElfError::OutsideWindow { index } => {
                write!(f, "segment {index} lies outside the user image window")
            }
            ElfError::FileRangeOutOfBounds { index } => {
                write!(f, "segment {index} points past the end of the file")
            }
            ElfError::WriteAndExecute { index } => {
                write!(f, "segment {index} is writable and executable (W^X)")
            }
            ElfError::Overlap { index } => write!(f, "segment {index} shares a page with another"),
            ElfError::FileLargerThanMemory { index } => {
                write!(f, "segment {index} has more file bytes than memory bytes")
            }
            ElfError::MisalignedOffset { index } => {
                write!(
                    f,
                    "segment {index}: file offset and address differ within a page"
                )
            }
            ElfError::EntryNotExecutable(e) => {
                write!(f, "entry {e:#x} is not inside an executable segment")
            }
        }
    }
}

/// One loadable segment, page-rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First page of the segment.
    pub page_start: u64,
    /// Number of pages to map.
    pub pages: u64,
    /// Where the file bytes go (inside the first page or later).
    pub vaddr: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub writable: bool,
    pub executable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub entry: u64,
    pub segments: Vec<Segment>,
}

/// Checks `elf` and plans its load into `[window_start, window_end)`.
pub fn plan(elf: &[u8], window_start: u64, window_end: u64) -> Result<LoadPlan, ElfError> {
    let file = headers::parse(elf).map_err(|e| match e {
        headers::ElfError::NotElf64 => ElfError::NotElf64,
        headers::ElfError::Truncated => ElfError::Truncated,
    })?;
    // ET_EXEC or ET_DYN (position-independent, linked at its load address).
    if !matches!(file.file_type, 2 | 3) {
        return Err(ElfError::NotElf64);
    }
    let entry = file.entry;
    let mut segments: Vec<Segment> = Vec::new();
    for ph in file.program_headers.iter().filter(|p| p.kind == PT_LOAD) {
        let (flags, offset, vaddr, filesz, memsz) =
            (ph.flags, ph.offset, ph.vaddr, ph.filesz, ph.memsz);
        let index = segments.len();
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(ElfError::FileLargerThanMemory { index });
        }
        if offset % PAGE != vaddr % PAGE {
            return Err(ElfError::MisalignedOffset { index });
        }
        let end = vaddr
            .checked_add(memsz)
            .ok_or(ElfError::OutsideWindow { index })?;
        if vaddr < window_start || end > window_end {
            return Err(ElfError::OutsideWindow { index });
        }
        let file_end = offset
            .checked_add(filesz)
            .ok_or(ElfError::FileRangeOutOfBounds { index })?;
        if file_end > elf.len() as u64 {
            return Err(ElfError::FileRangeOutOfBounds { index });
        }
        if flags & PF_W != 0 && flags & PF_X != 0 {
            return Err(ElfError::WriteAndExecute { index });
        }
        let page_start = vaddr / PAGE * PAGE;
        let page_end = end.div_ceil(PAGE) * PAGE;
        let seg = Segment {
            page_start,
            pages: (page_end - page_start) / PAGE,
            vaddr,
            file_offset: offset,
            file_size: filesz,
            writable: flags & PF_W != 0,
            executable: flags & PF_X != 0,
        };
        let overlaps = segments.iter().any(|s| {
            let s_end = s.page_start + s.pages * PAGE;
            seg.page_start < s_end && s.page_start < page_end
        });
        if overlaps {
            return Err(ElfError::Overlap { index });
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    let in_text = segments
        .iter()
        .any(|s| s.executable && s.vaddr <= entry && entry < s.page_start + s.pages * PAGE);
    if !in_text {
        return Err(ElfError::EntryNotExecutable(entry));
    }
    Ok(LoadPlan { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    use nc2dd_abi::elf::PF_R;

    const LO: u64 = 0x4000_0000_0000;
    const HI: u64 = 0x4080_0000_0000;

    /// An ELF with the given (flags, offset, vaddr, filesz, memsz) PT_LOAD segments.
    fn elf(entry: u64, segs: &[(u32, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16..18].copy_from_slice(&3u16.to_le_bytes());
        e[18..20].copy_from_slice(&62u16.to_le_bytes());
        e[24..32].copy_from_slice(&entry.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for &(flags, off, vaddr, filesz, memsz) in segs {
            let mut p = vec![0u8; 56];
            p[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            e.extend_from_slice(&p);
        }
        e.resize(0x5000, 0xaa);
        e
    }

    fn server_like() -> Vec<u8> {
        elf(
            LO + 0x10,
            &[
                (PF_R | PF_X, 0x1000, LO, 0x1acf, 0x1acf),
                (PF_R, 0x3000, LO + 0x2000, 0xa28, 0xa28),
                (PF_R | PF_W, 0x4000, LO + 0x3000, 0x3a8, 0x42010),
            ],
        )
    }

    #[test]
    fn plans_a_server_like_image() {
        let p = plan(&server_like(), LO, HI).unwrap();
        assert_eq!(p.entry, LO + 0x10);
        assert_eq!(p.segments.len(), 3);
        assert!(p.segments[0].executable && !p.segments[0].writable);
        assert_eq!(p.segments[0].pages, 2);
        assert!(p.segments[2].writable && !p.segments[2].executable);
        assert_eq!(p.segments[2].pages, 0x43);
    }

    #[test]
    fn refuses_what_would_break_isolation() {
        let wx = elf(LO, &[(PF_R | PF_W | PF_X, 0x1000, LO, 0x10, 0x10)]);
        assert_eq!(
            plan(&wx, LO, HI),
            Err(ElfError::WriteAndExecute { index: 0 })
        );
        let kernel = elf(0x10_0000, &[(PF_R | PF_X, 0x1000, 0x10_0000, 0x10, 0x10)]);
        assert_eq!(
            plan(&kernel, LO, HI),
            Err(ElfError::OutsideWindow { index: 0 })
        );
        let wrap = elf(LO, &[(PF_R | PF_X, 0x1000, u64::MAX - 0xfff, 0x10, 0x2000)]);
        assert_eq!(
            plan(&wrap, LO, HI),
            Err(ElfError::OutsideWindow { index: 0 })
        );
        let shared_page = elf(
            LO,
            &[
                (PF_R | PF_X, 0x1000, LO, 0x800, 0x800),
                (PF_R | PF_W, 0x1800, LO + 0x800, 8, 8),
            ],
        );
        assert_eq!(
            plan(&shared_page, LO, HI),
            Err(ElfError::Overlap { index: 1 })
        );
        let past_eof = elf(LO, &[(PF_R | PF_X, 0x1000, LO, 0x10_0000, 0x10_0000)]);
        assert_eq!(
            plan(&past_eof, LO, HI),
            Err(ElfError::FileRangeOutOfBounds { index: 0 })
        );
        let entry_in_data = elf(
            LO + 0x3000,
            &[
                (PF_R | PF_X, 0x1000, LO, 8, 8),
                (PF_R | PF_W, 0x3000, LO + 0x3000, 8, 8),
            ],
        );
        assert_eq!(
            plan(&entry_in_data, LO, HI),
            Err(ElfError::EntryNotExecutable(LO + 0x3000))
        );
        let bigger_file = elf(LO, &[(PF_R | PF_X, 0x1000, LO, 0x20, 0x10)]);
        assert_eq!(
            plan(&bigger_file, LO, HI),
            Err(ElfError::FileLargerThanMemory { index: 0 })
        );
        let misaligned = elf(LO, &[(PF_R | PF_X, 0x1010, LO, 0x20, 0x20)]);
        assert_eq!(
            plan(&misaligned, LO, HI),
            Err(ElfError::MisalignedOffset { index: 0 })
        );
        assert_eq!(plan(&elf(LO, &[]), LO, HI), Err(ElfError::NoSegments));
        assert_eq!(plan(b"not an elf", LO, HI), Err(ElfError::NotElf64));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let e = server_like();
        for len in 0..64 + 3 * 56 {
            assert!(plan(&e[..len], LO, HI).is_err(), "len {len}");
        }
    }
}
