//! The driver domain's own address on the guest network: answers ARP requests for its IPv4
//! address and ICMP echo requests sent to it. Pure logic over frame bytes; everything else
//! (and anything malformed) is ignored and counted, never answered.

use alloc::vec::Vec;

use crate::switch::{ETH_HLEN, Mac};

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_ICMP: u8 = 1;

/// The responder's identity and what it has done.
pub struct Responder {
    /// Its MAC.
    pub mac: Mac,
    /// Its IPv4 address.
    pub ip: [u8; 4],
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Echo replies sent.
    pub echo_replies: u64,
    /// Frames that were not for it or not understood.
    pub ignored: u64,
}

/// The internet checksum of `data` (one's complement of the one's-complement sum).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Responder {
    /// A responder for `mac` / `ip`.
    pub fn new(mac: Mac, ip: [u8; 4]) -> Self {
        Responder {
            mac,
            ip,
            arp_replies: 0,
            echo_replies: 0,
            ignored: 0,
        }
    }

    /// The reply to `frame`, if it warrants one.
    pub fn handle(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let r = self.reply(frame);
        if r.is_none() {
            self.ignored += 1;
        }
        r
    }

    fn reply(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        if f.len() < ETH_HLEN {
            return None;
        }
        match u16::from_be_bytes([f[12], f[13]]) {
            ETHERTYPE_ARP => self.arp(f),
            ETHERTYPE_IPV4 => self.icmp(f),
            _ => None,
        }
    }

    fn arp(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        let a = f.get(ETH_HLEN..ETH_HLEN + 28)?;
        // Ethernet/IPv4, request, asking for our address.
        if a[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] || a[24..28] != self.ip {
            return None;
        }
        let mut r = Vec::with_capacity(60);
        r.extend_from_slice(&a[8..14]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        r.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&self.ip);
        r.extend_from_slice(&a[8..18]);
        r.resize(60, 0);
        self.arp_replies += 1;
        Some(r)
    }

    fn icmp(&mut self, f: &[u8]) -> Option<Vec<u8>> {
        let ip = &f[ETH_HLEN..];
        if ip.len() < 20 || ip[0] >> 4 != 4 || f[0..6] != self.mac {
            return None;
        }
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        // Fragments (MF or an offset) are not reassembled.
        let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
        if ihl < 20 || total < ihl + 8 || total > ip.len() || frag != 0 {
            return None;
        }
        if ip[9] != IPPROTO_ICMP || ip[16..20] != self.ip || checksum(&ip[..ihl]) != 0 {
            return None;
        }
        let icmp = &ip[ihl..total];
        if icmp[0] != 8 || icmp[1] != 0 || checksum(icmp) != 0 {
            return None;
        }
        let mut r = Vec::with_capacity(ETH_HLEN + total);
        r.extend_from_slice(&f[6..12]);
        r.extend_from_slice(&self.mac);
        r.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut h = [0u8; 20];
        h.copy_from_slice(&ip[..20]);
        h[0] = 0x45;
        let len = (20 + icmp.len()) as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[8] = 64;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.ip);
        h[16..20].copy_from_slice(&ip[12..16]);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        r.extend_from_slice(&h);
        let start = r.len();
        r.extend_from_slice(icmp);
        r[start] = 0;
        r[start + 2..start + 4].fill(0);
        let c = checksum(&r[start..]);
        r[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
        if r.len() < 60 {
            r.resize(60, 0);
        }
        self.echo_replies += 1;
        Some(r)
    }
}

/// Builds an ARP request from `mac`/`ip` for `target` (used by tests and guests).
pub fn arp_request(mac: Mac, ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut r = Vec::with_capacity(60);
    r.extend_from_slice(&[0xff; 6]);
    r.extend_from_slice(&mac);
    r.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    r.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    r.extend_from_slice(&mac);
    r.extend_from_slice(&ip);
    r.extend_from_slice(&[0; 6]);
    r.extend_from_slice(&target);
    r.resize(60, 0);
    r
}

/// Builds an ICMP echo request (id, seq, payload) from `src` to `dst`.
pub fn echo_request(
    src: (Mac, [u8; 4]),
    dst: (Mac, [u8; 4]),
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&dst.0);
    r.extend_from_slice(&src.0);
    r.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64;
    h[9] = IPPROTO_ICMP;
    h[12..16].copy_from_slice(&src.1);
    h[16..20].copy_from_slice(&dst.1);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    r.extend_from_slice(&h);
    let start = r.len();
    r.extend_from_slice(&[8, 0, 0, 0]);
    r.extend_from_slice(&id.to_be_bytes());
    r.extend_from_slice(&seq.to_be_bytes());
    r.extend_from_slice(payload);
    let c = checksum(&r[start..]);
    r[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Mac = [0, 0x16, 0x3e, 0xff, 0, 0];
    const GUEST: Mac = [0, 0x16, 0x3e, 0, 0, 1];

    #[test]
    fn answers_arp_for_its_address_only() {
        let mut r = Responder::new(ME, [10, 0, 0, 1]);
        let rep = r
            .handle(&arp_request(GUEST, [10, 0, 0, 2], [10, 0, 0, 1]))
            .unwrap();
        assert_eq!(&rep[0..6], &GUEST);
        assert_eq!(&rep[20..22], &[0, 2]);
        assert_eq!(&rep[22..28], &ME);
        assert_eq!(&rep[28..32], &[10, 0, 0, 1]);
        assert_eq!(&rep[38..42], &[10, 0, 0, 2]);
        assert!(
            r.handle(&arp_request(GUEST, [10, 0, 0, 2], [10, 0, 0, 7]))
                .is_none()
        );
        assert_eq!((r.arp_replies, r.ignored), (1, 1));
    }

    #[test]
    fn answers_echo_with_valid_checksums() {
        let mut r = Responder::new(ME, [10, 0, 0, 1]);
        let req = echo_request(
            (GUEST, [10, 0, 0, 2]),
            (ME, [10, 0, 0, 1]),
            7,
            3,
            b"abcdefgh",
        );
        let rep = r.handle(&req).unwrap();
        assert_eq!(&rep[0..6], &GUEST);
        assert_eq!(checksum(&rep[14..34]), 0);
        assert_eq!(rep[34], 0, "echo reply");
        assert_eq!(checksum(&rep[34..34 + 16]), 0);
        assert_eq!(&rep[38..42], &[0, 7, 0, 3]);
        assert_eq!(&rep[42..50], b"abcdefgh");
        let mut bad = req.clone();
        bad[40] ^= 1;
        assert!(r.handle(&bad).is_none(), "bad ICMP checksum");
        assert!(r.handle(&req[..30]).is_none(), "truncated");
        assert_eq!(r.echo_replies, 1);
    }
}
