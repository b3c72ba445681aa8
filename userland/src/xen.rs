//! Xen for tasks with Xen rights: the xenstore [`Transport`] over the kernel's Xen gateway.
//!
//! Owns: the attachment to the store ring (the kernel maps the ring page into the task at
//! `XEN_STORE_VA` and binds the store event channel to the task's Xen event bit) and the wait
//! for the peer, bounded by the task's timer when it has one. Every event channel of the task
//! shares that one bit, so a wake-up here may also mean another ring has work: callers re-check
//! their other rings after xenstore calls.

use crate::syscall;
use crate::xenstore::ring::MappedPage;
use crate::xenstore::{Client, Error, Transport};

/// The xenstore ring reached through the gateway.
pub struct GatewayTransport {
    page: MappedPage,
    port: u32,
    event_mask: u64,
    timer_mask: u64,
    timeout_ms: u64,
}

impl GatewayTransport {
    /// Attaches to the store ring. `event_bit` is the task's Xen event bit; with `timer_bit`
    /// each wait for xenstored gives up after `timeout_ms` (the timer is the caller's: a wait
    /// re-arms and then cancels it).
    pub fn attach(event_bit: u8, timer_bit: Option<u8>, timeout_ms: u64) -> Result<Self, i64> {
        let (va, port) = syscall::xen_store_attach()?;
        Ok(Self {
            // SAFETY: the kernel mapped the ring page read-write at `va` for the task's life;
            // the client touches it only through atomic and volatile accesses.
            page: unsafe { MappedPage::new(va) },
            port,
            event_mask: 1 << event_bit,
            timer_mask: timer_bit.map_or(0, |b| 1 << b),
            timeout_ms,
        })
    }

    /// The store's event channel port.
    pub fn port(&self) -> u32 {
        self.port
    }
}

impl Transport for GatewayTransport {
    type Page = MappedPage;

    fn page(&self) -> &MappedPage {
        &self.page
    }

    fn notify(&mut self) {
        // The port was bound at attach; Xen refusing a send on it leaves nothing to do but wait
        // for the deadline.
        let _ = syscall::xen_evtchn_send(self.port);
    }

    fn wait(&mut self) -> Result<(), Error> {
        if self.timer_mask == 0 {
            syscall::wait(self.event_mask);
            return Ok(());
        }
        let deadline = syscall::uptime_ms() + self.timeout_ms;
        loop {
            let now = syscall::uptime_ms();
            if now >= deadline {
                return Err(Error::Transport(
                    "no answer from xenstored before the deadline",
                ));
            }
            syscall::set_timer(deadline - now);
            let got = syscall::wait(self.event_mask | self.timer_mask);
            syscall::set_timer(0);
            if got & self.event_mask != 0 {
                return Ok(());
            }
            // The timer bit alone: the deadline passed, or the bit was left over from an earlier
            // timer of the task (posted just before it was cancelled). The clock decides.
        }
    }
}

/// A xenstore client over the gateway.
pub fn xenstore(
    event_bit: u8,
    timer_bit: Option<u8>,
    timeout_ms: u64,
) -> Result<Client<GatewayTransport>, i64> {
    GatewayTransport::attach(event_bit, timer_bit, timeout_ms).map(Client::new)
}
