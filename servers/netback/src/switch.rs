//! The switch inside netback: decides, for each Ethernet frame, which ports get it. Ports are
//! vifs, the NIC (the queue-pair channel's netback end) and the local responder. Pure logic
//! over frame bytes; delivery is the caller's.
//!
//! Rules: group destinations (broadcast, multicast) go to every port but the ingress; the
//! responder's MAC goes to the responder; a known unicast MAC goes to its port (never back to
//! the ingress); an unknown one floods like a broadcast but skips the responder. Source MACs
//! are learned per port, except that a MAC pinned to a vif (its toolstack `mac` key) is never
//! re-learned elsewhere, so a guest cannot steal another guest's traffic by spoofing. The table
//! is bounded; when full, new MACs are not learned (they flood).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];
/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// Where a frame can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortId {
    /// A guest's vif (netback's vif handle).
    Vif(u32),
    /// The NIC queue pair.
    Nic,
    /// The local responder.
    Local,
}

/// Offload metadata a frame carries between ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// The L4 checksum is not filled in (the sender relied on offload).
    pub csum_blank: bool,
    /// The checksum was verified (or is known good).
    pub data_validated: bool,
    /// A GSO super-frame: `(type, segment size)`.
    pub gso: Option<(u8, u16)>,
}

/// A frame in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The bytes, from the destination MAC on.
    pub data: Vec<u8>,
    /// Its offload state.
    pub offload: Offload,
}

impl Frame {
    /// A frame without offload state.
    pub fn plain(data: Vec<u8>) -> Self {
        Frame {
            data,
            offload: Offload::default(),
        }
    }
    /// Destination MAC (`None` if shorter than a header).
    pub fn dst(&self) -> Option<Mac> {
        mac_at(&self.data, 0)
    }
    /// Source MAC.
    pub fn src(&self) -> Option<Mac> {
        mac_at(&self.data, 6)
    }
}

fn mac_at(d: &[u8], off: usize) -> Option<Mac> {
    if d.len() < ETH_HLEN {
        return None;
    }
    let mut m = [0; 6];
    m.copy_from_slice(&d[off..off + 6]);
    Some(m)
}

/// True for broadcast and multicast addresses.
pub fn is_group(m: &Mac) -> bool {
    m[0] & 1 != 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    port: PortId,
    pinned: bool,
}

/// The forwarding table and port set.
pub struct Switch {
    local_mac: Mac,
    ports: BTreeSet<PortId>,
    table: BTreeMap<Mac, Entry>,
    max_entries: usize,
}

impl Switch {
    /// A switch whose responder answers to `local_mac`, learning at most `max_entries` MACs.
    pub fn new(local_mac: Mac, max_entries: usize) -> Self {
        let mut ports = BTreeSet::new();
        ports.insert(PortId::Local);
        Switch {
            local_mac,
            ports,
            table: BTreeMap::new(),
            max_entries,
        }
    }

    /// Adds a port; `mac` pins that address to it.
    pub fn add_port(&mut self, port: PortId, mac: Option<Mac>) {
        self.ports.insert(port);
        if let Some(m) = mac.filter(|m| !is_group(m)) {
            self.table.insert(m, Entry { port, pinned: true });
        }
    }

    /// Removes a port and forgets every MAC on it.
    pub fn remove_port(&mut self, port: PortId) {
        self.ports.remove(&port);
        self.table.retain(|_, e| e.port != port);
    }

    /// The port a MAC is known on.
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.table.get(mac).map(|e| e.port)
    }

    /// Learns the source and fills `out` with the ports that get `frame` from `from`.
    /// A runt (shorter than an Ethernet header) goes nowhere.
    pub fn route(&mut self, from: PortId, frame: &[u8], out: &mut Vec<PortId>) {
        out.clear();
        let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            return;
        };
        if !is_group(&src) && src != self.local_mac && from != PortId::Local {
            self.learn(src, from);
        }
        if is_group(&dst) {
            out.extend(self.ports.iter().copied().filter(|&p| p != from));
        } else if dst == self.local_mac {
            if from != PortId::Local {
                out.push(PortId::Local);
            }
        } else if let Some(e) = self.table.get(&dst) {
            if e.port != from {
                out.push(e.port);
            }
        } else {
            out.extend(
                self.ports
                    .iter()
                    .copied()
                    .filter(|&p| p != from && p != PortId::Local),
            );
        }
    }

    fn learn(&mut self, src: Mac, from: PortId) {
        let full = self.table.len() >= self.max_entries;
        match self.table.get_mut(&src) {
            Some(e) if e.pinned => {}
            Some(e) => e.port = from,
            None if !full => {
                self.table.insert(
                    src,
                    Entry {
                        port: from,
                        pinned: false,
                    },
                );
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const A: Mac = [0, 0x16, 0x3e, 0, 0, 1];
    const B: Mac = [0, 0x16, 0x3e, 0, 0, 2];
    const L: Mac = [0, 0x16, 0x3e, 0xff, 0, 0];
    const X: Mac = [2, 0, 0, 0, 0, 9];

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    fn sw() -> Switch {
        let mut s = Switch::new(L, 4);
        s.add_port(PortId::Vif(1), Some(A));
        s.add_port(PortId::Vif(2), Some(B));
        s.add_port(PortId::Nic, None);
        s
    }

    #[test]
    fn unicast_broadcast_local_and_unknown() {
        let mut s = sw();
        let mut out = Vec::new();
        s.route(PortId::Vif(1), &frame(B, A), &mut out);
        assert_eq!(out, [PortId::Vif(2)]);
        s.route(PortId::Vif(1), &frame(BROADCAST, A), &mut out);
        assert_eq!(out, [PortId::Vif(2), PortId::Nic, PortId::Local]);
        s.route(PortId::Vif(2), &frame(L, B), &mut out);
        assert_eq!(out, [PortId::Local]);
        s.route(PortId::Vif(2), &frame(X, B), &mut out);
        assert_eq!(out, [PortId::Vif(1), PortId::Nic]);
        s.route(PortId::Vif(2), &frame(B, B), &mut out);
        assert!(out.is_empty(), "never back to the ingress");
        s.route(PortId::Vif(2), &[0u8; 13], &mut out);
        assert!(out.is_empty(), "runts go nowhere");
    }

    #[test]
    fn learns_but_pinned_macs_cannot_be_stolen() {
        let mut s = sw();
        let mut out = Vec::new();
        s.route(PortId::Nic, &frame(A, X), &mut out);
        assert_eq!(s.lookup(&X), Some(PortId::Nic));
        s.route(PortId::Vif(2), &frame(X, A), &mut out);
        assert_eq!(out, [PortId::Nic]);
        assert_eq!(s.lookup(&A), Some(PortId::Vif(1)), "spoofed source ignored");
        s.remove_port(PortId::Nic);
        assert_eq!(s.lookup(&X), None);
    }

    #[test]
    fn table_is_bounded() {
        let mut s = sw();
        let mut out = Vec::new();
        for i in 0..10u8 {
            s.route(PortId::Nic, &frame(A, [2, 0, 0, 0, 1, i]), &mut out);
        }
        assert_eq!(s.table.len(), 4);
        assert_eq!(s.lookup(&[2, 0, 0, 0, 1, 9]), None);
    }
}
