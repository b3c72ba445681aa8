//! The task's arguments (`nc2dd.nc2-guest.<key>=<value>` on the kernel command line), parsed
//! and checked before anything touches xenstore.
//!
//! | key | value | default |
//! |---|---|---|
//! | `mode` | `app`, or a hostile mode: `netif-prod-jump`, `netif-bad-gref`, `nc2-bad-size`, `nc2-index-jump`, `xs-garbage` | `app` |
//! | `transport` | `auto` (netchannel2 when the backend offers `feature-nc2`, else netif), `nc2`, `netif` | `auto` |
//! | `ip` | our IPv4 address | required |
//! | `ping` | an address to ping (5 echo requests) | none |
//! | `send` | `<ip>:<port>`: send a file there over TCP | none |
//! | `file-size` | bytes of that file (pseudo-random, seeded by `seed`) | 1048576 |
//! | `seed` | seed of the file's bytes | 1 |
//! | `gen` | `<ip>:<port>:<count>`: the packet generator sends `count` UDP datagrams there | none |
//! | `good` | hostile modes: good frames (ARP requests to `ping`) before the corruption | 3 |

use alloc::format;
use alloc::string::String;

use crate::net::Ip;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Auto,
    Netif,
    Nc2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// netif: the tx ring's `req_prod` jumps far beyond the ring size.
    NetifProdJump,
    /// netif: a tx request names a grant reference beyond any grant table.
    NetifBadGref,
    /// netchannel2: a message whose size is not a multiple of 8.
    Nc2BadSize,
    /// netchannel2: the front-to-back producer index jumps beyond the ring.
    Nc2IndexJump,
    /// Garbage in the frontend's xenstore keys, then Initialised.
    XsGarbage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    App,
    Hostile(Hostile),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    pub transport: Transport,
    pub ip: Ip,
    pub ping: Option<Ip>,
    pub send: Option<(Ip, u16)>,
    pub file_size: u32,
    pub seed: u64,
    pub generate: Option<(Ip, u16, u32)>,
    pub good: u32,
}

pub fn parse_ip(s: &str) -> Option<Ip> {
    let mut ip = [0u8; 4];
    let mut parts = s.split('.');
    for b in &mut ip {
        *b = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(ip)
}

fn parse_endpoint(s: &str) -> Option<(Ip, u16)> {
    let (ip, port) = s.split_once(':')?;
    Some((parse_ip(ip)?, port.parse().ok()?))
}

/// Parses the arguments; `get(key)` returns a task argument.
pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Args, String> {
    let bad = |k: &str, v: &str| format!("argument {k}={v:?} is not valid");
    let mode = match get("mode").unwrap_or("app") {
        "app" => Mode::App,
        "netif-prod-jump" => Mode::Hostile(Hostile::NetifProdJump),
        "netif-bad-gref" => Mode::Hostile(Hostile::NetifBadGref),
        "nc2-bad-size" => Mode::Hostile(Hostile::Nc2BadSize),
        "nc2-index-jump" => Mode::Hostile(Hostile::Nc2IndexJump),
        "xs-garbage" => Mode::Hostile(Hostile::XsGarbage),
        v => return Err(bad("mode", v)),
    };
    let transport = match get("transport").unwrap_or("auto") {
        "auto" => Transport::Auto,
        "netif" => Transport::Netif,
        "nc2" => Transport::Nc2,
        v => return Err(bad("transport", v)),
    };
    let ip = match get("ip") {
        Some(v) => parse_ip(v).ok_or_else(|| bad("ip", v))?,
        None => return Err("argument ip is required".into()),
    };
    let ping = get("ping")
        .map(|v| parse_ip(v).ok_or_else(|| bad("ping", v)))
        .transpose()?;
    let send = get("send")
        .map(|v| parse_endpoint(v).ok_or_else(|| bad("send", v)))
        .transpose()?;
    let num = |k: &str, default: u64, max: u64| -> Result<u64, String> {
        match get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad(k, v)),
        }
    };
    let file_size = num("file-size", 1 << 20, 64 << 20)? as u32;
    let seed = num("seed", 1, u64::MAX)?;
    let good = num("good", 3, 1000)? as u32;
    let generate = match get("gen") {
        None => None,
        Some(v) => {
            let (ep, count) = v.rsplit_once(':').ok_or_else(|| bad("gen", v))?;
            let (ip, port) = parse_endpoint(ep).ok_or_else(|| bad("gen", v))?;
            Some((ip, port, count.parse().map_err(|_| bad("gen", v))?))
        }
    };
    if matches!(
        mode,
        Mode::Hostile(Hostile::Nc2BadSize | Hostile::Nc2IndexJump)
    ) && transport == Transport::Netif
    {
        return Err("the nc2 hostile modes need the nc2 transport".into());
    }
    Ok(Args {
        mode,
        transport,
        ip,
        ping,
        send,
        file_size,
        seed,
        generate,
        good,
    })
}

/// The file the guest sends: `len` pseudo-random bytes from `seed` (xorshift64*), so the test
/// can regenerate it if it must.
pub fn file_bytes(seed: u64, len: usize) -> alloc::vec::Vec<u8> {
    let mut x = seed | 1;
    let mut v = alloc::vec::Vec::with_capacity(len);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let w = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&w[..n]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn p(kv: &[(&'static str, &'static str)]) -> Result<Args, String> {
        let m: HashMap<&str, &'static str> = kv.iter().copied().collect();
        parse(|k| m.get(k).copied())
    }

    #[test]
    fn defaults_and_full_set() {
        let a = p(&[("ip", "192.0.2.5")]).unwrap();
        assert_eq!(a.mode, Mode::App);
        assert_eq!(a.transport, Transport::Auto);
        assert_eq!(a.file_size, 1 << 20);
        let a = p(&[
            ("ip", "192.0.2.5"),
            ("mode", "netif-prod-jump"),
            ("transport", "netif"),
            ("ping", "192.0.2.2"),
            ("send", "192.0.2.3:5000"),
            ("gen", "192.0.2.3:9:100"),
            ("file-size", "4096"),
        ])
        .unwrap();
        assert_eq!(a.mode, Mode::Hostile(Hostile::NetifProdJump));
        assert_eq!(a.send, Some(([192, 0, 2, 3], 5000)));
        assert_eq!(a.generate, Some(([192, 0, 2, 3], 9, 100)));
        assert_eq!(a.ping, Some([192, 0, 2, 2]));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(p(&[]).unwrap_err().contains("ip"));
        assert!(p(&[("ip", "192.0.2")]).unwrap_err().contains("ip"));
        assert!(p(&[("ip", "1.2.3.4.5")]).is_err());
        assert!(
            p(&[("ip", "1.2.3.4"), ("mode", "x")])
                .unwrap_err()
                .contains("mode")
        );
        assert!(p(&[("ip", "1.2.3.4"), ("send", "1.2.3.4")]).is_err());
        assert!(p(&[("ip", "1.2.3.4"), ("file-size", "999999999999")]).is_err());
        assert!(
            p(&[
                ("ip", "1.2.3.4"),
                ("mode", "nc2-bad-size"),
                ("transport", "netif")
            ])
            .is_err()
        );
    }

    #[test]
    fn file_bytes_are_deterministic() {
        assert_eq!(file_bytes(7, 1000), file_bytes(7, 1000));
        assert_ne!(file_bytes(7, 64), file_bytes(8, 64));
        assert_eq!(file_bytes(7, 13).len(), 13);
    }
}
