//! Software versions of the offloads a guest may leave undone: the TCP/UDP checksum of a
//! frame sent with `csum_blank`, and segmentation of a GSO super-frame into MSS-sized TCP
//! segments. Used when the next hop (a guest without those features, or the NIC port) cannot
//! take the frame as it is.
//!
//! Only Ethernet (optionally one 802.1Q tag) + IPv4 (any options) or IPv6 (no extension
//! headers) + TCP/UDP is understood; anything else, or any length that does not add up, is an
//! [`OffloadError`] and the caller drops the frame. The frame is guest data: every offset is
//! checked before use.

use alloc::vec::Vec;

use crate::switch::{ETH_HLEN, Frame, Offload};

/// Why a frame could not be completed in software.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadError(pub &'static str);

/// Most segments one GSO frame may become (64 KiB at a 1024-byte MSS).
pub const MAX_SEGMENTS: usize = 64;
const TCP: u8 = 6;
const UDP: u8 = 17;

#[derive(Clone, Copy)]
struct L3 {
    /// Offset of the IP header.
    ip: usize,
    v6: bool,
    /// Offset of the L4 header.
    l4: usize,
    /// L4 bytes (header + payload) per the IP header.
    l4_len: usize,
    proto: u8,
}

fn parse(f: &[u8]) -> Result<L3, OffloadError> {
    let short = OffloadError("frame too short for its headers");
    if f.len() < ETH_HLEN {
        return Err(short);
    }
    let (mut ty, mut ip) = (u16::from_be_bytes([f[12], f[13]]), ETH_HLEN);
    if ty == 0x8100 {
        if f.len() < ETH_HLEN + 4 {
            return Err(short);
        }
        ty = u16::from_be_bytes([f[16], f[17]]);
        ip += 4;
    }
    match ty {
        0x0800 => {
            let h = f.get(ip..ip + 20).ok_or(short)?;
            let ihl = usize::from(h[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl || ip + total > f.len() {
                return Err(OffloadError("bad IPv4 header lengths"));
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Err(OffloadError("IPv4 fragment"));
            }
            Ok(L3 {
                ip,
                v6: false,
                l4: ip + ihl,
                l4_len: total - ihl,
                proto: h[9],
            })
        }
        0x86dd => {
            let h = f.get(ip..ip + 40).ok_or(short)?;
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if h[0] >> 4 != 6 || ip + 40 + plen > f.len() {
                return Err(OffloadError("bad IPv6 header lengths"));
            }
            Ok(L3 {
                ip,
                v6: true,
                l4: ip + 40,
                l4_len: plen,
                proto: h[6],
            })
        }
        _ => Err(OffloadError("not IPv4 or IPv6")),
    }
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn l4_checksum(f: &mut [u8], l: &L3) -> Result<(), OffloadError> {
    let at = match l.proto {
        TCP if l.l4_len >= 20 => l.l4 + 16,
        UDP if l.l4_len >= 8 => l.l4 + 6,
        TCP | UDP => return Err(OffloadError("L4 header truncated")),
        _ => return Err(OffloadError("not TCP or UDP")),
    };
    f[at..at + 2].fill(0);
    let mut acc = if l.v6 {
        let acc = sum(&f[l.ip + 8..l.ip + 40], 0);
        sum(&(l.l4_len as u32).to_be_bytes(), acc) + u32::from(l.proto)
    } else {
        sum(&f[l.ip + 12..l.ip + 20], 0) + u32::from(l.proto) + l.l4_len as u32
    };
    acc = sum(&f[l.l4..l.l4 + l.l4_len], acc);
    let mut c = fold(acc);
    if l.proto == UDP && c == 0 {
        c = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Where the blank TCP/UDP checksum of a frame is: (start of the L4 header, offset of the
/// checksum field from it), as a receiver that completes it needs them.
pub fn checksum_location(f: &[u8]) -> Result<(u16, u16), OffloadError> {
    let l = parse(f)?;
    let field = match l.proto {
        TCP if l.l4_len >= 20 => 16,
        UDP if l.l4_len >= 8 => 6,
        TCP | UDP => return Err(OffloadError("L4 header truncated")),
        _ => return Err(OffloadError("not TCP or UDP")),
    };
    let start = u16::try_from(l.l4).map_err(|_| OffloadError("headers too long"))?;
    Ok((start, field))
}

/// Fills in the TCP/UDP checksum of a frame sent with a blank one.
pub fn fill_checksum(f: &mut [u8]) -> Result<(), OffloadError> {
    let l = parse(f)?;
    l4_checksum(f, &l)
}

/// Splits a TCP super-frame into segments of at most `mss` payload bytes, each with correct
/// lengths, IPv4 id and header checksum, sequence number, flags and TCP checksum.
pub fn segment(f: &[u8], mss: u16) -> Result<Vec<Vec<u8>>, OffloadError> {
    let l = parse(f)?;
    if l.proto != TCP || l.l4_len < 20 {
        return Err(OffloadError("GSO frame is not TCP"));
    }
    let doff = usize::from(f[l.l4 + 12] >> 4) * 4;
    if doff < 20 || doff > l.l4_len {
        return Err(OffloadError("bad TCP header length"));
    }
    let mss = usize::from(mss);
    if mss == 0 {
        return Err(OffloadError("zero MSS"));
    }
    let hdr = l.l4 + doff;
    let payload = &f[hdr..l.l4 + l.l4_len];
    // A tiny MSS would turn one guest frame into thousands of checksummed segments.
    if payload.len().div_ceil(mss) > MAX_SEGMENTS {
        return Err(OffloadError("GSO frame would make too many segments"));
    }
    let seq = u32::from_be_bytes([f[l.l4 + 4], f[l.l4 + 5], f[l.l4 + 6], f[l.l4 + 7]]);
    let flags = f[l.l4 + 13];
    let n = payload.len().div_ceil(mss).max(1);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut s = Vec::with_capacity(hdr + chunk.len());
        s.extend_from_slice(&f[..hdr]);
        s.extend_from_slice(chunk);
        let l4_len = doff + chunk.len();
        if l.v6 {
            s[l.ip + 4..l.ip + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            let ihl = l.l4 - l.ip;
            s[l.ip + 2..l.ip + 4].copy_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
            let id = u16::from_be_bytes([f[l.ip + 4], f[l.ip + 5]]).wrapping_add(i as u16);
            s[l.ip + 4..l.ip + 6].copy_from_slice(&id.to_be_bytes());
            s[l.ip + 10..l.ip + 12].fill(0);
            let c = fold(sum(&s[l.ip..l.l4], 0));
            s[l.ip + 10..l.ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        let sq = seq.wrapping_add((i * mss) as u32);
        s[l.l4 + 4..l.l4 + 8].copy_from_slice(&sq.to_be_bytes());
        let last = (i + 1) * mss >= payload.len();
        // FIN and PSH only on the last segment, CWR only on the first.
        let mut fl = flags;
        if !last {
            fl &= !0x09;
        }
        if i > 0 {
            fl &= !0x80;
        }
        s[l.l4 + 13] = fl;
        let sl = L3 { l4_len, ..l };
        l4_checksum(&mut s, &sl)?;
        out.push(s);
    }
    if out.is_empty() {
        let mut s = f[..l.l4 + l.l4_len].to_vec();
        l4_checksum(&mut s, &l)?;
        out.push(s);
    }
    Ok(out)
}

/// Resolves in software the offloads the next hop cannot take: segments a GSO frame unless
/// `gso_ok(type)`, fills blank checksums unless `csum_ok`. The results carry
/// `data_validated` (netback computed or kept the checksums).
pub fn complete(
    frame: Frame,
    gso_ok: impl Fn(u8) -> bool,
    csum_ok: bool,
) -> Result<Vec<Frame>, OffloadError> {
    let o = frame.offload;
    let mut out = match o.gso {
        Some((ty, mss)) if !gso_ok(ty) => {
            // Segmenting computes every checksum, so nothing is left blank.
            let segs = segment(&frame.data, mss)?;
            let done = Offload {
                csum_blank: false,
                data_validated: true,
                gso: None,
            };
            return Ok(segs
                .into_iter()
                .map(|data| Frame {
                    data,
                    offload: done,
                })
                .collect());
        }
        _ => alloc::vec![frame],
    };
    if o.csum_blank && !csum_ok {
        for f in &mut out {
            fill_checksum(&mut f.data)?;
            f.offload.csum_blank = false;
            f.offload.data_validated = true;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// An Ethernet + IPv4 + TCP frame with `payload`, checksums blank.
    pub(crate) fn tcp4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[8, 0]);
        f[14] = 0x45;
        let total = (40 + payload.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[18..20].copy_from_slice(&[0x12, 0x34]);
        f[22] = 64;
        f[23] = TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 5]);
        f[30..34].copy_from_slice(&[10, 0, 0, 6]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..42].copy_from_slice(&1000u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = 0x18 | 0x01; // PSH ACK FIN
        f.extend_from_slice(payload);
        f
    }

    fn verify_tcp4(s: &[u8]) {
        assert_eq!(fold(sum(&s[14..34], 0)), 0, "IPv4 header checksum");
        let l4_len = s.len() - 34;
        let acc = sum(&s[26..34], 0) + u32::from(TCP) + l4_len as u32;
        assert_eq!(fold(sum(&s[34..], acc)), 0, "TCP checksum");
    }

    #[test]
    fn fills_tcp_and_udp_checksums() {
        let mut f = tcp4(b"hello, checksum");
        fill_checksum(&mut f).unwrap();
        let acc = sum(&f[26..34], 0) + u32::from(TCP) + (f.len() - 34) as u32;
        assert_eq!(fold(sum(&f[34..], acc)), 0);
        let mut u = tcp4(b"");
        u[23] = UDP;
        u.truncate(14 + 20 + 8);
        u[16..18].copy_from_slice(&28u16.to_be_bytes());
        u[38..40].copy_from_slice(&8u16.to_be_bytes());
        fill_checksum(&mut u).unwrap();
        let acc = sum(&u[26..34], 0) + u32::from(UDP) + 8;
        assert_eq!(fold(sum(&u[34..], acc)), 0);
    }

    #[test]
    fn segments_tcp4_with_correct_headers() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let f = tcp4(&payload);
        let segs = segment(&f, 1448).unwrap();
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            verify_tcp4(s);
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 1000 + 1448 * i as u32);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + i as u16);
            let last = i == 2;
            assert_eq!(s[47] & 0x09 != 0, last, "FIN/PSH only last");
            joined.extend_from_slice(&s[54..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn complete_resolves_only_what_the_hop_lacks() {
        let f = Frame {
            data: tcp4(&[7u8; 3000]),
            offload: Offload {
                csum_blank: true,
                data_validated: true,
                gso: Some((1, 1000)),
            },
        };
        let kept = complete(f.clone(), |_| true, true).unwrap();
        assert_eq!(kept, core::slice::from_ref(&f));
        let segs = complete(f.clone(), |_| false, true).unwrap();
        assert_eq!(segs.len(), 3);
        assert!(
            segs.iter()
                .all(|s| s.offload.gso.is_none() && !s.offload.csum_blank)
        );
        let mut one = f;
        one.offload.gso = None;
        let filled = complete(one, |_| false, false).unwrap();
        assert!(!filled[0].offload.csum_blank);
        let l4 = filled[0].data.len() - 34;
        let acc = sum(&filled[0].data[26..34], 0) + u32::from(TCP) + l4 as u32;
        assert_eq!(fold(sum(&filled[0].data[34..], acc)), 0);
    }

    #[test]
    fn segments_tcp6() {
        let payload: Vec<u8> = (0..2500u32).map(|i| (i * 3) as u8).collect();
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        f[20] = TCP;
        f[21] = 64;
        f[22..38].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        f[38..54].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6]);
        f[66] = 5 << 4;
        f.extend_from_slice(&payload);
        let segs = segment(&f, 1200).unwrap();
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for s in &segs {
            let plen = u16::from_be_bytes([s[18], s[19]]) as usize;
            assert_eq!(plen, s.len() - 54);
            let acc = sum(&s[22..54], 0) + plen as u32 + u32::from(TCP);
            assert_eq!(
                fold(sum(&s[54..], acc)),
                0,
                "TCP checksum over the IPv6 pseudo-header"
            );
            joined.extend_from_slice(&s[74..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let f = tcp4(b"x");
        assert!(fill_checksum(&mut f[..40].to_vec()).is_err(), "truncated");
        let mut bad = f.clone();
        bad[16..18].copy_from_slice(&9000u16.to_be_bytes());
        assert!(
            fill_checksum(&mut bad).is_err(),
            "IP length beyond the frame"
        );
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[8, 6]);
        assert!(fill_checksum(&mut arp).is_err());
        assert!(segment(&f, 0).is_err());
        assert!(segment(&tcp4(&[0u8; 650]), 10).is_err(), "65 segments");
        assert_eq!(segment(&tcp4(&[0u8; 640]), 10).unwrap().len(), 64);
        let mut udp = f.clone();
        udp[23] = UDP;
        assert!(segment(&udp, 100).is_err());
    }
}
