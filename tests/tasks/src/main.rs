//! One binary for every test task; its task name (from the system description) picks the role:
//!
//! - `ping` / `bystander-a`: sends numbered messages over its channel and checks each reply;
//!   `rounds=N` sets how many (ping: 1,000,000 by default). Prints cycles per round trip.
//! - `pong` / `bystander-b`: answers each message with its sequence number and a checksum, until
//!   the stop message.
//! - `faulter`: in generation 0 misbehaves as `mode=` says (kernel-write, peer-write,
//!   exec-stack, bad-pointer); once restarted it reports its generation and exits normally.
//! - `probe`: uses its claimed igb: ids through checked config reads, STATUS through BAR0, DMA
//!   memory, and two MSI-X interrupts raised through EICS, each received and acknowledged.
//! - `intruder`: in generation 0 touches what it was not given (mode `same-device`: the igb's
//!   config space; `other-function`: the host bridge's; `outside-grants`: the probe's BAR window
//!   address), then, restarted, exits normally.
//!
//! The channel holds two mailboxes: ping's message at offset 0, pong's reply at offset 2048.
//! Both sides touch it only with volatile accesses: the other task writes it concurrently.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use log::info;
use userland::syscall;

userland::entry!(run);

const WORDS: usize = 6;
const STOP: u64 = u64::MAX;
const REPLY_OFFSET: usize = 2048;

fn payload(seq: u64, k: usize) -> u64 {
    // A cheap mix so every word of every message differs.
    (seq ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

fn put(base: *mut u8, offset: usize, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        // SAFETY: offset + 8 * i stays inside the channel (at least 4 KiB, checked at start).
        unsafe { core::ptr::write_volatile(base.add(offset + 8 * i).cast::<u64>(), *w) }
    }
}

fn get(base: *mut u8, offset: usize, i: usize) -> u64 {
    // SAFETY: as in `put`.
    unsafe { core::ptr::read_volatile(base.add(offset + 8 * i).cast::<u64>()) }
}

fn channel() -> (usize, *mut u8, u64) {
    let me = userland::info();
    let c = me.channels().first().expect("test task needs a channel");
    assert!(c.size >= 4096, "channel too small");
    let (base, _) = userland::channel_memory(0);
    (0, base, 1u64 << c.kick_bit)
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed in user mode.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn pinger(default_rounds: u64) {
    let me = userland::info();
    let rounds = me
        .arg("rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_rounds);
    let (ch, base, kick) = channel();
    let start = rdtsc();
    let mut msg = [0u64; WORDS + 1];
    for seq in 0..rounds {
        msg[0] = seq;
        for k in 0..WORDS {
            msg[k + 1] = payload(seq, k);
        }
        put(base, 0, &msg);
        syscall::notify(ch);
        syscall::wait(kick);
        let (rseq, rsum) = (get(base, REPLY_OFFSET, 0), get(base, REPLY_OFFSET, 1));
        let want = msg[1..].iter().fold(0u64, |a, w| a.wrapping_add(*w));
        assert!(
            rseq == seq && rsum == want,
            "reply {rseq} / {rsum:#x} to message {seq} (want {want:#x})"
        );
    }
    let cycles = rdtsc() - start;
    put(base, 0, &[STOP]);
    syscall::notify(ch);
    info!(
        "{} round trips ({} messages) over channel {:?} checked, generation {}",
        rounds,
        rounds * 2,
        me.channels()[0].name(),
        me.generation
    );
    if let Some(per) = cycles.checked_div(rounds) {
        info!("notify/wait round trip: {per} cycles (two notifies, two waits, two task switches)");
    }
}

fn ponger() {
    let me = userland::info();
    let (ch, base, kick) = channel();
    let mut answered = 0u64;
    loop {
        syscall::wait(kick);
        let seq = get(base, 0, 0);
        if seq == STOP {
            break;
        }
        let mut sum = 0u64;
        for k in 0..WORDS {
            let w = get(base, 0, k + 1);
            assert!(w == payload(seq, k), "message {seq} word {k} corrupted");
            sum = sum.wrapping_add(w);
        }
        put(base, REPLY_OFFSET, &[seq, sum]);
        answered += 1;
        syscall::notify(ch);
    }
    info!(
        "answered {} messages, generation {}",
        answered, me.generation
    );
}

fn faulter() {
    let me = userland::info();
    if me.generation > 0 {
        info!(
            "generation {} running normally after restart",
            me.generation
        );
        return;
    }
    let mode = me.arg("mode").unwrap_or("none");
    // Let the bystanders get going first, so the fault lands in the middle of their exchange.
    for _ in 0..2000 {
        syscall::yield_now();
    }
    info!("generation 0 misbehaving: {mode}");
    match mode {
        // The kernel image at 1 MiB is mapped, but supervisor-only.
        "kernel-write" => {
            // SAFETY: deliberately faults (protection violation).
            unsafe { core::ptr::write_volatile(0x10_0000 as *mut u64, 0xbad) }
        }
        // Channel 0 of the system belongs to the bystanders; it is mapped only in their spaces.
        "peer-write" => {
            let other = nc2dd_abi::layout::CHANNEL_BASE as *mut u64;
            // SAFETY: deliberately faults (not present here).
            unsafe { core::ptr::write_volatile(other, 0xbad) }
        }
        // Stacks are not executable (W^X).
        "exec-stack" => {
            let code = [0xc3u8; 16];
            let f: extern "C" fn() = {
                let p = core::hint::black_box(code.as_ptr());
                // SAFETY: deliberately jumps to the stack to provoke an instruction-fetch fault.
                unsafe { core::mem::transmute::<*const u8, extern "C" fn()>(p) }
            };
            f();
        }
        // A system call with a pointer into kernel memory.
        "bad-pointer" => {
            // SAFETY: builds a &str over kernel memory without reading it; the kernel must
            // refuse it before reading.
            let s = unsafe {
                core::str::from_utf8_unchecked(core::slice::from_raw_parts(
                    0x10_0000 as *const u8,
                    16,
                ))
            };
            syscall::debug_log(s);
        }
        // A Xen gateway call from a task without Xen rights.
        "xen-call" => {
            let _ = syscall::xen_evtchn_send(1);
        }
        other => panic!("unknown fault mode {other:?}"),
    }
    panic!("misbehaviour {mode} was not stopped by the kernel");
}

/// igb registers the probe uses (82576 datasheet; QEMU's igb model implements them).
const STATUS: usize = 0x0008;
const GPIE: usize = 0x1514;
const EICS: usize = 0x1520;
const EIMS: usize = 0x1524;
const EIAC: usize = 0x152c;
const GPIE_MSIX_MODE_PBA_EIAME_NSICR: u32 = (1 << 4) | (1 << 31) | (1 << 30) | 1;

fn reg(base: u64, off: usize) -> *mut u32 {
    (base + off as u64) as *mut u32
}

/// Generation 0 of a probe asked to crash: takes most of its DMA budget, leaves an MSI-X
/// interrupt unacknowledged, and panics. The restarted probe must get its memory back and its
/// interrupts working.
fn crash_holding_resources(dev: &nc2dd_abi::layout::DeviceInfo) -> ! {
    let (_, bus) = syscall::dma_alloc(48 * 1024).expect("48 KiB of the 64 KiB budget");
    info!("generation 0 holds 48 KiB of DMA at bus address {bus:#x}");
    let bar0 = dev.bars[0];
    // SAFETY: igb interrupt registers inside the mapped BAR0.
    unsafe {
        core::ptr::write_volatile(reg(bar0.vaddr, GPIE), GPIE_MSIX_MODE_PBA_EIAME_NSICR);
        core::ptr::write_volatile(reg(bar0.vaddr, EIAC), 1);
        core::ptr::write_volatile(reg(bar0.vaddr, EIMS), 1);
        core::ptr::write_volatile(reg(bar0.vaddr, EICS), 1);
    }
    let got = syscall::wait(1 << dev.vector_bits[0]);
    info!("generation 0 got interrupt bits {got:#x} and crashes without acknowledging them");
    panic!("deliberate crash holding DMA memory and an unacknowledged interrupt");
}

fn probe() {
    let me = userland::info();
    let dev = me.devices().first().expect("probe claims a device");
    assert!(dev.present == 1, "the igb was not bound to the probe");
    if me.arg("crash") == Some("1") {
        if me.generation == 0 {
            crash_holding_resources(dev);
        }
        let (_, bus) =
            syscall::dma_alloc(48 * 1024).expect("the restarted probe gets its DMA back");
        info!(
            "generation {} holds 48 KiB of DMA at bus address {bus:#x}",
            me.generation
        );
    }
    let vendor = syscall::dev_config_read(dev.bdf, 0, 2);
    let device = syscall::dev_config_read(dev.bdf, 2, 2);
    info!("config space: vendor {vendor:#06x} device {device:#06x}");
    assert_eq!((vendor, device), (0x8086, 0x10c9));
    let bar0 = dev.bars[0];
    assert!(bar0.vaddr != 0 && bar0.size >= 0x2_0000, "BAR0 not mapped");
    // SAFETY: BAR0 is mapped uncached at `vaddr` for `size` bytes by the kernel.
    let status = unsafe { core::ptr::read_volatile(reg(bar0.vaddr, STATUS)) };
    info!(
        "BAR0 at {:#x} ({} KiB): STATUS {status:#010x}",
        bar0.vaddr,
        bar0.size / 1024
    );
    let (dma, bus) = syscall::dma_alloc(8192).expect("DMA memory within budget");
    // SAFETY: the kernel mapped 8 KiB of zeroed DMA memory at `dma`.
    unsafe {
        assert_eq!(
            core::ptr::read_volatile(dma.cast::<u64>()),
            0,
            "DMA memory not zeroed"
        );
        core::ptr::write_volatile(dma.cast::<u64>(), 0x5a5a_0001);
        assert_eq!(core::ptr::read_volatile(dma.cast::<u64>()), 0x5a5a_0001);
    }
    info!("DMA: 8192 bytes at {:#x}, bus address {bus:#x}", dma as u64);
    assert!(
        syscall::dma_alloc(1 << 20).is_none(),
        "DMA past the budget must be refused"
    );
    let bit = dev.vector_bits[0];
    // SAFETY: igb interrupt registers inside the mapped BAR0.
    unsafe {
        core::ptr::write_volatile(reg(bar0.vaddr, GPIE), GPIE_MSIX_MODE_PBA_EIAME_NSICR);
        // Auto-clear the cause on delivery, so the next EICS write is a new cause.
        core::ptr::write_volatile(reg(bar0.vaddr, EIAC), 1);
        core::ptr::write_volatile(reg(bar0.vaddr, EIMS), 1);
    }
    for round in 1..=2 {
        // SAFETY: as above; EICS bit 0 raises MSI-X vector 0.
        unsafe { core::ptr::write_volatile(reg(bar0.vaddr, EICS), 1) };
        let got = syscall::wait(1 << bit);
        info!("MSI-X vector 0 interrupt {round} received on bit {bit} ({got:#x})");
        syscall::irq_ack(0, 0);
        // SAFETY: re-enable the cause (EIAME auto-masks it on delivery).
        unsafe { core::ptr::write_volatile(reg(bar0.vaddr, EIMS), 1) };
    }
    info!("device checks passed");
}

fn intruder() {
    let me = userland::info();
    if me.generation > 0 {
        info!(
            "generation {} running normally after restart",
            me.generation
        );
        return;
    }
    let mode = me.arg("mode").unwrap_or("none");
    info!("generation 0 misbehaving: {mode}");
    let igb = nc2dd_abi::syscall::pack_bdf(0, 0, 4, 0);
    match mode {
        "same-device" => {
            let v = syscall::dev_config_read(igb, 0, 4);
            info!("read {v:#x} from a device it does not own");
        }
        "other-function" => {
            let v = syscall::dev_config_read(nc2dd_abi::syscall::pack_bdf(0, 0, 0, 0), 0, 4);
            info!("read {v:#x} from the host bridge");
        }
        "outside-grants" => {
            let at = nc2dd_abi::layout::bar_address(0, 0) as *const u32;
            // SAFETY: deliberately faults: nothing is mapped here for this task.
            let v = unsafe { core::ptr::read_volatile(at) };
            info!("read {v:#x} from a BAR window it was not given");
        }
        other => panic!("unknown intruder mode {other:?}"),
    }
    panic!("misbehaviour {mode} was not stopped by the kernel");
}

fn run() {
    let name = userland::info().name();
    match name {
        "probe" => probe(),
        "intruder" => intruder(),
        "ping" => pinger(1_000_000),
        "bystander-a" => pinger(100_000),
        "pong" | "bystander-b" => ponger(),
        "faulter" => faulter(),
        other => panic!("no test role for task {other:?}"),
    }
}
