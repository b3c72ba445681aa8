//! The two ways to reach PCI configuration space, as [`ConfigAccess`] implementations over
//! narrower hardware edges: ECAM over a mapped [`Mmio`] window, and the legacy 0xCF8/0xCFC port
//! pair over a [`PortIo`].
//!
//! Owns the address arithmetic and the bounds: a request outside the function's space, for a bus
//! the window does not cover, or for a segment the ports cannot reach reads all ones and writes
//! nothing, exactly like an absent function. Narrow writes are native (no read-modify-write), so
//! write-1-to-clear bits in neighbouring bytes are never touched.
//!
//! Invariant of [`PortAccess`]: the address write and the data access happen under one lock,
//! so two CPUs can never interleave and reach each other's registers.

use spin::Mutex;

use super::acpi::EcamRegion;
use super::mmio::Mmio;
use super::pci::{Bdf, ConfigAccess, ECAM_CONFIG_SIZE, LEGACY_CONFIG_SIZE, legacy_port_address};

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xCF8;
/// The configuration data port (plus 0..=3 for narrow accesses).
pub const CONFIG_DATA: u16 = 0xCFC;

/// x86 port I/O.
pub trait PortIo {
    fn out32(&mut self, port: u16, value: u32);
    fn in32(&mut self, port: u16) -> u32;
    fn out16(&mut self, port: u16, value: u16);
    fn out8(&mut self, port: u16, value: u8);
}

/// Configuration access through ports 0xCF8/0xCFC: segment 0, 256 bytes per function.
pub struct PortAccess<P: PortIo> {
    ports: Mutex<P>,
}

impl<P: PortIo> PortAccess<P> {
    pub fn new(ports: P) -> Self {
        PortAccess {
            ports: Mutex::new(ports),
        }
    }
}

impl<P: PortIo> ConfigAccess for PortAccess<P> {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match legacy_port_address(bdf, offset).filter(|_| offset.is_multiple_of(4)) {
            Some(address) => {
                let mut p = self.ports.lock();
                p.out32(CONFIG_ADDRESS, address);
                p.in32(CONFIG_DATA)
            }
            None => u32::MAX,
        }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(address) = legacy_port_address(bdf, offset).filter(|_| offset.is_multiple_of(4))
        {
            let mut p = self.ports.lock();
            p.out32(CONFIG_ADDRESS, address);
            p.out32(CONFIG_DATA, value);
        }
    }

    fn config_size(&self, _bdf: Bdf) -> u16 {
        LEGACY_CONFIG_SIZE
    }

    fn write_narrow(&self, bdf: Bdf, offset: u16, width: u8, value: u32) {
        let aligned = matches!(width, 1 | 2) && offset.is_multiple_of(u16::from(width));
        let Some(address) = legacy_port_address(bdf, offset).filter(|_| aligned) else {
            return;
        };
        let data = CONFIG_DATA + (offset & 3);
        let mut p = self.ports.lock();
        p.out32(CONFIG_ADDRESS, address);
        if width == 1 {
            p.out8(data, value as u8);
        } else {
            p.out16(data, value as u16);
        }
    }
}

/// Memory-mapped access to one ECAM window.
pub trait EcamMmio: Mmio {
    fn write16(&self, offset: usize, value: u16);
    fn write8(&self, offset: usize, value: u8);
}

/// Configuration access through one MCFG region mapped (uncached) at `mmio`: 4 KiB per function.
pub struct EcamAccess<M: EcamMmio> {
    region: EcamRegion,
    mmio: M,
}

impl<M: EcamMmio> EcamAccess<M> {
    /// `mmio` maps `region.len()` bytes from `region.base`.
    pub fn new(region: EcamRegion, mmio: M) -> Self {
        EcamAccess { region, mmio }
    }

    /// Byte offset of (`bdf`, `offset`) in the window, if the window covers it.
    fn at(&self, bdf: Bdf, offset: u16, width: u16) -> Option<usize> {
        if !offset.is_multiple_of(width) || offset >= ECAM_CONFIG_SIZE {
            return None;
        }
        let function = self.region.function_base(bdf)? - self.region.base;
        usize::try_from(function + u64::from(offset)).ok()
    }
}

impl<M: EcamMmio> ConfigAccess for EcamAccess<M> {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.at(bdf, offset, 4)
            .map_or(u32::MAX, |at| self.mmio.read32(at))
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(at) = self.at(bdf, offset, 4) {
            self.mmio.write32(at, value);
        }
    }

    fn config_size(&self, bdf: Bdf) -> u16 {
        if self.region.function_base(bdf).is_some() {
            ECAM_CONFIG_SIZE
        } else {
            0
        }
    }

    fn write_narrow(&self, bdf: Bdf, offset: u16, width: u8, value: u32) {
        match width {
            1 => {
                if let Some(at) = self.at(bdf, offset, 1) {
                    self.mmio.write8(at, value as u8);
                }
            }
            2 => {
                if let Some(at) = self.at(bdf, offset, 2) {
                    self.mmio.write16(at, value as u16);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::pci::fake::bdf;
    use core::cell::RefCell;
    use std::vec;
    use std::vec::Vec;

    #[derive(Default)]
    struct Ports {
        log: Vec<(char, u16, u32)>,
    }

    impl PortIo for Ports {
        fn out32(&mut self, port: u16, value: u32) {
            self.log.push(('l', port, value));
        }
        fn in32(&mut self, port: u16) -> u32 {
            self.log.push(('r', port, 0));
            0x10c9_8086
        }
        fn out16(&mut self, port: u16, value: u16) {
            self.log.push(('w', port, u32::from(value)));
        }
        fn out8(&mut self, port: u16, value: u8) {
            self.log.push(('b', port, u32::from(value)));
        }
    }

    #[test]
    fn port_mechanism_addresses_and_narrow_writes() {
        let access = PortAccess::new(Ports::default());
        assert_eq!(access.read32(bdf(0, 4, 0), 0), 0x10c9_8086);
        access.write_narrow(bdf(0, 4, 0), 0x06, 2, 0x8000);
        access.write_narrow(bdf(0, 4, 0), 0x3d, 1, 0x7f);
        access.write32(bdf(1, 2, 3), 0x10, 0xFFFF_FFFF);
        // Out of reach: no port traffic at all.
        assert_eq!(access.read32(bdf(0, 4, 0), 0x100), u32::MAX);
        access.write_narrow(bdf(0, 4, 0), 0x07, 2, 0);
        let mut far = bdf(0, 0, 0);
        far.segment = 1;
        assert_eq!(access.read32(far, 0), u32::MAX);
        assert_eq!(
            access.ports.lock().log,
            vec![
                ('l', 0xCF8, 0x8000_2000),
                ('r', 0xCFC, 0),
                ('l', 0xCF8, 0x8000_2004),
                ('w', 0xCFE, 0x8000),
                ('l', 0xCF8, 0x8000_203C),
                ('b', 0xCFD, 0x7f),
                ('l', 0xCF8, 0x8001_1310),
                ('l', 0xCFC, 0xFFFF_FFFF),
            ]
        );
    }

    struct Window {
        bytes: RefCell<Vec<u8>>,
    }

    impl Mmio for Window {
        fn read32(&self, offset: usize) -> u32 {
            let b = self.bytes.borrow();
            u32::from_le_bytes(b[offset..offset + 4].try_into().unwrap())
        }
        fn write32(&self, offset: usize, value: u32) {
            self.bytes.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }
    }

    impl EcamMmio for Window {
        fn write16(&self, offset: usize, value: u16) {
            self.bytes.borrow_mut()[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
        }
        fn write8(&self, offset: usize, value: u8) {
            self.bytes.borrow_mut()[offset] = value;
        }
    }

    #[test]
    fn ecam_offsets_bounds_and_native_narrow_writes() {
        // Buses 0x10..=0x11 of segment 0.
        let region = EcamRegion {
            segment: 0,
            bus_start: 0x10,
            bus_end: 0x11,
            base: 0xB100_0000,
        };
        let access = EcamAccess::new(
            region,
            Window {
                bytes: RefCell::new(vec![0; region.len() as usize]),
            },
        );
        let f = bdf(0x11, 4, 1);
        access.write32(f, 0xFFC, 0xAABB_CCDD);
        let at = (1 << 20) + (4 << 15) + (1 << 12) + 0xFFC;
        assert_eq!(access.mmio.read32(at), 0xAABB_CCDD);
        access.write_narrow(f, 0xFFE, 2, 0x1234);
        access.write_narrow(f, 0xFFC, 1, 0x99);
        assert_eq!(access.read32(f, 0xFFC), 0x1234_CC99);
        assert_eq!(access.config_size(f), ECAM_CONFIG_SIZE);
        // Outside the window or the function: all ones, nothing written.
        assert_eq!(access.read32(bdf(0x12, 0, 0), 0), u32::MAX);
        assert_eq!(access.config_size(bdf(0x12, 0, 0)), 0);
        assert_eq!(access.read32(f, 0x1000), u32::MAX);
        access.write32(f, 0x1000, 1);
        access.write_narrow(f, 0x3, 2, 1);
        assert_eq!(access.read32(f, 0), 0);
        assert_eq!(access.read32(bdf(0x12, 0, 0), 0), u32::MAX);
    }
}
