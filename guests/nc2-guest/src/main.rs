//! The nc2 guest task: nc2dd's kernel running as a PVH domU with this one network task.
//!
//! It reads its arguments (`args`), attaches to xenstore and finds its vif (`env`), connects as
//! a netchannel2 frontend when the backend offers `feature-nc2` (`nc2_link`) or as a netif
//! frontend otherwise or when told so (`netif_link`), and runs the application (`app`) or one
//! of the hostile modes (`hostile`). Marker lines `NC2_GUEST_*` tell the bed test how it went.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

extern crate alloc;

mod app;
mod env;
mod hostile;
mod link;
mod nc2_link;
mod netif_link;
mod pages;

use alloc::string::String;

use nc2_guest::args::{self, Mode, Transport};
use userland::xenstore::XenbusState;

userland::entry!(task_main);

fn task_main() {
    if let Err(e) = run() {
        log::error!("NC2_GUEST_FAILED {e}");
        userland::syscall::exit(1);
    }
}

fn run() -> Result<(), String> {
    let info = userland::info();
    let args = args::parse(|k| info.arg(k))?;
    let t0 = userland::syscall::uptime_ms();
    let mut env = env::Env::attach()?;
    let vif = env.vif()?;
    log::info!(
        "domain {}: vif {} backend {} (domain {}), mac {:02x?}, mode {:?}",
        env.domid,
        vif.front,
        vif.backend,
        vif.backend_id,
        vif.mac,
        args.mode
    );
    if let Mode::Hostile(h) = args.mode {
        return hostile::run(&mut env, &vif, &args, h);
    }
    env.wait_backend(&vif, "InitWait", 60_000, |s| s >= XenbusState::InitWait)?;
    let nc2 = match args.transport {
        Transport::Nc2 => true,
        Transport::Netif => false,
        Transport::Auto => nc2_link::offered(&mut env, &vif)?,
    };
    let t_connect = env.now_ms();
    let mut link: alloc::boxed::Box<dyn link::Link> = if nc2 {
        alloc::boxed::Box::new(nc2_link::Nc2Link::connect(&mut env, &vif)?)
    } else {
        alloc::boxed::Box::new(netif_link::NetifLink::connect(&mut env, &vif)?)
    };
    log::info!(
        "NC2_GUEST_CONNECTED over {} in {} ms ({} ms after the task started)",
        link.name(),
        env.now_ms() - t_connect,
        env.now_ms() - t0
    );
    app::run(&env, link.as_mut(), vif.mac, &args)
}
