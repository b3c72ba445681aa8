//! A host-side Ethernet peer for QEMU's `-netdev dgram`: one UDP socket on 127.0.0.1 where each
//! datagram is one Ethernet frame (no FCS), plus builders and parsers for the frames the NIC
//! tests exchange (ARP, ICMP echo with checksums, nc2dd's test-control frames).
//!
//! Owns: choosing the two loopback ports (both picked by binding port 0 and reading the port
//! back; QEMU's is released just before QEMU binds it), the `-netdev` argument that pairs QEMU
//! with this socket, and receiving with a deadline. Traffic goes to 127.0.0.1 only, and
//! datagrams from anywhere but QEMU's port are ignored.
//!
//! Parsers validate everything they read (lengths, types, checksums) and return `None` for a
//! frame that is not what was asked for, so a test can skip unrelated or stale frames.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IEEE 802 local experimental ethertype 1, nc2dd's test-control frames: payload is `NC2D`,
/// an operation, a pool number and a big-endian sequence number.
pub const ETHERTYPE_TEST: u16 = 0x88B5;
pub const TEST_PROBE: u8 = 1;
pub const TEST_ACK: u8 = 2;
pub const TEST_DONE: u8 = 3;
pub const BROADCAST: [u8; 6] = [0xFF; 6];
const MIN_FRAME: usize = 60;
const MAX_FRAME: usize = 1514;

/// The peer's socket and QEMU's address.
pub struct NetPeer {
    sock: UdpSocket,
    qemu: SocketAddr,
}

impl NetPeer {
    /// Binds the peer's socket and picks a free port for QEMU's end.
    pub fn bind() -> io::Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        // Reserve-and-release: the port is free now, and QEMU binds it moments later.
        let qemu = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
        Ok(Self { sock, qemu })
    }

    /// The `-netdev` value that makes QEMU's backend `id` talk to this peer.
    pub fn netdev(&self, id: &str) -> io::Result<String> {
        let me = self.sock.local_addr()?;
        Ok(format!(
            "dgram,id={id},local.type=inet,local.host=127.0.0.1,local.port={},\
             remote.type=inet,remote.host=127.0.0.1,remote.port={}",
            self.qemu.port(),
            me.port()
        ))
    }

    /// Sends one frame to QEMU.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = self.sock.send_to(frame, self.qemu)?;
        if n != frame.len() {
            return Err(io::Error::other("short datagram send"));
        }
        Ok(())
    }

    /// The next frame from QEMU before `deadline`, or `None` once it has passed.
    pub fn recv(&self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.sock
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.qemu => return Ok(Some(buf[..n].to_vec())),
                Ok(_) => continue,
                // A refusal is the ICMP echo of a frame sent before QEMU had bound its port.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives until `pick` accepts a frame or `deadline` passes; other frames are skipped.
    pub fn recv_match<T>(
        &self,
        deadline: Instant,
        mut pick: impl FnMut(&[u8]) -> Option<T>,
    ) -> io::Result<Option<T>> {
        while let Some(f) = self.recv(deadline)? {
            if let Some(t) = pick(&f) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}

/// The Internet checksum (RFC 1071); a buffer with a correct checksum field sums to 0.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// An Ethernet frame: header, body, zero padding to the 60-byte minimum.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME.max(14 + body.len()));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f.resize(f.len().max(MIN_FRAME), 0);
    f
}

/// The Ethernet header of a frame: (dst, src, ethertype).
pub fn eth_header(f: &[u8]) -> Option<([u8; 6], [u8; 6], u16)> {
    (f.len() >= 14 && f.len() <= MAX_FRAME).then(|| (arr(f, 0), arr(f, 6), be16(f, 12)))
}

/// A broadcast ARP request from (`mac`, `ip`) asking who has `target`.
pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&1u16.to_be_bytes());
    a.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    a.extend_from_slice(&[6, 4]);
    a.extend_from_slice(&1u16.to_be_bytes());
    a.extend_from_slice(&mac);
    a.extend_from_slice(&ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target);
    ethernet(BROADCAST, mac, ETHERTYPE_ARP, &a)
}

/// An ARP reply as parsed from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpReply {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

pub fn parse_arp_reply(f: &[u8]) -> Option<ArpReply> {
    let (dst, src, ty) = eth_header(f)?;
    let a = f.get(14..14 + 28)?;
    if ty != ETHERTYPE_ARP
        || be16(a, 0) != 1
        || be16(a, 2) != ETHERTYPE_IPV4
        || a[4] != 6
        || a[5] != 4
        || be16(a, 6) != 2
    {
        return None;
    }
    Some(ArpReply {
        eth_dst: dst,
        eth_src: src,
        sender_mac: arr(a, 8),
        sender_ip: arr(a, 14),
        target_mac: arr(a, 18),
        target_ip: arr(a, 24),
    })
}

/// What an ICMP echo (request or reply) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub ttl: u8,
    pub id: u16,
    pub seq: u16,
    pub payload: Vec<u8>,
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], id: u16, payload_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An ICMP echo request frame with correct IPv4 and ICMP checksums.
pub fn icmp_echo_request(e: &Echo) -> Vec<u8> {
    let mut icmp = vec![8u8, 0, 0, 0];
    icmp.extend_from_slice(&e.id.to_be_bytes());
    icmp.extend_from_slice(&e.seq.to_be_bytes());
    icmp.extend_from_slice(&e.payload);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut body = ipv4_header(e.src_ip, e.dst_ip, e.seq, icmp.len()).to_vec();
    body.extend_from_slice(&icmp);
    ethernet(e.eth_dst, e.eth_src, ETHERTYPE_IPV4, &body)
}

/// Parses an ICMP echo reply, checking the IPv4 header checksum, the lengths and the ICMP
/// checksum; `None` for anything else.
pub fn parse_icmp_echo_reply(f: &[u8]) -> Option<Echo> {
    let (dst, src, ty) = eth_header(f)?;
    if ty != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &f[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xF) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < 20 || total < ihl + 8 || total > ip.len() || checksum(&ip[..ihl]) != 0 {
        return None;
    }
    if ip[9] != 1 {
        return None;
    }
    let icmp = &ip[ihl..total];
    if icmp[0] != 0 || icmp[1] != 0 || checksum(icmp) != 0 {
        return None;
    }
    Some(Echo {
        eth_dst: dst,
        eth_src: src,
        src_ip: arr(ip, 12),
        dst_ip: arr(ip, 16),
        ttl: ip[8],
        id: be16(icmp, 4),
        seq: be16(icmp, 6),
        payload: icmp[8..].to_vec(),
    })
}

/// A test-control frame (`op` one of `TEST_*`).
pub fn test_frame(dst: [u8; 6], src: [u8; 6], op: u8, pool: u8, seq: u16) -> Vec<u8> {
    let mut p = b"NC2D".to_vec();
    p.extend_from_slice(&[op, pool]);
    p.extend_from_slice(&seq.to_be_bytes());
    ethernet(dst, src, ETHERTYPE_TEST, &p)
}

/// A parsed test-control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestFrame {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub op: u8,
    pub pool: u8,
    pub seq: u16,
}

pub fn parse_test_frame(f: &[u8]) -> Option<TestFrame> {
    let (dst, src, ty) = eth_header(f)?;
    let p = f.get(14..22)?;
    (ty == ETHERTYPE_TEST && &p[..4] == b"NC2D").then(|| TestFrame {
        eth_dst: dst,
        eth_src: src,
        op: p[4],
        pool: p[5],
        seq: be16(p, 6),
    })
}

/// `52:54:00:12:34:56`.
pub fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_rfc_1071_example_and_verifies_to_zero() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        let mut with = data.to_vec();
        with.extend_from_slice(&checksum(&data).to_be_bytes());
        assert_eq!(checksum(&with), 0);
        // Odd length pads with a zero byte.
        assert_eq!(checksum(&[0x12]), !0x1200);
    }

    #[test]
    fn echo_request_has_valid_checksums_and_round_trips_through_the_reply_parser() {
        let e = Echo {
            eth_dst: [2, 0, 0, 0, 0, 2],
            eth_src: [2, 0, 0, 0, 0, 1],
            src_ip: [192, 0, 2, 1],
            dst_ip: [192, 0, 2, 2],
            ttl: 64,
            id: 0x1234,
            seq: 7,
            payload: (0..100u8).collect(),
        };
        let mut f = icmp_echo_request(&e);
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(checksum(&f[34..]), 0);
        assert_eq!(parse_icmp_echo_reply(&f), None, "a request is not a reply");
        // Turn it into a reply by hand: type 0, fix the ICMP checksum.
        f[34] = 0;
        f[36..38].fill(0);
        let sum = checksum(&f[34..]);
        f[36..38].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_icmp_echo_reply(&f), Some(e.clone()));
        f[40] ^= 1;
        assert_eq!(
            parse_icmp_echo_reply(&f),
            None,
            "corrupt payload fails the checksum"
        );
    }

    #[test]
    fn arp_request_is_broadcast_and_padded() {
        let f = arp_request([2, 0, 0, 0, 0, 1], [192, 0, 2, 1], [192, 0, 2, 2]);
        assert_eq!(f.len(), MIN_FRAME);
        assert_eq!(
            eth_header(&f),
            Some((BROADCAST, [2, 0, 0, 0, 0, 1], ETHERTYPE_ARP))
        );
        assert_eq!(parse_arp_reply(&f), None, "a request is not a reply");
    }

    #[test]
    fn test_frames_round_trip_and_junk_is_refused() {
        let f = test_frame([2; 6], [4; 6], TEST_PROBE, 3, 0xBEEF);
        let t = parse_test_frame(&f).unwrap();
        assert_eq!((t.op, t.pool, t.seq), (TEST_PROBE, 3, 0xBEEF));
        assert_eq!(parse_test_frame(&f[..20]), None);
        assert_eq!(parse_test_frame(&[0u8; 10]), None);
        assert_eq!(
            mac_string([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "52:54:00:12:34:56"
        );
    }

    #[test]
    fn datagrams_carry_frames_between_two_loopback_sockets() {
        let peer = NetPeer::bind().unwrap();
        let arg = peer.netdev("n0").unwrap();
        assert!(arg.starts_with("dgram,id=n0,local.type=inet,local.host=127.0.0.1,"));
        // Stand in for QEMU on its port: what the peer sends arrives there, and what it sends
        // back from there is received; a stranger's datagram is skipped.
        let qemu = UdpSocket::bind(peer.qemu).unwrap();
        let frame = test_frame([2; 6], [4; 6], TEST_PROBE, 0, 1);
        peer.send(&frame).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = qemu.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &frame[..]);
        let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        stranger.send_to(b"not from qemu", from).unwrap();
        qemu.send_to(&frame, from).unwrap();
        let got = peer
            .recv(Instant::now() + Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(got, frame);
        assert_eq!(
            peer.recv(Instant::now() + Duration::from_millis(50))
                .unwrap(),
            None
        );
    }
}
