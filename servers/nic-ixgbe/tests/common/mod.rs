//! Host glue between the driver core's hardware traits and the software model, plus frame and
//! buffer helpers shared by the integration tests and the benchmark.
#![allow(dead_code)]

use ixgbe_model::Model;
use nic_ixgbe::{Chip, Config, Delay, Dma, DmaError, DmaRegion, Nic, RegisterAccess, RxBuf};

pub struct Regs(pub Model);
pub struct ModelDma(pub Model);
pub struct Clock(pub Model);

impl RegisterAccess for Regs {
    fn read32(&self, off: u32) -> u32 {
        self.0.read32(off)
    }
    fn write32(&self, off: u32, v: u32) {
        self.0.write32(off, v)
    }
}

impl Dma for ModelDma {
    fn alloc(&mut self, len: usize) -> Result<DmaRegion, DmaError> {
        let (ptr, bus) = self.0.dma_alloc(len);
        // SAFETY: the model hands out page-aligned, zeroed memory of at least `len` bytes that
        // lives as long as any clone of the model, and the driver holds one (its `Regs`).
        Ok(unsafe { DmaRegion::new(ptr, bus, len) })
    }
}

impl Delay for Clock {
    fn delay_us(&mut self, us: u32) {
        self.0.advance_us(u64::from(us))
    }
}

pub type ModelNic = Nic<Regs, ModelDma, Clock>;

pub const NIC_MAC: [u8; 6] = [0x02, 0xAA, 0, 0, 0, 1];

pub fn model_chip(chip: Chip) -> ixgbe_model::Chip {
    match chip {
        Chip::X82599 => ixgbe_model::Chip::X82599,
        Chip::I82576 => ixgbe_model::Chip::I82576,
    }
}

pub fn nic_with(cfg: Config) -> (Model, ModelNic) {
    let m = Model::new(model_chip(cfg.chip), NIC_MAC);
    let mut nic = Nic::new(Regs(m.clone()), ModelDma(m.clone()), Clock(m.clone()), cfg)
        .expect("init against the model");
    nic.wait_link(2000).expect("link up");
    (m, nic)
}

pub fn nic(chip: Chip) -> (Model, ModelNic) {
    nic_with(Config::new(chip))
}

/// A guest MAC (locally administered unicast).
pub fn guest_mac(i: u8) -> [u8; 6] {
    [0x02, 0x00, 0x5E, 0x10, 0x00, i]
}

/// An Ethernet frame from `src` to `dst` whose payload starts with `seq` (big-endian).
pub fn frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u8).wrapping_mul(7) ^ seq as u8);
    }
    f
}

pub fn seq_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[14..18].try_into().unwrap())
}

/// Netback's side of buffer memory: `n` buffers of `size` bytes in one DMA region.
pub struct Buffers {
    pub model: Model,
    pub base: u64,
    pub size: usize,
    pub n: u32,
}

impl Buffers {
    pub fn new(model: &Model, n: u32, size: usize) -> Self {
        let (_, base) = model.dma_alloc(n as usize * size);
        Self {
            model: model.clone(),
            base,
            size,
            n,
        }
    }

    pub fn addr(&self, id: u32) -> u64 {
        assert!(id < self.n);
        self.base + u64::from(id) * self.size as u64
    }

    pub fn rx(&self, ids: std::ops::Range<u32>) -> Vec<RxBuf> {
        ids.map(|id| RxBuf {
            addr: self.addr(id),
            id,
        })
        .collect()
    }

    pub fn read(&self, id: u32, len: usize) -> Vec<u8> {
        self.model.read_bus(self.addr(id), len).unwrap()
    }

    pub fn write(&self, id: u32, data: &[u8]) {
        assert!(self.model.write_bus(self.addr(id), data));
    }
}
