//! The server's settings from its task arguments (`nc2dd.nic-ixgbe.<key>=<value>` on the kernel
//! command line):
//!
//! - `mac0` .. `mac7`: a MAC to give a pool of its own (in order: the first one given gets the
//!   first free pool);
//! - `ip0` .. `ip7`: the IPv4 address the responder answers ARP and ping for on the pool of the
//!   same `macN`;
//! - `frames=N`: finish after N received frames (default: run until a peer's "done" frame);
//! - `poll=MS`: the fallback poll interval when no interrupt comes (default 20 ms);
//! - `stall=N`: never repost the receive buffers of `macN`'s pool once the NIC has filled them,
//!   as a guest that stopped posting buffers would (tests that the other pools keep receiving).
//!
//! A value that does not parse is an error naming the key, never silently dropped.

use super::respond::{parse_ipv4, parse_mac};

pub const MAX_MACS: usize = 8;
const MAC_KEYS: [&str; MAX_MACS] = [
    "mac0", "mac1", "mac2", "mac3", "mac4", "mac5", "mac6", "mac7",
];
const IP_KEYS: [&str; MAX_MACS] = ["ip0", "ip1", "ip2", "ip3", "ip4", "ip5", "ip6", "ip7"];
const DEFAULT_POLL_MS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub mac: [u8; 6],
    pub ip: Option<[u8; 4]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Index `n` holds `macN` / `ipN`.
    pub guests: [Option<Guest>; MAX_MACS],
    /// 0 = no limit.
    pub frames: u64,
    pub poll_ms: u64,
    /// Index `n` of the guest whose pool stops reposting receive buffers.
    pub stall: Option<usize>,
}

/// A task argument that did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadArg(pub &'static str);

impl Settings {
    /// Reads the settings through `arg` (the task info's argument lookup).
    pub fn from_args<'a>(arg: impl Fn(&str) -> Option<&'a str>) -> Result<Self, BadArg> {
        let mut guests = [None; MAX_MACS];
        for (n, g) in guests.iter_mut().enumerate() {
            let ip = match arg(IP_KEYS[n]) {
                Some(v) => Some(parse_ipv4(v).ok_or(BadArg(IP_KEYS[n]))?),
                None => None,
            };
            match arg(MAC_KEYS[n]) {
                Some(v) => {
                    let mac = parse_mac(v).ok_or(BadArg(MAC_KEYS[n]))?;
                    *g = Some(Guest { mac, ip });
                }
                // An address with no MAC to answer on is a mistake worth reporting.
                None if ip.is_some() => return Err(BadArg(IP_KEYS[n])),
                None => {}
            }
        }
        let number = |key: &'static str, default: u64| match arg(key) {
            Some(v) => v.parse::<u64>().map_err(|_| BadArg(key)),
            None => Ok(default),
        };
        let frames = number("frames", 0)?;
        let poll_ms = number("poll", DEFAULT_POLL_MS)?;
        if poll_ms == 0 {
            return Err(BadArg("poll"));
        }
        let stall = match arg("stall") {
            Some(v) => {
                let n = v.parse::<usize>().map_err(|_| BadArg("stall"))?;
                // Only a configured guest has a pool to stall.
                if guests.get(n).is_none_or(Option::is_none) {
                    return Err(BadArg("stall"));
                }
                Some(n)
            }
            None => None,
        };
        Ok(Self {
            guests,
            frames,
            poll_ms,
            stall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc2dd_tests::netpeer;

    const IP0: [u8; 4] = [192, 0, 2, 2];
    const MAC0: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const MAC1: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

    #[test]
    fn server_settings_come_from_task_arguments() {
        let args = |list: &'static [(&'static str, &'static str)]| {
            move |k: &str| list.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        let s = Settings::from_args(args(&[
            ("mac0", "52:54:00:12:34:56"),
            ("ip0", "192.0.2.2"),
            ("mac1", "52:54:00:12:34:57"),
            ("frames", "9"),
        ]))
        .unwrap();
        assert_eq!(
            s.guests[0],
            Some(Guest {
                mac: MAC0,
                ip: Some(IP0)
            })
        );
        assert_eq!(
            s.guests[1],
            Some(Guest {
                mac: MAC1,
                ip: None
            })
        );
        assert!(s.guests[2..].iter().all(Option::is_none));
        assert_eq!((s.frames, s.poll_ms), (9, 20));
        let bad = |list| Settings::from_args(args(list)).unwrap_err().0;
        assert_eq!(bad(&[("mac0", "01:00:5e:00:00:01")]), "mac0", "group MAC");
        assert_eq!(bad(&[("mac0", "52:54:00:12:34")]), "mac0");
        assert_eq!(
            bad(&[("mac0", "52:54:00:12:34:56"), ("ip0", "192.0.2.256")]),
            "ip0"
        );
        assert_eq!(bad(&[("ip3", "192.0.2.3")]), "ip3", "address without a MAC");
        assert_eq!(bad(&[("mac0", "52:54:00:12:34:56"), ("poll", "0")]), "poll");
        assert_eq!(
            bad(&[("mac0", "52:54:00:12:34:56"), ("stall", "1")]),
            "stall",
            "no mac1"
        );
        assert_eq!(
            bad(&[("mac0", "52:54:00:12:34:56"), ("stall", "9")]),
            "stall"
        );
        let stalled =
            Settings::from_args(args(&[("mac0", "52:54:00:12:34:56"), ("stall", "0")])).unwrap();
        assert_eq!(stalled.stall, Some(0));
        assert_eq!(s.stall, None);
        assert_eq!(
            super::super::respond::Mac(MAC0).to_string(),
            netpeer::mac_string(MAC0)
        );
        assert_eq!(super::super::respond::parse_ipv4("1.2.3"), None);
        assert_eq!(super::super::respond::parse_mac("52:54:00:12:34:5g"), None);
    }
}
