//! `sched_op` (hypercall 29): block, yield, shutdown.

use super::assert_layout;

pub const SCHEDOP_YIELD: u32 = 0;
/// Sleeps until an event is pending for this vCPU (events must be unmasked, or it returns at once).
pub const SCHEDOP_BLOCK: u32 = 1;
pub const SCHEDOP_SHUTDOWN: u32 = 2;
pub const SCHEDOP_POLL: u32 = 3;

/// Why a domain shuts down (`sched_shutdown.reason`); the toolstack acts on it (on_poweroff etc.).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff = 0,
    Reboot = 1,
    Suspend = 2,
    Crash = 3,
    Watchdog = 4,
    SoftReset = 5,
}

/// `SCHEDOP_shutdown` argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedShutdown {
    pub reason: u32,
}
assert_layout!(SchedShutdown, size = 4, reason = 0);

impl SchedShutdown {
    pub fn new(reason: ShutdownReason) -> Self {
        Self {
            reason: reason as u32,
        }
    }
}
