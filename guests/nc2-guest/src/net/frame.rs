//! Wire formats: Ethernet II, ARP (IPv4 over Ethernet), IPv4 (no options sent, options skipped
//! on receipt, fragments dropped), ICMP echo, UDP and TCP (the MSS option only).
//!
//! Builders compute every checksum in software (the guest never asks for checksum offload on
//! transmit). Parsers return `None` for anything short, inconsistent or not for this stack.

use alloc::vec::Vec;

pub type Mac = [u8; 6];
pub type Ip = [u8; 4];

pub const BROADCAST: Mac = [0xff; 6];
pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_HEADER: usize = 14;
/// Shortest Ethernet frame without its FCS; shorter frames are padded with zeros.
pub const ETH_MIN: usize = 60;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const IPV4_HEADER: usize = 20;
pub const UDP_HEADER: usize = 8;
pub const TCP_HEADER: usize = 20;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        let mut p = *p;
        if let Some(hi) = odd.take()
            && let Some((&lo, rest)) = p.split_first()
        {
            sum += u64::from(u16::from_be_bytes([hi, lo]));
            p = rest;
        }
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            odd = Some(*last);
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ip, dst: Ip, proto: u8, len: usize) -> [u8; 12] {
    let l = (len as u16).to_be_bytes();
    [
        src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], 0, proto, l[0], l[1],
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eth<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

pub fn parse_eth(f: &[u8]) -> Option<Eth<'_>> {
    if f.len() < ETH_HEADER {
        return None;
    }
    let mut dst = [0; 6];
    let mut src = [0; 6];
    dst.copy_from_slice(&f[0..6]);
    src.copy_from_slice(&f[6..12]);
    Some(Eth {
        dst,
        src,
        ethertype: be16(f, 12),
        payload: &f[ETH_HEADER..],
    })
}

/// An Ethernet frame, padded to [`ETH_MIN`].
pub fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity((ETH_HEADER + payload.len()).max(ETH_MIN));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < ETH_MIN {
        f.resize(ETH_MIN, 0);
    }
    f
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: Mac,
    pub spa: Ip,
    pub tha: Mac,
    pub tpa: Ip,
}

pub fn parse_arp(p: &[u8]) -> Option<Arp> {
    // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses only.
    if p.len() < 28 || be16(p, 0) != 1 || be16(p, 2) != ETH_IPV4 || p[4] != 6 || p[5] != 4 {
        return None;
    }
    let mut a = Arp {
        op: be16(p, 6),
        sha: [0; 6],
        spa: [0; 4],
        tha: [0; 6],
        tpa: [0; 4],
    };
    a.sha.copy_from_slice(&p[8..14]);
    a.spa.copy_from_slice(&p[14..18]);
    a.tha.copy_from_slice(&p[18..24]);
    a.tpa.copy_from_slice(&p[24..28]);
    Some(a)
}

pub fn arp_body(a: &Arp) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b[2..4].copy_from_slice(&ETH_IPV4.to_be_bytes());
    b[4] = 6;
    b[5] = 4;
    b[6..8].copy_from_slice(&a.op.to_be_bytes());
    b[8..14].copy_from_slice(&a.sha);
    b[14..18].copy_from_slice(&a.spa);
    b[18..24].copy_from_slice(&a.tha);
    b[24..28].copy_from_slice(&a.tpa);
    b
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4<'a> {
    pub src: Ip,
    pub dst: Ip,
    pub proto: u8,
    pub payload: &'a [u8],
}

/// An unfragmented IPv4 datagram with a correct header checksum; the payload is cut to the
/// total length (Ethernet padding dropped).
pub fn parse_ipv4(p: &[u8]) -> Option<Ipv4<'_>> {
    if p.len() < IPV4_HEADER || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < IPV4_HEADER || total < ihl || total > p.len() {
        return None;
    }
    // More-fragments set or a non-zero offset: this stack does not reassemble.
    if be16(p, 6) & 0x3fff != 0 {
        return None;
    }
    if checksum(&[&p[..ihl]]) != 0 {
        return None;
    }
    let mut src = [0; 4];
    let mut dst = [0; 4];
    src.copy_from_slice(&p[12..16]);
    dst.copy_from_slice(&p[16..20]);
    Some(Ipv4 {
        src,
        dst,
        proto: p[9],
        payload: &p[ihl..total],
    })
}

/// An IPv4 header (don't-fragment, TTL 64) followed by `payload`.
pub fn ipv4(src: Ip, dst: Ip, proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (IPV4_HEADER + payload.len()) as u16;
    let mut h = [0u8; IPV4_HEADER];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = 0x40;
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut v = Vec::with_capacity(usize::from(total));
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    v
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo<'a> {
    pub kind: u8,
    pub ident: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

/// An ICMP echo request or reply with a correct checksum.
pub fn parse_echo(p: &[u8]) -> Option<Echo<'_>> {
    if p.len() < 8 || p[1] != 0 || checksum(&[p]) != 0 {
        return None;
    }
    if p[0] != ICMP_ECHO_REQUEST && p[0] != ICMP_ECHO_REPLY {
        return None;
    }
    Some(Echo {
        kind: p[0],
        ident: be16(p, 4),
        seq: be16(p, 6),
        data: &p[8..],
    })
}

pub fn echo(kind: u8, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[kind, 0, 0, 0]);
    v.extend_from_slice(&ident.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(data);
    let c = checksum(&[&v]);
    v[2..4].copy_from_slice(&c.to_be_bytes());
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// A UDP datagram whose length fits; the checksum is checked unless it is 0 (none sent) or
/// `trust_csum` says the backend validated or left it blank (checksum offload).
pub fn parse_udp(src: Ip, dst: Ip, p: &[u8], trust_csum: bool) -> Option<Udp<'_>> {
    if p.len() < UDP_HEADER {
        return None;
    }
    let len = usize::from(be16(p, 4));
    if len < UDP_HEADER || len > p.len() {
        return None;
    }
    let p = &p[..len];
    if !trust_csum
        && be16(p, 6) != 0
        && checksum(&[&pseudo_header(src, dst, PROTO_UDP, len), p]) != 0
    {
        return None;
    }
    Some(Udp {
        sport: be16(p, 0),
        dport: be16(p, 2),
        payload: &p[UDP_HEADER..],
    })
}

pub fn udp(src: Ip, dst: Ip, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = UDP_HEADER + payload.len();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    let mut c = checksum(&[&pseudo_header(src, dst, PROTO_UDP, len), &v]);
    if c == 0 {
        c = 0xffff;
    }
    v[6..8].copy_from_slice(&c.to_be_bytes());
    v
}

/// A received TCP segment's header fields (the payload is not kept: the sender only needs its
/// length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSeg {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// The MSS option, if the segment carried one.
    pub mss: Option<u16>,
    pub payload_len: u32,
}

pub fn parse_tcp(src: Ip, dst: Ip, p: &[u8], trust_csum: bool) -> Option<TcpSeg> {
    if p.len() < TCP_HEADER {
        return None;
    }
    let off = usize::from(p[12] >> 4) * 4;
    if off < TCP_HEADER || off > p.len() {
        return None;
    }
    if !trust_csum && checksum(&[&pseudo_header(src, dst, PROTO_TCP, p.len()), p]) != 0 {
        return None;
    }
    let mut mss = None;
    let mut opts = &p[TCP_HEADER..off];
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    mss = Some(be16(opts, 2));
                }
                opts = &opts[len..];
            }
        }
    }
    Some(TcpSeg {
        sport: be16(p, 0),
        dport: be16(p, 2),
        seq: be32(p, 4),
        ack: be32(p, 8),
        flags: p[13],
        window: be16(p, 14),
        mss,
        payload_len: (p.len() - off) as u32,
    })
}

/// What to put in an outgoing TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOut {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
}

pub fn tcp(src: Ip, dst: Ip, h: &TcpOut, payload: &[u8]) -> Vec<u8> {
    let hlen = TCP_HEADER + if h.mss.is_some() { 4 } else { 0 };
    let mut v = Vec::with_capacity(hlen + payload.len());
    v.extend_from_slice(&h.sport.to_be_bytes());
    v.extend_from_slice(&h.dport.to_be_bytes());
    v.extend_from_slice(&h.seq.to_be_bytes());
    v.extend_from_slice(&h.ack.to_be_bytes());
    v.push(((hlen / 4) as u8) << 4);
    v.push(h.flags);
    v.extend_from_slice(&h.window.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    if let Some(m) = h.mss {
        v.extend_from_slice(&[2, 4]);
        v.extend_from_slice(&m.to_be_bytes());
    }
    v.extend_from_slice(payload);
    let c = checksum(&[&pseudo_header(src, dst, PROTO_TCP, v.len()), &v]);
    v[16..18].copy_from_slice(&c.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ip = [192, 0, 2, 5];
    const B: Ip = [192, 0, 2, 3];

    #[test]
    fn checksum_of_a_known_header_and_odd_splits() {
        // The classic example header from RFC 1071 discussions: checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
        assert_eq!(checksum(&[&h[..3], &h[3..8], &h[8..]]), 0xb861);
        assert_eq!(checksum(&[&[1, 2, 3]]), checksum(&[&[1], &[2, 3]]));
    }

    #[test]
    fn ipv4_udp_round_trip_and_corruption_is_dropped() {
        let u = udp(A, B, 7, 4000, b"hello");
        let ip = ipv4(A, B, PROTO_UDP, 1, &u);
        let f = eth(BROADCAST, [2, 0, 0, 0, 0, 1], ETH_IPV4, &ip);
        assert_eq!(f.len(), ETH_MIN);
        let e = parse_eth(&f).unwrap();
        let p = parse_ipv4(e.payload).unwrap();
        assert_eq!((p.src, p.dst, p.proto), (A, B, PROTO_UDP));
        let d = parse_udp(p.src, p.dst, p.payload, false).unwrap();
        assert_eq!((d.sport, d.dport, d.payload), (7, 4000, &b"hello"[..]));
        let mut bad = ip.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let p = parse_ipv4(&bad).unwrap();
        assert!(parse_udp(p.src, p.dst, p.payload, false).is_none());
        assert!(parse_udp(p.src, p.dst, p.payload, true).is_some());
        let mut bad = ip.clone();
        bad[8] = 1; // TTL change breaks the header checksum
        assert!(parse_ipv4(&bad).is_none());
        let mut frag = ip;
        frag[6] = 0x20; // more fragments
        assert!(parse_ipv4(&frag).is_none());
        assert!(parse_ipv4(&[0x45; 10]).is_none());
    }

    #[test]
    fn tcp_round_trip_with_mss_and_bad_options() {
        let h = TcpOut {
            sport: 40000,
            dport: 5000,
            seq: 7,
            ack: 0,
            flags: TCP_SYN,
            window: 8192,
            mss: Some(1460),
        };
        let t = tcp(A, B, &h, b"");
        let s = parse_tcp(A, B, &t, false).unwrap();
        assert_eq!(
            (s.sport, s.dport, s.seq, s.flags),
            (40000, 5000, 7, TCP_SYN)
        );
        assert_eq!(s.mss, Some(1460));
        assert_eq!(s.payload_len, 0);
        let d = tcp(A, B, &TcpOut { mss: None, ..h }, b"abc");
        assert_eq!(parse_tcp(A, B, &d, false).unwrap().payload_len, 3);
        // An option whose length runs past the header.
        let mut bad = t.clone();
        bad[21] = 40;
        assert!(parse_tcp(A, B, &bad, true).is_none());
        let mut bad = t;
        bad[12] = 0xf0; // data offset beyond the segment
        assert!(parse_tcp(A, B, &bad, true).is_none());
    }

    #[test]
    fn arp_and_echo_round_trip() {
        let a = Arp {
            op: ARP_REQUEST,
            sha: [2, 0, 0, 0, 0, 1],
            spa: A,
            tha: [0; 6],
            tpa: B,
        };
        assert_eq!(parse_arp(&arp_body(&a)), Some(a));
        assert!(parse_arp(&arp_body(&a)[..27]).is_none());
        let e = echo(ICMP_ECHO_REQUEST, 9, 3, b"ping");
        let p = parse_echo(&e).unwrap();
        assert_eq!((p.kind, p.ident, p.seq, p.data), (8, 9, 3, &b"ping"[..]));
        let mut bad = e;
        bad[9] ^= 0xff;
        assert!(parse_echo(&bad).is_none());
    }
}
