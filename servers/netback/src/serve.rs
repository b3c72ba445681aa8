//! The backend proper: netback serving guests' vifs over the Xen gateway.
//!
//! Task arguments (kernel command line `nc2dd.netback.<key>=<value>`):
//! - `ip`: the responder's IPv4 address (default 10.0.0.1, [`Config::default`]);
//! - `mac`: the responder's MAC, `aa:bb:cc:dd:ee:ff` (default a fixed locally administered one);
//! - `queues`: queues offered per vif (default 1: every queue costs staging memory);
//! - `serve=0`: do not serve (the task ends at once; for runs that wait for every server to end).
//!
//! Without Xen (bare QEMU) the task ends at once, successfully.
//!
//! The loop: poll until idle, publish counters at most once a second, then sleep on the Xen
//! event bit and the timer (a rate-limit deadline, or [`IDLE_MS`] so a lost wake-up costs at
//! most that).

use alloc::format;
use alloc::string::String;
use nc2dd_abi::system_table::NO_BIT;
use userland::syscall;

use crate::gateway_hv::GatewayHv;
use netback::{Config, Netback};

/// The longest sleep without looking at the rings and the store.
const IDLE_MS: u64 = 200;
/// Counters go to xenstore at most this often.
const PUBLISH_MS: u64 = 1000;
/// Polls in a row while work keeps coming, before the loop sleeps once.
const BUSY_ROUNDS: usize = 64;

fn parse_ip(s: &str) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut it = s.split('.');
    for b in &mut ip {
        *b = it.next()?.parse().ok()?;
    }
    it.next().is_none().then_some(ip)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut it = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(mac)
}

/// netback's settings from the task arguments.
fn config() -> Result<Config, String> {
    let info = userland::info();
    let mut cfg = Config {
        max_queues: 1,
        ..Config::default()
    };
    if let Some(v) = info.arg("ip") {
        cfg.ip = parse_ip(v).ok_or_else(|| format!("ip={v} is not an IPv4 address"))?;
    }
    if let Some(v) = info.arg("mac") {
        cfg.mac = parse_mac(v).ok_or_else(|| format!("mac={v} is not a MAC address"))?;
    }
    if let Some(v) = info.arg("queues") {
        cfg.max_queues = v
            .parse()
            .ok()
            .filter(|&q| (1..=8).contains(&q))
            .ok_or_else(|| format!("queues={v} is not 1..8"))?;
    }
    Ok(cfg)
}

/// Serves vifs until the task is stopped.
pub fn run() -> Result<(), String> {
    let info = userland::info();
    if info.xen_event_bit == NO_BIT {
        return Err("this task has no Xen rights".into());
    }
    if info.timer_bit == NO_BIT {
        return Err("netback needs a timer bit".into());
    }
    let xen_mask = 1u64 << info.xen_event_bit;
    let timer_mask = 1u64 << info.timer_bit;
    if info.arg("serve") == Some("0") {
        log::info!("serve=0, not serving vifs");
        return Ok(());
    }
    let cfg = config()?;
    let xs = match userland::xen::xenstore(info.xen_event_bit, Some(info.timer_bit), 5_000) {
        Ok(xs) => xs,
        Err(syscall::XEN_ENODEV) => {
            log::info!("no hypervisor, no vifs to serve");
            return Ok(());
        }
        Err(e) => return Err(format!("attaching to xenstore: errno {e}")),
    };
    let hv = GatewayHv::new(xs).map_err(|e| format!("reading our domain id: {e}"))?;
    let ip = cfg.ip;
    log::info!(
        "serving vifs of domain {} (responder {}.{}.{}.{}, {} queue(s) per vif)",
        hv_domid(&hv),
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        cfg.max_queues
    );
    let mut nb = Netback::new(hv, cfg);
    let mut last_publish = 0u64;
    loop {
        let mut rounds = 0;
        while nb.poll() > 0 && rounds < BUSY_ROUNDS {
            rounds += 1;
        }
        let now_ms = syscall::uptime_ms();
        if now_ms.saturating_sub(last_publish) >= PUBLISH_MS {
            nb.publish_counters();
            last_publish = now_ms;
        }
        let mut sleep = IDLE_MS;
        if let Some(t) = nb.next_deadline() {
            let now = syscall::now_ns();
            sleep = sleep.min(t.saturating_sub(now).div_ceil(1_000_000).max(1));
        }
        if rounds == BUSY_ROUNDS {
            // Work is still coming: look again at once.
            syscall::yield_now();
            nb.hv_mut().note_event();
            continue;
        }
        syscall::set_timer(sleep);
        let got = syscall::wait(xen_mask | timer_mask);
        syscall::set_timer(0);
        if got & xen_mask != 0 {
            nb.hv_mut().note_event();
        }
    }
}

fn hv_domid(hv: &GatewayHv) -> u16 {
    use netback::hv::Hypervisor;
    hv.domid()
}
