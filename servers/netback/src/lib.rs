//! The netback core: serves guests' virtual interfaces over a [`hv::Hypervisor`], so the same
//! code runs in the image (the kernel's Xen gateway) and on the host ([`sim::SimHypervisor`]).
//!
//! - [`hv`]: the hypervisor trait (xenstore, event channels, batched grant ops);
//! - [`sim`]: a simulated hypervisor with counters, for tests and benchmarks;
//! - [`xenbus`]: the backend state machine of each vif;
//! - [`netif`]: one netif queue (guest TX and rx-copy RX over libnc2's rings);
//! - [`nc2`]: one netchannel2 vif (libnc2's backend end; posted buffers mapped once, handed to
//!   the vif's NIC pool by bus address for zero-copy receive);
//! - [`switch`]: which ports get a frame (vifs, NIC, responder);
//! - [`nicport`]: the switch's NIC port over a queue-pair channel (a pool per MAC);
//! - [`offload`]: software checksum and TCP segmentation for hops without offloads;
//! - [`rate`]: guest transmit rate limits (`rate` key);
//! - [`responder`]: ARP and ICMP echo for the driver domain's own address;
//! - [`counters`]: per-vif counters;
//! - [`service`]: all of it together ([`service::Netback`]).
//!
//! Wiring in the server (`src/serve.rs` over `src/gateway_hv.rs`, the gateway's
//! [`hv::Hypervisor`]): `Netback::new(gateway, Config)`, then on every wake-up (Xen event bit or
//! timer) `nb.poll()` until idle and `nb.publish_counters()` once a second. Not wired yet: the NIC
//! port (`NicPort::new(..)` plus `Netback::attach_nic()`, then after each poll
//! `port.exchange(&mut nb)`, a kick of nic-ixgbe if `port.take_kick()`, and `nb.poll()` again if
//! the exchange delivered frames). The exchange also moves netchannel2 guests' posted buffers
//! to their NIC pools and back; nic-ixgbe's bus windows for netback must then include the
//! grant window's guest-physical range, where those buffers are mapped.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod counters;
pub mod hv;
pub mod nc2;
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
