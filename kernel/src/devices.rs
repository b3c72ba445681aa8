//! The devices the system description gives to tasks: found at boot, bound to their tasks,
//! their interrupts routed, and the device system calls.
//!
//! Owns: PCI configuration access (ECAM or the ports, as `platform` chose), the claim plan, each task's config guard and DMA budget, the MSI-X tables (mapped
//! uncached in kernel space only: a task never sees its device's table or PBA) and the vector
//! router. Invariants: a task reaches exactly the config space, BAR pages and DMA memory of its own
//! claims; an MSI-X vector stays masked from its interrupt until its task acknowledges it.

extern crate alloc;

use alloc::vec::Vec;
use log::{info, warn};
use nc2dd_abi::layout::{BarInfo, DeviceInfo, MAX_DEVICE_VECTORS, MAX_TASK_DEVICES, bar_address};
use nc2dd_abi::syscall::pack_bdf;
use nc2dd_abi::system_table::Table;
use x86_64::instructions::port::Port;

use alloc::boxed::Box;
use kernel::dev::bar_assign;
use kernel::dev::claim::{self, Binding, Interrupts, Plan};
use kernel::dev::config_guard::{ConfigGuard, Refusal};
use kernel::dev::dma::{DmaBudget, DmaRegion};
use kernel::dev::mmio::Mmio;
use kernel::dev::msix::{self, AckAction, Delivery, MsixTable, Router, Source};
use kernel::dev::pci::ConfigAccess;
use kernel::dev::pci::{self, Bdf, Function};
use kernel::dev::pci_access::PortIo;

/// Port I/O for the configuration ports.
pub struct Ports;

impl PortIo for Ports {
    fn out32(&mut self, port: u16, value: u32) {
        // SAFETY: only the PCI configuration ports are used through this type.
        unsafe { Port::<u32>::new(port).write(value) }
    }
    fn in32(&mut self, port: u16) -> u32 {
        // SAFETY: as above.
        unsafe { Port::<u32>::new(port).read() }
    }
    fn out16(&mut self, port: u16, value: u16) {
        // SAFETY: as above.
        unsafe { Port::<u16>::new(port).write(value) }
    }
    fn out8(&mut self, port: u16, value: u8) {
        // SAFETY: as above.
        unsafe { Port::<u8>::new(port).write(value) }
    }
}

/// Registers at a physical address the kernel has identity-mapped uncached.
#[derive(Clone, Copy)]
pub struct PhysMmio {
    base: u64,
    len: usize,
}

impl PhysMmio {
    pub fn new(base: u64, len: usize) -> Self {
        PhysMmio { base, len }
    }
}

impl Mmio for PhysMmio {
    fn read32(&self, offset: usize) -> u32 {
        if offset + 4 > self.len {
            return u32::MAX;
        }
        // SAFETY: inside the mapped, uncached register window.
        unsafe { core::ptr::read_volatile((self.base + offset as u64) as *const u32) }
    }
    fn write32(&self, offset: usize, value: u32) {
        if offset + 4 <= self.len {
            // SAFETY: inside the mapped, uncached register window.
            unsafe { core::ptr::write_volatile((self.base + offset as u64) as *mut u32, value) }
        }
    }
}

/// One device as its task has it.
pub struct TaskDevice {
    pub info: DeviceInfo,
    /// BAR pages to map into the task: (user address, physical address, length).
    pub mappings: Vec<(u64, u64, u64)>,
    /// MSI-X entry `i` of this device is IDT vector `vectors[i]`.
    pub vectors: Vec<u8>,
}

pub struct Devices {
    access: Box<dyn ConfigAccess + Send + Sync>,
    guards: Vec<ConfigGuard>,
    router: Router,
    tables: Vec<(Bdf, MsixTable<PhysMmio>)>,
    per_task: Vec<Vec<TaskDevice>>,
    dma: Vec<DmaBudget>,
    /// Per task: the DMA regions handed out, in order, with where each is mapped in the task.
    given: Vec<Vec<(DmaRegion, u64)>>,
    /// Per task: after a restart, the index in `given` of the region to offer again next.
    reuse: Vec<Option<usize>>,
}

/// What `dma_alloc` hands out.
pub enum DmaGrant {
    /// A region this task held before a restart, zeroed, already mapped at `vaddr`.
    Reused { vaddr: u64, bus: u64 },
    /// Fresh memory for the kernel to map (then [`Devices::record`]).
    New(DmaRegion),
}

pub static DEVICES: spin::Mutex<Option<Devices>> = spin::Mutex::new(None);

/// Why a device call was refused (the caller is then faulted as malformed).
pub enum CallError {
    Config(Refusal),
    NoDevice(u64),
    NoVector { device: u64, vector: u64 },
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Config(r) => write!(f, "{r}"),
            CallError::NoDevice(d) => write!(f, "the task has no device {d}"),
            CallError::NoVector { device, vector } => {
                write!(f, "device {device} has no routed vector {vector}")
            }
        }
    }
}

fn unpack_bdf(v: u64) -> Bdf {
    Bdf {
        segment: (v >> 16) as u16,
        bus: (v >> 8) as u8,
        device: ((v >> 3) & 0x1f) as u8,
        function: (v & 7) as u8,
    }
}

impl Devices {
    /// Enumerates PCI, binds the table's claims, enables the bound functions and routes their
    /// MSI-X vectors to the tasks' bits on `dest_apic`. `map_mmio(phys, len)` identity-maps a
    /// register window uncached in kernel space.
    pub fn init(
        table: &Table<'_>,
        access: Box<dyn ConfigAccess + Send + Sync>,
        dest_apic: u8,
        map_mmio: &mut dyn FnMut(u64, u64),
    ) -> Devices {
        let mut functions = pci::enumerate(access.as_ref(), 0, 0);
        info!("pci: {} functions", functions.len());
        // Without firmware (Xen HVM through firmware_override: no hvmloader) BARs read 0;
        // place them in the MMIO hole hvmloader would use. With firmware, nothing is placed.
        let (assign, unplaced) = bar_assign::plan(
            &functions,
            0,
            bar_assign::XEN_HVM_MEM32,
            None,
            bar_assign::IO_WINDOW,
        );
        for a in &assign {
            info!(
                "pci: {:02x}:{:02x}.{} BAR{} placed at {:#x}",
                a.bdf.bus, a.bdf.device, a.bdf.function, a.bar, a.address
            );
        }
        for u in &unplaced {
            warn!("pci: {u}");
        }
        bar_assign::apply(access.as_ref(), &mut functions, &assign);
        pci::log_all(&functions);
        let requests = claim::requests(table);
        let plan: Plan<'_> = claim::resolve(&requests, &functions);
        for refused in &plan.refused {
            warn!("device claim refused: {refused}");
        }
        let tasks = table.task_count();
        let guards = (0..tasks)
            .map(|t| ConfigGuard::for_task(&plan, &functions, t))
            .collect();
        let mut devices = Devices {
            access,
            guards,
            router: Router::default(),
            tables: Vec::new(),
            per_task: (0..tasks).map(|_| Vec::new()).collect(),
            dma: table.tasks().map(|t| DmaBudget::new(t.dma)).collect(),
            given: (0..tasks).map(|_| Vec::new()).collect(),
            reuse: alloc::vec![None; tasks],
        };
        for task in 0..tasks {
            let Some(t) = table.task(task) else { continue };
            for (d, claim) in t.devices().enumerate().take(MAX_TASK_DEVICES) {
                let mut info = DeviceInfo::empty();
                nc2dd_abi::layout::set_name(&mut info.name, &mut info.name_len, claim.name);
                let binding = plan
                    .bindings
                    .iter()
                    .find(|b| b.task == task && b.name == claim.name);
                let dev = match binding {
                    Some(b) => devices.bind(b, d, info, &functions, dest_apic, map_mmio),
                    None => {
                        warn!(
                            "task {task} ({}): device {:?} not present",
                            t.name, claim.name
                        );
                        TaskDevice {
                            info,
                            mappings: Vec::new(),
                            vectors: Vec::new(),
                        }
                    }
                };
                devices.per_task[task].push(dev);
            }
        }
        devices
    }

    fn bind(
        &mut self,
        b: &Binding<'_>,
        d: usize,
        mut info: DeviceInfo,
        functions: &[Function],
        dest_apic: u8,
        map_mmio: &mut dyn FnMut(u64, u64),
    ) -> TaskDevice {
        claim::enable_function(self.access.as_ref(), b.bdf);
        info.present = 1;
        info.bdf = pack_bdf(b.bdf.segment, b.bdf.bus, b.bdf.device, b.bdf.function);
        info.vendor = b.vendor;
        info.device = b.device;
        let f = &functions[b.function];
        let mut mappings = Vec::new();
        for r in &b.mmio {
            let user = bar_address(d, r.bar as usize) + r.offset_in_bar;
            mappings.push((user, r.phys, r.len));
            if let Some(bar) = f.bar(r.bar) {
                info.bars[r.bar as usize] = BarInfo {
                    vaddr: bar_address(d, r.bar as usize),
                    size: bar.size,
                };
            }
        }
        let mut vectors = Vec::new();
        if let Interrupts::MsiX {
            info: msix,
            table_phys,
            bits,
            ..
        } = &b.interrupts
        {
            let len = msix.table_len().div_ceil(4096) * 4096;
            let base = table_phys & !0xfff;
            map_mmio(base, len + (table_phys - base).div_ceil(4096) * 4096);
            let mmio = PhysMmio {
                base,
                len: (len + (table_phys - base)) as usize,
            };
            let table = MsixTable::new(mmio, (table_phys - base) as usize, msix.table_size);
            let bits: Vec<u8> = bits.iter().copied().take(MAX_DEVICE_VECTORS).collect();
            match msix::install_msix(
                self.access.as_ref(),
                &table,
                &mut self.router,
                b.bdf,
                msix,
                f.msi.as_ref(),
                b.task,
                &bits,
                dest_apic,
            ) {
                Ok(v) => {
                    info.vectors = v.len() as u32;
                    for (i, bit) in bits.iter().enumerate() {
                        info.vector_bits[i] = *bit;
                    }
                    info!(
                        "  {} -> task {} ({}): MSI-X vectors {:?} on bits {:?}",
                        b.name, b.task, b.task_name, v, bits
                    );
                    vectors = v;
                }
                Err(e) => warn!("{}: MSI-X not installed: {e:?}", b.name),
            }
            self.tables.push((b.bdf, table));
        }
        info!(
            "  {} {:04x}:{:04x} at {:02x}:{:02x}.{} -> task {} ({})",
            b.name,
            b.vendor,
            b.device,
            b.bdf.bus,
            b.bdf.device,
            b.bdf.function,
            b.task,
            b.task_name
        );
        TaskDevice {
            info,
            mappings,
            vectors,
        }
    }

    pub fn task_devices(&self, task: usize) -> &[TaskDevice] {
        self.per_task.get(task).map_or(&[], |v| v.as_slice())
    }

    pub fn config_read(&self, task: usize, bdf: u64, arg: u64) -> Result<u32, CallError> {
        let guard = self.guards.get(task).ok_or(CallError::NoDevice(bdf))?;
        guard
            .read(
                self.access.as_ref(),
                unpack_bdf(bdf),
                (arg & 0xffff) as u16,
                (arg >> 16) as u8,
            )
            .map_err(CallError::Config)
    }

    pub fn config_write(
        &self,
        task: usize,
        bdf: u64,
        arg: u64,
        value: u64,
    ) -> Result<(), CallError> {
        let guard = self.guards.get(task).ok_or(CallError::NoDevice(bdf))?;
        guard
            .write(
                self.access.as_ref(),
                unpack_bdf(bdf),
                (arg & 0xffff) as u16,
                (arg >> 16) as u8,
                value as u32,
            )
            .map_err(CallError::Config)
    }

    /// Zeroed DMA memory for `task` (`None` when its budget cannot cover it).
    ///
    /// A restarted driver re-initialises its device and asks for the same buffers again in the
    /// same order: it gets its previous regions back (the device may still be writing into
    /// them until the driver resets it, and they never leave the task), so restarts do not
    /// eat the budget. Once a request no longer matches, memory comes from the budget again.
    pub fn dma_alloc(&mut self, task: usize, len: u64) -> Option<DmaGrant> {
        let rounded = len.checked_next_multiple_of(4096)?;
        if let Some(next) = self.reuse.get(task).copied().flatten() {
            match self.given[task].get(next) {
                Some(&(r, vaddr)) if r.len >= rounded => {
                    self.reuse[task] = Some(next + 1);
                    // SAFETY: the region is this task's DMA memory, identity-mapped RAM.
                    unsafe { core::ptr::write_bytes(r.phys as *mut u8, 0, r.len as usize) };
                    return Some(DmaGrant::Reused { vaddr, bus: r.bus });
                }
                _ => self.reuse[task] = None,
            }
        }
        let budget = self.dma.get_mut(task)?;
        let mut frames = crate::tasks::FRAMES.lock();
        let frames = frames.as_mut()?;
        budget
            .allocate(frames, len, 4096, |phys, len| {
                // SAFETY: fresh frames from the allocator, identity-mapped RAM.
                unsafe { core::ptr::write_bytes(phys as *mut u8, 0, len as usize) }
            })
            .ok()
            .map(DmaGrant::New)
    }

    /// Notes where a new DMA region was mapped in `task`.
    pub fn record(&mut self, task: usize, region: DmaRegion, vaddr: u64) {
        if let Some(g) = self.given.get_mut(task) {
            g.push((region, vaddr));
        }
    }

    /// `task` is being restarted: offer its DMA regions again, and re-arm its vectors (one
    /// posted but never acknowledged before the crash would otherwise stay masked forever).
    pub fn task_restarted(&mut self, task: usize) {
        if task >= self.reuse.len() {
            return;
        }
        self.reuse[task] = (!self.given[task].is_empty()).then_some(0);
        // Two rounds: a vector with an interrupt pending behind its post is reposted by the
        // first and armed by the second. The reposts are dropped: the new generation starts
        // with a clean notification word.
        for _ in 0..2 {
            let mut actions = Vec::new();
            self.router.acknowledge(task, u64::MAX, |a| actions.push(a));
            for a in actions {
                if let AckAction::Unmask(source) = a {
                    self.mask(source, false);
                }
            }
        }
    }

    /// An interrupt on a device vector: masks its source and says whom to tell.
    pub fn interrupt(&mut self, vector: u8) -> Option<(usize, u8)> {
        match self.router.interrupt(vector) {
            Delivery::Post { task, bit, mask } => {
                self.mask(mask, true);
                Some((task, bit))
            }
            Delivery::Pending | Delivery::Spurious => None,
        }
    }

    fn mask(&self, source: Source, masked: bool) {
        if let Source::MsiX { bdf, entry } = source
            && let Some((_, t)) = self.tables.iter().find(|(b, _)| *b == bdf)
        {
            let _ = t.set_masked(entry, masked);
        }
    }

    /// `task` has serviced vector `vector` of its device `device`: unmask it (or repost when
    /// another interrupt came meanwhile). Returns bits to post again.
    pub fn acknowledge(
        &mut self,
        task: usize,
        device: u64,
        vector: u64,
    ) -> Result<Option<u8>, CallError> {
        let dev = self
            .per_task
            .get(task)
            .and_then(|d| d.get(device as usize))
            .ok_or(CallError::NoDevice(device))?;
        let bit = *dev
            .info
            .vector_bits
            .get(vector as usize)
            .filter(|_| (vector as usize) < dev.vectors.len())
            .ok_or(CallError::NoVector { device, vector })?;
        let mut actions = Vec::new();
        self.router.acknowledge(task, 1 << bit, |a| actions.push(a));
        let mut repost = None;
        for a in actions {
            match a {
                AckAction::Unmask(source) => self.mask(source, false),
                AckAction::Repost { bit, .. } => repost = Some(bit),
            }
        }
        Ok(repost)
    }
}
