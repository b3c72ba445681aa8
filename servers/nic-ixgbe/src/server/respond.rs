//! The frame responder: decides what a received frame asks for and writes the answer.
//!
//! It answers ARP requests for the pool's IPv4 address, ICMP echo requests to that address, and
//! the test-control frames a host peer uses to check pool steering (probe -> ack naming the pool,
//! done -> the server finishes). Everything else is ignored.
//!
//! Invariants: the frame is a copy in the server's own memory (read once from the DMA buffer), so
//! nothing here can change under the parser; every length and offset is checked against the
//! frame before use, every checksum is verified before a frame is answered, and a frame that
//! breaks a rule yields [`Verdict::Malformed`] naming the rule, never a panic. Replies are built
//! only into `out` and only up to its length.

use core::fmt;

pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IEEE 802 "local experimental ethertype 1": nc2dd's test-control frames.
pub const ETHERTYPE_TEST: u16 = 0x88B5;
/// Shortest Ethernet frame without FCS; replies are padded to it.
pub const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xFF; 6];

/// Test-control payload: magic, op, pool, sequence (big endian).
pub const TEST_MAGIC: [u8; 4] = *b"NC2D";
pub const TEST_LEN: usize = 8;
pub const TEST_PROBE: u8 = 1;
pub const TEST_ACK: u8 = 2;
pub const TEST_DONE: u8 = 3;

const ARP_LEN: usize = 28;
const IPV4_MIN: usize = 20;
const ICMP_MIN: usize = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const IP_PROTO_ICMP: u8 = 1;
const REPLY_TTL: u8 = 64;

/// A MAC address that prints as `52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// What a pool answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pool: u8,
    pub mac: [u8; 6],
    /// The IPv4 address this pool answers ARP and ping for, if any.
    pub ip: Option<[u8; 4]>,
}

/// Which rule a frame broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    ShortFrame,
    /// The source MAC is a group address.
    GroupSource,
    /// ARP body too short or not Ethernet/IPv4 with 6/4-byte addresses, or an unknown operation.
    ArpHeader,
    /// IPv4 header too short, wrong version, or header length past the frame.
    IpHeader,
    /// IPv4 total length shorter than its header or longer than the frame.
    IpLength,
    IpChecksum,
    /// ICMP message shorter than its header.
    IcmpHeader,
    IcmpChecksum,
    /// A test-control frame without the magic, too short, or with an unknown operation.
    TestFrame,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::ShortFrame => "shorter than an Ethernet header",
            Malformed::GroupSource => "group source address",
            Malformed::ArpHeader => "bad ARP header",
            Malformed::IpHeader => "bad IPv4 header",
            Malformed::IpLength => "bad IPv4 total length",
            Malformed::IpChecksum => "bad IPv4 header checksum",
            Malformed::IcmpHeader => "ICMP message too short",
            Malformed::IcmpChecksum => "bad ICMP checksum",
            Malformed::TestFrame => "bad test-control frame",
        })
    }
}

/// What was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Arp,
    Echo { id: u16, seq: u16 },
    Probe { seq: u16 },
}

/// The responder's decision about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `out[..len]` on the same pool.
    Reply { len: usize, answer: Answer },
    /// A well-formed frame that asks nothing of this pool.
    Ignored(&'static str),
    /// A frame that broke a rule: counted and dropped.
    Malformed(Malformed),
    /// The peer asks the server to finish.
    Done,
}

/// The parts of the Ethernet header every log line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthHeader {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
}

pub fn eth_header(frame: &[u8]) -> Option<EthHeader> {
    let h = frame.get(..ETH_HLEN)?;
    Some(EthHeader {
        dst: Mac(mac_at(h, 0)),
        src: Mac(mac_at(h, 6)),
        ethertype: be16(h, 12),
    })
}

/// The Internet checksum (RFC 1071) of `data`: a buffer whose checksum field holds the right
/// value sums to 0.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

fn ip_at(b: &[u8], at: usize) -> [u8; 4] {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    a
}

fn is_group(mac: [u8; 6]) -> bool {
    mac[0] & 1 != 0
}

/// Writes the Ethernet header of a reply and pads the frame to the minimum; returns its length.
fn finish(out: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16, body_len: usize) -> usize {
    out[0..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let len = ETH_HLEN + body_len;
    if len < MIN_FRAME {
        out[len..MIN_FRAME].fill(0);
        MIN_FRAME
    } else {
        len
    }
}

/// Decides what `frame` (as received, without FCS) asks of pool `me` and writes any reply into
/// `out` (which must hold at least [`MIN_FRAME`] bytes for a reply to be possible).
pub fn respond(frame: &[u8], me: &Identity, out: &mut [u8]) -> Verdict {
    let Some(eth) = eth_header(frame) else {
        return Verdict::Malformed(Malformed::ShortFrame);
    };
    if is_group(eth.src.0) {
        return Verdict::Malformed(Malformed::GroupSource);
    }
    if eth.dst.0 != me.mac && eth.dst.0 != BROADCAST {
        return Verdict::Ignored("not addressed to this pool");
    }
    if out.len() < MIN_FRAME {
        return Verdict::Ignored("no room for a reply");
    }
    let body = &frame[ETH_HLEN..];
    match eth.ethertype {
        ETHERTYPE_ARP => arp(body, me, out),
        ETHERTYPE_IPV4 => ipv4(body, eth.src.0, me, out),
        ETHERTYPE_TEST => test_control(body, eth, me, out),
        _ => Verdict::Ignored("ethertype not served"),
    }
}

fn arp(body: &[u8], me: &Identity, out: &mut [u8]) -> Verdict {
    let Some(a) = body.get(..ARP_LEN) else {
        return Verdict::Malformed(Malformed::ArpHeader);
    };
    // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses: nothing else is ARP for us.
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Verdict::Malformed(Malformed::ArpHeader);
    }
    let (sha, spa, tpa) = (mac_at(a, 8), ip_at(a, 14), ip_at(a, 24));
    match be16(a, 6) {
        1 => {}
        2 => return Verdict::Ignored("ARP reply"),
        _ => return Verdict::Malformed(Malformed::ArpHeader),
    }
    let Some(ip) = me.ip else {
        return Verdict::Ignored("pool has no IPv4 address");
    };
    if tpa != ip {
        return Verdict::Ignored("ARP for another address");
    }
    if is_group(sha) {
        return Verdict::Malformed(Malformed::GroupSource);
    }
    let r = &mut out[ETH_HLEN..ETH_HLEN + ARP_LEN];
    r[0..6].copy_from_slice(&a[0..6]);
    r[6..8].copy_from_slice(&2u16.to_be_bytes());
    r[8..14].copy_from_slice(&me.mac);
    r[14..18].copy_from_slice(&ip);
    r[18..24].copy_from_slice(&sha);
    r[24..28].copy_from_slice(&spa);
    let len = finish(out, sha, me.mac, ETHERTYPE_ARP, ARP_LEN);
    Verdict::Reply {
        len,
        answer: Answer::Arp,
    }
}

fn ipv4(body: &[u8], src_mac: [u8; 6], me: &Identity, out: &mut [u8]) -> Verdict {
    if body.len() < IPV4_MIN || body[0] >> 4 != 4 {
        return Verdict::Malformed(Malformed::IpHeader);
    }
    let ihl = usize::from(body[0] & 0xF) * 4;
    if ihl < IPV4_MIN || ihl > body.len() {
        return Verdict::Malformed(Malformed::IpHeader);
    }
    // The frame may carry Ethernet padding past the datagram: the IPv4 length rules.
    let total = usize::from(be16(body, 2));
    if total < ihl || total > body.len() {
        return Verdict::Malformed(Malformed::IpLength);
    }
    let ip = &body[..total];
    if checksum(&ip[..ihl]) != 0 {
        return Verdict::Malformed(Malformed::IpChecksum);
    }
    let Some(my_ip) = me.ip else {
        return Verdict::Ignored("pool has no IPv4 address");
    };
    if ip_at(ip, 16) != my_ip {
        return Verdict::Ignored("IPv4 for another address");
    }
    if ip[9] != IP_PROTO_ICMP {
        return Verdict::Ignored("IPv4 protocol not served");
    }
    // More-fragments flag or a fragment offset: reassembly is not this responder's job.
    if be16(ip, 6) & 0x3FFF != 0 {
        return Verdict::Ignored("IPv4 fragment");
    }
    let src_ip = ip_at(ip, 12);
    if src_ip[0] >= 224 || src_ip == [0; 4] {
        return Verdict::Ignored("IPv4 source not unicast");
    }
    let icmp = &ip[ihl..];
    if icmp.len() < ICMP_MIN {
        return Verdict::Malformed(Malformed::IcmpHeader);
    }
    if checksum(icmp) != 0 {
        return Verdict::Malformed(Malformed::IcmpChecksum);
    }
    if icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0 {
        return Verdict::Ignored("ICMP type not served");
    }
    let reply_len = IPV4_MIN + icmp.len();
    if ETH_HLEN + reply_len > out.len() {
        return Verdict::Ignored("no room for a reply");
    }
    let r = &mut out[ETH_HLEN..ETH_HLEN + reply_len];
    // A fresh 20-byte header: the request's options are not echoed.
    r[0] = 0x45;
    r[1] = 0;
    r[2..4].copy_from_slice(&(reply_len as u16).to_be_bytes());
    r[4..6].copy_from_slice(&ip[4..6]);
    r[6..8].fill(0);
    r[8] = REPLY_TTL;
    r[9] = IP_PROTO_ICMP;
    r[10..12].fill(0);
    r[12..16].copy_from_slice(&my_ip);
    r[16..20].copy_from_slice(&src_ip);
    let ip_sum = checksum(&r[..IPV4_MIN]);
    r[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let m = &mut r[IPV4_MIN..];
    m.copy_from_slice(icmp);
    m[0] = ICMP_ECHO_REPLY;
    m[2..4].fill(0);
    let icmp_sum = checksum(m);
    m[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
    let (id, seq) = (be16(icmp, 4), be16(icmp, 6));
    let len = finish(out, src_mac, me.mac, ETHERTYPE_IPV4, reply_len);
    Verdict::Reply {
        len,
        answer: Answer::Echo { id, seq },
    }
}

fn test_control(body: &[u8], eth: EthHeader, me: &Identity, out: &mut [u8]) -> Verdict {
    let Some(t) = body.get(..TEST_LEN) else {
        return Verdict::Malformed(Malformed::TestFrame);
    };
    if t[..4] != TEST_MAGIC {
        return Verdict::Malformed(Malformed::TestFrame);
    }
    let seq = be16(t, 6);
    match t[4] {
        TEST_PROBE => {
            let r = &mut out[ETH_HLEN..ETH_HLEN + TEST_LEN];
            r[..4].copy_from_slice(&TEST_MAGIC);
            r[4] = TEST_ACK;
            r[5] = me.pool;
            r[6..8].copy_from_slice(&seq.to_be_bytes());
            let len = finish(out, eth.src.0, me.mac, ETHERTYPE_TEST, TEST_LEN);
            Verdict::Reply {
                len,
                answer: Answer::Probe { seq },
            }
        }
        TEST_DONE => Verdict::Done,
        TEST_ACK => Verdict::Ignored("test ack"),
        _ => Verdict::Malformed(Malformed::TestFrame),
    }
}

/// Parses `52:54:00:12:34:56` (hex pairs, colon separated); a group or all-zero address is
/// refused because no pool can receive for it.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || is_group(mac) || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

/// Parses dotted-quad IPv4 (`192.0.2.2`).
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut parts = s.split('.');
    for b in &mut ip {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = p.parse().ok()?;
    }
    parts.next().is_none().then_some(ip)
}

/// The responder against the frames of the host peer the QEMU tests use
/// (`nc2dd_tests::netpeer`), so the two sides of the wire are checked against each other
/// without QEMU too.
#[cfg(test)]
mod tests {
    use super::*;
    use nc2dd_tests::netpeer::{self, Echo};

    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const PEER_IP: [u8; 4] = [192, 0, 2, 1];
    /// RFC 5737 documentation addresses.
    const IP0: [u8; 4] = [192, 0, 2, 2];
    const MAC0: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const MAC1: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

    fn pool0() -> Identity {
        Identity {
            pool: 0,
            mac: MAC0,
            ip: Some(IP0),
        }
    }

    fn answer(frame: &[u8], me: &Identity) -> (Verdict, Vec<u8>) {
        let mut out = vec![0u8; 2048];
        let v = respond(frame, me, &mut out);
        if let Verdict::Reply { len, .. } = v {
            out.truncate(len);
        } else {
            out.clear();
        }
        (v, out)
    }

    fn echo(payload: Vec<u8>) -> Echo {
        Echo {
            eth_dst: MAC0,
            eth_src: PEER_MAC,
            src_ip: PEER_IP,
            dst_ip: IP0,
            ttl: 64,
            id: 0x4e43,
            seq: 1,
            payload,
        }
    }

    #[test]
    fn responder_answers_arp_for_its_address_only() {
        let (v, reply) = answer(&netpeer::arp_request(PEER_MAC, PEER_IP, IP0), &pool0());
        assert_eq!(
            v,
            Verdict::Reply {
                len: 60,
                answer: Answer::Arp
            }
        );
        let r = netpeer::parse_arp_reply(&reply).expect("an ARP reply");
        assert_eq!(
            (r.eth_dst, r.eth_src, r.sender_mac, r.sender_ip),
            (PEER_MAC, MAC0, MAC0, IP0)
        );
        assert_eq!((r.target_mac, r.target_ip), (PEER_MAC, PEER_IP));

        let other = netpeer::arp_request(PEER_MAC, PEER_IP, [192, 0, 2, 99]);
        assert!(matches!(answer(&other, &pool0()).0, Verdict::Ignored(_)));
        let no_ip = Identity {
            ip: None,
            ..pool0()
        };
        let req = netpeer::arp_request(PEER_MAC, PEER_IP, IP0);
        assert!(matches!(answer(&req, &no_ip).0, Verdict::Ignored(_)));
    }

    #[test]
    fn responder_answers_echo_with_the_same_payload_and_valid_checksums() {
        for size in [0usize, 1, 56, 1472] {
            let req = echo((0..size).map(|i| (i * 7) as u8).collect());
            let (v, reply) = answer(&netpeer::icmp_echo_request(&req), &pool0());
            assert!(
                matches!(
                    v,
                    Verdict::Reply {
                        answer: Answer::Echo { id: 0x4e43, seq: 1 },
                        ..
                    }
                ),
                "{size}: {v:?}"
            );
            let r = netpeer::parse_icmp_echo_reply(&reply).expect("checksums and lengths valid");
            assert_eq!((r.eth_dst, r.eth_src), (PEER_MAC, MAC0));
            assert_eq!((r.src_ip, r.dst_ip, r.id, r.seq), (IP0, PEER_IP, 0x4e43, 1));
            assert_eq!(r.payload, req.payload, "{size}-byte payload echoed");
        }
    }

    #[test]
    fn responder_counts_broken_frames_as_malformed_and_never_answers_them() {
        use {Malformed as M, Verdict as V};
        let me = pool0();
        let good = netpeer::icmp_echo_request(&echo(vec![0xAB; 32]));
        let cases: Vec<(&str, Vec<u8>, M)> = vec![
            ("runt", good[..10].to_vec(), M::ShortFrame),
            (
                "group source",
                {
                    let mut f = good.clone();
                    f[6] = 0x01;
                    f
                },
                M::GroupSource,
            ),
            (
                "ICMP checksum",
                {
                    let mut f = good.clone();
                    f[40] ^= 0xFF;
                    f
                },
                M::IcmpChecksum,
            ),
            (
                "IPv4 checksum",
                {
                    let mut f = good.clone();
                    f[14 + 8] = 1; // TTL changed, checksum not
                    f
                },
                M::IpChecksum,
            ),
            (
                "IPv4 length past the frame",
                {
                    let mut f = good.clone();
                    f[16..18].copy_from_slice(&2000u16.to_be_bytes());
                    f
                },
                M::IpLength,
            ),
            (
                "IPv4 header length past the frame",
                {
                    let mut f = good[..14 + 20].to_vec();
                    f[14] = 0x4F;
                    f
                },
                M::IpHeader,
            ),
            (
                "truncated ARP",
                netpeer::arp_request(PEER_MAC, PEER_IP, IP0)[..30].to_vec(),
                M::ArpHeader,
            ),
            (
                "ARP for another protocol",
                {
                    let mut f = netpeer::arp_request(PEER_MAC, PEER_IP, IP0);
                    f[16] = 0x86;
                    f
                },
                M::ArpHeader,
            ),
            (
                "test frame without magic",
                {
                    let mut f = netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_PROBE, 0, 1);
                    f[14] = b'X';
                    f
                },
                M::TestFrame,
            ),
        ];
        for (what, frame, want) in cases {
            let (v, reply) = answer(&frame, &me);
            assert_eq!(v, V::Malformed(want), "{what}");
            assert!(reply.is_empty(), "{what}: no reply");
        }
    }

    #[test]
    fn responder_acks_probes_with_its_pool_and_obeys_done() {
        let me = Identity {
            pool: 1,
            mac: MAC1,
            ip: None,
        };
        let probe = netpeer::test_frame(MAC1, PEER_MAC, netpeer::TEST_PROBE, 0, 77);
        let (_, reply) = answer(&probe, &me);
        let t = netpeer::parse_test_frame(&reply).expect("an ack");
        assert_eq!((t.eth_dst, t.eth_src), (PEER_MAC, MAC1));
        assert_eq!((t.op, t.pool, t.seq), (netpeer::TEST_ACK, 1, 77));
        let to_other = netpeer::test_frame(MAC0, PEER_MAC, netpeer::TEST_PROBE, 0, 1);
        assert!(matches!(answer(&to_other, &me).0, Verdict::Ignored(_)));
        let done = netpeer::test_frame(MAC1, PEER_MAC, netpeer::TEST_DONE, 0, 0);
        assert_eq!(answer(&done, &me).0, Verdict::Done);
    }
}
