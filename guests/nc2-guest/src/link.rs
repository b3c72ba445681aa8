//! A connected vif as the application sees it: frames out, frames in, and the event protocol
//! (publish, notify, arm before sleeping). Implemented by [`crate::netif_link`] and
//! [`crate::nc2_link`].

use alloc::string::String;

pub trait Link {
    /// Queues and publishes one frame; `Ok(false)` when no buffer or ring space is free now.
    fn send(&mut self, frame: &[u8]) -> Result<bool, String>;
    /// Delivers every received frame to `f(frame, checksums_trusted)`, reclaims completed
    /// transmit buffers and re-posts receive buffers. Returns how many frames arrived.
    fn poll(&mut self, f: &mut dyn FnMut(&[u8], bool)) -> Result<usize, String>;
    /// Arms the backend's next event; true when work is already waiting (do not sleep).
    fn prepare_sleep(&mut self) -> Result<bool, String>;
    /// Transmit buffers waiting for the backend.
    fn tx_in_flight(&self) -> usize;
    fn name(&self) -> &'static str;
}
