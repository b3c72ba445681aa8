//! Hypercalls: numbers, Xen's error codes, the hypercall page, and typed wrappers.
//!
//! Owns: the [`Hypercall`] trait (one raw call: number + five register arguments -> `rax`), the
//! bare-metal implementation through the hypercall page (`#[cfg(target_os = "none")]`), and safe
//! typed wrappers that build each argument struct on the stack and decode the result. Host tests
//! implement [`Hypercall`] with fakes that interpret the argument pointers.
//!
//! Convention (x86-64): the stub for hypercall N sits at `page + 32 * N`; arguments go in rdi,
//! rsi, rdx, r10, r8; the result comes back in rax, negative values being `-errno`. Xen may clobber
//! the argument registers (debug builds poison them), so the asm declares them clobbered.

use super::abi::{self, DomId, EvtchnPort};

/// Hypercall numbers (`__HYPERVISOR_*`).
pub mod nr {
    pub const SET_TIMER_OP: u32 = 15;
    pub const MEMORY_OP: u32 = 12;
    pub const MULTICALL: u32 = 13;
    pub const XEN_VERSION: u32 = 17;
    pub const CONSOLE_IO: u32 = 18;
    pub const GRANT_TABLE_OP: u32 = 20;
    pub const VCPU_OP: u32 = 24;
    pub const SCHED_OP: u32 = 29;
    pub const EVENT_CHANNEL_OP: u32 = 32;
    pub const PHYSDEV_OP: u32 = 33;
    pub const HVM_OP: u32 = 34;
}

/// Stubs in one 4 KiB hypercall page (32 bytes each).
pub const STUBS_PER_PAGE: u32 = 128;
/// Byte the page is filled with before Xen writes it (`ret`, so a stale stub returns harmlessly).
pub const POISON: u8 = 0xc3;

/// A Xen error: the positive errno of a negative hypercall result.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const ENXIO: Errno = Errno(6);
    pub const E2BIG: Errno = Errno(7);
    pub const EBADF: Errno = Errno(9);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const EXDEV: Errno = Errno(18);
    pub const ENODEV: Errno = Errno(19);
    pub const EINVAL: Errno = Errno(22);
    pub const ENFILE: Errno = Errno(23);
    pub const EMFILE: Errno = Errno(24);
    pub const ENOSPC: Errno = Errno(28);
    pub const EROFS: Errno = Errno(30);
    pub const EMLINK: Errno = Errno(31);
    pub const EDOM: Errno = Errno(33);
    pub const ERANGE: Errno = Errno(34);
    pub const EDEADLK: Errno = Errno(35);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ENOLCK: Errno = Errno(37);
    pub const ENOSYS: Errno = Errno(38);
    pub const ENOTEMPTY: Errno = Errno(39);
    pub const ENODATA: Errno = Errno(61);
    pub const ETIME: Errno = Errno(62);
    pub const EBADMSG: Errno = Errno(74);
    pub const EOVERFLOW: Errno = Errno(75);
    pub const EILSEQ: Errno = Errno(84);
    pub const ERESTART: Errno = Errno(85);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const EADDRINUSE: Errno = Errno(98);
    pub const ENOBUFS: Errno = Errno(105);
    pub const EISCONN: Errno = Errno(106);
    pub const ENOTCONN: Errno = Errno(107);
    pub const ETIMEDOUT: Errno = Errno(110);

    /// Xen's name for the code (xen/include/public/errno.h), or `None` for one it does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            21 => "EISDIR",
            22 => "EINVAL",
            23 => "ENFILE",
            24 => "EMFILE",
            28 => "ENOSPC",
            30 => "EROFS",
            31 => "EMLINK",
            33 => "EDOM",
            34 => "ERANGE",
            35 => "EDEADLK",
            36 => "ENAMETOOLONG",
            37 => "ENOLCK",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            61 => "ENODATA",
            62 => "ETIME",
            74 => "EBADMSG",
            75 => "EOVERFLOW",
            84 => "EILSEQ",
            85 => "ERESTART",
            88 => "ENOTSOCK",
            95 => "EOPNOTSUPP",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            105 => "ENOBUFS",
            106 => "EISCONN",
            107 => "ENOTCONN",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            _ => return None,
        })
    }

    /// Splits a raw hypercall result into success (the non-negative value) or the error.
    pub fn check(ret: i64) -> Result<u64, Errno> {
        if ret >= 0 {
            Ok(ret as u64)
        } else if ret >= -(i32::MAX as i64) {
            Err(Errno((-ret) as i32))
        } else {
            // Not a valid errno; report it as a malformed result rather than truncating.
            Err(Errno::EBADMSG)
        }
    }
}

impl core::fmt::Debug for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

/// One raw hypercall.
pub trait Hypercall {
    /// Issues hypercall `op` with up to five arguments and returns `rax`.
    ///
    /// # Safety
    /// Every argument that Xen interprets as a guest address for `op` must point to memory valid
    /// for that operation (readable, and writable where Xen writes results) for the whole call.
    unsafe fn call(&self, op: u32, args: [u64; 5]) -> i64;
}

/// Whether Xen wrote the hypercall page we poisoned: the stub of hypercall 0 must differ from
/// the poison (Xen fills every stub, so one is enough to tell).
pub fn page_was_written(page: &[u8]) -> bool {
    page.len() >= 32 && page[..32].iter().any(|&b| b != POISON)
}

fn ptr<T>(p: &mut T) -> u64 {
    core::ptr::from_mut(p) as u64
}

/// `HVMOP_get_param` on our own domain.
pub fn hvm_get_param(h: &impl Hypercall, index: u32) -> Result<u64, Errno> {
    let mut a = abi::hvm::XenHvmParam::own(index, 0);
    // SAFETY: `a` is a live, writable xen_hvm_param for the whole call.
    let r = unsafe {
        h.call(
            nr::HVM_OP,
            [abi::hvm::HVMOP_GET_PARAM.into(), ptr(&mut a), 0, 0, 0],
        )
    };
    Errno::check(r).map(|_| a.value)
}

/// `HVMOP_set_param` on our own domain.
pub fn hvm_set_param(h: &impl Hypercall, index: u32, value: u64) -> Result<(), Errno> {
    let mut a = abi::hvm::XenHvmParam::own(index, value);
    // SAFETY: `a` is a live xen_hvm_param for the whole call.
    let r = unsafe {
        h.call(
            nr::HVM_OP,
            [abi::hvm::HVMOP_SET_PARAM.into(), ptr(&mut a), 0, 0, 0],
        )
    };
    Errno::check(r).map(|_| ())
}

/// `XENMEM_add_to_physmap`.
pub fn add_to_physmap(
    h: &impl Hypercall,
    mut a: abi::memory::XenAddToPhysmap,
) -> Result<(), Errno> {
    // SAFETY: `a` is a live xen_add_to_physmap for the whole call.
    let r = unsafe {
        h.call(
            nr::MEMORY_OP,
            [
                abi::memory::XENMEM_ADD_TO_PHYSMAP.into(),
                ptr(&mut a),
                0,
                0,
                0,
            ],
        )
    };
    Errno::check(r).map(|_| ())
}

/// `XENMEM_memory_map` into `buf`; returns the validated entries Xen wrote.
pub fn memory_map<'b>(
    h: &impl Hypercall,
    buf: &'b mut [abi::memory::E820Entry],
) -> Result<&'b [abi::memory::E820Entry], Errno> {
    let mut m = abi::memory::XenMemoryMap {
        nr_entries: u32::try_from(buf.len()).map_err(|_| Errno::E2BIG)?,
        _pad: 0,
        buffer: buf.as_mut_ptr() as u64,
    };
    // SAFETY: `m` is live and its buffer points to `buf`, writable for `nr_entries` entries.
    let r = unsafe {
        h.call(
            nr::MEMORY_OP,
            [abi::memory::XENMEM_MEMORY_MAP.into(), ptr(&mut m), 0, 0, 0],
        )
    };
    Errno::check(r)?;
    abi::memory::checked_memory_map(m.nr_entries, buf).map_err(|_| Errno::EBADMSG)
}

/// `xen_version(XENVER_version)` as (major, minor).
pub fn xen_version(h: &impl Hypercall) -> Result<(u16, u16), Errno> {
    // SAFETY: XENVER_version takes no pointer.
    let r = unsafe {
        h.call(
            nr::XEN_VERSION,
            [abi::version::XENVER_VERSION.into(), 0, 0, 0, 0],
        )
    };
    Errno::check(r).map(|v| abi::version::split_version(v as u32))
}

/// Whether Xen feature `bit` (`XENFEAT_*`) is set.
pub fn has_xen_feature(h: &impl Hypercall, bit: u32) -> Result<bool, Errno> {
    let mut fi = abi::version::XenFeatureInfo {
        submap_idx: bit / 32,
        submap: 0,
    };
    // SAFETY: `fi` is a live, writable xen_feature_info for the whole call.
    let r = unsafe {
        h.call(
            nr::XEN_VERSION,
            [
                abi::version::XENVER_GET_FEATURES.into(),
                ptr(&mut fi),
                0,
                0,
                0,
            ],
        )
    };
    Errno::check(r).map(|_| fi.submap & (1 << (bit % 32)) != 0)
}

/// `event_channel_op(cmd, arg)`; private so that each command is paired with its own struct.
fn evtchn_op<T>(h: &impl Hypercall, cmd: u32, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: `arg` is a live, writable struct for the whole call, and every caller below passes
    // the struct type Xen's header defines for `cmd`.
    let r = unsafe { h.call(nr::EVENT_CHANNEL_OP, [cmd.into(), ptr(arg), 0, 0, 0]) };
    Errno::check(r).map(|_| ())
}

/// `EVTCHNOP_alloc_unbound`: a new port of ours that `remote` may bind to.
pub fn evtchn_alloc_unbound(h: &impl Hypercall, remote: DomId) -> Result<EvtchnPort, Errno> {
    use abi::evtchn::*;
    let mut a = EvtchnAllocUnbound {
        dom: abi::DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    evtchn_op(h, EVTCHNOP_ALLOC_UNBOUND, &mut a).map(|_| a.port)
}

/// `EVTCHNOP_bind_interdomain`: a new port of ours connected to `remote_port` of `remote`.
pub fn evtchn_bind_interdomain(
    h: &impl Hypercall,
    remote: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, Errno> {
    use abi::evtchn::*;
    let mut a = EvtchnBindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    evtchn_op(h, EVTCHNOP_BIND_INTERDOMAIN, &mut a).map(|_| a.local_port)
}

/// `EVTCHNOP_bind_virq` on `vcpu`.
pub fn evtchn_bind_virq(h: &impl Hypercall, virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
    use abi::evtchn::*;
    let mut a = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    evtchn_op(h, EVTCHNOP_BIND_VIRQ, &mut a).map(|_| a.port)
}

pub fn evtchn_send(h: &impl Hypercall, port: EvtchnPort) -> Result<(), Errno> {
    use abi::evtchn::*;
    evtchn_op(h, EVTCHNOP_SEND, &mut EvtchnPortArg { port })
}

pub fn evtchn_close(h: &impl Hypercall, port: EvtchnPort) -> Result<(), Errno> {
    use abi::evtchn::*;
    evtchn_op(h, EVTCHNOP_CLOSE, &mut EvtchnPortArg { port })
}

/// `EVTCHNOP_unmask`: clears the mask and lets Xen re-raise the upcall if the port is pending.
pub fn evtchn_unmask(h: &impl Hypercall, port: EvtchnPort) -> Result<(), Errno> {
    use abi::evtchn::*;
    evtchn_op(h, EVTCHNOP_UNMASK, &mut EvtchnPortArg { port })
}

/// `EVTCHNOP_status` of one of our ports.
pub fn evtchn_status(
    h: &impl Hypercall,
    port: EvtchnPort,
) -> Result<abi::evtchn::PortStatus, Errno> {
    use abi::evtchn::*;
    let mut a = EvtchnStatus {
        dom: abi::DOMID_SELF,
        port,
        ..Default::default()
    };
    evtchn_op(h, EVTCHNOP_STATUS, &mut a)?;
    a.decode().ok_or(Errno::EBADMSG)
}

/// `EVTCHNOP_init_control`: switches to the FIFO ABI with `vcpu`'s control block at
/// `offset` in frame `gfn`; returns the link width Xen uses.
pub fn evtchn_init_control(
    h: &impl Hypercall,
    gfn: u64,
    offset: u32,
    vcpu: u32,
) -> Result<u8, Errno> {
    use abi::evtchn::*;
    let mut a = EvtchnInitControl {
        control_gfn: gfn,
        offset,
        vcpu,
        ..Default::default()
    };
    evtchn_op(h, EVTCHNOP_INIT_CONTROL, &mut a).map(|_| a.link_bits)
}

/// `EVTCHNOP_expand_array`: adds the event array page at `gfn`.
pub fn evtchn_expand_array(h: &impl Hypercall, gfn: u64) -> Result<(), Errno> {
    use abi::evtchn::*;
    evtchn_op(
        h,
        EVTCHNOP_EXPAND_ARRAY,
        &mut EvtchnExpandArray { array_gfn: gfn },
    )
}

/// `EVTCHNOP_set_priority` (FIFO only).
pub fn evtchn_set_priority(
    h: &impl Hypercall,
    port: EvtchnPort,
    priority: u32,
) -> Result<(), Errno> {
    use abi::evtchn::*;
    evtchn_op(
        h,
        EVTCHNOP_SET_PRIORITY,
        &mut EvtchnSetPriority { port, priority },
    )
}

/// A grant table op's argument struct, tied to its command so batches cannot be mislabelled.
pub trait GnttabOp: sealed::Sealed {
    const CMD: u32;
}
mod sealed {
    pub trait Sealed {}
}
macro_rules! gnttab_op {
    ($ty:ty, $cmd:expr) => {
        impl sealed::Sealed for $ty {}
        impl GnttabOp for $ty {
            const CMD: u32 = $cmd;
        }
    };
}
gnttab_op!(
    abi::grant_table::GnttabMapGrantRef,
    abi::grant_table::GNTTABOP_MAP_GRANT_REF
);
gnttab_op!(
    abi::grant_table::GnttabUnmapGrantRef,
    abi::grant_table::GNTTABOP_UNMAP_GRANT_REF
);
gnttab_op!(
    abi::grant_table::GnttabCopy,
    abi::grant_table::GNTTABOP_COPY
);
gnttab_op!(
    abi::grant_table::GnttabQuerySize,
    abi::grant_table::GNTTABOP_QUERY_SIZE
);

/// `grant_table_op(cmd, ops, count)` over a batch; per-op results are in each `status` field.
pub fn grant_table_op<T: GnttabOp>(h: &impl Hypercall, ops: &mut [T]) -> Result<(), Errno> {
    let count = u32::try_from(ops.len()).map_err(|_| Errno::E2BIG)?;
    // SAFETY: `ops` is a live, writable array of `count` structs of the type Xen expects for
    // `T::CMD` (tied by the sealed trait).
    let r = unsafe {
        h.call(
            nr::GRANT_TABLE_OP,
            [T::CMD.into(), ops.as_mut_ptr() as u64, count.into(), 0, 0],
        )
    };
    Errno::check(r).map(|_| ())
}

/// `GNTTABOP_query_size` for our own table: (current frames, maximum frames).
pub fn gnttab_query_size(h: &impl Hypercall) -> Result<(u32, u32), Errno> {
    let mut q = [abi::grant_table::GnttabQuerySize {
        dom: abi::DOMID_SELF,
        ..Default::default()
    }];
    grant_table_op(h, &mut q)?;
    if q[0].status != 0 {
        return Err(Errno::EINVAL);
    }
    Ok((q[0].nr_frames, q[0].max_nr_frames))
}

fn sched_op<T>(h: &impl Hypercall, cmd: u32, arg: Option<&mut T>) -> Result<(), Errno> {
    let p = arg.map_or(0, |a| ptr(a));
    // SAFETY: `p` is 0 or a live struct of the type `cmd` takes (callers below pair them).
    let r = unsafe { h.call(nr::SCHED_OP, [cmd.into(), p, 0, 0, 0]) };
    Errno::check(r).map(|_| ())
}

/// Sleeps until an event is pending for this vCPU.
pub fn sched_block(h: &impl Hypercall) -> Result<(), Errno> {
    sched_op::<()>(h, abi::sched::SCHEDOP_BLOCK, None)
}

pub fn sched_yield(h: &impl Hypercall) -> Result<(), Errno> {
    sched_op::<()>(h, abi::sched::SCHEDOP_YIELD, None)
}

/// Asks Xen to shut the domain down; returns only if Xen refuses.
pub fn sched_shutdown(h: &impl Hypercall, reason: abi::sched::ShutdownReason) -> Errno {
    let mut a = abi::sched::SchedShutdown::new(reason);
    match sched_op(h, abi::sched::SCHEDOP_SHUTDOWN, Some(&mut a)) {
        Ok(()) => Errno::EINTR,
        Err(e) => e,
    }
}

/// `CONSOLEIO_write` (reaches Xen's console only on builds that allow it for domUs).
pub fn console_write(h: &impl Hypercall, bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: Xen reads `len` bytes from `bytes`, which is live for the call.
    let r = unsafe {
        h.call(
            nr::CONSOLE_IO,
            [
                abi::console::CONSOLEIO_WRITE.into(),
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        )
    };
    Errno::check(r).map(|_| ())
}

/// The hypercall page: Xen fills it with one stub per hypercall once we tell it the page's
/// guest-physical address through the MSR from CPUID leaf base+2.
#[cfg(target_os = "none")]
pub struct HypercallPage {
    base: *const u8,
}

// SAFETY: the page is read-only code after `install`; calling its stubs from several CPUs is
// what Xen intends.
#[cfg(target_os = "none")]
unsafe impl Sync for HypercallPage {}
// SAFETY: as for Sync; the pointer is to a static page, not thread-local state.
#[cfg(target_os = "none")]
unsafe impl Send for HypercallPage {}

#[cfg(target_os = "none")]
impl HypercallPage {
    /// Poisons the page, asks Xen to fill it, and checks that it did.
    ///
    /// # Safety
    /// `page_va` must be a 4 KiB-aligned, writable and executable mapping of guest-physical
    /// `page_pa`, used for nothing else from now on and for the rest of the kernel's life.
    pub unsafe fn install(page_va: *mut u8, page_pa: u64, msr: u32) -> Result<Self, Errno> {
        // SAFETY: the caller hands us the page exclusively; 4096 bytes are mapped writable.
        let page = unsafe { core::slice::from_raw_parts_mut(page_va, 4096) };
        page.fill(POISON);
        // SAFETY: writing the hypercall MSR only makes Xen overwrite the page we own.
        unsafe { x86_64::registers::model_specific::Msr::new(msr).write(page_pa) };
        // Xen wrote the page behind the compiler's back: read it again through volatile loads.
        let mut head = [0u8; 32];
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: in bounds of the page we own.
            *b = unsafe { core::ptr::read_volatile(page_va.add(i)) };
        }
        if !page_was_written(&head) {
            return Err(Errno::ENOSYS);
        }
        Ok(Self { base: page_va })
    }

    /// Like [`Self::install`] for a page the kernel keeps read-only and executable (in its text,
    /// W^X): the page already holds the poison, and Xen writes it through its guest-physical
    /// address, never through our mapping.
    ///
    /// # Safety
    /// `page_va` must be a 4 KiB-aligned, readable and executable mapping of guest-physical
    /// `page_pa` filled with [`POISON`], used for nothing else for the rest of the kernel's life.
    pub unsafe fn install_read_only(
        page_va: *const u8,
        page_pa: u64,
        msr: u32,
    ) -> Result<Self, Errno> {
        // SAFETY: writing the hypercall MSR only makes Xen overwrite the page we own.
        unsafe { x86_64::registers::model_specific::Msr::new(msr).write(page_pa) };
        let mut head = [0u8; 32];
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: in bounds of the readable page we own; volatile because Xen wrote it.
            *b = unsafe { core::ptr::read_volatile(page_va.add(i)) };
        }
        if !page_was_written(&head) {
            return Err(Errno::ENOSYS);
        }
        Ok(Self { base: page_va })
    }
}

#[cfg(target_os = "none")]
impl Hypercall for HypercallPage {
    unsafe fn call(&self, op: u32, args: [u64; 5]) -> i64 {
        if op >= STUBS_PER_PAGE {
            return -i64::from(Errno::ENOSYS.0);
        }
        let entry = self.base as u64 + 32 * u64::from(op);
        let ret: i64;
        // SAFETY: `entry` is the stub Xen wrote for `op` (checked at install); the stub loads
        // the number into eax, traps to Xen and returns. The caller vouches for the pointer
        // arguments. Argument registers and rcx/r11 are declared clobbered.
        unsafe {
            core::arch::asm!(
                "call {entry}",
                entry = in(reg) entry,
                lateout("rax") ret,
                inlateout("rdi") args[0] => _,
                inlateout("rsi") args[1] => _,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        ret
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::abi::grant_table::GnttabQuerySize;
    use crate::xen::abi::hvm::*;
    use crate::xen::abi::memory::*;
    use std::cell::RefCell;

    /// Plays Xen for the typed wrappers: interprets each argument pointer as its header defines.
    #[derive(Default)]
    struct FakeXen {
        params: RefCell<std::collections::BTreeMap<u32, u64>>,
        seen: RefCell<Vec<(u32, u64)>>,
        map_claims: u32,
    }

    impl Hypercall for FakeXen {
        unsafe fn call(&self, op: u32, a: [u64; 5]) -> i64 {
            self.seen.borrow_mut().push((op, a[0]));
            match (op, a[0] as u32) {
                (nr::HVM_OP, HVMOP_GET_PARAM) => {
                    // SAFETY: the wrapper passes a live XenHvmParam.
                    let p = unsafe { &mut *(a[1] as *mut XenHvmParam) };
                    assert_eq!(p.domid, crate::xen::abi::DOMID_SELF);
                    match self.params.borrow().get(&p.index) {
                        Some(v) => p.value = *v,
                        None => return -(Errno::EINVAL.0 as i64),
                    }
                }
                (nr::HVM_OP, HVMOP_SET_PARAM) => {
                    // SAFETY: as above.
                    let p = unsafe { &*(a[1] as *const XenHvmParam) };
                    self.params.borrow_mut().insert(p.index, p.value);
                }
                (nr::MEMORY_OP, XENMEM_MEMORY_MAP) => {
                    // SAFETY: the wrapper passes a live XenMemoryMap whose buffer holds
                    // nr_entries entries.
                    let m = unsafe { &mut *(a[1] as *mut XenMemoryMap) };
                    let buf = m.buffer as *mut E820Entry;
                    for i in 0..m.nr_entries.min(2) {
                        // SAFETY: within the caller's buffer (i < nr_entries).
                        unsafe {
                            buf.add(i as usize).write_unaligned(E820Entry {
                                addr: u64::from(i) << 20,
                                size: 0x1000,
                                kind: E820_RAM,
                            })
                        };
                    }
                    m.nr_entries = self.map_claims;
                }
                (nr::XEN_VERSION, abi::version::XENVER_VERSION) => return 0x0004_0011,
                (nr::XEN_VERSION, abi::version::XENVER_GET_FEATURES) => {
                    // SAFETY: the wrapper passes a live XenFeatureInfo.
                    let f = unsafe { &mut *(a[1] as *mut abi::version::XenFeatureInfo) };
                    f.submap = if f.submap_idx == 0 { 1 << 8 } else { 0 };
                }
                (nr::GRANT_TABLE_OP, abi::grant_table::GNTTABOP_QUERY_SIZE) => {
                    assert_eq!(a[2], 1);
                    // SAFETY: one live GnttabQuerySize.
                    let q = unsafe { &mut *(a[1] as *mut GnttabQuerySize) };
                    q.nr_frames = 1;
                    q.max_nr_frames = 64;
                }
                _ => return -(Errno::ENOSYS.0 as i64),
            }
            0
        }
    }

    #[test]
    fn errno_decoding_and_names() {
        assert_eq!(Errno::check(5), Ok(5));
        assert_eq!(Errno::check(-2), Err(Errno::ENOENT));
        assert_eq!(Errno::check(i64::MIN), Err(Errno::EBADMSG));
        assert_eq!(Errno::EAGAIN.name(), Some("EAGAIN"));
        assert_eq!(Errno(500).name(), None);
        assert_eq!(
            alloc::format!("{:?} {}", Errno::ENOSYS, Errno(500)),
            "ENOSYS Errno(500)"
        );
    }

    #[test]
    fn typed_wrappers_pass_their_structs_and_decode_results() {
        let xen = FakeXen {
            map_claims: 2,
            ..Default::default()
        };
        hvm_set_param(
            &xen,
            HVM_PARAM_CALLBACK_IRQ,
            CallbackVia::Vector(0xf3).param_value(),
        )
        .unwrap();
        assert_eq!(
            hvm_get_param(&xen, HVM_PARAM_CALLBACK_IRQ),
            Ok(0x0200_0000_0000_00f3)
        );
        assert_eq!(hvm_get_param(&xen, HVM_PARAM_STORE_PFN), Err(Errno::EINVAL));
        assert_eq!(xen_version(&xen), Ok((4, 17)));
        assert_eq!(has_xen_feature(&xen, 8), Ok(true));
        assert_eq!(has_xen_feature(&xen, 2), Ok(false));
        assert_eq!(has_xen_feature(&xen, 40), Ok(false));
        assert_eq!(gnttab_query_size(&xen), Ok((1, 64)));
        assert_eq!(evtchn_send(&xen, 3), Err(Errno::ENOSYS));
        let mut buf = [E820Entry::default(); 4];
        let map = memory_map(&xen, &mut buf).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!({ map[1].addr }, 1 << 20);
    }

    #[test]
    fn memory_map_claiming_more_than_the_buffer_is_refused() {
        let xen = FakeXen {
            map_claims: 9,
            ..Default::default()
        };
        let mut buf = [E820Entry::default(); 4];
        assert_eq!(memory_map(&xen, &mut buf), Err(Errno::EBADMSG));
    }

    #[test]
    fn only_a_written_page_counts_as_installed() {
        let mut page = [POISON; 4096];
        assert!(!page_was_written(&page));
        page[0] = 0xb8; // mov $0, %eax: the start of a real stub
        assert!(page_was_written(&page));
        assert!(!page_was_written(&page[..16]));
    }
}
