//! Reading the headers of an x86-64 ELF64 file, for the kernel's task loader and the image
//! tool's PVH-note check.
//!
//! Owns: the file header fields both need and the program-header table, read with bounds checks
//! only (a truncated or corrupted file is an error, never a panic or an out-of-bounds read).
//! What the segments mean is the caller's business.

use alloc::vec::Vec;

pub use crate::le::{u16_at, u32_at, u64_at};

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian x86-64 ELF64 file.
    NotElf64,
    /// The header or the program-header table runs past the end of the file.
    Truncated,
}

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// The parts of a file the callers use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf64 {
    /// ET_EXEC (2) or ET_DYN (3), ...
    pub file_type: u16,
    pub entry: u64,
    pub program_headers: Vec<ProgramHeader>,
}

/// Reads the file header and every program header of `elf`.
pub fn parse(elf: &[u8]) -> Result<Elf64, ElfError> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(ElfError::NotElf64);
    }
    if u16_at(elf, 18) != Some(62) {
        return Err(ElfError::NotElf64);
    }
    let t = ElfError::Truncated;
    let file_type = u16_at(elf, 16).ok_or(t)?;
    let entry = u64_at(elf, 24).ok_or(t)?;
    let phoff = usize::try_from(u64_at(elf, 32).ok_or(t)?).map_err(|_| t)?;
    let phentsize = usize::from(u16_at(elf, 54).ok_or(t)?);
    let phnum = usize::from(u16_at(elf, 56).ok_or(t)?);
    if phnum > 0 && phentsize < 56 {
        return Err(t);
    }
    let program_headers = (0..phnum)
        .map(|i| {
            let o = phoff.checked_add(i * phentsize).ok_or(t)?;
            Ok(ProgramHeader {
                kind: u32_at(elf, o).ok_or(t)?,
                flags: u32_at(elf, o + 4).ok_or(t)?,
                offset: u64_at(elf, o + 8).ok_or(t)?,
                vaddr: u64_at(elf, o + 16).ok_or(t)?,
                paddr: u64_at(elf, o + 24).ok_or(t)?,
                filesz: u64_at(elf, o + 32).ok_or(t)?,
                memsz: u64_at(elf, o + 40).ok_or(t)?,
                align: u64_at(elf, o + 48).ok_or(t)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Elf64 {
        file_type,
        entry,
        program_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn minimal() -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16] = 2;
        e[18] = 62;
        e[24..32].copy_from_slice(&0x1234u64.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54] = 56;
        e[56] = 1;
        e[64] = PT_LOAD as u8;
        e[64 + 4] = (PF_R | PF_X) as u8;
        e
    }

    #[test]
    fn reads_header_and_program_headers() {
        let elf = parse(&minimal()).unwrap();
        assert_eq!((elf.file_type, elf.entry), (2, 0x1234));
        assert_eq!(elf.program_headers.len(), 1);
        assert_eq!(elf.program_headers[0].kind, PT_LOAD);
        assert_eq!(elf.program_headers[0].flags, PF_R | PF_X);
    }

    #[test]
    fn every_truncation_and_foreign_file_is_an_error() {
        let e = minimal();
        for len in 0..e.len() {
            assert!(parse(&e[..len]).is_err(), "len {len}");
        }
        let mut arm = minimal();
        arm[18] = 183;
        assert_eq!(parse(&arm), Err(ElfError::NotElf64));
        let mut huge = minimal();
        huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&huge), Err(ElfError::Truncated));
    }
}
