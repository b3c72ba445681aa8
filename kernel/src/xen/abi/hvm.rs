//! `hvm_op` (hypercall 34): HVM parameters, the event callback, and where the console and
//! xenstore pages are.

use super::{DOMID_SELF, DomId, assert_layout};

pub const HVMOP_SET_PARAM: u32 = 0;
pub const HVMOP_GET_PARAM: u32 = 1;
/// Per-vCPU upcall vector (alternative to `HVM_PARAM_CALLBACK_IRQ` of type vector).
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// How event channel upcalls are delivered; also which the callback value encodes.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// Guest frame number of the xenstore ring page.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// Event channel of the xenstore ring.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// Guest frame number of the PV console ring page.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// Event channel of the PV console ring.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

/// The callback value's type field sits in bits 63:56.
pub const HVM_PARAM_CALLBACK_TYPE_SHIFT: u32 = 56;

/// What `HVM_PARAM_CALLBACK_IRQ` routes upcalls to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackVia {
    /// A global system interrupt (type 0).
    Gsi(u32),
    /// A PCI INTx line (type 1): domain, bus, device/function and pin packed as Xen wants.
    PciIntx {
        domain: u16,
        bus: u8,
        devfn: u8,
        pin: u8,
    },
    /// An IDT vector on every vCPU (type 2); needs `XENFEAT_hvm_callback_vector`.
    Vector(u8),
}

impl CallbackVia {
    /// The 64-bit value for `HVM_PARAM_CALLBACK_IRQ`.
    pub fn param_value(self) -> u64 {
        match self {
            CallbackVia::Gsi(gsi) => u64::from(gsi),
            CallbackVia::PciIntx {
                domain,
                bus,
                devfn,
                pin,
            } => {
                (1u64 << HVM_PARAM_CALLBACK_TYPE_SHIFT)
                    | (u64::from(domain) << 32)
                    | (u64::from(bus) << 16)
                    | (u64::from(devfn) << 8)
                    | u64::from(pin & 3)
            }
            CallbackVia::Vector(v) => (2u64 << HVM_PARAM_CALLBACK_TYPE_SHIFT) | u64::from(v),
        }
    }
}

/// `xen_hvm_param`: argument of `HVMOP_set_param` / `HVMOP_get_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenHvmParam {
    pub domid: DomId,
    pub pad: u16,
    pub index: u32,
    pub value: u64,
}
assert_layout!(
    XenHvmParam,
    size = 16,
    domid = 0,
    pad = 2,
    index = 4,
    value = 8
);

impl XenHvmParam {
    /// A request about our own domain.
    pub fn own(index: u32, value: u64) -> Self {
        Self {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value,
        }
    }
}

/// `xen_hvm_evtchn_upcall_vector`: argument of `HVMOP_set_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}
assert_layout!(XenHvmEvtchnUpcallVector, size = 8, vcpu = 0, vector = 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_values_match_xen_encoding() {
        assert_eq!(
            CallbackVia::Vector(0xf3).param_value(),
            0x0200_0000_0000_00f3
        );
        assert_eq!(CallbackVia::Gsi(28).param_value(), 28);
        assert_eq!(
            CallbackVia::PciIntx {
                domain: 0,
                bus: 0,
                devfn: 3 << 3,
                pin: 1
            }
            .param_value(),
            0x0100_0000_0000_1801
        );
    }
}
