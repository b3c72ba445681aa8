//! The request/response client.
//!
//! One request is outstanding at a time: the client writes a message, then reads messages until
//! the reply carrying that request's id arrives. `WATCH_EVENT`s that arrive before it are queued
//! for [`Client::next_watch_event`]; replies to other request ids (left over from a request that
//! failed half-way) are dropped. Every reply is checked against its request (type, `ERROR`
//! payload, size) before use; malformed watch events are dropped and counted, so a bad event
//! cannot make a good reply fail.

use super::alloc::collections::VecDeque;
use super::alloc::string::String;
use super::alloc::vec::Vec;

use super::path::{check_path, check_payload, check_token, check_watch_path};
use super::ring::{RingPage, Rings};
use super::wire::{Error, HEADER_LEN, Header, MsgType, XENSTORE_PAYLOAD_MAX, XsErrno};

/// A transaction id; [`NO_TX`] outside transactions.
pub type TxId = u32;
pub const NO_TX: TxId = 0;

/// How many times [`Client::transaction`] retries a transaction that conflicts (`EAGAIN`).
pub const MAX_TX_ATTEMPTS: u32 = 16;

/// The ring page and the event channel to xenstored.
pub trait Transport {
    type Page: RingPage;
    fn page(&self) -> &Self::Page;
    /// Kicks the peer (event channel send): there are requests to read or reply space freed.
    fn notify(&mut self);
    /// Blocks until the peer may have produced replies or consumed requests.
    fn wait(&mut self) -> Result<(), Error>;
}

/// A fired watch: the path that changed (or the watched path itself, once, when the watch is
/// set) and the token given to [`Client::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

pub struct Client<T: Transport> {
    t: T,
    rings: Rings,
    next_req: u32,
    /// Reply bytes received but not yet a whole message.
    rx: Vec<u8>,
    events: VecDeque<WatchEvent>,
    dropped_events: u32,
    dropped_replies: u32,
}

fn nul_terminated(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\0").unwrap_or(b)
}

fn utf8(b: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(b).map_err(|_| Error::Protocol("reply is not UTF-8"))
}

fn parse_event(p: &[u8]) -> Option<WatchEvent> {
    let mut parts = p.split(|&c| c == 0);
    let path = core::str::from_utf8(parts.next()?).ok()?;
    let token = core::str::from_utf8(parts.next()?).ok()?;
    // Anything after the token's NUL must be empty (a trailing NUL splits off an empty part).
    if parts.any(|rest| !rest.is_empty()) || path.is_empty() {
        return None;
    }
    Some(WatchEvent {
        path: path.into(),
        token: token.into(),
    })
}

impl<T: Transport> Client<T> {
    /// A client over a connected ring.
    pub fn new(t: T) -> Self {
        let rings = Rings::attach(t.page());
        Self {
            t,
            rings,
            next_req: 1,
            rx: Vec::new(),
            events: VecDeque::new(),
            dropped_events: 0,
            dropped_replies: 0,
        }
    }

    pub fn transport(&self) -> &T {
        &self.t
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.t
    }

    /// Watch events dropped because they were malformed.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// Replies dropped because no request of ours was waiting for them.
    pub fn dropped_replies(&self) -> u32 {
        self.dropped_replies
    }

    fn send_msg(&mut self, h: Header, parts: &[&[u8]]) -> Result<(), Error> {
        let mut msg = Vec::with_capacity(HEADER_LEN + h.len as usize);
        msg.extend_from_slice(&h.encode());
        for p in parts {
            msg.extend_from_slice(p);
        }
        let mut sent = 0;
        loop {
            let n = self.rings.send(self.t.page(), &msg[sent..])?;
            sent += n;
            if n > 0 {
                self.t.notify();
            }
            if sent == msg.len() {
                return Ok(());
            }
            // Wait only when the ring was full; the peer may have made room meanwhile.
            if n == 0 {
                self.t.wait()?;
            }
        }
    }

    /// The next whole message, if one is (or, when `block`, becomes) available.
    fn recv_msg(&mut self, block: bool) -> Result<Option<(Header, Vec<u8>)>, Error> {
        loop {
            if self.rx.len() >= HEADER_LEN {
                let mut hb = [0; HEADER_LEN];
                hb.copy_from_slice(&self.rx[..HEADER_LEN]);
                let h = Header::decode(&hb);
                if h.len as usize > XENSTORE_PAYLOAD_MAX {
                    return Err(Error::ReplyTooLarge(h.len));
                }
                let total = HEADER_LEN + h.len as usize;
                if self.rx.len() >= total {
                    let payload = self.rx[HEADER_LEN..total].to_vec();
                    self.rx.drain(..total);
                    return Ok(Some((h, payload)));
                }
            }
            let mut buf = [0u8; 1024];
            let n = self.rings.recv(self.t.page(), &mut buf)?;
            if n > 0 {
                self.rx.extend_from_slice(&buf[..n]);
                // xenstored may be waiting for room to write the rest.
                self.t.notify();
                continue;
            }
            if !block {
                return Ok(None);
            }
            self.t.wait()?;
        }
    }

    fn queue_event(&mut self, payload: &[u8]) {
        match parse_event(payload) {
            Some(e) => self.events.push_back(e),
            None => self.dropped_events += 1,
        }
    }

    /// Sends one request and returns the payload of its reply.
    fn request(&mut self, ty: MsgType, tx: TxId, parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
        check_payload(parts)?;
        let len = parts.iter().map(|p| p.len()).sum::<usize>() as u32;
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        let h = Header {
            ty: ty as u32,
            req_id,
            tx_id: tx,
            len,
        };
        self.send_msg(h, parts)?;
        loop {
            let Some((rh, payload)) = self.recv_msg(true)? else {
                continue;
            };
            if rh.ty == MsgType::WatchEvent as u32 {
                self.queue_event(&payload);
                continue;
            }
            if rh.req_id != req_id {
                self.dropped_replies += 1;
                continue;
            }
            if rh.ty == MsgType::Error as u32 {
                return Err(Error::Xs(XsErrno::from_payload(&payload)));
            }
            if rh.ty != ty as u32 {
                return Err(Error::Protocol("reply type differs from the request"));
            }
            return Ok(payload);
        }
    }

    /// The value at `path` (bytes, as stored).
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, Error> {
        check_path(path)?;
        self.request(MsgType::Read, tx, &[path.as_bytes(), b"\0"])
    }

    /// The value at `path` as text.
    pub fn read_string(&mut self, tx: TxId, path: &str) -> Result<String, Error> {
        self.read(tx, path).and_then(utf8)
    }

    /// The value at `path` as a decimal number (states, grant refs, ports, domain ids).
    pub fn read_u64(&mut self, tx: TxId, path: &str) -> Result<u64, Error> {
        let v = self.read(tx, path)?;
        core::str::from_utf8(nul_terminated(&v))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(Error::Protocol("value is not a decimal number"))
    }

    /// Writes `value` at `path`, creating missing parents.
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), Error> {
        check_path(path)?;
        self.request(MsgType::Write, tx, &[path.as_bytes(), b"\0", value])
            .map(drop)
    }

    /// Names of the children of `path`.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, Error> {
        check_path(path)?;
        let p = self.request(MsgType::Directory, tx, &[path.as_bytes(), b"\0"])?;
        nul_terminated(&p)
            .split(|&c| c == 0)
            .filter(|n| !n.is_empty())
            .map(|n| utf8(n.to_vec()))
            .collect()
    }

    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        check_path(path)?;
        self.request(MsgType::Mkdir, tx, &[path.as_bytes(), b"\0"])
            .map(drop)
    }

    /// Removes `path` and everything below it.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        check_path(path)?;
        self.request(MsgType::Rm, tx, &[path.as_bytes(), b"\0"])
            .map(drop)
    }

    /// Watches `path` and everything below it. xenstored fires the watch once right away.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        check_watch_path(path)?;
        check_token(token)?;
        self.request(
            MsgType::Watch,
            NO_TX,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        )
        .map(drop)
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        check_watch_path(path)?;
        check_token(token)?;
        self.request(
            MsgType::Unwatch,
            NO_TX,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        )
        .map(drop)
    }

    /// The home path of domain `domid` (`/local/domain/<domid>`).
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, Error> {
        let mut num = [0u8; 5];
        let digits = decimal(domid, &mut num);
        let p = self.request(MsgType::GetDomainPath, NO_TX, &[digits, b"\0"])?;
        let s = utf8(nul_terminated(&p).to_vec())?;
        if !s.starts_with('/') {
            return Err(Error::Protocol("domain path is not absolute"));
        }
        Ok(s)
    }

    /// Our own domain id, from the `domid` key the toolstack writes in our home directory.
    pub fn read_domid(&mut self) -> Result<u16, Error> {
        let d = self.read_u64(NO_TX, "domid")?;
        u16::try_from(d).map_err(|_| Error::Protocol("domid out of range"))
    }

    pub fn transaction_start(&mut self) -> Result<TxId, Error> {
        let p = self.request(MsgType::TransactionStart, NO_TX, &[b"\0"])?;
        let id = core::str::from_utf8(nul_terminated(&p))
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&id| id != NO_TX)
            .ok_or(Error::Protocol("bad transaction id"))?;
        Ok(id)
    }

    /// Commits (`commit`) or aborts a transaction. A conflicting commit fails with
    /// `Error::Xs(XsErrno::EAGAIN)`: nothing was applied, run the transaction again.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, tx, &[arg]).map(drop)
    }

    /// Runs `body` in a transaction and commits it, running it again (up to [`MAX_TX_ATTEMPTS`]
    /// times) while xenstore reports a conflict. `body` must be safe to repeat.
    pub fn transaction<R>(
        &mut self,
        mut body: impl FnMut(&mut Self, TxId) -> Result<R, Error>,
    ) -> Result<R, Error> {
        const EAGAIN: Error = Error::Xs(XsErrno::EAGAIN);
        for _ in 0..MAX_TX_ATTEMPTS {
            let tx = self.transaction_start()?;
            match body(self, tx) {
                Ok(r) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok(r),
                    Err(EAGAIN) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    // The body's error is the one to report; an abort failure adds nothing.
                    let _ = self.transaction_end(tx, false);
                    if e != EAGAIN {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::RetriesExhausted)
    }

    /// The next watch event, waiting for one if none is queued.
    pub fn next_watch_event(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(e) = self.poll_watch_event()? {
                return Ok(e);
            }
            self.t.wait()?;
        }
    }

    /// A queued or already-arrived watch event, without waiting.
    pub fn poll_watch_event(&mut self) -> Result<Option<WatchEvent>, Error> {
        while self.events.is_empty() {
            match self.recv_msg(false)? {
                None => break,
                Some((h, p)) if h.ty == MsgType::WatchEvent as u32 => self.queue_event(&p),
                Some(_) => self.dropped_replies += 1,
            }
        }
        Ok(self.events.pop_front())
    }
}

/// `v` in decimal, into `buf` (a u16 has at most 5 digits); returns the digits.
fn decimal(mut v: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}
