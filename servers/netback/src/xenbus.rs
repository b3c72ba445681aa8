//! The xenbus backend state machine of every vif: finds vif directories under
//! `/local/domain/<me>/backend/vif/<domid>/<devid>`, advertises netback's features and reaches
//! InitWait at once, reads the frontend's keys when it is Initialised/Connected, and follows it
//! through Closing/Closed, removing the backend directory on teardown (frontend Closed and the
//! toolstack's `online` cleared) [`REMOVE_GRACE_NS`] after writing Closed, or at once when the
//! frontend's directory is gone too. libxl detaching a driver domain's vif waits for the
//! backend's Closed and then for the backend to remove its directory (10 s); removing it at the
//! same moment as writing Closed races libxl's read of that state.
//!
//! Every frontend key is untrusted: a missing or malformed one fails only that vif (state
//! Closing, an `error` key, a log line saying which key and why). The toolstack-written
//! backend keys (`frontend`, `frontend-id`, `mac`) are checked too, since a wrong one would
//! point us at another domain's keys.
//!
//! A frontend chooses its protocol by its keys (libnc2's `docs/nc2-xenbus.md`): with
//! `nc2-wire-version` it gets a netchannel2 vif ([`ConnectInfo::nc2`]), without it a netif one;
//! both sets of ring keys at once, or a version we do not speak, fail the vif.
//!
//! This module only talks xenstore; mapping rings and binding ports is the caller's, who
//! reports back with [`Xenbus::connected`] or [`Xenbus::fail`].

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use userland::xenstore::XenbusState;

use crate::hv::{DomId, HvError, Hypervisor, Port, XsError};
use crate::nc2::Nc2Refs;
use crate::netif::{Features, QueueRefs};
use crate::rate::Rate;
use crate::switch::Mac;
use userland::xenstore::XsErrno;

/// A vif: (frontend domain, device id).
pub type VifKey = (DomId, u32);

/// Watch token of the backend directory.
pub const TOKEN_BACKEND: &str = "nb-backend";
/// Watch token of frontend state keys.
pub const TOKEN_FRONTEND: &str = "nb-frontend";

/// The feature keys netback writes at probe, as Linux netback advertises them (minus what it
/// does not implement: the control ring, XDP headroom, IPv6 checksum offload).
pub const FEATURES: &[(&str, &str)] = &[
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-multicast-control", "1"),
    ("feature-dynamic-multicast-control", "1"),
    ("feature-split-event-channels", "1"),
];

/// The netchannel2 keys netback writes at probe (libnc2's `docs/nc2-xenbus.md`).
pub const NC2_FEATURES: &[(&str, &str)] = &[
    ("feature-nc2", "1"),
    ("nc2-wire-version", "1"),
    ("nc2-max-ring-pages", "1"),
];

/// Everything needed to connect a vif, read and validated from the frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Per-queue rings and ports.
    pub queues: Vec<QueueRefs>,
    /// What the frontend accepts.
    pub features: Features,
    /// The toolstack's `rate` limit for guest transmit, per queue.
    pub rate: Option<Rate>,
    /// A netchannel2 frontend's channel (then `queues` is empty).
    pub nc2: Option<Nc2Refs>,
}

/// What the caller must do after [`Xenbus::process`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new vif (for the switch: its pinned MAC).
    Added(VifKey, Option<Mac>),
    /// Map and bind; then call `connected` or `fail`.
    Connect(VifKey, ConnectInfo),
    /// Stop serving the vif (its frontend left, or its directory went away).
    Disconnect(VifKey),
    /// The vif is gone for good.
    Removed(VifKey),
}

#[derive(Clone, Debug)]
struct Vif {
    path: String,
    frontend: String,
    state: XenbusState,
    connected: bool,
    /// When a closed, offline directory the toolstack left is removed by netback.
    remove_at: Option<u64>,
    /// When to read the frontend's state again after a read failed for a reason that may
    /// pass (xenstored refuses a read until the toolstack has given us the frontend's
    /// directory: `EACCES` right after the vif appears).
    retry_at: Option<u64>,
}

/// How long after a failed frontend read netback reads again.
const RETRY_NS: u64 = 100_000_000;

/// How long a closed, offline vif directory stays for the toolstack to read Closed (libxl
/// watches for it, then waits at most 10 s for the directory to go).
pub const REMOVE_GRACE_NS: u64 = 2_000_000_000;

/// The state machines of all vifs.
pub struct Xenbus {
    base: String,
    max_queues: u32,
    vifs: BTreeMap<VifKey, Vif>,
    watching: bool,
}

/// Parses a decimal key strictly (digits only, fits `u32`).
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in v {
        n = n * 10 + u64::from(c - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(v: &[u8]) -> Option<Mac> {
    let s = core::str::from_utf8(v).ok()?;
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 256
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/_-@".contains(&c))
        && !p.contains("//")
}

impl Xenbus {
    /// The backend of domain `me`, offering up to `max_queues` queues per vif.
    pub fn new(me: DomId, max_queues: u32) -> Self {
        Xenbus {
            base: format!("/local/domain/{me}/backend/vif"),
            max_queues: max_queues.max(1),
            vifs: BTreeMap::new(),
            watching: false,
        }
    }

    /// The watched directory.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The backend directory of a vif.
    pub fn path(&self, key: VifKey) -> Option<&str> {
        self.vifs.get(&key).map(|v| v.path.as_str())
    }

    /// The backend state of a vif.
    pub fn state(&self, key: VifKey) -> Option<XenbusState> {
        self.vifs.get(&key).map(|v| v.state)
    }

    /// Handles pending watch events, appending what the caller must do.
    pub fn process<H: Hypervisor>(&mut self, hv: &mut H, actions: &mut Vec<Action>) {
        if !self.watching {
            match hv.xs_watch(&self.base.clone(), TOKEN_BACKEND) {
                Ok(()) => self.watching = true,
                Err(e) => {
                    log::error!("cannot watch {}: {e}", self.base);
                    return;
                }
            }
        }
        let mut any = false;
        loop {
            match hv.xs_poll_watch() {
                Ok(Some(_)) => any = true,
                Ok(None) => break,
                Err(e) => {
                    log::error!("xenstore watch read failed: {e}");
                    break;
                }
            }
        }
        let now = hv.now_ns();
        let removal_due = self
            .vifs
            .values()
            .any(|v| v.remove_at.is_some_and(|t| t <= now) || v.retry_at.is_some_and(|t| t <= now));
        if any || removal_due {
            self.rescan(hv, actions);
        }
    }

    /// The earliest time a closed vif's directory is due for removal, or a failed frontend
    /// read is due again, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.vifs
            .values()
            .flat_map(|v| [v.remove_at, v.retry_at])
            .flatten()
            .min()
    }

    fn rescan<H: Hypervisor>(&mut self, hv: &mut H, actions: &mut Vec<Action>) {
        let mut present: Vec<VifKey> = Vec::new();
        // A missing directory means no vifs; any other failure means we do not know, and
        // tearing vifs down on a transient xenstore error would be worse than waiting.
        let list = |hv: &mut H, dir: &str| match hv.xs_directory(dir) {
            Ok(v) => Some(v),
            Err(HvError::Xs(XsError::Xs(XsErrno::ENOENT))) => Some(Vec::new()),
            Err(e) => {
                log::error!("cannot list {dir}: {e}");
                None
            }
        };
        let Some(doms) = list(hv, &self.base) else {
            return;
        };
        for d in doms {
            let Some(dom) = parse_u32(d.as_bytes()).and_then(|v| DomId::try_from(v).ok()) else {
                continue;
            };
            let dir = format!("{}/{dom}", self.base);
            let Some(devs) = list(hv, &dir) else {
                return;
            };
            for dev in devs {
                if let Some(devid) = parse_u32(dev.as_bytes()) {
                    present.push((dom, devid));
                }
            }
        }
        let gone: Vec<VifKey> = self
            .vifs
            .keys()
            .filter(|k| !present.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(v) = self.vifs.remove(&k) {
                let _ = hv.xs_unwatch(&format!("{}/state", v.frontend), TOKEN_FRONTEND);
                if v.connected {
                    actions.push(Action::Disconnect(k));
                }
                actions.push(Action::Removed(k));
            }
        }
        for k in present {
            if !self.vifs.contains_key(&k) {
                self.probe(hv, k, actions);
            }
        }
        let keys: Vec<VifKey> = self.vifs.keys().copied().collect();
        for k in keys {
            self.step(hv, k, actions);
        }
    }

    fn probe<H: Hypervisor>(&mut self, hv: &mut H, key: VifKey, actions: &mut Vec<Action>) {
        let path = format!("{}/{}/{}", self.base, key.0, key.1);
        let frontend = hv
            .xs_read(&format!("{path}/frontend"))
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|p| valid_path(p));
        let fe_id = hv
            .xs_read(&format!("{path}/frontend-id"))
            .ok()
            .and_then(|v| parse_u32(&v));
        // The frontend directory must be the guest's own: otherwise its keys could be written
        // by someone else than the domain whose rings we would map.
        let own = format!("/local/domain/{}/", key.0);
        let frontend = frontend.filter(|p| p.starts_with(&own));
        let Some(frontend) = frontend else {
            // libxl writes the directory in one transaction; without this key it is not ours
            // to serve (or not complete yet: a later write rescans).
            return;
        };
        let mac = hv
            .xs_read(&format!("{path}/mac"))
            .ok()
            .and_then(|v| parse_mac(&v));
        let mut vif = Vif {
            path: path.clone(),
            frontend: frontend.clone(),
            state: XenbusState::Initialising,
            connected: false,
            remove_at: None,
            retry_at: None,
        };
        if fe_id != Some(u32::from(key.0)) {
            log::warn!(
                "netback: vif {}/{}: frontend-id does not name domain {}",
                key.0,
                key.1,
                key.0
            );
            self.set_state(hv, &mut vif, XenbusState::Closing);
            self.vifs.insert(key, vif);
            return;
        }
        for (k, v) in FEATURES.iter().chain(NC2_FEATURES) {
            let _ = hv.xs_write(&format!("{path}/{k}"), v.as_bytes());
        }
        let _ = hv.xs_write(
            &format!("{path}/multi-queue-max-queues"),
            self.max_queues.to_string().as_bytes(),
        );
        self.set_state(hv, &mut vif, XenbusState::InitWait);
        let _ = hv.xs_watch(&format!("{frontend}/state"), TOKEN_FRONTEND);
        self.vifs.insert(key, vif);
        actions.push(Action::Added(key, mac));
    }

    fn set_state<H: Hypervisor>(&self, hv: &mut H, vif: &mut Vif, s: XenbusState) {
        vif.state = s;
        if let Err(e) = hv.xs_write(&format!("{}/state", vif.path), &s.as_bytes()) {
            log::error!("cannot write {}/state: {e}", vif.path);
        }
    }

    fn step<H: Hypervisor>(&mut self, hv: &mut H, key: VifKey, actions: &mut Vec<Action>) {
        let Some(mut vif) = self.vifs.get(&key).cloned() else {
            return;
        };
        // A missing or malformed frontend state reads as None (the frontend is gone or
        // hostile: close); a failed read changes nothing.
        let fe = match hv.xs_read(&format!("{}/state", vif.frontend)) {
            Ok(v) => parse_u32(&v).and_then(|v| XenbusState::from_u64(v.into())),
            Err(HvError::Xs(XsError::Xs(XsErrno::ENOENT))) => None,
            Err(e) => {
                log::warn!(
                    "cannot read {}/state: {e}; reading it again shortly",
                    vif.frontend
                );
                vif.retry_at = Some(hv.now_ns().saturating_add(RETRY_NS));
                self.vifs.insert(key, vif);
                return;
            }
        };
        vif.retry_at = None;
        use XenbusState::*;
        match (vif.state, fe) {
            (InitWait, Some(Initialised | Connected)) => match self.read_frontend(hv, &vif) {
                Ok(info) => actions.push(Action::Connect(key, info)),
                Err(why) => {
                    log::warn!("vif {}/{}: {why}; disconnecting it", key.0, key.1);
                    let _ = hv.xs_write(&format!("{}/error", vif.path), why.as_bytes());
                    self.set_state(hv, &mut vif, Closing);
                }
            },
            (Connected | InitWait, Some(Closing)) => {
                if vif.connected {
                    vif.connected = false;
                    actions.push(Action::Disconnect(key));
                }
                self.set_state(hv, &mut vif, Closing);
            }
            (s, Some(Closed | Unknown) | None) if s != Closed => {
                if vif.connected {
                    vif.connected = false;
                    actions.push(Action::Disconnect(key));
                }
                self.set_state(hv, &mut vif, Closed);
                self.maybe_remove(hv, key, &mut vif, fe.is_none(), actions);
                if !self.vifs.contains_key(&key) {
                    return;
                }
            }
            (Closed, Some(Closed | Unknown) | None) => {
                self.maybe_remove(hv, key, &mut vif, fe.is_none(), actions);
                if !self.vifs.contains_key(&key) {
                    return;
                }
            }
            // The frontend came back after a close: offer the device again.
            (Closed, Some(Initialising)) => {
                vif.remove_at = None;
                self.set_state(hv, &mut vif, InitWait);
            }
            _ => {}
        }
        self.vifs.insert(key, vif);
    }

    fn maybe_remove<H: Hypervisor>(
        &mut self,
        hv: &mut H,
        key: VifKey,
        vif: &mut Vif,
        frontend_gone: bool,
        actions: &mut Vec<Action>,
    ) {
        let online = hv.xs_read(&format!("{}/online", vif.path)).ok();
        if online.as_deref() == Some(b"1") {
            vif.remove_at = None;
            return;
        }
        let now = hv.now_ns();
        match vif.remove_at {
            _ if frontend_gone => {}
            None => {
                vif.remove_at = Some(now.saturating_add(REMOVE_GRACE_NS));
                return;
            }
            Some(t) if now < t => return,
            Some(_) => {}
        }
        let _ = hv.xs_unwatch(&format!("{}/state", vif.frontend), TOKEN_FRONTEND);
        let _ = hv.xs_rm(&vif.path);
        self.vifs.remove(&key);
        actions.push(Action::Removed(key));
    }

    /// The caller connected the vif: go Connected.
    pub fn connected<H: Hypervisor>(&mut self, hv: &mut H, key: VifKey) {
        if let Some(mut vif) = self.vifs.get(&key).cloned() {
            vif.connected = true;
            self.set_state(hv, &mut vif, XenbusState::Connected);
            self.vifs.insert(key, vif);
        }
    }

    /// The vif failed (bad ring, bad grant, ...): record why and go Closing.
    pub fn fail<H: Hypervisor>(&mut self, hv: &mut H, key: VifKey, why: &str) {
        log::warn!("vif {}/{}: {why}; disconnecting it", key.0, key.1);
        if let Some(mut vif) = self.vifs.get(&key).cloned() {
            vif.connected = false;
            let _ = hv.xs_write(&format!("{}/error", vif.path), why.as_bytes());
            self.set_state(hv, &mut vif, XenbusState::Closing);
            self.vifs.insert(key, vif);
        }
    }

    fn read_frontend<H: Hypervisor>(&self, hv: &mut H, vif: &Vif) -> Result<ConnectInfo, String> {
        // The toolstack's key, in our own directory: malformed means a broken toolstack, and
        // serving without the limit it asked for would be wrong, so the vif fails.
        let rate = match hv.xs_read(&format!("{}/rate", vif.path)) {
            Ok(v) => Some(Rate::parse(&v).ok_or("backend key rate is not <bytes>,<usec>")?),
            Err(_) => None,
        };
        let fe = &vif.frontend;
        if let Ok(v) = hv.xs_read(&format!("{fe}/nc2-wire-version")) {
            return read_nc2(hv, fe, &v).map(|refs| ConnectInfo {
                queues: Vec::new(),
                features: Features::default(),
                rate,
                nc2: Some(refs),
            });
        }
        let mut get = |k: &str| hv.xs_read(&format!("{fe}/{k}")).ok();
        let flag = |v: Option<Vec<u8>>, k: &str, default: bool| -> Result<bool, String> {
            match v.as_deref() {
                None => Ok(default),
                Some(b"0") => Ok(false),
                Some(b"1") => Ok(true),
                Some(_) => Err(format!("frontend key {k} is not 0 or 1")),
            }
        };
        if !flag(get("request-rx-copy"), "request-rx-copy", false)? {
            return Err("frontend does not request rx-copy (page flipping is not offered)".into());
        }
        let features = Features {
            sg: flag(get("feature-sg"), "feature-sg", false)?,
            gso_tcpv4: flag(get("feature-gso-tcpv4"), "feature-gso-tcpv4", false)?,
            gso_tcpv6: flag(get("feature-gso-tcpv6"), "feature-gso-tcpv6", false)?,
            csum_offload: !flag(
                get("feature-no-csum-offload"),
                "feature-no-csum-offload",
                false,
            )?,
        };
        let nq = match get("multi-queue-num-queues") {
            None => 1,
            Some(v) => match parse_u32(&v) {
                Some(n) if (1..=self.max_queues).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "frontend key multi-queue-num-queues is not a number in 1..={}",
                        self.max_queues
                    ));
                }
            },
        };
        let mut queues = Vec::new();
        for q in 0..nq {
            let dir = if nq == 1 {
                String::new()
            } else {
                format!("queue-{q}/")
            };
            let mut num = |k: &str| -> Result<Option<u32>, String> {
                match get(&format!("{dir}{k}")) {
                    None => Ok(None),
                    Some(v) => parse_u32(&v)
                        .map(Some)
                        .ok_or_else(|| format!("frontend key {dir}{k} is not a decimal number")),
                }
            };
            let need = |v: Option<u32>, k: &str| {
                v.ok_or_else(|| format!("frontend key {dir}{k} is missing"))
            };
            let tx_ring_ref = need(num("tx-ring-ref")?, "tx-ring-ref")?;
            let rx_ring_ref = need(num("rx-ring-ref")?, "rx-ring-ref")?;
            let (etx, erx): (Port, Port) =
                match (num("event-channel-tx")?, num("event-channel-rx")?) {
                    (Some(t), Some(r)) => (t, r),
                    (None, None) => {
                        let e = need(num("event-channel")?, "event-channel")?;
                        (e, e)
                    }
                    _ => {
                        return Err(format!(
                            "frontend has only one of {dir}event-channel-tx and -rx"
                        ));
                    }
                };
            queues.push(QueueRefs {
                tx_ring_ref,
                rx_ring_ref,
                evtchn_tx: etx,
                evtchn_rx: erx,
            });
        }
        Ok(ConnectInfo {
            queues,
            features,
            rate,
            nc2: None,
        })
    }
}

/// A netchannel2 frontend's keys (`version` is the value of its `nc2-wire-version`).
fn read_nc2<H: Hypervisor>(hv: &mut H, fe: &str, version: &[u8]) -> Result<Nc2Refs, String> {
    if parse_u32(version) != Some(libnc2::nc2::msg::WIRE_VERSION) {
        return Err(format!(
            "frontend key nc2-wire-version is not {} (the only version spoken)",
            libnc2::nc2::msg::WIRE_VERSION
        ));
    }
    for k in ["tx-ring-ref", "rx-ring-ref", "multi-queue-num-queues"] {
        if hv.xs_read(&format!("{fe}/{k}")).is_ok() {
            return Err(format!(
                "frontend wrote both nc2-wire-version and the netif key {k}"
            ));
        }
    }
    let mut num = |k: &str| -> Result<u32, String> {
        match hv.xs_read(&format!("{fe}/{k}")) {
            Ok(v) => {
                parse_u32(&v).ok_or_else(|| format!("frontend key {k} is not a decimal number"))
            }
            Err(_) => Err(format!("frontend key {k} is missing")),
        }
    };
    Ok(Nc2Refs {
        control_ref: num("nc2-control-ref")?,
        f2b_ring_ref: num("nc2-f2b-ring-ref")?,
        b2f_ring_ref: num("nc2-b2f-ring-ref")?,
        evtchn: num("event-channel")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_numbers_and_macs() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b" 1"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"0x10"), None);
        assert_eq!(
            parse_mac(b"00:16:3e:0a:0b:0c"),
            Some([0, 0x16, 0x3e, 0xa, 0xb, 0xc])
        );
        assert_eq!(parse_mac(b"00:16:3e:0a:0b"), None);
        assert_eq!(parse_mac(b"00:16:3e:0a:0b:0c:0d"), None);
        assert_eq!(parse_mac(b"00:16:3e:0a:0b:+c"), None);
        assert!(valid_path("/local/domain/5/device/vif/0"));
        assert!(!valid_path("local/domain"));
        assert!(!valid_path("/local//domain"));
    }
}
