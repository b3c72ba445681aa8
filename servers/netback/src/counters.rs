//! Per-vif counters: what a vif moved, dropped and cost. "tx"/"rx" are from the guest's point
//! of view (guest TX = frames netback takes from the guest). Plain `u64`s that only grow
//! (wrapping), owned by the vif's single servicing context; `render` gives the one-line form
//! netback publishes for dom0.

use core::fmt;

/// Counters of one vif (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VifCounters {
    /// Frames taken from the guest.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Guest frames refused (bad size, failed copy, no room): answered with an error status.
    pub tx_errors: u64,
    /// Frames delivered into the guest's buffers.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames for the guest dropped (no posted buffers, backlog full, too big for its features).
    pub rx_drops: u64,
    /// Grant hypercalls issued for this vif (map, unmap, copy).
    pub grant_calls: u64,
    /// Grant operations in those hypercalls.
    pub grant_ops: u64,
    /// Bytes moved by grant copies.
    pub copy_bytes: u64,
    /// Event-channel notifications sent to the guest.
    pub notifications: u64,
    /// Protocol violations (each one disconnects the vif).
    pub protocol_errors: u64,
    /// Frames delivered by copying them into the guest's buffers (grant copy or CPU copy
    /// into a mapped buffer; SMALL inline packets count too).
    pub rx_copies: u64,
    /// Frames the NIC wrote straight into the guest's own posted buffers (no copy at all).
    pub rx_zero_copy: u64,
    /// Posted buffers whose grant was already mapped (re-posted: no grant operation).
    pub grant_reuse: u64,
}

impl VifCounters {
    /// Counts one grant hypercall of `ops` operations.
    pub fn grant_call(&mut self, ops: usize) {
        self.grant_calls = self.grant_calls.wrapping_add(1);
        self.grant_ops = self.grant_ops.wrapping_add(ops as u64);
    }

    /// Adds another vif's (or queue's) counters.
    pub fn add(&mut self, o: &VifCounters) {
        self.tx_packets = self.tx_packets.wrapping_add(o.tx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(o.tx_bytes);
        self.tx_errors = self.tx_errors.wrapping_add(o.tx_errors);
        self.rx_packets = self.rx_packets.wrapping_add(o.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(o.rx_bytes);
        self.rx_drops = self.rx_drops.wrapping_add(o.rx_drops);
        self.grant_calls = self.grant_calls.wrapping_add(o.grant_calls);
        self.grant_ops = self.grant_ops.wrapping_add(o.grant_ops);
        self.copy_bytes = self.copy_bytes.wrapping_add(o.copy_bytes);
        self.notifications = self.notifications.wrapping_add(o.notifications);
        self.protocol_errors = self.protocol_errors.wrapping_add(o.protocol_errors);
        self.rx_copies = self.rx_copies.wrapping_add(o.rx_copies);
        self.rx_zero_copy = self.rx_zero_copy.wrapping_add(o.rx_zero_copy);
        self.grant_reuse = self.grant_reuse.wrapping_add(o.grant_reuse);
    }
}

impl fmt::Display for VifCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx {} pkts {} B {} err, rx {} pkts {} B {} drop, grant {} calls {} ops {} B copied, {} notify, {} proto-err, rx {} copied {} zero-copy, {} grants reused",
            self.tx_packets,
            self.tx_bytes,
            self.tx_errors,
            self.rx_packets,
            self.rx_bytes,
            self.rx_drops,
            self.grant_calls,
            self.grant_ops,
            self.copy_bytes,
            self.notifications,
            self.protocol_errors,
            self.rx_copies,
            self.rx_zero_copy,
            self.grant_reuse
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_render() {
        let mut a = VifCounters::default();
        a.grant_call(3);
        a.tx_packets = 2;
        let mut b = a;
        b.add(&a);
        assert_eq!(b.grant_calls, 2);
        assert_eq!(b.grant_ops, 6);
        assert_eq!(b.tx_packets, 4);
        let s = alloc::format!("{b}");
        assert!(s.starts_with("tx 4 pkts"), "{s}");
        assert!(s.contains("grant 2 calls 6 ops"), "{s}");
    }
}
