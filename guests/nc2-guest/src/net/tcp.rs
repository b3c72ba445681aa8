//! A minimal TCP sender: connects, sends one byte string, closes. Enough to push a file to a
//! Linux `nc -l` through the driver domain and to compare checksums.
//!
//! What it does: active open with the MSS option, a send window that is the smallest of ours,
//! the peer's advertised window and a congestion window (slow start from 4 segments, one
//! segment per window in congestion avoidance, halved on fast retransmit, one segment after a
//! timeout; no window scaling, no SACK), go-back-N
//! retransmission from the oldest unacknowledged byte when the retransmission timer expires
//! (exponential back-off) or at the third duplicate ACK (fast retransmit; duplicates caused by
//! the retransmission itself are not counted again until everything sent before it is
//! acknowledged), FIN once everything is acknowledged, and an ACK for the peer's FIN.
//! Anything it does not expect (an ACK for bytes never sent, an RST) ends the connection with a
//! reason. Sequence comparisons are modulo 2^32.

use super::frame::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TcpOut, TcpSeg};

/// The window we advertise (we receive nothing but the peer's FIN).
const OUR_WINDOW: u16 = 8192;
/// Retransmissions of one segment before giving up.
const MAX_RETRIES: u32 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SynSent,
    Established,
    /// Our FIN is sent; waiting for its ACK (and the peer's FIN).
    FinSent,
    /// Our FIN is acknowledged: every byte arrived.
    Done,
    /// The SYN was answered with a reset: nobody listens (yet) on that port.
    Refused,
    Failed(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub sport: u16,
    pub dport: u16,
    pub iss: u32,
    /// Our MSS (the largest payload we send, also announced).
    pub mss: u16,
    /// Largest amount of unacknowledged data we keep in flight.
    pub window: u32,
    pub rto_ms: u64,
    pub max_rto_ms: u64,
}

/// A segment to send: header and the byte range of the data (`start..start+len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub header: TcpOut,
    pub data_start: usize,
    pub data_len: usize,
}

pub struct Sender {
    cfg: Config,
    len: u32,
    state: State,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number ever sent (retransmission rewinds `snd_nxt`, not this).
    snd_max: u32,
    rcv_nxt: u32,
    peer_window: u32,
    cwnd: u32,
    ssthresh: u32,
    peer_mss: u32,
    peer_fin: bool,
    ack_due: bool,
    rto_ms: u64,
    /// When the oldest unacknowledged segment times out (None: nothing in flight).
    deadline: Option<u64>,
    retries: u32,
    dupacks: u32,
    /// `snd_max` at the last fast retransmit: duplicate ACKs count again once it is acked.
    recover: u32,
    pub retransmits: u32,
    pub fast_retransmits: u32,
    pub segments_sent: u64,
}

fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn le(a: u32, b: u32) -> bool {
    !lt(b, a)
}

impl Sender {
    /// A sender of `len` bytes (at most 2^31 - 1).
    pub fn new(cfg: Config, len: u32) -> Self {
        Sender {
            cfg,
            len: len.min(i32::MAX as u32),
            state: State::SynSent,
            snd_una: cfg.iss,
            snd_nxt: cfg.iss,
            snd_max: cfg.iss,
            rcv_nxt: 0,
            peer_window: 0,
            cwnd: 0,
            ssthresh: 0,
            peer_mss: 536,
            peer_fin: false,
            ack_due: false,
            rto_ms: cfg.rto_ms,
            deadline: None,
            retries: 0,
            dupacks: 0,
            recover: cfg.iss,
            retransmits: 0,
            fast_retransmits: 0,
            segments_sent: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes the peer acknowledged.
    pub fn acked(&self) -> u32 {
        match self.state {
            State::SynSent => 0,
            _ => self
                .snd_una
                .wrapping_sub(self.cfg.iss.wrapping_add(1))
                .min(self.len),
        }
    }

    pub fn peer_fin(&self) -> bool {
        self.peer_fin
    }

    /// When `poll` next needs calling even if nothing arrives.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    fn data_start(&self) -> u32 {
        self.cfg.iss.wrapping_add(1)
    }

    fn fin_seq(&self) -> u32 {
        self.data_start().wrapping_add(self.len)
    }

    /// The segment size both ends accept.
    fn mss(&self) -> u32 {
        u32::from(self.cfg.mss).min(self.peer_mss)
    }

    /// Half the data in flight, at least two segments (the new slow-start threshold).
    fn half_flight(&self) -> u32 {
        (self.snd_max.wrapping_sub(self.snd_una) / 2).max(2 * self.mss())
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    fn header(&self, seq: u32, flags: u8) -> TcpOut {
        TcpOut {
            sport: self.cfg.sport,
            dport: self.cfg.dport,
            seq,
            ack: if flags & TCP_ACK != 0 {
                self.rcv_nxt
            } else {
                0
            },
            flags,
            window: OUR_WINDOW,
            mss: (flags & TCP_SYN != 0).then_some(self.cfg.mss),
        }
    }

    /// Processes a segment from the peer (already matched to our ports).
    pub fn input(&mut self, seg: &TcpSeg, now: u64) {
        if matches!(self.state, State::Failed(_) | State::Refused) {
            return;
        }
        if seg.flags & TCP_RST != 0 {
            self.state = if self.state == State::SynSent {
                State::Refused
            } else {
                State::Failed("the peer reset the connection")
            };
            self.deadline = None;
            return;
        }
        if self.state == State::SynSent {
            if seg.flags & (TCP_SYN | TCP_ACK) != TCP_SYN | TCP_ACK {
                return;
            }
            if seg.ack != self.cfg.iss.wrapping_add(1) {
                self.state = State::Failed("the SYN-ACK acknowledges something we did not send");
                return;
            }
            self.rcv_nxt = seg.seq.wrapping_add(1);
            self.snd_una = seg.ack;
            self.snd_nxt = seg.ack;
            self.snd_max = seg.ack;
            self.peer_window = u32::from(seg.window);
            self.peer_mss = u32::from(seg.mss.unwrap_or(536)).max(64);
            self.cwnd = 4 * self.mss();
            self.ssthresh = self.cfg.window;
            self.state = State::Established;
            self.ack_due = true;
            self.deadline = None;
            self.retries = 0;
            self.rto_ms = self.cfg.rto_ms;
            return;
        }
        if seg.flags & TCP_ACK != 0 {
            if lt(self.snd_max, seg.ack) {
                // Acknowledges bytes never sent: a broken or hostile peer. Answer with an ACK
                // (RFC 9293) and ignore it.
                self.ack_due = true;
                return;
            }
            if seg.ack == self.snd_una
                && seg.payload_len == 0
                && seg.flags & (TCP_SYN | TCP_FIN) == 0
                && self.snd_una != self.snd_max
                && le(self.recover, self.snd_una)
            {
                self.dupacks += 1;
                if self.dupacks == 3 {
                    self.dupacks = 0;
                    self.fast_retransmits += 1;
                    self.ssthresh = self.half_flight();
                    self.cwnd = self.ssthresh;
                    self.recover = self.snd_max;
                    self.snd_nxt = self.snd_una;
                }
            }
            if lt(self.snd_una, seg.ack) {
                self.dupacks = 0;
                let acked = seg.ack.wrapping_sub(self.snd_una);
                let mss = self.mss();
                self.cwnd = if self.cwnd < self.ssthresh {
                    self.cwnd + acked.min(mss)
                } else {
                    self.cwnd + (mss * mss / self.cwnd.max(1)).max(1)
                }
                .min(self.cfg.window);
                self.snd_una = seg.ack;
                if lt(self.snd_nxt, self.snd_una) {
                    self.snd_nxt = self.snd_una;
                }
                self.retries = 0;
                self.rto_ms = self.cfg.rto_ms;
                self.deadline = (self.snd_una != self.snd_max).then_some(now + self.rto_ms);
            }
            self.peer_window = u32::from(seg.window);
        }
        // The peer sends no data we want; its FIN is accepted in order only.
        let their_end = seg.seq.wrapping_add(seg.payload_len);
        if seg.payload_len > 0 {
            self.ack_due = true;
        }
        if seg.flags & TCP_FIN != 0 && seg.seq.wrapping_add(seg.payload_len) == self.rcv_nxt {
            self.rcv_nxt = their_end.wrapping_add(1);
            self.peer_fin = true;
            self.ack_due = true;
        } else if seg.flags & TCP_FIN != 0 && self.peer_fin {
            self.ack_due = true;
        }
        if self.state == State::FinSent && self.snd_una == self.fin_seq().wrapping_add(1) {
            self.state = State::Done;
            self.deadline = None;
        }
    }

    /// The next segment to send now, if any; the caller sends it (or, if it cannot, does not
    /// call again until it can: the segment is already accounted as sent, and the
    /// retransmission timer recovers it).
    pub fn poll(&mut self, now: u64) -> Option<Segment> {
        if matches!(self.state, State::Failed(_) | State::Refused) {
            return None;
        }
        if let Some(d) = self.deadline
            && now >= d
        {
            self.retries += 1;
            if self.retries > MAX_RETRIES {
                self.state = State::Failed("retransmissions exhausted");
                self.deadline = None;
                return None;
            }
            self.retransmits += 1;
            if self.state != State::SynSent {
                self.ssthresh = self.half_flight();
                self.cwnd = self.mss();
            }
            self.rto_ms = (self.rto_ms * 2).min(self.cfg.max_rto_ms);
            self.deadline = Some(now + self.rto_ms);
            // Go back N: resend from the oldest unacknowledged byte.
            self.snd_nxt = self.snd_una;
        }
        let seg = self.next_segment();
        if seg.is_some() {
            self.segments_sent += 1;
            if self.deadline.is_none() && self.snd_una != self.snd_max {
                self.deadline = Some(now + self.rto_ms);
            }
        }
        seg
    }

    fn next_segment(&mut self) -> Option<Segment> {
        match self.state {
            State::SynSent => {
                if self.snd_nxt != self.cfg.iss {
                    return None;
                }
                self.snd_nxt = self.cfg.iss.wrapping_add(1);
                self.snd_max = self.snd_nxt;
                Some(Segment {
                    header: self.header(self.cfg.iss, TCP_SYN),
                    data_start: 0,
                    data_len: 0,
                })
            }
            State::Established | State::FinSent => {
                let end = self.fin_seq();
                if lt(self.snd_nxt, end) {
                    let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
                    let window = self.peer_window.min(self.cfg.window).min(self.cwnd);
                    let room = window.saturating_sub(in_flight);
                    let mss = self.mss();
                    let left = end.wrapping_sub(self.snd_nxt);
                    let n = left.min(mss).min(room);
                    // Send a full segment, the last piece, or (window permitting) nothing.
                    if n > 0 && (n == left || n == mss || in_flight == 0) {
                        let seq = self.snd_nxt;
                        self.snd_nxt = seq.wrapping_add(n);
                        if lt(self.snd_max, self.snd_nxt) {
                            self.snd_max = self.snd_nxt;
                        }
                        self.ack_due = false;
                        let flags = TCP_ACK | if n == left { TCP_PSH } else { 0 };
                        return Some(Segment {
                            header: self.header(seq, flags),
                            data_start: seq.wrapping_sub(self.data_start()) as usize,
                            data_len: n as usize,
                        });
                    }
                }
                // All data sent and acknowledged: FIN (again, after a rewind).
                if self.snd_una == end && self.snd_nxt == end {
                    self.snd_nxt = end.wrapping_add(1);
                    self.snd_max = self.snd_nxt;
                    self.state = State::FinSent;
                    self.ack_due = false;
                    return Some(Segment {
                        header: self.header(end, TCP_FIN | TCP_ACK),
                        data_start: self.len as usize,
                        data_len: 0,
                    });
                }
                self.pure_ack()
            }
            State::Done => self.pure_ack(),
            State::Failed(_) | State::Refused => None,
        }
    }

    fn pure_ack(&mut self) -> Option<Segment> {
        if !self.ack_due {
            return None;
        }
        self.ack_due = false;
        let seq = if le(self.snd_nxt, self.snd_max) {
            self.snd_nxt
        } else {
            self.snd_max
        };
        Some(Segment {
            header: self.header(seq, TCP_ACK),
            data_start: 0,
            data_len: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            sport: 40000,
            dport: 5000,
            iss: 0xffff_f000, // wraps during the transfer
            mss: 1000,
            window: 8000,
            rto_ms: 100,
            max_rto_ms: 1000,
        }
    }

    fn synack(win: u16) -> TcpSeg {
        TcpSeg {
            sport: 5000,
            dport: 40000,
            seq: 500,
            ack: cfg().iss.wrapping_add(1),
            flags: TCP_SYN | TCP_ACK,
            window: win,
            mss: Some(1460),
            payload_len: 0,
        }
    }

    fn ack(n: u32, win: u16) -> TcpSeg {
        TcpSeg {
            sport: 5000,
            dport: 40000,
            seq: 501,
            ack: n,
            flags: TCP_ACK,
            window: win,
            mss: None,
            payload_len: 0,
        }
    }

    /// A receiver that accepts in-order data only, over a link that may drop segments.
    fn run(len: u32, mut drop: impl FnMut(u64) -> bool) -> (Sender, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut s = Sender::new(cfg(), len);
        let mut got = Vec::new();
        let mut now = 0u64;
        let mut n = 0u64;
        let syn = s.poll(now).unwrap();
        assert_eq!(syn.header.flags, TCP_SYN);
        assert_eq!(syn.header.mss, Some(1000));
        s.input(&synack(8000), now);
        let mut fin_acked = false;
        for _ in 0..100_000 {
            let mut acks = Vec::new();
            while let Some(seg) = s.poll(now) {
                n += 1;
                if drop(n) {
                    continue;
                }
                let expect = cfg().iss.wrapping_add(1).wrapping_add(got.len() as u32);
                if seg.header.seq == expect && seg.data_len > 0 {
                    got.extend_from_slice(&data[seg.data_start..seg.data_start + seg.data_len]);
                }
                let mut a = expect.wrapping_add(if seg.header.seq == expect {
                    seg.data_len as u32
                } else {
                    0
                });
                if seg.header.flags & TCP_FIN != 0 && got.len() as u32 == len {
                    a = a.wrapping_add(1);
                    fin_acked = true;
                }
                acks.push(ack(a, 8000));
            }
            for a in &acks {
                s.input(a, now);
            }
            if s.state() == State::Done {
                break;
            }
            now += 10;
        }
        assert!(fin_acked);
        (s, got)
    }

    #[test]
    fn sends_everything_in_order_over_a_clean_link() {
        let (s, got) = run(10_000, |_| false);
        assert_eq!(s.state(), State::Done);
        assert_eq!(got.len(), 10_000);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(s.retransmits, 0);
        assert_eq!(s.acked(), 10_000);
    }

    #[test]
    fn recovers_from_lost_segments_by_retransmission() {
        let (s, got) = run(20_000, |n| n % 7 == 3);
        assert_eq!(s.state(), State::Done);
        assert_eq!(got.len(), 20_000);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert!(s.retransmits + s.fast_retransmits > 0);
        // One loss inside a full window is repaired by duplicate ACKs, not the timer.
        let (s, got) = run(20_000, |n| n == 4);
        assert_eq!(got.len(), 20_000);
        assert_eq!((s.fast_retransmits, s.retransmits), (1, 0));
    }

    #[test]
    fn a_lost_burst_is_recovered_by_the_timer_and_slow_start() {
        // Everything after the 5th segment of a flight lost (a full queue drops the tail):
        // no duplicate ACKs, so the timer recovers it.
        let (s, got) = run(30_000, |n| (6..=14).contains(&n));
        assert_eq!(got.len(), 30_000);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert!(s.retransmits >= 1);
        assert!(s.cwnd() <= 8000);
    }

    #[test]
    fn slow_start_grows_the_window_from_four_segments() {
        let mut s = Sender::new(cfg(), 100_000);
        s.poll(0);
        s.input(&synack(8000), 0);
        let mut flight = 0;
        while let Some(seg) = s.poll(0) {
            flight += seg.data_len;
        }
        assert_eq!(flight, 4000, "initial window: 4 segments");
        s.input(&ack(cfg().iss.wrapping_add(1 + 2000), 8000), 0);
        let mut more = 0;
        while let Some(seg) = s.poll(0) {
            more += seg.data_len;
        }
        // Two segments acknowledged: the window grew by one segment per ACK.
        assert_eq!(more, 2000 + 1000);
    }

    #[test]
    fn never_exceeds_the_peer_window() {
        let mut s = Sender::new(cfg(), 100_000);
        s.poll(0);
        s.input(&synack(1500), 0);
        let mut inflight = 0;
        while let Some(seg) = s.poll(0) {
            inflight += seg.data_len;
        }
        // One full segment; the 500 bytes left in the window wait for an ACK rather than go
        // out as a small segment.
        assert_eq!(inflight, 1000);
    }

    #[test]
    fn reset_and_bogus_acks() {
        let mut s = Sender::new(cfg(), 100);
        s.poll(0);
        let mut bad = synack(1000);
        bad.ack = 7;
        s.input(&bad, 0);
        assert!(matches!(s.state(), State::Failed(_)));

        let mut s = Sender::new(cfg(), 5000);
        s.poll(0);
        s.input(&synack(4000), 0);
        while s.poll(0).is_some() {}
        // An ACK beyond anything sent moves nothing.
        s.input(&ack(cfg().iss.wrapping_add(100_000), 4000), 0);
        assert_eq!(s.acked(), 0);
        let mut rst = ack(0, 0);
        rst.flags = TCP_RST;
        s.input(&rst, 0);
        assert_eq!(s.state(), State::Failed("the peer reset the connection"));
        assert_eq!(s.poll(1_000_000), None);
    }

    #[test]
    fn gives_up_after_too_many_timeouts() {
        let mut s = Sender::new(cfg(), 10);
        let mut now = 0;
        let mut sent = 0;
        while now < 1_000_000 {
            if s.poll(now).is_some() {
                sent += 1;
            }
            if matches!(s.state(), State::Failed(_)) {
                break;
            }
            now += 50;
        }
        assert_eq!(s.state(), State::Failed("retransmissions exhausted"));
        assert_eq!(sent, MAX_RETRIES + 1);
    }
}
