//! The user address space every task sees, and the read-only task-info page.
//!
//! All user mappings live far above any physical memory the kernel identity-maps (which stays in
//! PML4 slot 0 and is supervisor-only), one 512 GiB PML4 slot per kind of region:
//!
//! | slot | address | what |
//! |---|---|---|
//! | 128 | `IMAGE_BASE` | the server's ELF segments (text RX, rodata R, data RW) |
//! | 130 | `INFO_BASE` | this page: [`TaskInfo`], read-only |
//! | 132 | `STACK_TOP` | the stack grows down from here; an unmapped guard page lies below it |
//! | 134 | `HEAP_BASE` | the heap, as big as the system description says |
//! | 136 | `CHANNEL_BASE` | channel `i` at `CHANNEL_BASE + i * CHANNEL_STRIDE` |
//! | 138 | `DEVICE_BASE` | BAR `b` of the task's device `d` at [`bar_address`]`(d, b)`, uncached |
//! | 140 | `DMA_BASE` | DMA memory, in the order `dma_alloc` handed it out |
//!
//! Nothing user-visible is executable except the image's text (W^X).

use crate::system_table::NO_BIT;

pub const IMAGE_BASE: u64 = 0x4000_0000_0000;
pub const INFO_BASE: u64 = 0x4100_0000_0000;
pub const STACK_TOP: u64 = 0x4200_0000_0000;
pub const HEAP_BASE: u64 = 0x4300_0000_0000;
pub const CHANNEL_BASE: u64 = 0x4400_0000_0000;
/// Room per channel (the largest channel is 16 MiB).
pub const CHANNEL_STRIDE: u64 = 1 << 30;
pub const DEVICE_BASE: u64 = 0x4500_0000_0000;
pub const DMA_BASE: u64 = 0x4600_0000_0000;
/// First address past user space as nc2dd lays it out.
pub const USER_END: u64 = 0x4800_0000_0000;

/// Channels one task may have.
pub const MAX_TASK_CHANNELS: usize = 16;
/// Device claims one task may have.
pub const MAX_TASK_DEVICES: usize = 4;
/// MSI-X vectors one device claim of a task may route.
pub const MAX_DEVICE_VECTORS: usize = 16;

/// Where BAR `bar` of the task's device `device` is mapped (8 GiB per BAR).
pub const fn bar_address(device: usize, bar: usize) -> u64 {
    DEVICE_BASE + (device as u64) * (64 << 30) + (bar as u64) * (8 << 30)
}

/// One mapped BAR.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct BarInfo {
    /// 0 when the BAR is not mapped into the task.
    pub vaddr: u64,
    pub size: u64,
}

/// A device claim as its task sees it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct DeviceInfo {
    pub name: [u8; 32],
    pub name_len: u32,
    /// 1 when the claim was bound to a function at boot; 0 when nothing matched.
    pub present: u32,
    /// `pack_bdf` of the function.
    pub bdf: u64,
    pub vendor: u16,
    pub device: u16,
    /// Number of routed MSI-X vectors (0 when the device has none or the claim names none).
    pub vectors: u32,
    /// The notification bit of each vector.
    pub vector_bits: [u8; MAX_DEVICE_VECTORS],
    pub bars: [BarInfo; 6],
}

impl DeviceInfo {
    pub const fn empty() -> Self {
        Self {
            name: [0; 32],
            name_len: 0,
            present: 0,
            bdf: 0,
            vendor: 0,
            device: 0,
            vectors: 0,
            vector_bits: [NO_BIT; MAX_DEVICE_VECTORS],
            bars: [BarInfo { vaddr: 0, size: 0 }; 6],
        }
    }

    pub fn name(&self) -> &str {
        str_of(&self.name, self.name_len)
    }
}
pub const INFO_MAGIC: u32 = 0x4e43_3249; // "NC2I"

/// One channel as its task sees it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ChannelInfo {
    pub name: [u8; 32],
    pub name_len: u32,
    /// Index of the task at the other end.
    pub peer: u32,
    /// The other end's generation: the kernel bumps it when the peer restarts, so a task can
    /// tell that the state it shares with its peer was lost.
    pub peer_generation: u32,
    /// The bit of this task's word that the peer's `notify` posts.
    pub kick_bit: u8,
    pub _pad: [u8; 3],
    pub base: u64,
    pub size: u64,
}

/// The task-info page.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TaskInfo {
    pub magic: u32,
    pub abi_version: u32,
    pub index: u32,
    pub generation: u32,
    pub name: [u8; 32],
    pub name_len: u32,
    pub channel_count: u32,
    pub task_count: u32,
    /// Supervisor: the bit task stops are posted on (`NO_BIT` otherwise).
    pub fault_bit: u8,
    pub timer_bit: u8,
    pub _pad: [u8; 2],
    pub heap_base: u64,
    pub heap_size: u64,
    pub stack_top: u64,
    pub stack_size: u64,
    pub channels: [ChannelInfo; MAX_TASK_CHANNELS],
    /// `key=value` words for this task from the kernel command line (`nc2dd.<task>.key=value`),
    /// space separated.
    pub args_len: u32,
    pub args: [u8; MAX_ARGS],
    pub device_count: u32,
    pub devices: [DeviceInfo; MAX_TASK_DEVICES],
    /// Xen rights: the bit every event channel of the task is posted on (`NO_BIT` without
    /// rights), and the size of its grant window at `syscall::XEN_GRANT_WINDOW_BASE`.
    pub xen_event_bit: u8,
    pub _xen_pad: [u8; 7],
    pub xen_grant_window: u64,
}

/// Bytes of command-line arguments a task receives.
pub const MAX_ARGS: usize = 256;

const _: () = assert!(core::mem::size_of::<TaskInfo>() <= 4096);

impl ChannelInfo {
    pub const fn empty() -> Self {
        Self {
            name: [0; 32],
            name_len: 0,
            peer: 0,
            peer_generation: 0,
            kick_bit: NO_BIT,
            _pad: [0; 3],
            base: 0,
            size: 0,
        }
    }

    pub fn name(&self) -> &str {
        str_of(&self.name, self.name_len)
    }
}

impl TaskInfo {
    pub const fn empty() -> Self {
        Self {
            magic: INFO_MAGIC,
            abi_version: crate::syscall::ABI_VERSION,
            index: 0,
            generation: 0,
            name: [0; 32],
            name_len: 0,
            channel_count: 0,
            task_count: 0,
            fault_bit: NO_BIT,
            timer_bit: NO_BIT,
            _pad: [0; 2],
            heap_base: 0,
            heap_size: 0,
            stack_top: 0,
            stack_size: 0,
            channels: [ChannelInfo::empty(); MAX_TASK_CHANNELS],
            args_len: 0,
            args: [0; MAX_ARGS],
            device_count: 0,
            devices: [DeviceInfo::empty(); MAX_TASK_DEVICES],
            xen_event_bit: NO_BIT,
            _xen_pad: [0; 7],
            xen_grant_window: 0,
        }
    }

    pub fn name(&self) -> &str {
        str_of(&self.name, self.name_len)
    }

    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels[..(self.channel_count as usize).min(MAX_TASK_CHANNELS)]
    }

    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices[..(self.device_count as usize).min(MAX_TASK_DEVICES)]
    }

    /// The value of argument `key`, if the command line gave this task one.
    pub fn arg(&self, key: &str) -> Option<&str> {
        let n = (self.args_len as usize).min(MAX_ARGS);
        let args = core::str::from_utf8(&self.args[..n]).unwrap_or("");
        args.split(' ')
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The channel named `name`, with its index (the argument `notify` takes).
    pub fn channel(&self, name: &str) -> Option<(usize, &ChannelInfo)> {
        self.channels()
            .iter()
            .enumerate()
            .find(|(_, c)| c.name() == name)
    }
}

/// Copies `s` into a fixed name field (cut at the field's size).
pub fn set_name(field: &mut [u8; 32], len: &mut u32, s: &str) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
    *len = n as u32;
}

fn str_of(b: &[u8; 32], len: u32) -> &str {
    let n = (len as usize).min(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("")
}
