//! The application over a connected [`Link`]: answers ARP and ICMP echo for our address, echoes
//! UDP on port 7, pings a peer, runs the packet generator, and sends a file over TCP with its
//! SHA-256 printed first. Each stage logs a marker line (`NC2_GUEST_*`) the bed test waits for.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nc2_guest::args::{Args, file_bytes};
use nc2_guest::net::stack::{Input, Stack};
use nc2_guest::net::tcp::{self, Sender, State};
use nc2_guest::net::{Ip, Mac};
use nc2_guest::sha256::{self, Sha256};

use crate::env::Env;
use crate::link::Link;

const ARP_TIMEOUT_MS: u64 = 10_000;
const PING_COUNT: u16 = 5;
const PING_TIMEOUT_MS: u64 = 5_000;
const TCP_SPORT: u16 = 40_000;
const GEN_SPORT: u16 = 39_999;
/// How long a refused connection is retried (the peer may not listen yet).
const CONNECT_RETRY_MS: u64 = 180_000;

fn ip_str(ip: Ip) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

pub struct App<'l> {
    link: &'l mut dyn Link,
    pub stack: Stack,
    echo_replies: Vec<(Ip, u16)>,
    tcp_in: Vec<(Ip, nc2_guest::net::frame::TcpSeg)>,
}

impl<'l> App<'l> {
    pub fn new(link: &'l mut dyn Link, mac: Mac, ip: Ip) -> Self {
        App {
            link,
            stack: Stack::new(mac, ip),
            echo_replies: Vec::new(),
            tcp_in: Vec::new(),
        }
    }

    /// Sends a frame if a buffer is free now.
    pub fn try_send(&mut self, f: &[u8]) -> Result<bool, String> {
        self.link.send(f)
    }

    /// Sends a frame, waiting (polling the link) while no buffer is free.
    pub fn send(&mut self, env: &Env, f: &[u8]) -> Result<(), String> {
        let start = env.now_ms();
        loop {
            if self.link.send(f)? {
                return Ok(());
            }
            self.pump(env, 0)?;
            if env.now_ms() - start > 10_000 {
                return Err("no transmit buffer came back in 10 s".into());
            }
        }
    }

    /// Handles everything received; sleeps up to `wait_ms` first if nothing is waiting.
    pub fn pump(&mut self, env: &Env, wait_ms: u64) -> Result<(), String> {
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let got = {
            let stack = &mut self.stack;
            let echo = &mut self.echo_replies;
            let tcp_in = &mut self.tcp_in;
            self.link
                .poll(&mut |frame, trusted| match stack.input(frame, trusted) {
                    Input::Reply(r) => replies.push(r),
                    Input::Learned { reply: Some(r), .. } => replies.push(r),
                    Input::EchoReply { from, seq, .. } => echo.push((from, seq)),
                    Input::Tcp { from, seg } => tcp_in.push((from, seg)),
                    _ => {}
                })?
        };
        for r in replies {
            self.send(env, &r)?;
        }
        if got == 0 && wait_ms > 0 && !self.link.prepare_sleep()? {
            env.sleep(wait_ms);
        }
        Ok(())
    }

    /// The MAC of `ip`, asking with ARP until it answers.
    pub fn resolve(&mut self, env: &Env, ip: Ip) -> Result<Mac, String> {
        let start = env.now_ms();
        let mut next = 0;
        loop {
            if let Some(m) = self.stack.neighbour(ip) {
                return Ok(m);
            }
            let now = env.now_ms();
            if now - start > ARP_TIMEOUT_MS {
                return Err(format!("no ARP reply from {}", ip_str(ip)));
            }
            if now >= next {
                let req = self.stack.arp_request(ip);
                self.send(env, &req)?;
                next = now + 1000;
            }
            self.pump(env, 100)?;
        }
    }

    /// Five echo requests; returns how many were answered.
    pub fn ping(&mut self, env: &Env, ip: Ip) -> Result<u16, String> {
        let mac = self.resolve(env, ip)?;
        let mut answered = 0;
        for seq in 1..=PING_COUNT {
            let t0 = env.now_ms();
            let req = self.stack.echo_request(mac, ip, 0x6e32, seq);
            self.send(env, &req)?;
            loop {
                if let Some(i) = self
                    .echo_replies
                    .iter()
                    .position(|&(f, s)| f == ip && s == seq)
                {
                    self.echo_replies.swap_remove(i);
                    answered += 1;
                    log::info!(
                        "echo reply from {} seq {seq}: {} ms",
                        ip_str(ip),
                        env.now_ms() - t0
                    );
                    break;
                }
                if env.now_ms() - t0 > PING_TIMEOUT_MS {
                    log::warn!("no echo reply from {} for seq {seq}", ip_str(ip));
                    break;
                }
                self.pump(env, 50)?;
            }
        }
        Ok(answered)
    }

    /// The packet generator: `count` UDP datagrams of 1000 bytes, as fast as buffers allow.
    pub fn generate(&mut self, env: &Env, ip: Ip, port: u16, count: u32) -> Result<(), String> {
        let mac = self.resolve(env, ip)?;
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let t0 = env.now_ms();
        for _ in 0..count {
            let f = self.stack.udp_frame(mac, ip, GEN_SPORT, port, &payload);
            self.send(env, &f)?;
            self.pump(env, 0)?;
        }
        let ms = (env.now_ms() - t0).max(1);
        log::info!(
            "NC2_GUEST_GEN_DONE {count} datagrams to {}:{port} in {ms} ms ({} pps)",
            ip_str(ip),
            u64::from(count) * 1000 / ms
        );
        Ok(())
    }

    /// Sends `data` to `ip:port` over TCP. Returns the wall time in ms. A connection refused
    /// (nobody listening yet) is tried again every second for [`CONNECT_RETRY_MS`].
    pub fn send_file(&mut self, env: &Env, ip: Ip, port: u16, data: &[u8]) -> Result<u64, String> {
        let start = env.now_ms();
        let mut attempt = 0u16;
        loop {
            match self.send_file_once(env, ip, port, data, TCP_SPORT.wrapping_add(attempt))? {
                Some(ms) => return Ok(ms),
                None if env.now_ms() - start < CONNECT_RETRY_MS => {
                    attempt += 1;
                    log::info!(
                        "TCP to {}:{port}: refused, trying again in 1 s (attempt {attempt})",
                        ip_str(ip)
                    );
                    let until = env.now_ms() + 1000;
                    while env.now_ms() < until {
                        self.pump(env, 100)?;
                    }
                }
                None => return Err(format!("TCP to {}:{port}: connection refused", ip_str(ip))),
            }
        }
    }

    /// One connection from `sport`; `None` when the SYN was refused.
    fn send_file_once(
        &mut self,
        env: &Env,
        ip: Ip,
        port: u16,
        data: &[u8],
        sport: u16,
    ) -> Result<Option<u64>, String> {
        let mac = self.resolve(env, ip)?;
        let iss = (env.now_ms() as u32).wrapping_mul(2_654_435_761);
        let mut s = Sender::new(
            tcp::Config {
                sport,
                dport: port,
                iss,
                mss: 1460,
                window: 32 * 1024,
                rto_ms: 500,
                max_rto_ms: 2000,
            },
            data.len() as u32,
        );
        let t0 = env.now_ms();
        let mut last_log = t0;
        loop {
            for (from, seg) in core::mem::take(&mut self.tcp_in) {
                if from == ip && seg.sport == port && seg.dport == sport {
                    s.input(&seg, env.now_ms());
                }
            }
            match s.state() {
                State::Done => break,
                State::Refused => return Ok(None),
                State::Failed(why) => {
                    return Err(format!("TCP to {}:{port}: {why}", ip_str(ip)));
                }
                _ => {}
            }
            let mut sent = false;
            while self.link.tx_in_flight() < 48 {
                let Some(seg) = s.poll(env.now_ms()) else {
                    break;
                };
                let body = &data[seg.data_start..seg.data_start + seg.data_len];
                let f = self.stack.tcp_frame(mac, ip, &seg.header, body);
                self.send(env, &f)?;
                sent = true;
            }
            let now = env.now_ms();
            if now - last_log > 5000 {
                last_log = now;
                log::info!(
                    "TCP: {} of {} bytes acknowledged, {} timeouts, {} fast retransmits",
                    s.acked(),
                    data.len(),
                    s.retransmits,
                    s.fast_retransmits
                );
            }
            let wait = match s.deadline() {
                Some(d) => d.saturating_sub(now).clamp(1, 100),
                None => 100,
            };
            self.pump(env, if sent { 0 } else { wait })?;
        }
        let ms = env.now_ms() - t0;
        log::info!(
            "TCP: {} bytes in {ms} ms, {} segments, {} timeouts, {} fast retransmits, peer FIN {}",
            data.len(),
            s.segments_sent,
            s.retransmits,
            s.fast_retransmits,
            s.peer_fin()
        );
        // Acknowledge the peer's FIN if it comes soon (nc closes after our FIN).
        let end = env.now_ms() + 2000;
        while !s.peer_fin() && env.now_ms() < end {
            for (from, seg) in core::mem::take(&mut self.tcp_in) {
                if from == ip && seg.sport == port && seg.dport == sport {
                    s.input(&seg, env.now_ms());
                }
            }
            if let Some(seg) = s.poll(env.now_ms()) {
                let f = self.stack.tcp_frame(mac, ip, &seg.header, &[]);
                self.send(env, &f)?;
            }
            self.pump(env, 50)?;
        }
        if let Some(seg) = s.poll(env.now_ms()) {
            let f = self.stack.tcp_frame(mac, ip, &seg.header, &[]);
            self.send(env, &f)?;
        }
        Ok(Some(ms))
    }
}

/// The whole application run for `args`, then serving (ARP, echo, UDP echo) until the domain
/// is destroyed.
pub fn run(env: &Env, link: &mut dyn Link, mac: Mac, args: &Args) -> Result<(), String> {
    let name = link.name();
    let mut app = App::new(link, mac, args.ip);
    if let Some(p) = args.ping {
        let t0 = env.now_ms();
        let n = app.ping(env, p)?;
        let ms = env.now_ms() - t0;
        if n == PING_COUNT {
            log::info!("NC2_GUEST_PING_OK {n}/{PING_COUNT} over {name} in {ms} ms");
        } else {
            log::error!("NC2_GUEST_PING_LOST {n}/{PING_COUNT} over {name}");
        }
    }
    if let Some((ip, port, count)) = args.generate {
        app.generate(env, ip, port, count)?;
    }
    if let Some((ip, port)) = args.send {
        let data = file_bytes(args.seed, args.file_size as usize);
        let mut h = Sha256::new();
        h.update(&data);
        log::info!(
            "NC2_GUEST_SHA {} ({} bytes)",
            sha256::hex(&h.finish()),
            data.len()
        );
        match app.send_file(env, ip, port, &data) {
            Ok(ms) => log::info!("NC2_GUEST_SENT {} bytes over {name} in {ms} ms", data.len()),
            Err(e) => log::error!("NC2_GUEST_SEND_FAILED {e}"),
        }
    }
    log::info!("NC2_GUEST_SERVING on {} over {name}", ip_str(args.ip));
    let mut last = env.now_ms();
    let mut logged = app.stack.counters;
    loop {
        app.pump(env, 1000)?;
        if env.now_ms() - last > 5_000 && app.stack.counters != logged {
            last = env.now_ms();
            let c = app.stack.counters;
            logged = c;
            log::info!(
                "counters: {} frames in, {} dropped, {} ARP replies, {} echo replies, {} UDP echoed",
                c.frames_in,
                c.dropped,
                c.arp_replies_sent,
                c.echo_replies_sent,
                c.udp_echoed
            );
        }
    }
}
