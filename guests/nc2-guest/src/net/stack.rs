//! The guest's IPv4 host: one address, a small neighbour table, answers to ARP requests and
//! ICMP echo requests, a UDP echo service, and the frames the task asks it to build (ARP
//! requests, echo requests, UDP datagrams, TCP segments). TCP segments for the sender are
//! handed back to the caller.

use alloc::vec::Vec;

use super::frame::{self, Arp, BROADCAST, ETH_ARP, ETH_IPV4, Ip, Mac, TcpOut, TcpSeg};

/// UDP port of the echo service (RFC 862).
pub const UDP_ECHO_PORT: u16 = 7;
/// At most this many neighbours are remembered (oldest forgotten first).
const NEIGHBOURS: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_in: u64,
    pub dropped: u64,
    pub arp_replies_sent: u64,
    pub echo_replies_sent: u64,
    pub udp_echoed: u64,
}

/// What an incoming frame meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Nothing for us (or malformed: counted as dropped).
    Nothing,
    /// Send this frame back (ARP reply, echo reply, UDP echo).
    Reply(Vec<u8>),
    /// An ARP reply or request taught us `ip`'s MAC (a request for us also wants a reply).
    Learned { ip: Ip, reply: Option<Vec<u8>> },
    /// An echo reply to one of our pings.
    EchoReply { from: Ip, ident: u16, seq: u16 },
    /// A TCP segment addressed to us.
    Tcp { from: Ip, seg: TcpSeg },
    /// A UDP datagram for a port other than the echo port.
    Udp { from: Ip, sport: u16, dport: u16 },
}

pub struct Stack {
    pub mac: Mac,
    pub ip: Ip,
    neighbours: Vec<(Ip, Mac)>,
    ip_id: u16,
    pub counters: Counters,
}

impl Stack {
    pub fn new(mac: Mac, ip: Ip) -> Self {
        Stack {
            mac,
            ip,
            neighbours: Vec::new(),
            ip_id: 1,
            counters: Counters::default(),
        }
    }

    pub fn neighbour(&self, ip: Ip) -> Option<Mac> {
        self.neighbours
            .iter()
            .find(|(i, _)| *i == ip)
            .map(|(_, m)| *m)
    }

    fn learn(&mut self, ip: Ip, mac: Mac) {
        if mac == BROADCAST || mac[0] & 1 != 0 || ip == [0; 4] {
            return;
        }
        if let Some(e) = self.neighbours.iter_mut().find(|(i, _)| *i == ip) {
            e.1 = mac;
            return;
        }
        if self.neighbours.len() == NEIGHBOURS {
            self.neighbours.remove(0);
        }
        self.neighbours.push((ip, mac));
    }

    /// Handles one received frame. `csum_trusted` is true when the transport says the payload
    /// checksums were validated (or deliberately left blank) by the backend.
    pub fn input(&mut self, f: &[u8], csum_trusted: bool) -> Input {
        self.counters.frames_in += 1;
        let r = self.dispatch(f, csum_trusted);
        if r.is_none() {
            self.counters.dropped += 1;
        }
        r.unwrap_or(Input::Nothing)
    }

    fn dispatch(&mut self, f: &[u8], trusted: bool) -> Option<Input> {
        let e = frame::parse_eth(f)?;
        if e.dst != self.mac && e.dst != BROADCAST {
            return None;
        }
        match e.ethertype {
            ETH_ARP => {
                let a = frame::parse_arp(e.payload)?;
                if a.tpa != self.ip && a.op != frame::ARP_REPLY {
                    return None;
                }
                self.learn(a.spa, a.sha);
                let reply = (a.op == frame::ARP_REQUEST && a.tpa == self.ip).then(|| {
                    self.counters.arp_replies_sent += 1;
                    let body = frame::arp_body(&Arp {
                        op: frame::ARP_REPLY,
                        sha: self.mac,
                        spa: self.ip,
                        tha: a.sha,
                        tpa: a.spa,
                    });
                    frame::eth(a.sha, self.mac, ETH_ARP, &body)
                });
                Some(Input::Learned { ip: a.spa, reply })
            }
            ETH_IPV4 => {
                let p = frame::parse_ipv4(e.payload)?;
                if p.dst != self.ip {
                    return None;
                }
                match p.proto {
                    frame::PROTO_ICMP => {
                        let m = frame::parse_echo(p.payload)?;
                        if m.kind == frame::ICMP_ECHO_REPLY {
                            return Some(Input::EchoReply {
                                from: p.src,
                                ident: m.ident,
                                seq: m.seq,
                            });
                        }
                        self.counters.echo_replies_sent += 1;
                        let icmp = frame::echo(frame::ICMP_ECHO_REPLY, m.ident, m.seq, m.data);
                        Some(Input::Reply(self.ip_frame(
                            e.src,
                            p.src,
                            frame::PROTO_ICMP,
                            &icmp,
                        )))
                    }
                    frame::PROTO_UDP => {
                        let u = frame::parse_udp(p.src, p.dst, p.payload, trusted)?;
                        if u.dport != UDP_ECHO_PORT {
                            return Some(Input::Udp {
                                from: p.src,
                                sport: u.sport,
                                dport: u.dport,
                            });
                        }
                        self.counters.udp_echoed += 1;
                        let d = frame::udp(self.ip, p.src, UDP_ECHO_PORT, u.sport, u.payload);
                        Some(Input::Reply(self.ip_frame(
                            e.src,
                            p.src,
                            frame::PROTO_UDP,
                            &d,
                        )))
                    }
                    frame::PROTO_TCP => Some(Input::Tcp {
                        from: p.src,
                        seg: frame::parse_tcp(p.src, p.dst, p.payload, trusted)?,
                    }),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// An IPv4 frame from us to `dst`.
    pub fn ip_frame(&mut self, dst_mac: Mac, dst: Ip, proto: u8, payload: &[u8]) -> Vec<u8> {
        let id = self.ip_id;
        self.ip_id = self.ip_id.wrapping_add(1);
        frame::eth(
            dst_mac,
            self.mac,
            ETH_IPV4,
            &frame::ipv4(self.ip, dst, proto, id, payload),
        )
    }

    /// A broadcast ARP request for `target`.
    pub fn arp_request(&self, target: Ip) -> Vec<u8> {
        let body = frame::arp_body(&Arp {
            op: frame::ARP_REQUEST,
            sha: self.mac,
            spa: self.ip,
            tha: [0; 6],
            tpa: target,
        });
        frame::eth(BROADCAST, self.mac, ETH_ARP, &body)
    }

    pub fn echo_request(&mut self, dst_mac: Mac, dst: Ip, ident: u16, seq: u16) -> Vec<u8> {
        let data: Vec<u8> = (0..56u8).collect();
        let icmp = frame::echo(frame::ICMP_ECHO_REQUEST, ident, seq, &data);
        self.ip_frame(dst_mac, dst, frame::PROTO_ICMP, &icmp)
    }

    pub fn udp_frame(
        &mut self,
        dst_mac: Mac,
        dst: Ip,
        sport: u16,
        dport: u16,
        p: &[u8],
    ) -> Vec<u8> {
        let d = frame::udp(self.ip, dst, sport, dport, p);
        self.ip_frame(dst_mac, dst, frame::PROTO_UDP, &d)
    }

    pub fn tcp_frame(&mut self, dst_mac: Mac, dst: Ip, h: &TcpOut, payload: &[u8]) -> Vec<u8> {
        let t = frame::tcp(self.ip, dst, h, payload);
        self.ip_frame(dst_mac, dst, frame::PROTO_TCP, &t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ip = [192, 0, 2, 5];
    const PEER: Ip = [192, 0, 2, 3];
    const MY_MAC: Mac = [0, 0x16, 0x3e, 0, 0, 5];
    const PEER_MAC: Mac = [0, 0x16, 0x3e, 0, 0, 3];

    #[test]
    fn answers_arp_for_its_address_only_and_learns_the_asker() {
        let mut me = Stack::new(MY_MAC, ME);
        let peer = Stack::new(PEER_MAC, PEER);
        match me.input(&peer.arp_request(ME), false) {
            Input::Learned {
                ip,
                reply: Some(reply),
            } => {
                assert_eq!(ip, PEER);
                let e = frame::parse_eth(&reply).unwrap();
                assert_eq!(e.dst, PEER_MAC);
                let a = frame::parse_arp(e.payload).unwrap();
                assert_eq!((a.op, a.sha, a.spa), (frame::ARP_REPLY, MY_MAC, ME));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(me.neighbour(PEER), Some(PEER_MAC));
        assert_eq!(
            me.input(&peer.arp_request([192, 0, 2, 9]), false),
            Input::Nothing
        );
        assert_eq!(me.counters.dropped, 1);
    }

    #[test]
    fn echo_request_gets_a_reply_and_a_reply_is_reported() {
        let mut me = Stack::new(MY_MAC, ME);
        let mut peer = Stack::new(PEER_MAC, PEER);
        let req = peer.echo_request(MY_MAC, ME, 77, 4);
        let Input::Reply(rep) = me.input(&req, false) else {
            panic!("no echo reply")
        };
        assert_eq!(
            peer.input(&rep, false),
            Input::EchoReply {
                from: ME,
                ident: 77,
                seq: 4
            }
        );
        // Not our address: ignored.
        let other = peer.echo_request(MY_MAC, [192, 0, 2, 99], 1, 1);
        assert_eq!(me.input(&other, false), Input::Nothing);
    }

    #[test]
    fn udp_echo_port_echoes_and_other_ports_are_reported() {
        let mut me = Stack::new(MY_MAC, ME);
        let mut peer = Stack::new(PEER_MAC, PEER);
        let d = peer.udp_frame(MY_MAC, ME, 5555, UDP_ECHO_PORT, b"payload");
        let Input::Reply(rep) = me.input(&d, false) else {
            panic!("no echo")
        };
        let e = frame::parse_eth(&rep).unwrap();
        let p = frame::parse_ipv4(e.payload).unwrap();
        let u = frame::parse_udp(p.src, p.dst, p.payload, false).unwrap();
        assert_eq!((u.sport, u.dport, u.payload), (7, 5555, &b"payload"[..]));
        let d = peer.udp_frame(MY_MAC, ME, 5555, 9, b"x");
        assert_eq!(
            me.input(&d, false),
            Input::Udp {
                from: PEER,
                sport: 5555,
                dport: 9
            }
        );
        assert_eq!(me.input(&d[..20], false), Input::Nothing);
    }
}
