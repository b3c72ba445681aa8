//! The model's own behaviour, driven through raw register accesses: the properties the driver
//! tests rely on, checked without the driver.

use ixgbe_model::{Chip, Model};

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

fn x() -> Model {
    Model::new(Chip::X82599, MAC)
}

#[test]
fn reset_values_and_self_clearing_reset() {
    let m = x();
    assert_eq!(
        m.read32(0x0A200),
        u32::from_le_bytes([0x02, 0x11, 0x22, 0x33])
    );
    assert_eq!(
        m.read32(0x0A204),
        0x5544 | 1 << 31,
        "RAH(0): MAC high and AV"
    );
    assert_eq!(m.read32(0x01014), 0x402, "SRRCTL(0) reset value");
    m.write32(0x0A208, 0xDEAD);
    m.write32(0, (1 << 26) | (1 << 3));
    assert_eq!(m.resets(), 1);
    // Still set on the first polls, clear afterwards.
    assert_ne!(m.read32(0) & (1 << 26), 0);
    assert_ne!(m.read32(0) & (1 << 26), 0);
    assert_eq!(m.read32(0) & ((1 << 26) | (1 << 3)), 0);
    assert_eq!(m.read32(0x0A208), 0, "registers back to reset values");
    // EEPROM auto-read and DMA init take a few polls.
    let polls = (0..10)
        .take_while(|_| m.read32(0x10010) & (1 << 9) == 0)
        .count();
    assert_eq!(polls, 3);
    let polls = (0..10)
        .take_while(|_| m.read32(0x02F00) & (1 << 3) == 0)
        .count();
    assert_eq!(polls, 3);
}

#[test]
fn aliases_reach_the_canonical_registers() {
    let m = x();
    m.write32(0x05408, 0x1234_5678); // RAL(1), 82598 location
    assert_eq!(m.read32(0x0A208), 0x1234_5678);
    m.write32(0x05818, 0x8); // MRQC alias
    assert_eq!(m.read32(0x0EC80), 0x8);
    m.write32(0x02104, 0x1000_0402); // SRRCTL(1) alias
    assert_eq!(m.read32(0x01054), 0x1000_0402);
}

#[test]
fn statistics_clear_on_read_and_36_bit_octets_latch() {
    let m = x();
    m.write32(0x03000, 1); // RXCTRL.RXEN
    m.write32(0x042A0, 1 << 12); // AN restart
    m.advance_us(20_000);
    // Not VMDq: accept by RAR 0.
    for _ in 0..3 {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x88, 0xB5]);
        f.resize(100, 0);
        m.inject(&f);
    }
    assert_eq!(m.read32(0x04074), 3, "GPRC");
    assert_eq!(m.read32(0x04074), 0, "cleared by the read");
    assert_eq!(m.read32(0x04088), 300, "GORCL");
    assert_eq!(m.read32(0x0408C), 0, "GORCH latched with the low read");
    assert_eq!(m.read32(0x04088), 0);
}

#[test]
fn queue_enable_takes_effect_one_poll_later_and_needs_a_valid_ring() {
    let m = x();
    let rxdctl = 0x01028;
    m.write32(rxdctl, 1 << 25);
    // Ring length 0: never enables, and the model says why.
    assert_eq!(m.read32(rxdctl) & (1 << 25), 0);
    assert_eq!(m.read32(rxdctl) & (1 << 25), 0);
    assert_eq!(m.violations().len(), 1);
    m.write32(0x01008, 512 * 16);
    m.write32(rxdctl, 1 << 25);
    assert_eq!(m.read32(rxdctl) & (1 << 25), 0, "first poll: not yet");
    assert_ne!(m.read32(rxdctl) & (1 << 25), 0, "second poll: enabled");
    // TX needs DMATXCTL.TE first.
    let txdctl = 0x06028;
    m.write32(0x06008, 512 * 16);
    m.write32(txdctl, 1 << 25);
    m.advance_us(100);
    assert_eq!(m.read32(txdctl) & (1 << 25), 0);
    assert!(m.violations()[1].contains("DMATXCTL.TE"));
}

#[test]
fn mtqc_only_changes_with_the_arbiter_off() {
    let m = x();
    m.write32(0x08120, 0x6);
    assert_eq!(m.read32(0x08120), 0);
    m.write32(0x04900, 1 << 6);
    m.write32(0x08120, 0x6);
    assert_eq!(m.read32(0x08120), 0x6);
    assert_eq!(m.violations().len(), 1);
}

#[test]
fn descriptors_are_fetched_by_bus_address() {
    let m = x();
    let (_, ring) = m.dma_alloc(4096);
    let (_, buf) = m.dma_alloc(4096);
    m.write32(0x04A80, 1); // DMATXCTL.TE
    m.write32(0x06000, ring as u32);
    m.write32(0x06004, (ring >> 32) as u32);
    m.write32(0x06008, 8 * 16);
    m.write32(0x06028, 1 << 25);
    m.advance_us(10);
    let mut frame = vec![0xFFu8; 6];
    frame.extend_from_slice(&MAC);
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.resize(60, 0xAB);
    assert!(m.write_bus(buf, &frame));
    let cmd: u32 = (1 << 24) | (1 << 27) | (1 << 29) | (0x3 << 20) | 60;
    let mut desc = buf.to_le_bytes().to_vec();
    desc.extend_from_slice(&cmd.to_le_bytes());
    desc.extend_from_slice(&(60u32 << 14).to_le_bytes());
    // Descriptor 1 points at an unmapped address.
    let mut bad = 0xDEAD_0000u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&cmd.to_le_bytes());
    bad.extend_from_slice(&0u32.to_le_bytes());
    desc.extend_from_slice(&bad);
    assert!(m.write_bus(ring, &desc));
    m.write32(0x06018, 2);
    assert_eq!(m.take_transmitted(), vec![frame]);
    assert_eq!(m.read32(0x06010), 2, "TDH advanced past both");
    let status = m.read_bus(ring + 12, 4).unwrap();
    assert_eq!(status[0] & 1, 1, "DD written back");
    assert!(m.violations().iter().any(|v| v.contains("unmapped")));
}

#[test]
fn the_82576_resets_with_queue_0_and_all_pools_enabled() {
    let m = Model::new(Chip::I82576, MAC);
    assert_ne!(m.read32(0x0C028) & (1 << 25), 0);
    assert_eq!(m.read32(0x00C8C), 0xFF);
    // Legacy alias of RDLEN(1).
    m.write32(0x02908, 4096);
    assert_eq!(m.read32(0x0C048), 4096);
    // PHY auto-negotiation: link 500 ms later.
    m.write32(0x00020, (1 << 21) | (1 << 26) | (1 << 12) | (1 << 9));
    assert_eq!(m.read32(0x00008) & 2, 0);
    m.advance_us(500_000);
    assert_ne!(m.read32(0x00008) & 2, 0);
}
