//! Binding the system table's device claims to enumerated PCI functions.
//!
//! Owns: deciding which task gets which function, and what the kernel must then map and route
//! for it. Rules:
//!
//! - every claim binds at most one function: a claim by BDF that function, a claim by ids the
//!   first enumerated endpoint with a listed vendor:device that no earlier claim took. Claims by
//!   BDF are bound first, so that a claim by ids cannot take a function a BDF claim names;
//! - a function is never given twice: the second claim is refused with an error naming both
//!   claimants;
//! - a claim that matches nothing is reported (its task then gets "no device");
//! - every BAR in the claim's mask must be an assigned memory BAR of the function; the pages to map
//!   are the BAR rounded out to 4 KiB, minus the pages of the MSI-X table and PBA (which the kernel
//!   programs), and refused if a rounded page would expose another function's BAR;
//! - the claim's MSI-X vectors must fit the function's table (or, without MSI-X, its MSI vectors).
//!
//! A refused claim binds nothing. The output is per task: its functions, the MMIO ranges to map
//! uncached, and the interrupt capability to program. [`enable_function`] and
//! [`disable_function`] switch a bound function's decoding and bus mastering on when its task
//! starts and off when it stops (before the task's DMA memory is reused).

use alloc::vec::Vec;
use core::fmt;

use nc2dd_abi::system_table::{Claim, Table};

use super::pci::{Bar, Bdf, ConfigAccess, Function, MsiInfo, MsixInfo, reg};

const PAGE: u64 = 4096;

/// How a request picks its function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The first free endpoint with one of these vendor:device pairs.
    Ids(Vec<(u16, u16)>),
    /// Exactly this function.
    Bdf(Bdf),
}

/// One device claim of one task, as the system table states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub task: usize,
    pub task_name: &'a str,
    /// The claim's name in the description.
    pub name: &'a str,
    pub selector: Selector,
    /// Bit `i`: map BAR `i`.
    pub bar_mask: u8,
    /// Notification bit of MSI-X vector `i` (or MSI message `i`).
    pub msix_bits: Vec<u8>,
}

/// Every device claim in `table`, in task order.
pub fn requests<'a>(table: &Table<'a>) -> Vec<Request<'a>> {
    let mut out = Vec::new();
    for task in table.tasks() {
        for d in task.devices() {
            let selector = match d.claim {
                Claim::Ids(ids) => {
                    Selector::Ids(ids.iter().map(|r| (r.vendor, r.device)).collect())
                }
                Claim::Bdf(b) => Selector::Bdf(b),
            };
            out.push(Request {
                task: task.index,
                task_name: task.name,
                name: d.name,
                selector,
                bar_mask: d.bar_mask,
                msix_bits: d.msix_bits().collect(),
            });
        }
    }
    out
}

/// Physical pages to map into the task, uncached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRange {
    pub bar: u8,
    /// Page-aligned.
    pub phys: u64,
    /// A whole number of pages.
    pub len: u64,
    /// Byte offset of `phys` from the BAR's start rounded down to a page.
    pub offset_in_bar: u64,
}

/// The message-signalled interrupt capability the kernel programs for a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupts {
    None,
    MsiX {
        info: MsixInfo,
        /// Physical address of the table (inside an assigned memory BAR).
        table_phys: u64,
        pba_phys: u64,
        /// Notification bit of vector `i`.
        bits: Vec<u8>,
    },
    /// Fallback when the function has no MSI-X.
    Msi {
        info: MsiInfo,
        bits: Vec<u8>,
    },
}

/// A claim bound to a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    pub task: usize,
    pub task_name: &'a str,
    pub name: &'a str,
    /// Index into the enumerated functions.
    pub function: usize,
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub mmio: Vec<MmioRange>,
    pub interrupts: Interrupts,
}

/// Who made a claim, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimant<'a> {
    pub task: usize,
    pub task_name: &'a str,
    pub name: &'a str,
}

impl fmt::Display for Claimant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} ({}) claim \"{}\"",
            self.task, self.task_name, self.name
        )
    }
}

/// Why a claim was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError<'a> {
    /// No function matches the claim.
    NoMatch { claimant: Claimant<'a> },
    /// The matching function already belongs to `holder`.
    Taken {
        bdf: Bdf,
        holder: Claimant<'a>,
        claimant: Claimant<'a>,
    },
    /// The BDF names a bridge or other non-endpoint.
    NotEndpoint { claimant: Claimant<'a>, bdf: Bdf },
    /// A BAR problem: absent, I/O, unassigned, or its pages overlap another function's BAR.
    Bar {
        claimant: Claimant<'a>,
        bdf: Bdf,
        bar: u8,
        why: BarProblem,
    },
    /// More vectors than the function's MSI-X table (or MSI capability) has.
    TooManyVectors {
        claimant: Claimant<'a>,
        bdf: Bdf,
        asked: usize,
        available: usize,
    },
    /// Vectors asked of a function without MSI or MSI-X.
    NoMessageInterrupts { claimant: Claimant<'a>, bdf: Bdf },
    /// The MSI-X table or PBA is not inside an assigned memory BAR.
    MsixOutsideBar { claimant: Claimant<'a>, bdf: Bdf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarProblem {
    Absent,
    Io,
    Unassigned,
    /// Address plus size overflows.
    Wraps,
    SharesPageWith(Bdf),
}

struct ShowBdf(Bdf);

impl fmt::Display for ShowBdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            b.segment, b.bus, b.device, b.function
        )
    }
}

impl fmt::Display for ClaimError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ClaimError::NoMatch { claimant } => {
                write!(
                    f,
                    "{claimant}: no PCI function matches; the task gets no device"
                )
            }
            ClaimError::Taken {
                bdf,
                holder,
                claimant,
            } => write!(
                f,
                "{claimant}: {} already belongs to {holder}; a function has one owner",
                ShowBdf(bdf)
            ),
            ClaimError::NotEndpoint { claimant, bdf } => {
                write!(f, "{claimant}: {} is a bridge, not a device", ShowBdf(bdf))
            }
            ClaimError::Bar {
                claimant,
                bdf,
                bar,
                why,
            } => {
                write!(f, "{claimant}: {} BAR{bar} ", ShowBdf(bdf))?;
                match why {
                    BarProblem::Absent => write!(f, "does not exist"),
                    BarProblem::Io => write!(f, "is an I/O BAR; only memory BARs are mapped"),
                    BarProblem::Unassigned => write!(f, "has no address assigned"),
                    BarProblem::Wraps => write!(f, "runs past the end of the address space"),
                    BarProblem::SharesPageWith(other) => write!(
                        f,
                        "shares a page with a BAR of {}, which mapping it would expose",
                        ShowBdf(other)
                    ),
                }
            }
            ClaimError::TooManyVectors {
                claimant,
                bdf,
                asked,
                available,
            } => write!(
                f,
                "{claimant}: asks for {asked} interrupt vectors but {} has {available}",
                ShowBdf(bdf)
            ),
            ClaimError::NoMessageInterrupts { claimant, bdf } => write!(
                f,
                "{claimant}: asks for interrupt vectors but {} has neither MSI-X nor MSI",
                ShowBdf(bdf)
            ),
            ClaimError::MsixOutsideBar { claimant, bdf } => write!(
                f,
                "{claimant}: {}'s MSI-X table or PBA is not inside an assigned memory BAR",
                ShowBdf(bdf)
            ),
        }
    }
}

/// The outcome for every claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    pub bindings: Vec<Binding<'a>>,
    pub refused: Vec<ClaimError<'a>>,
}

impl<'a> Plan<'a> {
    /// The bindings of `task`.
    pub fn for_task(&self, task: usize) -> impl Iterator<Item = &Binding<'a>> {
        self.bindings.iter().filter(move |b| b.task == task)
    }

    /// The refusals that concern `task`'s own claims.
    pub fn refused_for(&self, task: usize) -> impl Iterator<Item = &ClaimError<'a>> {
        self.refused
            .iter()
            .filter(move |e| e.claimant().task == task)
    }
}

impl<'a> ClaimError<'a> {
    /// Whose claim was refused.
    pub fn claimant(&self) -> Claimant<'a> {
        match *self {
            ClaimError::NoMatch { claimant }
            | ClaimError::Taken { claimant, .. }
            | ClaimError::NotEndpoint { claimant, .. }
            | ClaimError::Bar { claimant, .. }
            | ClaimError::TooManyVectors { claimant, .. }
            | ClaimError::NoMessageInterrupts { claimant, .. }
            | ClaimError::MsixOutsideBar { claimant, .. } => claimant,
        }
    }
}

/// Binds `requests` to `functions` (from `dev::pci::enumerate`).
pub fn resolve<'a>(requests: &[Request<'a>], functions: &[Function]) -> Plan<'a> {
    let mut plan = Plan::default();
    // Holder of each function, by index.
    let mut holders: Vec<Option<Claimant<'a>>> = alloc::vec![None; functions.len()];
    let by_bdf = requests
        .iter()
        .filter(|r| matches!(r.selector, Selector::Bdf(_)));
    let by_ids = requests
        .iter()
        .filter(|r| matches!(r.selector, Selector::Ids(_)));
    for r in by_bdf.chain(by_ids) {
        let claimant = Claimant {
            task: r.task,
            task_name: r.task_name,
            name: r.name,
        };
        let chosen = match &r.selector {
            Selector::Bdf(bdf) => match functions.iter().position(|f| f.bdf == *bdf) {
                None => Err(ClaimError::NoMatch { claimant }),
                Some(i) if !functions[i].is_endpoint() => Err(ClaimError::NotEndpoint {
                    claimant,
                    bdf: *bdf,
                }),
                Some(i) => match holders[i] {
                    Some(holder) => Err(ClaimError::Taken {
                        bdf: *bdf,
                        holder,
                        claimant,
                    }),
                    None => Ok(i),
                },
            },
            Selector::Ids(ids) => {
                let mut matching = functions
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.is_endpoint() && ids.contains(&(f.vendor, f.device)))
                    .map(|(i, _)| i)
                    .peekable();
                match matching.peek().copied() {
                    None => Err(ClaimError::NoMatch { claimant }),
                    Some(first) => match matching.find(|&i| holders[i].is_none()) {
                        Some(i) => Ok(i),
                        None => Err(ClaimError::Taken {
                            bdf: functions[first].bdf,
                            holder: holders[first].unwrap_or(claimant),
                            claimant,
                        }),
                    },
                }
            }
        };
        match chosen.and_then(|i| bind(r, claimant, i, functions)) {
            Ok(binding) => {
                holders[binding.function] = Some(claimant);
                plan.bindings.push(binding);
            }
            Err(e) => {
                log::warn!("claim: {e}");
                plan.refused.push(e);
            }
        }
    }
    plan
}

fn bind<'a>(
    r: &Request<'a>,
    claimant: Claimant<'a>,
    index: usize,
    functions: &[Function],
) -> Result<Binding<'a>, ClaimError<'a>> {
    let f = &functions[index];
    let bdf = f.bdf;
    let bar_error = |bar, why| ClaimError::Bar {
        claimant,
        bdf,
        bar,
        why,
    };
    let msix_pages = match &f.msix {
        Some(m) => Some(msix_pages(f, m).ok_or(ClaimError::MsixOutsideBar { claimant, bdf })?),
        None => None,
    };
    let mut mmio = Vec::new();
    for i in (0..6u8).filter(|i| r.bar_mask & (1 << i) != 0) {
        let bar = f.bar(i).ok_or(bar_error(i, BarProblem::Absent))?;
        if !bar.is_memory() {
            return Err(bar_error(i, BarProblem::Io));
        }
        if bar.address == 0 {
            return Err(bar_error(i, BarProblem::Unassigned));
        }
        let (start, end) = page_span(bar).ok_or(bar_error(i, BarProblem::Wraps))?;
        if let Some(other) = functions.iter().find(|o| {
            o.bdf != bdf
                && o.bars.iter().any(|ob| {
                    ob.is_memory()
                        && ob.address != 0
                        && ob.address < end
                        && start < ob.address.saturating_add(ob.size)
                })
        }) {
            return Err(bar_error(i, BarProblem::SharesPageWith(other.bdf)));
        }
        let mut pieces = alloc::vec![(start, end)];
        for &(bar_index, s, e) in msix_pages.iter().flatten() {
            if bar_index == i {
                pieces = subtract(&pieces, s, e);
            }
        }
        for (s, e) in pieces {
            mmio.push(MmioRange {
                bar: i,
                phys: s,
                len: e - s,
                offset_in_bar: s - start,
            });
        }
    }
    let bits = r.msix_bits.clone();
    let interrupts = if bits.is_empty() {
        Interrupts::None
    } else if let Some(m) = f.msix {
        if bits.len() > usize::from(m.table_size) {
            return Err(ClaimError::TooManyVectors {
                claimant,
                bdf,
                asked: bits.len(),
                available: usize::from(m.table_size),
            });
        }
        let base = |bar: u8| f.bar(bar).map_or(0, |b| b.address);
        Interrupts::MsiX {
            info: m,
            table_phys: base(m.table_bar) + u64::from(m.table_offset),
            pba_phys: base(m.pba_bar) + u64::from(m.pba_offset),
            bits,
        }
    } else if let Some(m) = f.msi {
        if bits.len() > usize::from(m.max_vectors) {
            return Err(ClaimError::TooManyVectors {
                claimant,
                bdf,
                asked: bits.len(),
                available: usize::from(m.max_vectors),
            });
        }
        Interrupts::Msi { info: m, bits }
    } else {
        return Err(ClaimError::NoMessageInterrupts { claimant, bdf });
    };
    Ok(Binding {
        task: r.task,
        task_name: r.task_name,
        name: r.name,
        function: index,
        bdf,
        vendor: f.vendor,
        device: f.device,
        mmio,
        interrupts,
    })
}

/// Command register: memory space, bus master, I/O space, INTx disable.
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_INTX_DISABLE: u32 = 1 << 10;

/// Lets a bound function decode its memory BARs and master the bus. INTx is disabled (its
/// interrupts arrive as messages) and I/O decoding stays off (tasks get no port access).
pub fn enable_function<A: ConfigAccess + ?Sized>(config: &A, bdf: Bdf) {
    let command = config.read32(bdf, reg::COMMAND) & 0xFFFF;
    let new = (command | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE) & !COMMAND_IO;
    // The status half is written as zero: its bits are write-1-to-clear.
    config.write32(bdf, reg::COMMAND, new);
}

/// Stops a function's DMA and decoding: done when its task stops, before the task's DMA memory
/// or mappings are reused, so the device cannot write into memory that has a new owner.
pub fn disable_function<A: ConfigAccess + ?Sized>(config: &A, bdf: Bdf) {
    let command = config.read32(bdf, reg::COMMAND) & 0xFFFF;
    let new = command & !(COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_IO);
    config.write32(bdf, reg::COMMAND, new);
}

/// The BAR rounded out to whole pages, as (start, end).
fn page_span(bar: &Bar) -> Option<(u64, u64)> {
    let end = bar.address.checked_add(bar.size)?;
    let start = bar.address & !(PAGE - 1);
    let end = end.checked_next_multiple_of(PAGE)?;
    Some((start, end))
}

/// The pages of the MSI-X table and PBA, as (bar, start, end), if both lie inside assigned memory
/// BARs.
fn msix_pages(f: &Function, m: &MsixInfo) -> Option<[(u8, u64, u64); 2]> {
    let span = |bar_index: u8, offset: u32, len: u64| {
        let bar = f
            .bar(bar_index)
            .filter(|b| b.is_memory() && b.address != 0)?;
        let end_in_bar = u64::from(offset).checked_add(len)?;
        if end_in_bar > bar.size {
            return None;
        }
        let start = (bar.address + u64::from(offset)) & !(PAGE - 1);
        let end = (bar.address + end_in_bar).checked_next_multiple_of(PAGE)?;
        Some((bar_index, start, end))
    };
    Some([
        span(m.table_bar, m.table_offset, m.table_len())?,
        span(m.pba_bar, m.pba_offset, m.pba_len())?,
    ])
}

/// `pieces` with [start, end) removed.
fn subtract(pieces: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in pieces {
        if end <= s || e <= start {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start));
        }
        if end < e {
            out.push((end, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::pci::fake::{FakeFunction, FakePci, bdf};
    use crate::dev::pci::{LEGACY_CONFIG_SIZE, enumerate};
    use std::format;
    use std::vec;

    fn machine() -> Vec<Function> {
        enumerate(&FakePci::machine(LEGACY_CONFIG_SIZE), 0, 0)
    }

    fn igb_ids() -> Selector {
        Selector::Ids(vec![(0x8086, 0x10fb), (0x8086, 0x10c9)])
    }

    fn req(task: usize, name: &'static str, selector: Selector, bar_mask: u8) -> Request<'static> {
        Request {
            task,
            task_name: ["jefe", "nic", "evil"][task],
            name,
            selector,
            bar_mask,
            msix_bits: vec![],
        }
    }

    #[test]
    fn igb_claim_by_ids_maps_bar0_and_routes_msix() {
        let fs = machine();
        let mut r = req(1, "nic", igb_ids(), 0b1);
        r.msix_bits = vec![3, 4, 5];
        let plan = resolve(&[r], &fs);
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        let b = &plan.bindings[0];
        assert_eq!((b.bdf, b.vendor, b.device), (bdf(0, 4, 0), 0x8086, 0x10c9));
        assert_eq!(
            b.mmio,
            vec![MmioRange {
                bar: 0,
                phys: 0xfebc_0000,
                len: 128 << 10,
                offset_in_bar: 0
            }]
        );
        match &b.interrupts {
            Interrupts::MsiX {
                info,
                table_phys,
                pba_phys,
                bits,
            } => {
                assert_eq!(info.table_size, 10);
                assert_eq!(*table_phys, 0xfebf_0000);
                assert_eq!(*pba_phys, 0xfebf_2000);
                assert_eq!(bits, &vec![3, 4, 5]);
            }
            other => panic!("expected MSI-X, got {other:?}"),
        }
        assert_eq!(plan.for_task(1).count(), 1);
        assert_eq!(plan.for_task(2).count(), 0);
    }

    #[test]
    fn a_function_has_one_owner_and_the_error_names_both() {
        let fs = machine();
        let plan = resolve(
            &[
                req(1, "nic", igb_ids(), 0b1),
                req(2, "steal", Selector::Bdf(bdf(0, 4, 0)), 0b1),
            ],
            &fs,
        );
        // The BDF claim is bound first, so the ids claim is the one refused.
        assert_eq!(plan.bindings.len(), 1);
        assert_eq!(plan.bindings[0].task, 2);
        let e = plan.refused[0];
        assert!(matches!(e, ClaimError::Taken { bdf: b, .. } if b == bdf(0, 4, 0)));
        assert_eq!(
            format!("{e}"),
            "task 1 (nic) claim \"nic\": 0000:00:04.0 already belongs to task 2 (evil) claim \
             \"steal\"; a function has one owner"
        );
        assert_eq!(plan.refused_for(1).count(), 1);

        // Two BDF claims on the same function: the second is refused.
        let plan = resolve(
            &[
                req(1, "a", Selector::Bdf(bdf(0, 4, 0)), 0),
                req(2, "b", Selector::Bdf(bdf(0, 4, 0)), 0),
            ],
            &fs,
        );
        assert_eq!(plan.bindings.len(), 1);
        assert_eq!(plan.refused[0].claimant().name, "b");
    }

    #[test]
    fn ids_claims_take_the_first_free_match() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        pci.add(
            bdf(0, 6, 0),
            FakeFunction::new(0x8086, 0x10c9, 2, 0, 0).mem32(0, 0xfe00_0000, 128 << 10),
        );
        let fs = enumerate(&pci, 0, 0);
        let plan = resolve(
            &[
                req(1, "first", igb_ids(), 0b1),
                req(2, "second", igb_ids(), 0b1),
                req(2, "third", igb_ids(), 0),
            ],
            &fs,
        );
        let bound: Vec<_> = plan.bindings.iter().map(|b| (b.name, b.bdf)).collect();
        assert_eq!(
            bound,
            vec![("first", bdf(0, 4, 0)), ("second", bdf(0, 6, 0))]
        );
        assert!(matches!(plan.refused[0], ClaimError::Taken { .. }));
    }

    #[test]
    fn unmatched_claims_are_reported() {
        let fs = machine();
        let plan = resolve(
            &[
                req(1, "x", Selector::Ids(vec![(0x8086, 0x10fb)]), 1),
                req(1, "y", Selector::Bdf(bdf(0, 9, 0)), 1),
            ],
            &fs,
        );
        assert!(plan.bindings.is_empty());
        assert_eq!(plan.refused.len(), 2);
        assert!(
            plan.refused
                .iter()
                .all(|e| matches!(e, ClaimError::NoMatch { .. }))
        );
        assert!(format!("{}", plan.refused[0]).ends_with("the task gets no device"));
    }

    #[test]
    fn bar_mask_is_checked_against_the_function() {
        let fs = machine();
        let cases = [
            (1u8 << 4, 4u8, BarProblem::Absent),
            (1 << 2, 2, BarProblem::Io),
        ];
        for (mask, bar, why) in cases {
            let plan = resolve(&[req(1, "nic", igb_ids(), mask)], &fs);
            assert!(plan.bindings.is_empty());
            assert_eq!(
                plan.refused[0],
                ClaimError::Bar {
                    claimant: Claimant {
                        task: 1,
                        task_name: "nic",
                        name: "nic"
                    },
                    bdf: bdf(0, 4, 0),
                    bar,
                    why
                }
            );
        }
        // The upper half of a 64-bit BAR is not a BAR of its own.
        let plan = resolve(&[req(1, "v", Selector::Bdf(bdf(1, 0, 0)), 0b10)], &fs);
        assert!(matches!(
            plan.refused[0],
            ClaimError::Bar {
                bar: 1,
                why: BarProblem::Absent,
                ..
            }
        ));
        // A bridge is not claimable.
        let plan = resolve(&[req(1, "b", Selector::Bdf(bdf(0, 0x1e, 0)), 0)], &fs);
        assert!(matches!(plan.refused[0], ClaimError::NotEndpoint { .. }));
    }

    #[test]
    fn msix_table_pages_are_never_mapped_into_the_task() {
        let fs = machine();
        // igb's BAR3 (16K) has the table in its first page and the PBA in its third: only the
        // second and fourth pages are mapped.
        let plan = resolve(&[req(1, "nic", igb_ids(), 0b1001)], &fs);
        let ranges: Vec<_> = plan.bindings[0]
            .mmio
            .iter()
            .map(|r| (r.bar, r.phys, r.len))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (0, 0xfebc_0000, 128 << 10),
                (3, 0xfebf_1000, 0x1000),
                (3, 0xfebf_3000, 0x1000)
            ]
        );

        // A device with its table in the middle of BAR0 gets the pages around it.
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        pci.add(
            bdf(0, 3, 0),
            FakeFunction::new(0x1111, 0x2222, 2, 0, 0)
                .mem32(0, 0xfe00_0000, 64 << 10)
                .capability(0x40, &[0x0003_0011, 0x8000, 0x9000]),
        );
        let fs = enumerate(&pci, 0, 0);
        let plan = resolve(&[req(1, "d", Selector::Bdf(bdf(0, 3, 0)), 1)], &fs);
        let ranges: Vec<_> = plan.bindings[0]
            .mmio
            .iter()
            .map(|r| (r.phys, r.len, r.offset_in_bar))
            .collect();
        assert_eq!(
            ranges,
            vec![(0xfe00_0000, 0x8000, 0), (0xfe00_a000, 0x6000, 0xa000)]
        );
    }

    #[test]
    fn small_bars_sharing_a_page_with_another_function_are_refused() {
        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        pci.add(
            bdf(0, 3, 0),
            FakeFunction::new(0x1111, 0x2222, 2, 0, 0).mem32(0, 0xfe00_0000, 256),
        );
        pci.add(
            bdf(0, 3, 1),
            FakeFunction::new(0x1111, 0x2223, 2, 0, 0).mem32(0, 0xfe00_0100, 256),
        );
        pci.set(bdf(0, 3, 0), 0xc, 0x0080_0000); // multi-function
        let fs = enumerate(&pci, 0, 0);
        let plan = resolve(&[req(1, "d", Selector::Bdf(bdf(0, 3, 0)), 1)], &fs);
        assert_eq!(
            plan.refused[0],
            ClaimError::Bar {
                claimant: Claimant {
                    task: 1,
                    task_name: "nic",
                    name: "d"
                },
                bdf: bdf(0, 3, 0),
                bar: 0,
                why: BarProblem::SharesPageWith(bdf(0, 3, 1))
            }
        );
    }

    #[test]
    fn vectors_must_fit_msix_or_fall_back_to_msi() {
        let fs = machine();
        let mut r = req(1, "nic", igb_ids(), 1);
        r.msix_bits = (0..11).collect();
        let plan = resolve(&[r], &fs);
        assert!(matches!(
            plan.refused[0],
            ClaimError::TooManyVectors {
                asked: 11,
                available: 10,
                ..
            }
        ));

        let pci = FakePci::new(LEGACY_CONFIG_SIZE);
        pci.add(
            bdf(0, 3, 0),
            FakeFunction::new(0x1111, 0x2222, 2, 0, 0)
                .mem32(0, 0xfe00_0000, 4096)
                .capability(0x50, &[0x0084_0005, 0, 0, 0]), // 64-bit MSI, 4 vectors
        );
        pci.add(
            bdf(0, 4, 0),
            FakeFunction::new(0x1111, 0x3333, 2, 0, 0).mem32(0, 0xfe01_0000, 4096),
        );
        let fs = enumerate(&pci, 0, 0);
        let mut msi = req(1, "m", Selector::Bdf(bdf(0, 3, 0)), 1);
        msi.msix_bits = vec![1, 2];
        let mut none = req(2, "n", Selector::Bdf(bdf(0, 4, 0)), 1);
        none.msix_bits = vec![1];
        let plan = resolve(&[msi, none], &fs);
        match &plan.bindings[0].interrupts {
            Interrupts::Msi { info, bits } => {
                assert_eq!(info.max_vectors, 4);
                assert_eq!(bits, &vec![1, 2]);
            }
            other => panic!("expected MSI, got {other:?}"),
        }
        assert!(matches!(
            plan.refused[0],
            ClaimError::NoMessageInterrupts { .. }
        ));
    }

    #[test]
    fn enabling_a_function_turns_on_memory_and_bus_master_only() {
        let pci = FakePci::machine(LEGACY_CONFIG_SIZE);
        let b = bdf(0, 4, 0);
        pci.set(b, reg::COMMAND, 0x8010_0001); // I/O on, a status error bit set
        enable_function(&pci, b);
        assert_eq!(
            pci.get(b, reg::COMMAND),
            0x8010_0406,
            "status bits were cleared"
        );
        disable_function(&pci, b);
        assert_eq!(pci.get(b, reg::COMMAND), 0x8010_0400);
    }

    /// A system table with a supervisor and one task claiming igb by ids (BAR0, 3 vectors) and a
    /// function by BDF, built byte by byte like the abi tests do.
    fn table_bytes() -> Vec<u8> {
        use nc2dd_abi::system_table::*;
        let strings = b"sysjefnicigbmgmt";
        let counts = [2u32, 1, 0, 2, 2, 3, strings.len() as u32];
        let mut sections = [SectionEntry::default(); 7];
        let mut at = HEADER_LEN;
        for (i, s) in Section::DIRECTORY.iter().enumerate() {
            sections[i] = SectionEntry {
                offset: at as u32,
                count: counts[i],
            };
            at += counts[i] as usize * s.record_len();
        }
        let s = |offset: u32, len: u32| StrRef { offset, len };
        let mut t = Header {
            magic: MAGIC,
            version: VERSION,
            total_len: at as u32,
            checksum: 0,
            reserved: 0,
            memory_budget: 1 << 20,
            name: s(0, 3),
            sections,
        }
        .to_bytes()
        .to_vec();
        t.extend(
            TaskRecord {
                name: s(3, 3),
                server: s(3, 3),
                flags: TASK_SUPERVISOR,
                fault_bit: 0,
                timer_bit: NO_BIT,
                xen_event_bit: NO_BIT,
                stack: PAGE_SIZE,
                notifications: Range16 { first: 0, count: 1 },
                ..TaskRecord::default()
            }
            .to_bytes(),
        );
        t.extend(
            TaskRecord {
                name: s(6, 3),
                server: s(6, 3),
                priority: 2,
                fault_bit: NO_BIT,
                timer_bit: NO_BIT,
                xen_event_bit: NO_BIT,
                stack: PAGE_SIZE,
                devices: Range16 { first: 0, count: 2 },
                ..TaskRecord::default()
            }
            .to_bytes(),
        );
        t.extend(
            NotificationRecord {
                name: s(3, 3),
                bit: 0,
                reserved: [0; 3],
            }
            .to_bytes(),
        );
        t.extend(
            DeviceRecord {
                name: s(9, 3),
                kind: DEVICE_BY_IDS,
                bar_mask: 1,
                pci_ids: Range16 { first: 0, count: 2 },
                msix: Range16 { first: 0, count: 3 },
                ..DeviceRecord::default()
            }
            .to_bytes(),
        );
        t.extend(
            DeviceRecord {
                name: s(12, 4),
                kind: DEVICE_BY_BDF,
                bar_mask: 0,
                device: 0x1f,
                function: 3,
                ..DeviceRecord::default()
            }
            .to_bytes(),
        );
        for (vendor, device) in [(0x8086, 0x10fb), (0x8086, 0x10c9)] {
            t.extend(PciIdRecord { vendor, device }.to_bytes());
        }
        t.extend([7u8, 8, 9]);
        t.extend(strings);
        seal(&mut t);
        t
    }

    #[test]
    fn requests_come_from_the_system_table() {
        let bytes = table_bytes();
        let table = Table::decode(&bytes).unwrap();
        let rs = requests(&table);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].task, 1);
        assert_eq!(rs[0].task_name, "nic");
        assert_eq!(rs[0].name, "igb");
        assert_eq!(rs[0].selector, igb_ids());
        assert_eq!(rs[0].msix_bits, vec![7, 8, 9]);
        assert_eq!(rs[1].selector, Selector::Bdf(bdf(0, 0x1f, 3)));
        let plan = resolve(&rs, &machine());
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        let bound: Vec<_> = plan.for_task(1).map(|b| b.bdf).collect();
        assert_eq!(bound, vec![bdf(0, 0x1f, 3), bdf(0, 4, 0)]);
    }
}
