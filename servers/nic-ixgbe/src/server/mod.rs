//! The server's glue around the driver core: what only the image needs.
//!
//! Map: [`platform`] the core's edges over the kernel (BAR window, `dma_alloc`, clock, the
//! claimed device); [`settings`] the task arguments; [`respond`] the ARP / ping / test-control
//! responder (pure logic); [`queue_pair`] netback's queue-pair channel; [`run`] bring-up, the
//! serve loop and shutdown.

pub mod platform;
pub mod queue_pair;
pub mod respond;
pub mod run;
pub mod settings;
