//! The server's glue around the driver core: what only the image needs.
//!
//! Map: [`platform`] the core's edges over the kernel (BAR window, `dma_alloc`, clock, the
//! claimed device); [`settings`] the task arguments; [`respond`] the ARP / ping / test-control
//! responder (pure logic); [`run`] bring-up, the serve loop and shutdown.

pub mod platform;
pub mod respond;
pub mod run;
pub mod settings;
