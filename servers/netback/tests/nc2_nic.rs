//! netchannel2 guests on the 82599 path: netback's NIC port against nic-ixgbe's queue-pair
//! service over the register model, with the simulated hypervisor's guest pages in the model's
//! DMA memory (as an IOMMU makes a mapped grant reachable under Xen). Frames from the wire for
//! each guest land in that guest's own posted pages through its own pool with no copy; frames
//! each guest sends leave through its own pool, in order; teardown gives every page back.

mod common;

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use common::nc2::{Nc2Guest, Nc2Opts};
use common::*;
use ixgbe_model::Model;
use libnc2::nc2::PacketKind;
use libnc2::shm::SharedMem;
use netback::Netback;
use netback::nicport::{DmaRegion, NicPort, PortConfig};
use netback::sim::SimHypervisor;
use nic_ixgbe::service::{Service, Window};
use nic_ixgbe::{Chip, Config, Delay, Dma, DmaError, Nic, RegisterAccess};
use qpair::{Layout, NetbackEnd, NicEnd};

struct Regs(Model);
struct ModelDma(Model);
struct Clock(Model);

impl RegisterAccess for Regs {
    fn read32(&self, off: u32) -> u32 {
        self.0.read32(off)
    }
    fn write32(&self, off: u32, v: u32) {
        self.0.write32(off, v)
    }
}

impl Dma for ModelDma {
    fn alloc(&mut self, len: usize) -> Result<nic_ixgbe::DmaRegion, DmaError> {
        let (ptr, bus) = self.0.dma_alloc(len);
        // SAFETY: the model hands out page-aligned, zeroed memory of at least `len` bytes that
        // lives as long as any clone of the model, and the driver holds one.
        Ok(unsafe { nic_ixgbe::DmaRegion::new(ptr, bus, len) })
    }
}

impl Delay for Clock {
    fn delay_us(&mut self, us: u32) {
        self.0.advance_us(u64::from(us))
    }
}

type ModelNic = Nic<Regs, ModelDma, Clock>;

const NIC_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const WIRE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];
const LAYOUT: Layout = Layout {
    ctrl: 16,
    rx: 256,
    tx: 256,
};
const PORT_CFG: PortConfig = PortConfig {
    buf_size: 2048,
    rx_per_pool: 16,
    tx_per_pool: 16,
    max_pools: 4,
};

/// Model memory as a shared window (kept alive for the whole process).
fn window(m: &Model, len: usize) -> (SharedMem<'static>, u64) {
    let (ptr, bus): (NonNull<u8>, u64) = m.dma_alloc(len);
    // SAFETY: the model's DMA memory is page aligned, zeroed, `len` bytes long (rounded up to
    // pages) and lives as long as a clone of the model, which the caller leaks; the model and
    // this test run on one thread, so nothing writes it concurrently with a non-atomic access.
    let mem = unsafe { SharedMem::from_raw(ptr, len.div_ceil(4096) * 4096) };
    (mem, bus)
}

struct Bed {
    model: Model,
    nic: ModelNic,
    svc: Service,
}

fn bed() -> (Netback<SimHypervisor>, Bed) {
    let model = Model::new(ixgbe_model::Chip::X82599, NIC_MAC);
    // Guest pages, netback's DMA region and the NIC's rings all live in model memory.
    std::mem::forget(model.clone());
    let mut nic = Nic::new(
        Regs(model.clone()),
        ModelDma(model.clone()),
        Clock(model.clone()),
        Config::new(Chip::X82599),
    )
    .expect("init against the model");
    nic.wait_link(2000).expect("link up");
    let mut nb = netback();
    let src = model.clone();
    nb.hv_mut()
        .set_page_source(Box::new(move || window(&src, 4096)));
    // netback's buffers, wherever the bus puts them (the model hands out addresses upwards).
    let svc = Service::new(&[Window {
        start: 0x1_0000_0000,
        end: 0x100_0000_0000,
    }]);
    (nb, Bed { model, nic, svc })
}

/// Runs netback, the guests, the NIC port and the NIC service until nothing moves.
fn run(
    nb: &mut Netback<SimHypervisor>,
    port: &mut NicPort<'_>,
    nic_end: &mut NicEnd<'_>,
    b: &mut Bed,
    guests: &mut [&mut Nc2Guest],
) {
    for _ in 0..40 {
        let mut moved = nb.poll();
        for g in guests.iter_mut() {
            g.poll(nb.hv_mut());
        }
        port.exchange(nb).unwrap();
        moved += b.svc.poll(&mut b.nic, nic_end).unwrap().work;
        port.exchange(nb).unwrap();
        moved += nb.poll();
        for g in guests.iter_mut() {
            g.poll(nb.hv_mut());
        }
        if moved == 0 {
            return;
        }
    }
}

#[test]
fn nc2_guests_receive_from_the_wire_into_their_own_pages_and_send_in_order() {
    let (mut nb, mut b) = bed();
    let (dma_mem, dma_bus) = window(&b.model, PORT_CFG.dma_bytes());
    let chan: Vec<AtomicU64> = (0..LAYOUT.words()).map(|_| AtomicU64::new(0)).collect();
    let mut nic_end = NicEnd::new(&chan, LAYOUT).unwrap();
    let mut port = NicPort::new(
        NetbackEnd::new(&chan, LAYOUT).unwrap(),
        DmaRegion {
            mem: dma_mem,
            bus: dma_bus,
        },
        PORT_CFG,
    )
    .unwrap();
    nb.attach_nic();
    toolstack_add(nb.hv_mut(), 5, 0);
    toolstack_add(nb.hv_mut(), 6, 0);
    nb.poll();
    let o = Nc2Opts {
        buffers: 24,
        ..Nc2Opts::default()
    };
    let mut ga = Nc2Guest::connect(nb.hv_mut(), 5, 0, o);
    let mut gb = Nc2Guest::connect(nb.hv_mut(), 6, 0, o);
    run(
        &mut nb,
        &mut port,
        &mut nic_end,
        &mut b,
        &mut [&mut ga, &mut gb],
    );
    assert!(nb.is_connected((5, 0)) && nb.is_connected((6, 0)));
    let (pa, pb) = (
        port.pool_of(&mac_of(5)).expect("A's pool"),
        port.pool_of(&mac_of(6)).expect("B's pool"),
    );
    assert_ne!(pa, pb);
    // Each guest's buffers (all but the copy reserve) are at the NIC.
    let maps_before = nb.hv().counters.map_ops;

    // Wire -> guests: frames of every size, interleaved.
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for i in 0..30u8 {
        let len = [60, 300, 1000, 1514][usize::from(i) % 4];
        let (dst, list) = if i % 3 == 0 {
            (mac_of(6), &mut sent_b)
        } else {
            (mac_of(5), &mut sent_a)
        };
        let f = frame(dst, WIRE, len, i);
        b.model.inject(&f);
        list.push(f);
        if i % 8 == 7 {
            run(
                &mut nb,
                &mut port,
                &mut nic_end,
                &mut b,
                &mut [&mut ga, &mut gb],
            );
        }
    }
    run(
        &mut nb,
        &mut port,
        &mut nic_end,
        &mut b,
        &mut [&mut ga, &mut gb],
    );
    for (g, sent, dom) in [(&ga, &sent_a, 5), (&gb, &sent_b, 6)] {
        let got: Vec<&Vec<u8>> = g.received.iter().map(|r| &r.data).collect();
        let want: Vec<&Vec<u8>> = sent.iter().collect();
        assert_eq!(got, want, "guest {dom}");
        for r in &g.received {
            // One buffer of the guest's own, read back from the guest's own page.
            assert_eq!(r.kind, PacketKind::PrePosted);
            assert_eq!(r.bufs.len(), 1);
        }
        let c = nb.counters((dom, 0)).unwrap();
        assert_eq!(c.rx_zero_copy, sent.len() as u64, "guest {dom}");
        assert_eq!((c.rx_copies, c.copy_bytes), (0, 0), "no copy at all");
        assert_eq!(c.rx_packets, sent.len() as u64);
    }
    assert_eq!(b.model.pool_counters(u32::from(pa)).rx_frames, 20);
    assert_eq!(b.model.pool_counters(u32::from(pb)).rx_frames, 10);
    assert_eq!(port.stats.rx_frames, 30);
    assert_eq!(nb.hv().counters.copy_ops, 0, "no grant copy either");
    assert_eq!(
        nb.hv().counters.map_ops,
        maps_before,
        "re-posted buffers reuse their mappings"
    );
    assert!(nb.counters((5, 0)).unwrap().grant_reuse >= 20);

    // Guests -> wire, each through its own pool, in order.
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    for i in 0..12u8 {
        let len = [64, 700, 1514][usize::from(i) % 3];
        let fa = frame(WIRE, mac_of(5), len, 100 + i);
        let fb = frame(WIRE, mac_of(6), len, 150 + i);
        ga.send(nb.hv_mut(), &fa);
        gb.send(nb.hv_mut(), &fb);
        from_a.push(fa);
        from_b.push(fb);
    }
    run(
        &mut nb,
        &mut port,
        &mut nic_end,
        &mut b,
        &mut [&mut ga, &mut gb],
    );
    let wire = b.model.take_transmitted();
    let on_wire = |src: [u8; 6]| -> Vec<Vec<u8>> {
        wire.iter().filter(|f| f[6..12] == src).cloned().collect()
    };
    assert_eq!(on_wire(mac_of(5)), from_a);
    assert_eq!(on_wire(mac_of(6)), from_b);
    assert_eq!(wire.len(), 24);
    assert_eq!(b.model.pool_counters(u32::from(pa)).tx_frames, 12);
    assert_eq!(b.model.pool_counters(u32::from(pb)).tx_frames, 12);
    assert_eq!(ga.finished + gb.finished, 16, "copy packets finished");
    assert_eq!(b.model.violations(), Vec::<String>::new());

    // A goes away while its buffers are at the NIC: they stay mapped until the NIC gives
    // them back (its pool is released), then every mapping of A is gone.
    let fe = fe_path(5, 0);
    nb.hv_mut().store_write(&format!("{fe}/state"), b"6");
    nb.poll();
    assert!(!nb.is_connected((5, 0)));
    assert!(nb.nic_held_mappings() > 0);
    run(&mut nb, &mut port, &mut nic_end, &mut b, &mut [&mut gb]);
    assert_eq!(port.pool_of(&mac_of(5)), None);
    assert_eq!(nb.nic_held_mappings(), 0);
    // B's traffic goes on.
    let f = frame(mac_of(6), WIRE, 1514, 200);
    b.model.inject(&f);
    run(&mut nb, &mut port, &mut nic_end, &mut b, &mut [&mut gb]);
    assert_eq!(gb.received.last().unwrap().data, f);
    let fe = fe_path(6, 0);
    nb.hv_mut().store_write(&format!("{fe}/state"), b"6");
    run(&mut nb, &mut port, &mut nic_end, &mut b, &mut []);
    assert_eq!(nb.nic_held_mappings(), 0);
    assert_eq!(nb.hv().live_mappings(), 0, "every mapping returned");
    assert_eq!(nb.staging_outstanding(), 0);
}
