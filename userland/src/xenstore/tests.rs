//! The client against an in-memory xenstored that speaks the real wire protocol over a real ring
//! page: a tree of nodes, watches that fire on changes at or below the watched path, and
//! transactions that fail with EAGAIN when the tree changed since they started.

use std::collections::{BTreeMap, VecDeque};
use std::string::{String, ToString};
use std::sync::atomic::AtomicU32;
use std::vec::Vec;

use super::client::{Client, NO_TX, Transport, WatchEvent};
use super::ring::{self, MappedPage, RingPage};
use super::wire::{Error, HEADER_LEN, Header, MsgType, XsErrno};

type Tree = BTreeMap<String, Vec<u8>>;

struct Tx {
    tree: Tree,
    generation: u64,
    written: Vec<String>,
}

struct Watch {
    given: String,
    abs: String,
    token: String,
}

/// The fake xenstored. It owns `req_cons` and `rsp_prod` of the page.
struct Xenstored {
    domid: u16,
    tree: Tree,
    generation: u64,
    txs: BTreeMap<u32, Tx>,
    next_tx: u32,
    watches: Vec<Watch>,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    /// At most this many reply bytes go on the ring per step.
    chunk: usize,
    /// Send watch events before the reply of the request that caused them.
    events_first: bool,
    requests: Vec<MsgType>,
}

impl Xenstored {
    fn new(domid: u16) -> Self {
        let mut tree = Tree::new();
        tree.insert("/".into(), Vec::new());
        let mut x = Self {
            domid,
            tree,
            generation: 0,
            txs: BTreeMap::new(),
            next_tx: 1,
            watches: Vec::new(),
            inbuf: Vec::new(),
            out: VecDeque::new(),
            chunk: usize::MAX,
            events_first: false,
            requests: Vec::new(),
        };
        let home = x.home();
        create(
            &mut x.tree,
            &format!("{home}/domid"),
            domid.to_string().as_bytes(),
        );
        x
    }

    fn home(&self) -> String {
        format!("/local/domain/{}", self.domid)
    }

    fn abs(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.into()
        } else {
            format!("{}/{p}", self.home())
        }
    }

    /// One round: take all requests, handle whole ones, put replies on the ring. Returns
    /// whether anything moved.
    fn step(&mut self, page: &impl RingPage) -> bool {
        let mut moved = false;
        let cons = page.load_u32(ring::REQ_CONS);
        let prod = page.load_u32(ring::REQ_PROD);
        let n = prod.wrapping_sub(cons);
        assert!(n <= ring::RING_SIZE, "client broke the request ring");
        for i in 0..n {
            let mut b = [0];
            page.read(
                ring::REQ_OFFSET + (cons.wrapping_add(i) % 1024) as usize,
                &mut b,
            );
            self.inbuf.push(b[0]);
        }
        if n > 0 {
            page.store_u32(ring::REQ_CONS, prod);
            moved = true;
        }
        while self.inbuf.len() >= HEADER_LEN {
            let h = Header::decode(self.inbuf[..HEADER_LEN].try_into().unwrap());
            let total = HEADER_LEN + h.len as usize;
            if self.inbuf.len() < total {
                break;
            }
            let payload: Vec<u8> = self.inbuf[HEADER_LEN..total].to_vec();
            self.inbuf.drain(..total);
            self.handle(h, &payload);
        }
        let rcons = page.load_u32(ring::RSP_CONS);
        let rprod = page.load_u32(ring::RSP_PROD);
        let used = rprod.wrapping_sub(rcons);
        if used > ring::RING_SIZE {
            // A test corrupted the indices: stop producing.
            return moved;
        }
        let free = ring::RING_SIZE - used;
        let k = (free as usize).min(self.out.len()).min(self.chunk);
        for i in 0..k {
            let b = self.out.pop_front().unwrap();
            page.write(
                ring::RSP_OFFSET + (rprod.wrapping_add(i as u32) % 1024) as usize,
                &[b],
            );
        }
        if k > 0 {
            page.store_u32(ring::RSP_PROD, rprod.wrapping_add(k as u32));
            moved = true;
        }
        moved
    }

    fn emit(&mut self, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let h = Header {
            ty,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        self.out.extend(h.encode());
        self.out.extend(payload);
    }

    fn events_for(&self, changed: &str) -> Vec<Vec<u8>> {
        let mut evs = Vec::new();
        for w in &self.watches {
            let below =
                changed == w.abs || w.abs == "/" || changed.starts_with(&format!("{}/", w.abs));
            if !below {
                continue;
            }
            let shown = if w.given.starts_with('/') {
                changed.to_string()
            } else {
                changed[self.home().len() + 1..].to_string()
            };
            evs.push(format!("{shown}\0{}\0", w.token).into_bytes());
        }
        evs
    }

    fn handle(&mut self, h: Header, p: &[u8]) {
        let ty = MsgType::from_raw(h.ty).expect("client sent an unknown type");
        self.requests.push(ty);
        let mut events = Vec::new();
        let reply = self.execute(ty, h.tx_id, p, &mut events);
        let (rty, body) = match reply {
            Ok(body) => (h.ty, body),
            Err(name) => (MsgType::Error as u32, format!("{name}\0").into_bytes()),
        };
        if self.events_first {
            for e in &events {
                self.emit(MsgType::WatchEvent as u32, 0, 0, e);
            }
        }
        self.emit(rty, h.req_id, h.tx_id, &body);
        if !self.events_first {
            for e in &events {
                self.emit(MsgType::WatchEvent as u32, 0, 0, e);
            }
        }
    }

    fn execute(
        &mut self,
        ty: MsgType,
        tx: u32,
        p: &[u8],
        events: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, &'static str> {
        let args: Vec<&[u8]> = p.splitn(2, |&c| c == 0).collect();
        let first = std::str::from_utf8(args[0])
            .map_err(|_| "EINVAL")?
            .to_string();
        let ok = b"OK\0".to_vec();
        if tx != 0 && !self.txs.contains_key(&tx) {
            return Err("ENOENT");
        }
        match ty {
            MsgType::Read | MsgType::Directory | MsgType::Write | MsgType::Mkdir | MsgType::Rm => {
                let abs = self.abs(&first);
                let generation = self.generation;
                let (tree, written) = match self.txs.get_mut(&tx) {
                    Some(t) => (&mut t.tree, Some(&mut t.written)),
                    None => (&mut self.tree, None),
                };
                let changed = match ty {
                    MsgType::Read => return tree.get(&abs).cloned().ok_or("ENOENT"),
                    MsgType::Directory => {
                        if !tree.contains_key(&abs) {
                            return Err("ENOENT");
                        }
                        let prefix = if abs == "/" {
                            "/".to_string()
                        } else {
                            format!("{abs}/")
                        };
                        let mut out = Vec::new();
                        for k in tree.keys() {
                            if let Some(name) = k.strip_prefix(&prefix)
                                && !name.is_empty()
                                && !name.contains('/')
                            {
                                out.extend_from_slice(name.as_bytes());
                                out.push(0);
                            }
                        }
                        return Ok(out);
                    }
                    MsgType::Write => {
                        let value = args.get(1).copied().unwrap_or(b"");
                        create(tree, &abs, value);
                        true
                    }
                    MsgType::Mkdir => {
                        if !tree.contains_key(&abs) {
                            create(tree, &abs, b"");
                        }
                        true
                    }
                    _ => {
                        if tree.remove(&abs).is_none() {
                            return Err("ENOENT");
                        }
                        let below = format!("{abs}/");
                        tree.retain(|k, _| !k.starts_with(&below));
                        true
                    }
                };
                if changed {
                    match written {
                        Some(w) => w.push(abs),
                        None => {
                            self.generation = generation + 1;
                            events.extend(self.events_for(&abs));
                        }
                    }
                }
                Ok(ok)
            }
            MsgType::Watch | MsgType::Unwatch => {
                let token = args
                    .get(1)
                    .and_then(|t| t.strip_suffix(b"\0"))
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .ok_or("EINVAL")?
                    .to_string();
                let abs = self.abs(&first);
                if ty == MsgType::Watch {
                    if self
                        .watches
                        .iter()
                        .any(|w| w.given == first && w.token == token)
                    {
                        return Err("EEXIST");
                    }
                    self.watches.push(Watch {
                        given: first.clone(),
                        abs,
                        token: token.clone(),
                    });
                    // Every new watch fires once for its own path.
                    events.push(format!("{first}\0{token}\0").into_bytes());
                } else {
                    let before = self.watches.len();
                    self.watches
                        .retain(|w| !(w.given == first && w.token == token));
                    if self.watches.len() == before {
                        return Err("ENOENT");
                    }
                }
                Ok(ok)
            }
            MsgType::TransactionStart => {
                let id = self.next_tx;
                self.next_tx += 1;
                self.txs.insert(
                    id,
                    Tx {
                        tree: self.tree.clone(),
                        generation: self.generation,
                        written: Vec::new(),
                    },
                );
                Ok(format!("{id}\0").into_bytes())
            }
            MsgType::TransactionEnd => {
                let t = self.txs.remove(&tx).ok_or("ENOENT")?;
                match first.as_str() {
                    "F" => Ok(ok),
                    "T" if t.generation != self.generation => Err("EAGAIN"),
                    "T" => {
                        self.tree = t.tree;
                        if !t.written.is_empty() {
                            self.generation += 1;
                        }
                        for w in &t.written {
                            events.extend(self.events_for(w));
                        }
                        Ok(ok)
                    }
                    _ => Err("EINVAL"),
                }
            }
            MsgType::GetDomainPath => Ok(format!("/local/domain/{first}\0").into_bytes()),
            _ => Err("EINVAL"),
        }
    }
}

/// Inserts `path` with `value`, creating missing parents empty (as xenstored does).
fn create(tree: &mut Tree, path: &str, value: &[u8]) {
    let mut at = 0;
    while let Some(i) = path[at + 1..].find('/') {
        at += 1 + i;
        tree.entry(path[..at].to_string()).or_default();
    }
    tree.insert(path.to_string(), value.to_vec());
}

/// The client's side: the ring page plus xenstored, run whenever the client kicks or waits.
struct Fake {
    _mem: Box<[AtomicU32; 1024]>,
    page: MappedPage,
    xs: Xenstored,
    kicks: u32,
}

impl Fake {
    fn new() -> Self {
        let mem = ring::test_page();
        // SAFETY: the boxed page outlives `page` (both live in this struct, the box is never
        // replaced) and is accessed only through MappedPage.
        let page = unsafe { MappedPage::new(mem.as_ptr() as *mut u8) };
        Self {
            _mem: mem,
            page,
            xs: Xenstored::new(7),
            kicks: 0,
        }
    }
}

impl Transport for Fake {
    type Page = MappedPage;
    fn page(&self) -> &MappedPage {
        &self.page
    }
    fn notify(&mut self) {
        self.kicks += 1;
        self.xs.step(&self.page);
    }
    fn wait(&mut self) -> Result<(), Error> {
        if self.xs.step(&self.page) {
            Ok(())
        } else {
            Err(Error::Transport("xenstored has nothing more to say"))
        }
    }
}

fn client() -> Client<Fake> {
    Client::new(Fake::new())
}

fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.into(),
        token: token.into(),
    }
}

#[test]
fn read_write_directory_mkdir_rm() {
    let mut c = client();
    assert_eq!(c.read_domid(), Ok(7));
    assert_eq!(c.get_domain_path(7).unwrap(), "/local/domain/7");
    c.write(NO_TX, "backend/vif/3/0/state", b"2").unwrap();
    assert_eq!(
        c.read(NO_TX, "/local/domain/7/backend/vif/3/0/state")
            .unwrap(),
        b"2"
    );
    assert_eq!(c.read_u64(NO_TX, "backend/vif/3/0/state"), Ok(2));
    c.write(NO_TX, "backend/vif/3/1/state", b"1").unwrap();
    c.mkdir(NO_TX, "backend/vif/4").unwrap();
    assert_eq!(c.directory(NO_TX, "backend/vif").unwrap(), ["3", "4"]);
    assert_eq!(c.directory(NO_TX, "backend/vif/3").unwrap(), ["0", "1"]);
    assert_eq!(
        c.directory(NO_TX, "backend/vif/4").unwrap(),
        Vec::<String>::new()
    );
    c.rm(NO_TX, "backend/vif/3").unwrap();
    assert_eq!(c.directory(NO_TX, "backend/vif").unwrap(), ["4"]);
    assert_eq!(
        c.read(NO_TX, "backend/vif/3/0/state"),
        Err(Error::Xs(XsErrno::ENOENT))
    );
    // Values are bytes, not strings: NULs and high bytes survive.
    c.write(NO_TX, "blob", &[0, 255, 0, 1]).unwrap();
    assert_eq!(c.read(NO_TX, "blob").unwrap(), [0, 255, 0, 1]);
    assert_eq!(
        c.read_string(NO_TX, "blob"),
        Err(Error::Protocol("reply is not UTF-8"))
    );
    assert_eq!(
        c.read_u64(NO_TX, "blob"),
        Err(Error::Protocol("value is not a decimal number"))
    );
}

#[test]
fn error_replies_map_to_named_errors() {
    let mut c = client();
    assert_eq!(c.rm(NO_TX, "nothing/here"), Err(Error::Xs(XsErrno::ENOENT)));
    assert_eq!(c.unwatch("nothing", "t"), Err(Error::Xs(XsErrno::ENOENT)));
    c.watch("a", "t").unwrap();
    assert_eq!(c.watch("a", "t"), Err(Error::Xs(XsErrno::EEXIST)));
    assert_eq!(c.transaction_end(99, true), Err(Error::Xs(XsErrno::ENOENT)));
}

#[test]
fn bad_arguments_never_reach_xenstored() {
    let mut c = client();
    let before = c.transport().xs.requests.len();
    assert_eq!(c.write(NO_TX, "a//b", b"x"), Err(Error::BadPath));
    assert_eq!(c.read(NO_TX, ""), Err(Error::BadPath));
    assert_eq!(c.write(NO_TX, "k", &[b'v'; 4096]), Err(Error::TooLarge));
    assert_eq!(c.watch("k", ""), Err(Error::BadToken));
    assert_eq!(c.watch("k/", "t"), Err(Error::BadPath));
    assert_eq!(c.transport().xs.requests.len(), before);
    // The largest value that fits: path "k" + NUL + 4094 bytes = 4096.
    c.write(NO_TX, "k", &[b'v'; 4094]).unwrap();
    assert_eq!(c.read(NO_TX, "k").unwrap().len(), 4094);
}

#[test]
fn watches_fire_below_the_watched_path_and_stop_after_unwatch() {
    let mut c = client();
    c.watch("backend/vif", "be").unwrap();
    assert_eq!(c.next_watch_event().unwrap(), ev("backend/vif", "be"));
    c.write(NO_TX, "backend/vif/3/0/state", b"1").unwrap();
    c.write(NO_TX, "backend/vifx", b"1").unwrap(); // a sibling, not below
    c.write(
        NO_TX,
        "/local/domain/7/backend/vif/3/0/mac",
        b"00:16:3e:00:00:01",
    )
    .unwrap();
    assert_eq!(
        c.next_watch_event().unwrap(),
        ev("backend/vif/3/0/state", "be")
    );
    assert_eq!(
        c.next_watch_event().unwrap(),
        ev("backend/vif/3/0/mac", "be")
    );
    assert_eq!(c.poll_watch_event(), Ok(None));
    c.watch("/local/domain/3/device", "fe").unwrap();
    c.write(NO_TX, "/local/domain/3/device/vif/0/state", b"4")
        .unwrap();
    assert_eq!(
        c.next_watch_event().unwrap(),
        ev("/local/domain/3/device", "fe")
    );
    assert_eq!(
        c.next_watch_event().unwrap(),
        ev("/local/domain/3/device/vif/0/state", "fe")
    );
    c.unwatch("backend/vif", "be").unwrap();
    c.rm(NO_TX, "backend/vif/3").unwrap();
    assert_eq!(c.poll_watch_event(), Ok(None));
}

#[test]
fn events_arriving_before_a_reply_are_queued_in_order() {
    let mut c = client();
    c.transport_mut().xs.events_first = true;
    c.watch("a", "1").unwrap();
    c.watch("a/b", "2").unwrap();
    // Both watches fire, before the write's reply: the write still succeeds, and the events wait.
    c.write(NO_TX, "a/b/c", b"x").unwrap();
    assert_eq!(c.read(NO_TX, "a/b/c").unwrap(), b"x");
    let got: Vec<_> = (0..4)
        .map(|_| c.poll_watch_event().unwrap().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            ev("a", "1"),
            ev("a/b", "2"),
            ev("a/b/c", "1"),
            ev("a/b/c", "2")
        ]
    );
    assert_eq!(c.poll_watch_event(), Ok(None));
}

#[test]
fn transactions_commit_abort_and_conflict() {
    let mut c = client();
    c.watch("t", "w").unwrap();
    c.next_watch_event().unwrap();
    let tx = c.transaction_start().unwrap();
    c.write(tx, "t/a", b"1").unwrap();
    assert_eq!(c.read(tx, "t/a").unwrap(), b"1");
    assert_eq!(
        c.read(NO_TX, "t/a"),
        Err(Error::Xs(XsErrno::ENOENT)),
        "isolated until commit"
    );
    assert_eq!(c.poll_watch_event(), Ok(None), "no events before commit");
    c.transaction_end(tx, true).unwrap();
    assert_eq!(c.read(NO_TX, "t/a").unwrap(), b"1");
    assert_eq!(c.next_watch_event().unwrap(), ev("t/a", "w"));

    let tx = c.transaction_start().unwrap();
    c.write(tx, "t/b", b"1").unwrap();
    c.transaction_end(tx, false).unwrap();
    assert_eq!(c.read(NO_TX, "t/b"), Err(Error::Xs(XsErrno::ENOENT)));

    let tx = c.transaction_start().unwrap();
    c.write(tx, "t/c", b"1").unwrap();
    c.write(NO_TX, "t/other", b"2").unwrap();
    assert_eq!(c.transaction_end(tx, true), Err(Error::Xs(XsErrno::EAGAIN)));
    assert_eq!(c.read(NO_TX, "t/c"), Err(Error::Xs(XsErrno::ENOENT)));
}

#[test]
fn the_transaction_helper_retries_on_eagain() {
    let mut c = client();
    c.write(NO_TX, "counter", b"0").unwrap();
    let mut runs = 0;
    let v = c
        .transaction(|c, tx| {
            runs += 1;
            let n = c.read_u64(tx, "counter")?;
            if runs == 1 {
                // Someone else bumps the counter meanwhile: the commit must conflict.
                c.write(NO_TX, "counter", b"10")?;
            }
            c.write(tx, "counter", (n + 1).to_string().as_bytes())?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!((runs, v), (2, 11));
    assert_eq!(c.read_u64(NO_TX, "counter"), Ok(11));

    // A body error aborts and is returned as is.
    let r: Result<(), _> = c.transaction(|c, tx| {
        c.write(tx, "counter", b"99")?;
        c.read(tx, "missing").map(drop)
    });
    assert_eq!(r, Err(Error::Xs(XsErrno::ENOENT)));
    assert_eq!(c.read_u64(NO_TX, "counter"), Ok(11));

    // Endless conflicts give up after the limit.
    let mut runs = 0;
    let r: Result<(), _> = c.transaction(|c, tx| {
        runs += 1;
        c.write(NO_TX, "counter", b"0")?;
        c.write(tx, "counter", b"1")
    });
    assert_eq!(r, Err(Error::RetriesExhausted));
    assert_eq!(runs, super::client::MAX_TX_ATTEMPTS);
}

#[test]
fn replies_trickling_in_small_pieces_are_reassembled() {
    let mut c = client();
    c.transport_mut().xs.chunk = 7;
    let big: Vec<u8> = (0..4000u32).map(|i| (i % 97) as u8 + 1).collect();
    c.write(NO_TX, "big", &big).unwrap();
    assert_eq!(c.read(NO_TX, "big").unwrap(), big);
    for i in 0..50 {
        c.write(NO_TX, &format!("many/{i}"), b"v").unwrap();
    }
    assert_eq!(c.directory(NO_TX, "many").unwrap().len(), 50);
}

#[test]
fn hostile_replies_are_errors_not_crashes() {
    // A header announcing more than the payload limit.
    let mut c = client();
    let h = Header {
        ty: MsgType::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: 5000,
    };
    c.transport_mut().xs.out.extend(h.encode());
    assert_eq!(c.read(NO_TX, "domid"), Err(Error::ReplyTooLarge(5000)));

    // A response producer that jumps past the ring.
    let mut c = client();
    c.transport().page.store_u32(ring::RSP_PROD, 4000);
    assert_eq!(
        c.read(NO_TX, "domid"),
        Err(Error::RingIndex { avail: 4000 })
    );

    // A reply of the wrong type for our request id.
    let mut c = client();
    let h = Header {
        ty: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 3,
    };
    c.transport_mut().xs.out.extend(h.encode());
    c.transport_mut().xs.out.extend(b"OK\0");
    assert_eq!(
        c.read(NO_TX, "domid"),
        Err(Error::Protocol("reply type differs from the request"))
    );

    // A stale reply and malformed watch events are dropped; the real reply still comes through.
    let mut c = client();
    let stale = Header {
        ty: MsgType::Read as u32,
        req_id: 77,
        tx_id: 0,
        len: 1,
    };
    let bad_event = Header {
        ty: MsgType::WatchEvent as u32,
        req_id: 0,
        tx_id: 0,
        len: 3,
    };
    let xs = &mut c.transport_mut().xs;
    xs.out.extend(stale.encode());
    xs.out.extend(b"x");
    xs.out.extend(bad_event.encode());
    xs.out.extend(b"\0t\0"); // empty path
    assert_eq!(c.read_domid(), Ok(7));
    assert_eq!((c.dropped_replies(), c.dropped_events()), (1, 1));
    assert_eq!(c.poll_watch_event(), Ok(None));
}

/// xenstored in another thread, polling the page: the ring under real concurrency.
#[test]
fn works_against_a_concurrent_server() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    struct Polling {
        page: MappedPage,
    }
    impl Transport for Polling {
        type Page = MappedPage;
        fn page(&self) -> &MappedPage {
            &self.page
        }
        fn notify(&mut self) {}
        fn wait(&mut self) -> Result<(), Error> {
            std::thread::yield_now();
            Ok(())
        }
    }

    let mem = ring::test_page();
    let addr = mem.as_ptr() as usize;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the page lives in `mem`, which outlives this scope; both sides use only
            // atomic and volatile accesses.
            let page = unsafe { MappedPage::new(addr as *mut u8) };
            let mut xs = Xenstored::new(9);
            xs.chunk = 13;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if !xs.step(&page) {
                    std::thread::yield_now();
                }
            }
        });
        // SAFETY: as above.
        let page = unsafe { MappedPage::new(addr as *mut u8) };
        let mut c = Client::new(Polling { page });
        assert_eq!(c.read_domid(), Ok(9));
        c.watch("k", "tok").unwrap();
        for i in 0..200u32 {
            let v = format!("{i}-{}", "x".repeat((i as usize * 37) % 1500));
            c.write(NO_TX, "k/v", v.as_bytes()).unwrap();
            assert_eq!(c.read_string(NO_TX, "k/v").unwrap(), v);
        }
        let mut n = 0;
        while c.poll_watch_event().unwrap().is_some() {
            n += 1;
        }
        // Events may still be in flight; at least the initial one and the first writes arrived.
        assert!(n >= 1);
        stop.store(true, Ordering::Relaxed);
    });
}

/// Cases for the randomized tests: a few hundred by default, many more with NC2DD_LONG_TESTS=1.
fn cases(short: u32, long: u32) -> u32 {
    if std::env::var("NC2DD_LONG_TESTS").is_ok_and(|v| v == "1") {
        long
    } else {
        short
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A peer that ignores requests and answers with scripted bytes, sometimes corrupting indices.
struct Scripted {
    _mem: Box<[AtomicU32; 1024]>,
    page: MappedPage,
    script: VecDeque<u8>,
    corrupt_at: Option<usize>,
    rng: XorShift,
}

impl Scripted {
    fn pump(&mut self) -> bool {
        let p = &self.page;
        let prod = p.load_u32(ring::REQ_PROD);
        p.store_u32(ring::REQ_CONS, prod);
        if self.corrupt_at.is_some_and(|k| self.script.len() <= k) {
            self.corrupt_at = None;
            let v = self.rng.next() as u32;
            p.store_u32(ring::RSP_PROD, v);
            return true;
        }
        let rprod = p.load_u32(ring::RSP_PROD);
        let used = rprod.wrapping_sub(p.load_u32(ring::RSP_CONS));
        if used > ring::RING_SIZE {
            return false;
        }
        let k = ((ring::RING_SIZE - used) as usize).min(self.script.len());
        for i in 0..k {
            let b = self.script.pop_front().unwrap();
            p.write(
                ring::RSP_OFFSET + (rprod.wrapping_add(i as u32) % 1024) as usize,
                &[b],
            );
        }
        p.store_u32(ring::RSP_PROD, rprod.wrapping_add(k as u32));
        k > 0
    }
}

impl Transport for Scripted {
    type Page = MappedPage;
    fn page(&self) -> &MappedPage {
        &self.page
    }
    fn notify(&mut self) {
        self.pump();
    }
    fn wait(&mut self) -> Result<(), Error> {
        if self.pump() {
            Ok(())
        } else {
            Err(Error::Transport("script exhausted"))
        }
    }
}

fn random_message(rng: &mut XorShift, out: &mut Vec<u8>) {
    let payload = |rng: &mut XorShift, max: u64| -> Vec<u8> {
        let n = rng.below(max + 1) as usize;
        // Mostly printable with NULs, sometimes anything.
        (0..n)
            .map(|_| match rng.below(8) {
                0 => 0,
                1 => rng.next() as u8,
                _ => b'a' + rng.below(26) as u8,
            })
            .collect()
    };
    match rng.below(5) {
        0 => {
            let p = payload(rng, 64);
            out.extend(
                Header {
                    ty: MsgType::Read as u32,
                    req_id: 1,
                    tx_id: 0,
                    len: p.len() as u32,
                }
                .encode(),
            );
            out.extend(p);
        }
        1 => {
            let p = payload(rng, 64);
            out.extend(
                Header {
                    ty: MsgType::WatchEvent as u32,
                    req_id: 0,
                    tx_id: 0,
                    len: p.len() as u32,
                }
                .encode(),
            );
            out.extend(p);
        }
        2 => {
            let p = payload(rng, 16);
            let ty = rng.below(20) as u32;
            let req_id = rng.below(3) as u32;
            out.extend(
                Header {
                    ty,
                    req_id,
                    tx_id: 0,
                    len: p.len() as u32,
                }
                .encode(),
            );
            out.extend(p);
        }
        3 => {
            let len = rng.next() as u32 >> rng.below(32);
            out.extend(
                Header {
                    ty: rng.below(20) as u32,
                    req_id: 1,
                    tx_id: 0,
                    len,
                }
                .encode(),
            );
            out.extend(payload(rng, 300));
        }
        _ => out.extend(payload(rng, 40)),
    }
}

/// Random reply streams: the client returns a value or an error, never panics or reads wild.
#[test]
fn random_hostile_reply_streams_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = BTreeMap::new();
    for _ in 0..cases(400, 1_000_000) {
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(6) {
            random_message(&mut rng, &mut bytes);
        }
        let mem = ring::test_page();
        // SAFETY: the box lives in the transport next to the page; accessed only via MappedPage.
        let page = unsafe { MappedPage::new(mem.as_ptr() as *mut u8) };
        let corrupt_at = (rng.below(4) == 0).then(|| rng.below(bytes.len() as u64 + 1) as usize);
        let mut c = Client::new(Scripted {
            _mem: mem,
            page,
            script: bytes.into(),
            corrupt_at,
            rng: XorShift(rng.next() | 1),
        });
        let r = c.read(NO_TX, "x");
        let key = match r {
            Ok(_) => "ok",
            Err(Error::Xs(_)) => "xs error",
            Err(Error::Protocol(_)) => "protocol",
            Err(Error::ReplyTooLarge(_)) => "too large",
            Err(Error::RingIndex { .. }) => "ring index",
            Err(Error::Transport(_)) => "exhausted",
            Err(e) => panic!("unexpected {e:?}"),
        };
        *outcomes.entry(key).or_insert(0u32) += 1;
        for _ in 0..4 {
            if let Ok(Some(e)) = c.poll_watch_event() {
                assert!(!e.path.is_empty());
            }
        }
    }
    // The generator reaches every kind of outcome, so the test exercises each path.
    for k in [
        "ok",
        "xs error",
        "protocol",
        "too large",
        "ring index",
        "exhausted",
    ] {
        assert!(outcomes.contains_key(k), "{k} never happened: {outcomes:?}");
    }
}

#[test]
fn xenbus_states_through_the_store() {
    use super::XenbusState;
    let mut c = client();
    c.write_state(NO_TX, "backend/vif/3/0/state", XenbusState::InitWait)
        .unwrap();
    assert_eq!(c.read(NO_TX, "backend/vif/3/0/state").unwrap(), b"2");
    assert_eq!(
        c.read_state(NO_TX, "backend/vif/3/0/state"),
        Ok(XenbusState::InitWait)
    );
    // A frontend writing junk into its state key is an error, not a state.
    for junk in [&b"9"[..], b"-1", b"", b"4x", b"connected"] {
        c.write(NO_TX, "/local/domain/3/device/vif/0/state", junk)
            .unwrap();
        assert!(
            c.read_state(NO_TX, "/local/domain/3/device/vif/0/state")
                .is_err(),
            "{junk:?}"
        );
    }
    c.write(NO_TX, "/local/domain/3/device/vif/0/state", b"4")
        .unwrap();
    assert_eq!(
        c.read_state(NO_TX, "/local/domain/3/device/vif/0/state"),
        Ok(XenbusState::Connected)
    );
}
