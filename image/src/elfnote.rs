//! Checks that a kernel ELF carries a Xen PVH entry note that QEMU and Xen will both find.
//!
//! Owns: reading an ELF64 file's program headers and notes. The check mirrors how the loaders
//! read the note: QEMU walks PT_NOTE segments, pads the note name to the segment's alignment and
//! reads the descriptor as a 64-bit value; Xen's libelf looks for XEN_ELFNOTE_PHYS32_ENTRY. So a
//! note is accepted only in a PT_NOTE segment aligned to 4, with a descriptor of 8 bytes (or 4
//! followed by zero padding), and an entry below 4 GiB inside an executable PT_LOAD segment.

use std::fmt;

use nc2dd_abi::elf::{ElfError, PF_X, PT_LOAD, PT_NOTE, ProgramHeader, u32_at};

pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    NotElf64,
    Truncated(&'static str),
    /// No PT_NOTE segment holds a "Xen" note of type PHYS32_ENTRY.
    Missing,
    /// The note exists but loaders would misread it.
    Misplaced(String),
    EntryNotExecutable(u64),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::NotElf64 => write!(f, "not a little-endian x86-64 ELF64 file"),
            NoteError::Truncated(what) => write!(f, "ELF file truncated ({what})"),
            NoteError::Missing => write!(
                f,
                "no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) in any PT_NOTE segment: QEMU \
                 would refuse it (\"Error loading uncompressed kernel without PVH ELF Note\") and \
                 Xen could not start it as a PVH guest; keep `KEEP(*(.note.Xen))` in the linker \
                 script and the note in kernel/src/arch/x86_64/entry.rs"
            ),
            NoteError::Misplaced(why) => write!(f, "Xen PVH note misplaced: {why}"),
            NoteError::EntryNotExecutable(e) => write!(
                f,
                "Xen PVH note points at {e:#x}, which is not inside an executable PT_LOAD segment"
            ),
        }
    }
}

impl std::error::Error for NoteError {}

fn phdrs(elf: &[u8]) -> Result<Vec<ProgramHeader>, NoteError> {
    match nc2dd_abi::elf::parse(elf) {
        Ok(file) => Ok(file.program_headers),
        Err(ElfError::NotElf64) => Err(NoteError::NotElf64),
        Err(ElfError::Truncated) => Err(NoteError::Truncated("program headers")),
    }
}

/// Returns the PVH entry address, or why the kernel cannot be booted through PVH.
pub fn check_pvh_note(elf: &[u8]) -> Result<u64, NoteError> {
    let phdrs = phdrs(elf)?;
    let mut found = None;
    for ph in phdrs.iter().filter(|p| p.kind == PT_NOTE) {
        let start = ph.offset as usize;
        let end = start
            .checked_add(ph.filesz as usize)
            .ok_or(NoteError::Truncated("note"))?;
        let seg = elf
            .get(start..end)
            .ok_or(NoteError::Truncated("note segment"))?;
        let mut at = 0usize;
        while at + 12 <= seg.len() {
            let namesz = u32_at(seg, at).unwrap_or(0) as usize;
            let descsz = u32_at(seg, at + 4).unwrap_or(0) as usize;
            let kind = u32_at(seg, at + 8).unwrap_or(0);
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if next > seg.len() {
                return Err(NoteError::Truncated("note entry"));
            }
            if kind == XEN_ELFNOTE_PHYS32_ENTRY
                && seg.get(name_at..name_at + namesz) == Some(b"Xen\0")
            {
                if ph.align > 4 {
                    return Err(NoteError::Misplaced(format!(
                        "its PT_NOTE segment is aligned to {} bytes; QEMU pads the note name to \
                         the segment alignment and would read the entry from the wrong place \
                         (keep the note section 4-byte aligned)",
                        ph.align
                    )));
                }
                let desc = &seg[desc_at..desc_at + descsz];
                let entry = match descsz {
                    8 => u64::from_le_bytes(desc.try_into().unwrap()),
                    4 => {
                        let pad = seg.get(desc_at + 4..desc_at + 8).unwrap_or(&[]);
                        if pad.len() == 4 && pad.iter().any(|&b| b != 0) {
                            return Err(NoteError::Misplaced(
                                "4-byte entry followed by non-zero bytes: QEMU reads 8 bytes and \
                                 would get a wrong address"
                                    .into(),
                            ));
                        }
                        u32::from_le_bytes(desc.try_into().unwrap()) as u64
                    }
                    n => {
                        return Err(NoteError::Misplaced(format!(
                            "descriptor is {n} bytes, expected 8 (or 4)"
                        )));
                    }
                };
                if entry >= 1 << 32 {
                    return Err(NoteError::Misplaced(format!(
                        "entry {entry:#x} is above 4 GiB; PVH enters in 32-bit mode"
                    )));
                }
                found = Some(entry);
            }
            at = next;
        }
    }
    let entry = found.ok_or(NoteError::Missing)?;
    let executable = phdrs.iter().any(|p| {
        p.kind == PT_LOAD && p.flags & PF_X != 0 && p.paddr <= entry && entry < p.paddr + p.memsz
    });
    if !executable {
        return Err(NoteError::EntryNotExecutable(entry));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64: one executable PT_LOAD at 1 MiB and, optionally, a PT_NOTE holding `note`.
    fn elf(note: Option<(&[u8], u64)>) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18..20].copy_from_slice(&62u16.to_le_bytes());
        let phnum: u16 = if note.is_some() { 2 } else { 1 };
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&phnum.to_le_bytes());
        let data_at = 64 + 56 * phnum as u64;
        let mut ph = |kind: u32, flags: u32, off: u64, paddr: u64, sz: u64, align: u64| {
            let mut p = vec![0u8; 56];
            p[0..4].copy_from_slice(&kind.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&sz.to_le_bytes());
            p[40..48].copy_from_slice(&sz.to_le_bytes());
            p[48..56].copy_from_slice(&align.to_le_bytes());
            e.extend_from_slice(&p);
        };
        ph(PT_LOAD, 5, 0, 0x10_0000, 0x1000, 0x1000);
        if let Some((n, align)) = note {
            ph(PT_NOTE, 4, data_at, 0x10_0000, n.len() as u64, align);
            e.extend_from_slice(n);
        }
        e
    }

    fn note(desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        n.extend_from_slice(b"Xen\0");
        n.extend_from_slice(desc);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n
    }

    #[test]
    fn accepts_a_well_formed_note() {
        let n = note(&0x10_0040u64.to_le_bytes());
        assert_eq!(check_pvh_note(&elf(Some((&n, 4)))), Ok(0x10_0040));
    }

    #[test]
    fn missing_note_is_named() {
        let err = check_pvh_note(&elf(None)).unwrap_err();
        assert_eq!(err, NoteError::Missing);
        assert!(err.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"));
    }

    #[test]
    fn rejects_misaligned_segment_and_high_entry_and_bad_padding() {
        let n = note(&0x10_0040u64.to_le_bytes());
        assert!(matches!(
            check_pvh_note(&elf(Some((&n, 8)))),
            Err(NoteError::Misplaced(_))
        ));
        let n = note(&0x1_0000_0000u64.to_le_bytes());
        assert!(matches!(
            check_pvh_note(&elf(Some((&n, 4)))),
            Err(NoteError::Misplaced(_))
        ));
        let mut n = note(&0x10_0040u32.to_le_bytes());
        n.extend_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(
            check_pvh_note(&elf(Some((&n, 4)))),
            Err(NoteError::Misplaced(_))
        ));
        let n = note(&[0; 2]);
        assert!(matches!(
            check_pvh_note(&elf(Some((&n, 4)))),
            Err(NoteError::Misplaced(_))
        ));
    }

    #[test]
    fn entry_outside_executable_code_is_rejected() {
        let n = note(&0x20_0000u64.to_le_bytes());
        assert_eq!(
            check_pvh_note(&elf(Some((&n, 4)))),
            Err(NoteError::EntryNotExecutable(0x20_0000))
        );
    }

    #[test]
    fn garbage_is_not_an_elf_and_truncation_is_an_error() {
        assert_eq!(check_pvh_note(b"hello"), Err(NoteError::NotElf64));
        let n = note(&0x10_0040u64.to_le_bytes());
        let full = elf(Some((&n, 4)));
        for len in 0..full.len() {
            assert!(check_pvh_note(&full[..len]).is_err(), "len {len}");
        }
    }
}
