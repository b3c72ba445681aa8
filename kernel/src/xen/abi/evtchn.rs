//! `event_channel_op` (hypercall 32): sub-operations and their argument structs.

use super::{DomId, EvtchnPort, assert_layout};

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// Virtual IRQs bindable with `EVTCHNOP_bind_virq`.
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_DEBUG: u32 = 1;
pub const VIRQ_CONSOLE: u32 = 2;
pub const VIRQ_DOM_EXC: u32 = 3;

/// `evtchn_alloc_unbound`: a port in `dom` that `remote_dom` may bind to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    /// Out.
    pub port: EvtchnPort,
}
assert_layout!(
    EvtchnAllocUnbound,
    size = 8,
    dom = 0,
    remote_dom = 2,
    port = 4
);

/// `evtchn_bind_interdomain`: connect a new local port to `remote_port` of `remote_dom`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub remote_port: EvtchnPort,
    /// Out.
    pub local_port: EvtchnPort,
}
assert_layout!(
    EvtchnBindInterdomain,
    size = 12,
    remote_dom = 0,
    remote_port = 4,
    local_port = 8
);

/// `evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnBindVirq, size = 12, virq = 0, vcpu = 4, port = 8);

/// Argument of `EVTCHNOP_send`, `EVTCHNOP_close` and `EVTCHNOP_unmask`: just the port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnPortArg {
    pub port: EvtchnPort,
}
assert_layout!(EvtchnPortArg, size = 4, port = 0);

/// `evtchn_status.status` values.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `evtchn_status`: what a port is connected to. `u` is a C union; read it through [`Self::decode`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    pub dom: DomId,
    pub port: EvtchnPort,
    /// Out.
    pub status: u32,
    /// Out.
    pub vcpu: u32,
    /// Out: the union's bytes as two words (first: domid or pirq or virq; second: remote port).
    pub u: [u32; 2],
}
assert_layout!(
    EvtchnStatus,
    size = 24,
    dom = 0,
    port = 4,
    status = 8,
    vcpu = 12,
    u = 16
);

/// A decoded `evtchn_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortStatus {
    Closed,
    Unbound {
        remote_dom: DomId,
    },
    Interdomain {
        remote_dom: DomId,
        remote_port: EvtchnPort,
    },
    Pirq(u32),
    Virq(u32),
    Ipi,
}

impl EvtchnStatus {
    /// Decodes the reply; `None` for a status value Xen does not define.
    pub fn decode(&self) -> Option<PortStatus> {
        let dom = self.u[0] as DomId;
        Some(match self.status {
            EVTCHNSTAT_CLOSED => PortStatus::Closed,
            EVTCHNSTAT_UNBOUND => PortStatus::Unbound { remote_dom: dom },
            EVTCHNSTAT_INTERDOMAIN => PortStatus::Interdomain {
                remote_dom: dom,
                remote_port: self.u[1],
            },
            EVTCHNSTAT_PIRQ => PortStatus::Pirq(self.u[0]),
            EVTCHNSTAT_VIRQ => PortStatus::Virq(self.u[0]),
            EVTCHNSTAT_IPI => PortStatus::Ipi,
            _ => return None,
        })
    }
}

/// FIFO ABI: `EVTCHNOP_init_control` registers a vCPU's control block (and switches the domain
/// from the 2-level ABI to FIFO for good).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    /// Byte offset of the control block in that frame.
    pub offset: u32,
    pub vcpu: u32,
    /// Out: how many bits a link field has.
    pub link_bits: u8,
    pub _pad: [u8; 7],
}
assert_layout!(
    EvtchnInitControl,
    size = 24,
    control_gfn = 0,
    offset = 8,
    vcpu = 12,
    link_bits = 16
);

/// `EVTCHNOP_expand_array`: adds one page of event words (1024 ports).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    pub array_gfn: u64,
}
assert_layout!(EvtchnExpandArray, size = 8, array_gfn = 0);

/// `EVTCHNOP_set_priority`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    pub port: EvtchnPort,
    pub priority: u32,
}
assert_layout!(EvtchnSetPriority, size = 8, port = 0, priority = 4);

/// FIFO event word bits (each port has one `u32` event word).
pub const EVTCHN_FIFO_PENDING: u32 = 1 << 31;
pub const EVTCHN_FIFO_MASKED: u32 = 1 << 30;
pub const EVTCHN_FIFO_LINKED: u32 = 1 << 29;
pub const EVTCHN_FIFO_BUSY: u32 = 1 << 28;
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Priority queues per vCPU; 0 is the most urgent.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// Event words in one 4 KiB event array page.
pub const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE: u32 = 1024;

/// `evtchn_fifo_control_block`: per vCPU, `ready` has bit q set while queue q is non-empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnFifoControlBlock {
    pub ready: u32,
    pub _rsvd: u32,
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}
assert_layout!(EvtchnFifoControlBlock, size = 72, ready = 0, head = 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_union_decodes_by_kind() {
        let mut s = EvtchnStatus {
            status: EVTCHNSTAT_INTERDOMAIN,
            u: [3, 17],
            ..Default::default()
        };
        assert_eq!(
            s.decode(),
            Some(PortStatus::Interdomain {
                remote_dom: 3,
                remote_port: 17
            })
        );
        s.status = EVTCHNSTAT_VIRQ;
        assert_eq!(s.decode(), Some(PortStatus::Virq(3)));
        s.status = 99;
        assert_eq!(s.decode(), None);
    }
}
