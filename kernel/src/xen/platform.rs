//! Bringing up the Xen platform on an HVM/PVH guest, once the hypercall page works.
//!
//! Owns: the order of the set-up hypercalls and the checks on what Xen reports back. The
//! caller (boot code) chooses where things go in the physmap (guest frames in a hole, not RAM)
//! and which IDT vector takes upcalls; this module returns everything the Xen gateway needs next.
//!
//! Order matters: the shared info page and the grant frames are placed first, and the callback
//! vector is set last, so the first upcall already finds the page it scans. [`try_fifo`] switches
//! event channels to the FIFO ABI when Xen offers it (before any port is bound).

use super::abi::EvtchnPort;
use super::abi::hvm::{
    CallbackVia, HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use super::abi::memory::XenAddToPhysmap;
use super::abi::shared_info::EVTCHN_2L_NR_CHANNELS;
use super::abi::version::XENFEAT_HVM_CALLBACK_VECTOR;
use super::hypercall::{self, Errno, Hypercall};

/// Where the caller wants things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Guest frame for the shared info page.
    pub shared_info_gfn: u64,
    /// First of `grant_frames` consecutive guest frames for our grant table.
    pub grant_gfn_base: u64,
    /// Grant table frames wanted (capped by what Xen allows).
    pub grant_frames: u32,
    /// IDT vector for event channel upcalls (0x20..=0xff).
    pub callback_vector: u8,
}

/// A ring Xen or the toolstack set up for us: its page and event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingParams {
    pub gfn: u64,
    pub evtchn: EvtchnPort,
}

/// What the platform looks like after bring-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    pub version: (u16, u16),
    pub shared_info_gfn: u64,
    /// Grant frames placed at `grant_gfn_base..+grant_frames`.
    pub grant_frames: u32,
    pub max_grant_frames: u32,
    pub store: RingParams,
    /// Absent when the toolstack gave us no PV console.
    pub console: Option<RingParams>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The vector is an exception vector.
    BadVector(u8),
    /// Xen cannot deliver upcalls on a vector (`XENFEAT_hvm_callback_vector` clear).
    NoCallbackVector,
    /// Zero grant frames wanted, or Xen allows none.
    NoGrantFrames { max: u32 },
    /// No xenstore ring (`HVM_PARAM_STORE_PFN` is 0).
    NoStore,
    /// A parameter holds a value that cannot be right (e.g. a port beyond 2-level).
    BadParam { index: u32, value: u64 },
    /// A hypercall failed; `step` says which.
    Hypercall { step: &'static str, err: Errno },
}

fn step<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, PlatformError> {
    r.map_err(|err| PlatformError::Hypercall { step, err })
}

fn port_param(h: &impl Hypercall, index: u32) -> Result<EvtchnPort, PlatformError> {
    let v = step(
        "get event channel param",
        hypercall::hvm_get_param(h, index),
    )?;
    if v == 0 || v >= EVTCHN_2L_NR_CHANNELS as u64 {
        return Err(PlatformError::BadParam { index, value: v });
    }
    Ok(v as EvtchnPort)
}

/// Runs the bring-up hypercalls in order.
pub fn bring_up(h: &impl Hypercall, plan: &Plan) -> Result<Platform, PlatformError> {
    if plan.callback_vector < 0x20 {
        return Err(PlatformError::BadVector(plan.callback_vector));
    }
    let version = step("xen_version", hypercall::xen_version(h))?;
    if !step(
        "get features",
        hypercall::has_xen_feature(h, XENFEAT_HVM_CALLBACK_VECTOR),
    )? {
        return Err(PlatformError::NoCallbackVector);
    }
    step(
        "map shared info",
        hypercall::add_to_physmap(h, XenAddToPhysmap::shared_info(plan.shared_info_gfn)),
    )?;
    let (_, max) = step("grant query_size", hypercall::gnttab_query_size(h))?;
    let frames = plan.grant_frames.min(max);
    if frames == 0 {
        return Err(PlatformError::NoGrantFrames { max });
    }
    for i in 0..frames {
        let gfn = plan.grant_gfn_base + u64::from(i);
        step(
            "map grant frame",
            hypercall::add_to_physmap(h, XenAddToPhysmap::grant_table(i, gfn)),
        )?;
    }
    let store_gfn = step(
        "get store pfn",
        hypercall::hvm_get_param(h, HVM_PARAM_STORE_PFN),
    )?;
    if store_gfn == 0 {
        return Err(PlatformError::NoStore);
    }
    let store = RingParams {
        gfn: store_gfn,
        evtchn: port_param(h, HVM_PARAM_STORE_EVTCHN)?,
    };
    let console_gfn = step(
        "get console pfn",
        hypercall::hvm_get_param(h, HVM_PARAM_CONSOLE_PFN),
    )?;
    let console = if console_gfn == 0 {
        None
    } else {
        Some(RingParams {
            gfn: console_gfn,
            evtchn: port_param(h, HVM_PARAM_CONSOLE_EVTCHN)?,
        })
    };
    step(
        "set callback vector",
        hypercall::hvm_set_param(
            h,
            HVM_PARAM_CALLBACK_IRQ,
            CallbackVia::Vector(plan.callback_vector).param_value(),
        ),
    )?;
    Ok(Platform {
        version,
        shared_info_gfn: plan.shared_info_gfn,
        grant_frames: frames,
        max_grant_frames: max,
        store,
        console,
    })
}

/// Switches event channels to the FIFO ABI if Xen offers it: registers vCPU 0's control block
/// (at `control_offset` in frame `control_gfn`) and the first event array page. `Ok(false)` means
/// Xen has no FIFO ABI and the 2-level ABI stays in force; a failure after the switch is an
/// error, because there is no way back to 2-level.
pub fn try_fifo(
    h: &impl Hypercall,
    control_gfn: u64,
    control_offset: u32,
    first_array_gfn: u64,
) -> Result<bool, PlatformError> {
    match hypercall::evtchn_init_control(h, control_gfn, control_offset, 0) {
        Err(Errno::ENOSYS) => return Ok(false),
        r => step("evtchn init_control", r)?,
    };
    step(
        "evtchn expand_array",
        hypercall::evtchn_expand_array(h, first_array_gfn),
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::abi::grant_table::{GNTTABOP_QUERY_SIZE, GnttabQuerySize};
    use crate::xen::abi::hvm::{HVMOP_GET_PARAM, HVMOP_SET_PARAM, XenHvmParam};
    use crate::xen::abi::memory::{XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO};
    use crate::xen::abi::version::{XENVER_GET_FEATURES, XENVER_VERSION, XenFeatureInfo};
    use crate::xen::hypercall::nr;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::string::String;
    use std::vec::Vec;

    /// Plays Xen for bring-up and logs each call in a readable form.
    struct FakeXen {
        params: RefCell<BTreeMap<u32, u64>>,
        features: u32,
        max_frames: u32,
        log: RefCell<Vec<String>>,
    }

    impl FakeXen {
        fn new() -> Self {
            let params = BTreeMap::from([
                (HVM_PARAM_STORE_PFN, 0xfeffc),
                (HVM_PARAM_STORE_EVTCHN, 1),
                (HVM_PARAM_CONSOLE_PFN, 0xfefff),
                (HVM_PARAM_CONSOLE_EVTCHN, 2),
            ]);
            Self {
                params: RefCell::new(params),
                features: 1 << XENFEAT_HVM_CALLBACK_VECTOR,
                max_frames: 64,
                log: RefCell::new(Vec::new()),
            }
        }
    }

    impl Hypercall for FakeXen {
        unsafe fn call(&self, op: u32, a: [u64; 5]) -> i64 {
            let mut log = self.log.borrow_mut();
            match (op, a[0] as u32) {
                (nr::XEN_VERSION, XENVER_VERSION) => return 0x0004_0011,
                (nr::XEN_VERSION, XENVER_GET_FEATURES) => {
                    // SAFETY: the wrapper passes a live XenFeatureInfo.
                    let f = unsafe { &mut *(a[1] as *mut XenFeatureInfo) };
                    f.submap = if f.submap_idx == 0 { self.features } else { 0 };
                }
                (nr::MEMORY_OP, 7) => {
                    // SAFETY: the wrapper passes a live XenAddToPhysmap.
                    let m = unsafe { &*(a[1] as *const XenAddToPhysmap) };
                    let what = match m.space {
                        XENMAPSPACE_SHARED_INFO => "shared_info",
                        XENMAPSPACE_GRANT_TABLE => "grant",
                        _ => "other",
                    };
                    log.push(std::format!("physmap {what} {} at {:#x}", m.idx, m.gpfn));
                }
                (nr::GRANT_TABLE_OP, GNTTABOP_QUERY_SIZE) => {
                    // SAFETY: one live GnttabQuerySize.
                    let q = unsafe { &mut *(a[1] as *mut GnttabQuerySize) };
                    q.nr_frames = 1;
                    q.max_nr_frames = self.max_frames;
                }
                (nr::HVM_OP, HVMOP_GET_PARAM) => {
                    // SAFETY: a live XenHvmParam.
                    let p = unsafe { &mut *(a[1] as *mut XenHvmParam) };
                    p.value = self.params.borrow().get(&p.index).copied().unwrap_or(0);
                }
                (nr::HVM_OP, HVMOP_SET_PARAM) => {
                    // SAFETY: a live XenHvmParam.
                    let p = unsafe { &*(a[1] as *const XenHvmParam) };
                    log.push(std::format!("set param {} = {:#x}", p.index, p.value));
                }
                _ => return -(Errno::ENOSYS.0 as i64),
            }
            0
        }
    }

    fn plan() -> Plan {
        Plan {
            shared_info_gfn: 0xf0000,
            grant_gfn_base: 0xf0100,
            grant_frames: 4,
            callback_vector: 0xf3,
        }
    }

    #[test]
    fn bring_up_places_pages_then_enables_upcalls() {
        let xen = FakeXen::new();
        let p = bring_up(&xen, &plan()).unwrap();
        assert_eq!(p.version, (4, 17));
        assert_eq!(p.grant_frames, 4);
        assert_eq!(
            p.store,
            RingParams {
                gfn: 0xfeffc,
                evtchn: 1
            }
        );
        assert_eq!(
            p.console,
            Some(RingParams {
                gfn: 0xfefff,
                evtchn: 2
            })
        );
        assert_eq!(
            *xen.log.borrow(),
            [
                "physmap shared_info 0 at 0xf0000",
                "physmap grant 0 at 0xf0100",
                "physmap grant 1 at 0xf0101",
                "physmap grant 2 at 0xf0102",
                "physmap grant 3 at 0xf0103",
                "set param 0 = 0x2000000000000f3",
            ]
        );
    }

    #[test]
    fn bring_up_refuses_what_cannot_work() {
        let mut xen = FakeXen::new();
        xen.features = 0;
        assert_eq!(
            bring_up(&xen, &plan()),
            Err(PlatformError::NoCallbackVector)
        );
        assert_eq!(
            bring_up(
                &FakeXen::new(),
                &Plan {
                    callback_vector: 14,
                    ..plan()
                }
            ),
            Err(PlatformError::BadVector(14))
        );
        let mut xen = FakeXen::new();
        xen.max_frames = 0;
        assert_eq!(
            bring_up(&xen, &plan()),
            Err(PlatformError::NoGrantFrames { max: 0 })
        );
        let mut xen = FakeXen::new();
        xen.max_frames = 2;
        assert_eq!(bring_up(&xen, &plan()).unwrap().grant_frames, 2);
        let xen = FakeXen::new();
        xen.params.borrow_mut().insert(HVM_PARAM_STORE_PFN, 0);
        assert_eq!(bring_up(&xen, &plan()), Err(PlatformError::NoStore));
        let xen = FakeXen::new();
        xen.params.borrow_mut().insert(HVM_PARAM_STORE_EVTCHN, 5000);
        assert_eq!(
            bring_up(&xen, &plan()),
            Err(PlatformError::BadParam {
                index: HVM_PARAM_STORE_EVTCHN,
                value: 5000
            })
        );
        let xen = FakeXen::new();
        xen.params.borrow_mut().insert(HVM_PARAM_CONSOLE_PFN, 0);
        assert_eq!(bring_up(&xen, &plan()).unwrap().console, None);
        // Upcalls are never enabled when bring-up fails.
        let xen = FakeXen::new();
        xen.params.borrow_mut().insert(HVM_PARAM_STORE_PFN, 0);
        let _ = bring_up(&xen, &plan());
        assert!(
            xen.log
                .borrow()
                .iter()
                .all(|l| !l.starts_with("set param 0"))
        );
    }

    struct FifoXen {
        offered: bool,
        log: RefCell<Vec<(u32, u64)>>,
    }

    impl Hypercall for FifoXen {
        unsafe fn call(&self, op: u32, a: [u64; 5]) -> i64 {
            use crate::xen::abi::evtchn::*;
            assert_eq!(op, nr::EVENT_CHANNEL_OP);
            if !self.offered {
                return -(Errno::ENOSYS.0 as i64);
            }
            match a[0] as u32 {
                EVTCHNOP_INIT_CONTROL => {
                    // SAFETY: the wrapper passes a live EvtchnInitControl.
                    let c = unsafe { &mut *(a[1] as *mut EvtchnInitControl) };
                    c.link_bits = 17;
                    self.log
                        .borrow_mut()
                        .push((EVTCHNOP_INIT_CONTROL, c.control_gfn));
                }
                EVTCHNOP_EXPAND_ARRAY => {
                    // SAFETY: a live EvtchnExpandArray.
                    let e = unsafe { &*(a[1] as *const EvtchnExpandArray) };
                    self.log
                        .borrow_mut()
                        .push((EVTCHNOP_EXPAND_ARRAY, e.array_gfn));
                }
                _ => return -(Errno::ENOSYS.0 as i64),
            }
            0
        }
    }

    #[test]
    fn fifo_is_used_when_offered_and_2_level_stays_otherwise() {
        use crate::xen::abi::evtchn::{EVTCHNOP_EXPAND_ARRAY, EVTCHNOP_INIT_CONTROL};
        let xen = FifoXen {
            offered: true,
            log: RefCell::new(Vec::new()),
        };
        assert_eq!(try_fifo(&xen, 0xf0200, 0, 0xf0201), Ok(true));
        assert_eq!(
            *xen.log.borrow(),
            [
                (EVTCHNOP_INIT_CONTROL, 0xf0200),
                (EVTCHNOP_EXPAND_ARRAY, 0xf0201)
            ]
        );
        let xen = FifoXen {
            offered: false,
            log: RefCell::new(Vec::new()),
        };
        assert_eq!(try_fifo(&xen, 0xf0200, 0, 0xf0201), Ok(false));
        assert!(xen.log.borrow().is_empty());
    }
}
