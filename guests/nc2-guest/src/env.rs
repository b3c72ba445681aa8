//! The task's environment: xenstore, its domain and vif, its notification bits, and the few
//! waiting helpers everything else uses.
//!
//! Every event channel of the task and the xenstore port share one Xen event bit: whoever
//! wakes on it re-checks all rings, so a wake-up consumed by a xenstore call loses nothing.

use alloc::format;
use alloc::string::String;

use nc2_guest::net::Mac;
use nc2dd_abi::system_table::NO_BIT;
use userland::syscall;
use userland::xenstore::client::NO_TX;
use userland::xenstore::{Error, XenbusState, XsErrno};

pub type Xs = userland::xenstore::Client<userland::xen::GatewayTransport>;

/// How long one xenstore request may take.
const XS_TIMEOUT_MS: u64 = 20_000;

pub struct Env {
    pub xs: Xs,
    pub domid: u16,
    pub xen_mask: u64,
    pub timer_mask: u64,
}

/// Our vif as the toolstack described it in our `device/vif/0`.
#[derive(Clone, Debug)]
pub struct Vif {
    pub front: String,
    pub backend: String,
    pub backend_id: u16,
    pub mac: Mac,
}

pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Env {
    pub fn attach() -> Result<Env, String> {
        let info = userland::info();
        if info.xen_event_bit == NO_BIT || info.timer_bit == NO_BIT {
            return Err("the task needs Xen rights and a timer bit".into());
        }
        let mut xs =
            userland::xen::xenstore(info.xen_event_bit, Some(info.timer_bit), XS_TIMEOUT_MS)
                .map_err(|e| format!("attaching to xenstore: errno {e}"))?;
        let domid = xs
            .read_domid()
            .map_err(|e| format!("reading our domid: {e}"))?;
        Ok(Env {
            xs,
            domid,
            xen_mask: 1 << info.xen_event_bit,
            timer_mask: 1 << info.timer_bit,
        })
    }

    pub fn now_ms(&self) -> u64 {
        syscall::uptime_ms()
    }

    /// Sleeps until an event arrives or `ms` pass.
    pub fn sleep(&self, ms: u64) {
        syscall::set_timer(ms.max(1));
        syscall::wait(self.xen_mask | self.timer_mask);
        syscall::set_timer(0);
    }

    pub fn read(&mut self, path: &str) -> Result<Option<String>, String> {
        match self.xs.read_string(NO_TX, path) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Xs(XsErrno::ENOENT)) => Ok(None),
            Err(e) => Err(format!("reading {path}: {e}")),
        }
    }

    pub fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.xs
            .write(NO_TX, path, value.as_bytes())
            .map_err(|e| format!("writing {path}: {e}"))
    }

    /// The vif the toolstack gave us (device 0).
    pub fn vif(&mut self) -> Result<Vif, String> {
        let home = self
            .xs
            .get_domain_path(self.domid)
            .map_err(|e| format!("GET_DOMAIN_PATH: {e}"))?;
        let front = format!("{home}/device/vif/0");
        let need = |env: &mut Env, k: &str| -> Result<String, String> {
            env.read(&format!("{front}/{k}"))?
                .ok_or_else(|| format!("{front}/{k} is missing: no vif for us"))
        };
        let backend = need(self, "backend")?;
        let id = need(self, "backend-id")?;
        let backend_id = id
            .trim()
            .parse()
            .map_err(|_| format!("backend-id {id:?} is not a domain id"))?;
        let mac = need(self, "mac")?;
        let mac = parse_mac(mac.trim()).ok_or_else(|| format!("mac {mac:?} is not a MAC"))?;
        Ok(Vif {
            front,
            backend,
            backend_id,
            mac,
        })
    }

    /// The backend's state, or None if the key is missing or not a state.
    pub fn backend_state(&mut self, vif: &Vif) -> Result<Option<XenbusState>, String> {
        Ok(self
            .read(&format!("{}/state", vif.backend))?
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(XenbusState::from_u64))
    }

    /// Polls the backend's state until `want` says yes; returns it.
    pub fn wait_backend(
        &mut self,
        vif: &Vif,
        what: &str,
        timeout_ms: u64,
        want: impl Fn(XenbusState) -> bool,
    ) -> Result<XenbusState, String> {
        let start = self.now_ms();
        loop {
            let s = self.backend_state(vif)?;
            if let Some(s) = s
                && want(s)
            {
                return Ok(s);
            }
            if self.now_ms() - start > timeout_ms {
                return Err(format!(
                    "the backend did not reach {what} in {} s (state {s:?})",
                    timeout_ms / 1000
                ));
            }
            self.sleep(50);
        }
    }

    pub fn set_state(&mut self, vif: &Vif, s: XenbusState) -> Result<(), String> {
        let v = [b'0' + s as u8];
        self.write(
            &format!("{}/state", vif.front),
            core::str::from_utf8(&v).unwrap_or("0"),
        )
    }
}
