//! Bounded register polling for the datasheet's handshakes (reset self-clear, queue enable).

use crate::error::Error;
use crate::hw::{Delay, RegisterAccess};

/// Polling step.
const STEP_US: u32 = 10;

/// Polls `off` every 10 us until `(value & mask) == want`, for at most `budget_us`.
pub fn wait_for<R: RegisterAccess, T: Delay>(
    regs: &R,
    delay: &mut T,
    off: u32,
    mask: u32,
    want: u32,
    budget_us: u32,
    what: &'static str,
) -> Result<(), Error> {
    for _ in 0..budget_us / STEP_US {
        if regs.read32(off) & mask == want {
            return Ok(());
        }
        delay.delay_us(STEP_US);
    }
    if regs.read32(off) & mask == want {
        return Ok(());
    }
    Err(Error::Timeout(what))
}
