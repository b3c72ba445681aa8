//! The static system description: `image/system.toml` names every task, its memory, its
//! notification bits, its devices and rights, and the channels between tasks. This module parses
//! and validates it into a [`System`] and encodes that as the binary table the kernel reads at
//! boot (`nc2dd_abi::system_table`; the kernel never parses text).
//!
//! Modelled on hubris's `app.toml` and seL4 microkit's system description: everything a task may
//! touch is fixed here, checked before anything boots, and rejected with an error that names the
//! problem and the line (`system.toml:14: channel "qp0" names unknown task "netbak"`).
//! `tests/bad-systems/` holds one bad description per rule with its expected error.
//!
//! # Schema
//!
//! All sizes are bytes and must be multiples of the 4 KiB page; limits are the constants in
//! `nc2dd_abi::system_table`. Names (system, task, server, channel, device, notification) are
//! 1 to 32 characters of `a-z`, `0-9` and `-`, starting with a letter. Unknown keys are errors.
//!
//! ```toml
//! [system]
//! name = "nc2dd"
//! memory-budget = 33554432     # stacks + heaps + DMA budgets + channels must fit
//!
//! [[task]]                     # task index = order in the file; the first is task 0
//! name = "supervisor"
//! server = "supervisor"        # the server binary it runs: one of the known servers
//! priority = 0                 # 0 = highest .. 15 = lowest
//! supervisor = true            # exactly one task, listed first, alone at priority 0
//! stack = 16384                # 4 KiB .. 1 MiB (a guard page is added below, not counted)
//! heap = 65536                 # 0 .. 256 MiB
//! notifications = { fault = 0, timer = 1 }   # name -> bit (0..63) of the task's word
//! fault = "fault"              # supervisor only (and required): posted when any task faults
//! timer = "timer"              # optional: the bit the task's deadline fires on
//!
//! [[task]]
//! name = "nic-ixgbe"
//! server = "nic-ixgbe"
//! priority = 1
//! stack = 65536
//! heap = 1048576
//! dma = 8388608                # optional, 0 .. 1 GiB: what dma_alloc may hand out in total
//! notifications = { qp0 = 0, queue0 = 2, other = 3 }
//!
//! [[task.device]]              # a device claim of the task above (never the supervisor)
//! name = "nic"
//! pci = ["8086:10fb"]          # vendor:device ids (hex), 1 to 16; or instead:
//! # bdf = "0000:03:00.0"       # one function by [segment:]bus:device.function (hex)
//! bars = [0]                   # BAR indices 0..5 mapped into the task, at least one
//! msix = ["queue0", "other"]   # optional: MSI-X vector i posts the notification named here
//!
//! [[task]]
//! name = "netback"
//! server = "netback"
//! priority = 2
//! stack = 65536
//! heap = 4194304
//! notifications = { qp0 = 0, xen = 2 }
//!
//! [task.xen]                   # Xen gateway rights of the task above (never the supervisor)
//! event = "xen"                # the bit its bound event channels are posted on
//! grant-window = 67108864      # virtual space for mapped grants, 0 .. 1 GiB
//!
//! [[channel]]                  # a region mapped into exactly two distinct tasks
//! name = "qp0"
//! size = 65536                 # 4 KiB .. 16 MiB
//! ends = [ { task = "netback", kick = "qp0" },     # kick: the notification of that task
//!          { task = "nic-ixgbe", kick = "qp0" } ]  # that the other end's notify posts
//! ```
//!
//! # Rules beyond the schema
//!
//! - Every notification a task names has exactly one source (a channel kick, an MSI-X vector, the
//!   timer, the fault notification, Xen events), and no two names share a bit: a bit that two
//!   sources post could not tell the task which one fired. A name nothing posts is an error too.
//! - A device is claimed by at most one task: no vendor:device id and no BDF appears twice. (A BDF
//!   claim that happens to match another task's id claim can only be seen on the real bus; the
//!   kernel refuses the second claim at boot.)
//! - The supervisor has neither devices nor Xen rights: it is the task that restarts the others,
//!   so it must not be the one a misbehaving device or hypervisor call can wedge. Any other task
//!   may hold Xen rights; nc2dd gives them to netback alone.
//! - The memory budget counts what the kernel allocates for the tasks at run time; the server
//!   images are counted by the image tool when it packs them.
//!
//! # Outputs
//!
//! [`System::to_table`] writes the tasks in file order (task 0 is the supervisor), each task's
//! notifications sorted by bit, device BARs as a mask, and ids/names exactly as validated;
//! [`System::from_table`] reads a table back, and the two are inverse for every valid system.

mod error;
mod raw;
mod table;
mod validate;

use std::path::Path;

pub use error::SystemError;
pub use nc2dd_abi::system_table::{Bdf, PciIdRecord as PciId};

/// A validated system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    name: String,
    memory_budget: u64,
    tasks: Vec<Task>,
    channels: Vec<Channel>,
}

/// One task. Its index in [`System::tasks`] is its task id (without the generation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    /// The server binary the task runs.
    pub server: String,
    /// 0 is the highest.
    pub priority: u8,
    pub supervisor: bool,
    pub stack: u64,
    pub heap: u64,
    pub dma: u64,
    /// The task's named bits, sorted by bit.
    pub notifications: Vec<Notification>,
    /// The supervisor's fault-notification bit.
    pub fault_bit: Option<u8>,
    /// The bit the task's deadline fires on.
    pub timer_bit: Option<u8>,
    pub devices: Vec<Device>,
    pub xen: Option<XenRights>,
}

/// A named bit of a task's notification word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub name: String,
    pub bit: u8,
}

/// A device claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub claim: Claim,
    /// BAR indices, ascending.
    pub bars: Vec<u8>,
    /// MSI-X vector `i` posts bit `msix[i]` of the owning task.
    pub msix: Vec<u8>,
}

/// How a claim selects PCI functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Every function with one of these vendor:device ids.
    Ids(Vec<PciId>),
    /// Exactly this function.
    Bdf(Bdf),
}

/// Xen gateway rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenRights {
    /// The bit the task's bound event channels are posted on.
    pub event_bit: u8,
    /// Bytes of virtual space for mapped grants.
    pub grant_window: u64,
}

/// A shared region between two tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub size: u64,
    pub ends: [ChannelEnd; 2],
}

/// One end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEnd {
    /// Task index.
    pub task: usize,
    /// The bit of that task the other end's kicks arrive on.
    pub kick_bit: u8,
}

impl System {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes that all stacks, heaps, DMA budgets and channels fit in.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    /// Tasks in id order; the first is the supervisor.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The distinct server binaries the tasks run, in task order: what the image must pack.
    pub fn servers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in &self.tasks {
            if !out.contains(&t.server.as_str()) {
                out.push(&t.server);
            }
        }
        out
    }

    /// Bytes the kernel allocates for the tasks at run time (what the budget bounds).
    pub fn memory_used(&self) -> u64 {
        let tasks: u64 = self.tasks.iter().map(|t| t.stack + t.heap + t.dma).sum();
        tasks + self.channels.iter().map(|c| c.size).sum::<u64>()
    }
}

/// Reads and validates the description at `path`; errors name the file as given.
pub fn load(path: &Path, known_servers: &[&str]) -> Result<System, SystemError> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SystemError::without_line(&file_name, format!("cannot read: {e}")))?;
    parse(&text, &file_name, known_servers)
}

/// Validates the description `text`; `file_name` is only used in error messages.
pub fn parse(text: &str, file_name: &str, known_servers: &[&str]) -> Result<System, SystemError> {
    let raw = raw::parse(text, file_name)?;
    validate::validate(raw, text, file_name, known_servers)
}
