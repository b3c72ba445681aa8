//! Per-packet cost of netback's netif path over the simulated hypervisor, at batch 1, 8 and
//! 32: cycles (TSC) and grant operations/hypercalls per packet for guest TX (guest ring ->
//! grant copy -> switch -> NIC port) and guest RX (NIC port -> switch -> grant copy -> guest
//! ring). The baseline, measured in the same run, is libnc2's bare backend rings doing the
//! same work with a plain memcpy instead of grant copies (no hypervisor, no switch).
//! Cycles include the simulator's own bookkeeping, which a real grant copy replaces with a
//! hypercall of its own (over a thousand cycles): read the grant counts for that.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use libnc2::GrantBound;
use libnc2::netif::{RxBackend, RxFrontend, TxBackend, TxFrag, TxFrontend};
use libnc2::shm::OwnedRegion;
use netback::sim::SimCounters;
use netback::switch::Frame;

const WIRE: [u8; 6] = [2, 0, 0, 0, 0, 0x77];
const PKT: usize = 64;
const PACKETS: usize = 64 * 1024;

fn tsc() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC reads the time-stamp counter; it has no memory effects.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

struct Cost {
    cycles: f64,
    grant_ops: f64,
    grant_calls: f64,
    notifies: f64,
}

fn per_packet(cycles: u64, d: SimCounters, c0: SimCounters, n: usize) -> Cost {
    let n = n as f64;
    Cost {
        cycles: cycles as f64 / n,
        grant_ops: (d.grant_ops() - c0.grant_ops()) as f64 / n,
        grant_calls: (d.grant_calls() - c0.grant_calls()) as f64 / n,
        notifies: (d.notifies - c0.notifies) as f64 / n,
    }
}

fn netback_tx(batch: usize) -> Cost {
    let (mut nb, mut a) = setup();
    let f = frame(WIRE, mac_of(5), PKT, 1);
    let c0 = nb.hv().counters;
    let mut cycles = 0;
    let mut sent = 0;
    while sent < PACKETS {
        for _ in 0..batch {
            assert!(a.queue_frame(0, &f, 0, &[]));
        }
        a.push(nb.hv_mut(), 0);
        let t = tsc();
        let moved = nb.poll();
        cycles += tsc() - t;
        assert_eq!(moved, batch);
        assert_eq!(nb.take_nic_frames().len(), batch);
        a.poll(nb.hv_mut());
        sent += batch;
    }
    per_packet(cycles, nb.hv().counters, c0, sent)
}

fn netback_rx(batch: usize) -> Cost {
    let (mut nb, mut a) = setup();
    let f = frame(mac_of(5), WIRE, PKT, 2);
    let c0 = nb.hv().counters;
    let mut cycles = 0;
    let mut sent = 0;
    while sent < PACKETS {
        for _ in 0..batch {
            nb.nic_receive(Frame::plain(f.clone()));
        }
        let t = tsc();
        let moved = nb.poll();
        cycles += tsc() - t;
        assert_eq!(moved, batch);
        a.poll(nb.hv_mut());
        assert_eq!(a.received.len(), batch);
        a.received.clear();
        sent += batch;
    }
    per_packet(cycles, nb.hv().counters, c0, sent)
}

fn setup() -> (netback::Netback<netback::sim::SimHypervisor>, Guest) {
    let mut nb = netback();
    nb.attach_nic();
    toolstack_add(nb.hv_mut(), 5, 0);
    nb.poll();
    let mut a = Guest::connect(nb.hv_mut(), 5, 0, GuestOpts::default());
    nb.poll();
    assert!(nb.is_connected((5, 0)));
    // The switch learns the wire peer, so guest frames go to the NIC port only.
    nb.nic_receive(Frame::plain(frame(mac_of(5), WIRE, PKT, 0)));
    nb.poll();
    a.poll(nb.hv_mut());
    assert_eq!(a.received.len(), 1);
    a.received.clear();
    (nb, a)
}

/// Bare rings: the backend takes/answers the same packets and memcpys the bytes.
fn baseline_tx(batch: usize) -> f64 {
    let region = OwnedRegion::new(4096);
    let mut fe = TxFrontend::new(region.mem()).unwrap();
    let mut be = TxBackend::attach(region.mem(), GrantBound(u32::MAX), 20).unwrap();
    let src = [7u8; PKT];
    let mut cycles = 0;
    let mut sent = 0;
    let mut sink = 0usize;
    while sent < PACKETS {
        for i in 0..batch {
            let frag = TxFrag {
                id: i as u16,
                gref: 1,
                offset: 0,
                size: PKT as u16,
            };
            fe.send_packet(&[frag], 0, &[]).unwrap();
        }
        fe.flush();
        let t = tsc();
        let mut n = 0;
        while let Some(p) = be.poll_packet().unwrap() {
            let v = src[..p.total as usize].to_vec();
            sink += v.len();
            be.respond(&p, 0).unwrap();
            n += 1;
        }
        be.flush();
        be.final_check().unwrap();
        cycles += tsc() - t;
        assert_eq!(n, batch);
        while fe.poll_response().unwrap().is_some() {}
        sent += batch;
    }
    assert_eq!(sink, PACKETS * PKT);
    cycles as f64 / sent as f64
}

fn baseline_rx(batch: usize) -> f64 {
    let region = OwnedRegion::new(4096);
    let mut fe = RxFrontend::new(region.mem(), 32).unwrap();
    let mut be = RxBackend::attach(region.mem(), GrantBound(u32::MAX)).unwrap();
    let buf = OwnedRegion::new(4096);
    let src = [7u8; PKT];
    for id in 0..256u16 {
        fe.post_buffer(id, 1).unwrap();
    }
    fe.flush();
    let mut cycles = 0;
    let mut sent = 0;
    while sent < PACKETS {
        let t = tsc();
        for _ in 0..batch {
            be.take_buffer().unwrap().unwrap();
            buf.mem().write_from(0, &src);
            be.push_packet(&[(0, PKT as u16)], 0, &[]).unwrap();
        }
        be.flush();
        cycles += tsc() - t;
        let mut got = 0;
        while let Some(p) = fe.poll_packet().unwrap() {
            let f = p.frags()[0];
            fe.post_buffer(f.id, f.gref).unwrap();
            got += 1;
        }
        fe.flush();
        assert_eq!(got, batch);
        sent += batch;
    }
    cycles as f64 / sent as f64
}

fn main() {
    println!("netback netif path, {PKT}-byte frames, {PACKETS} per case (simulated hypervisor)");
    println!(
        "{:<4} {:>5} {:>12} {:>12} {:>8} {:>10} {:>11} {:>10}",
        "path",
        "batch",
        "cycles/pkt",
        "base cyc/pkt",
        "ratio",
        "grant-ops",
        "grant-calls",
        "notifies"
    );
    for (name, run, base) in [
        (
            "tx",
            netback_tx as fn(usize) -> Cost,
            baseline_tx as fn(usize) -> f64,
        ),
        ("rx", netback_rx, baseline_rx),
    ] {
        for batch in [1, 8, 32] {
            let b = base(batch);
            let c = run(batch);
            println!(
                "{:<4} {:>5} {:>12.0} {:>12.0} {:>7.1}x {:>10.3} {:>11.3} {:>10.3}",
                name,
                batch,
                c.cycles,
                b,
                c.cycles / b,
                c.grant_ops,
                c.grant_calls,
                c.notifies
            );
        }
    }
}
