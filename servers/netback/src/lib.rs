//! The netback core: serves guests' virtual interfaces over a [`hv::Hypervisor`], so the same
//! code runs in the image (the kernel's Xen gateway) and on the host ([`sim::SimHypervisor`]).
//!
//! - [`hv`]: the hypervisor trait (xenstore, event channels, batched grant ops);
//! - [`sim`]: a simulated hypervisor with counters, for tests and benchmarks;
//! - [`xenbus`]: the backend state machine of each vif;
//! - [`netif`]: one netif queue (guest TX and rx-copy RX over libnc2's rings);
//! - [`switch`]: which ports get a frame (vifs, NIC, responder);
//! - [`nicport`]: the switch's NIC port over a queue-pair channel (a pool per MAC);
//! - [`offload`]: software checksum and TCP segmentation for hops without offloads;
//! - [`rate`]: guest transmit rate limits (`rate` key);
//! - [`responder`]: ARP and ICMP echo for the driver domain's own address;
//! - [`counters`]: per-vif counters;
//! - [`service`]: all of it together ([`service::Netback`]).
//!
//! Wiring in the server (once the gateway implements [`hv::Hypervisor`]): build
//! `Netback::new(gateway, Config)` and, with a queue-pair channel, `NicPort::new(..)` plus
//! `Netback::attach_nic()`; then on every wake-up (xenstore, event channel, queue pair) call
//! `nb.poll()`, `port.exchange(&mut nb)`, kick nic-ixgbe if `port.take_kick()`, call
//! `nb.poll()` again if the exchange delivered frames, and `nb.publish_counters()` now and then.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod counters;
pub mod hv;
pub mod netif;
pub mod nicport;
pub mod offload;
pub mod rate;
pub mod responder;
pub mod service;
pub mod sim;
pub mod switch;
pub mod xenbus;

pub use service::{Config, Netback};
