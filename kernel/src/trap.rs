//! Where every trap lands: exceptions, interrupts and system calls, then the task switch.
//!
//! Owns: the dispatch from a [`TrapFrame`] to the kernel's handlers and the switch decision made
//! on the way out. A trap from user mode may leave in another task (the frame is rewritten);
//! a trap that interrupted the kernel's idle wait only records its event and returns, because
//! the idle loop itself picks the next task.

use log::warn;

use crate::arch::x86_64::idt::{self, TrapFrame};
use crate::arch::x86_64::lapic;
use crate::arch::x86_64::syscall::SYSCALL_VECTOR;
use crate::devices::DEVICES;
use crate::tasks::KERNEL;
use kernel::dev::msix::{FIRST_VECTOR, LAST_VECTOR};

#[unsafe(no_mangle)]
extern "C" fn trap_entry(frame: &mut TrapFrame) {
    let from_user = frame.cs & 3 == 3;
    match frame.vector {
        v if v < 32 && !from_user => idt::fatal(frame),
        v if v < 32 => with_kernel(|k| k.fault_current(frame)),
        v if v == u64::from(SYSCALL_VECTOR) && from_user => with_kernel(|k| k.syscall(frame)),
        v if v == u64::from(lapic::TIMER_VECTOR) => {
            lapic::eoi();
            with_kernel(|k| k.tick());
        }
        v if v == u64::from(lapic::SPURIOUS_VECTOR) => {}
        v if v == u64::from(crate::gateway::UPCALL_VECTOR) => {
            crate::gateway::upcall();
            lapic::eoi();
        }
        v if (u64::from(FIRST_VECTOR)..=u64::from(LAST_VECTOR)).contains(&v) => {
            // The source is masked before the bit is posted; the task's ack unmasks it.
            let target = DEVICES.lock().as_mut().and_then(|d| d.interrupt(v as u8));
            lapic::eoi();
            if let Some((task, bit)) = target {
                with_kernel(|k| k.post(task, 1 << bit));
            }
        }
        v => {
            warn!("unexpected interrupt vector {v}");
            lapic::eoi();
        }
    }
    if from_user {
        schedule(frame);
    }
}

fn with_kernel<R>(f: impl FnOnce(&mut crate::tasks::Kernel) -> R) -> R {
    let mut guard = KERNEL.lock();
    let k = guard
        .as_mut()
        .expect("traps from user mode only happen once tasks exist");
    f(k)
}

/// Leaves `frame` holding the task to run next; idles (interrupts on) while nothing is runnable.
pub fn schedule(frame: &mut TrapFrame) {
    loop {
        if with_kernel(|k| k.switch(frame)) {
            return;
        }
        // Nothing runnable: wait for an interrupt. It arrives in kernel mode, so `trap_entry`
        // only records it; then look again.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
}
