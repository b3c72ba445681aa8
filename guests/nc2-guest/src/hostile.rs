//! Hostile frontend modes: the guest connects properly, sends a few good frames, then breaks
//! the protocol in one precise way, so the bed can check that netback disconnects only this vif
//! (and says why) while other guests keep working.
//!
//! | mode | what goes wrong |
//! |---|---|
//! | `netif-prod-jump` | tx ring `req_prod` jumps 65536 beyond what was produced |
//! | `netif-bad-gref` | an rx buffer is posted with grant reference 0xfffffff0, then traffic (ARP requests answered by the `ping` address) until the backend must fill it |
//! | `nc2-bad-size` | a front-to-back message of size 12 (not a multiple of 8) |
//! | `nc2-index-jump` | the front-to-back `out_prod` jumps two ring sizes ahead |
//! | `xs-garbage` | tx-ring-ref, rx-ring-ref and event-channel hold garbage at Initialised; later the state key itself |
//!
//! After the corruption the guest watches the backend's state and logs
//! `NC2_GUEST_HOSTILE_REFUSED <state>` once it reaches Closing or Closed, then answers like a
//! frontend should (its own state Closed) and idles.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;

use libnc2::netif::sring::REQ_PROD;
use nc2_guest::args::{Args, Hostile};
use nc2_guest::net::Mac;
use userland::xenstore::XenbusState;

use crate::app::App;
use crate::env::{Env, Vif};
use crate::link::Link;
use crate::nc2_link::Nc2Link;
use crate::netif_link::NetifLink;

const REFUSAL_TIMEOUT_MS: u64 = 60_000;

/// Good traffic first: pings (when `ping` is set) or ARP requests for the gateway address.
fn good_frames(env: &Env, link: &mut dyn Link, mac: Mac, args: &Args) -> Result<(), String> {
    let name = link.name();
    let mut app = App::new(link, mac, args.ip);
    match args.ping {
        Some(p) => {
            let n = app.ping(env, p)?;
            log::info!("NC2_GUEST_GOOD_FRAMES {n} echo replies over {name} before the corruption");
        }
        None => {
            for _ in 0..args.good {
                let f = app
                    .stack
                    .arp_request([args.ip[0], args.ip[1], args.ip[2], 1]);
                app.send(env, &f)?;
                app.pump(env, 0)?;
            }
            log::info!(
                "NC2_GUEST_GOOD_FRAMES {} ARP requests over {name}",
                args.good
            );
        }
    }
    Ok(())
}

/// Keeps frames coming our way (ARP requests to the `ping` address, each answered) until the
/// backend reaches the bad buffer and leaves Connected.
fn provoke_delivery(
    env: &mut Env,
    vif: &Vif,
    link: &mut NetifLink,
    args: &Args,
) -> Result<(), String> {
    let target = args
        .ping
        .ok_or("netif-bad-gref needs a ping address to provoke replies")?;
    let mut app = App::new(link, vif.mac, args.ip);
    for i in 0..600u32 {
        if i % 16 == 0 && env.backend_state(vif)? != Some(XenbusState::Connected) {
            return Ok(());
        }
        let f = app.stack.arp_request(target);
        if !app.try_send(&f)? {
            // No transmit buffer: the backend stopped answering (it has let us go).
            env.sleep(50);
        }
        app.pump(env, 5)?;
    }
    Err("the backend kept the vif connected through 600 replies".into())
}

/// Waits for the backend to refuse us, then closes our end.
fn await_refusal(env: &mut Env, vif: &Vif, t0: u64) -> Result<(), String> {
    report_refusal(env, vif, t0, "Closing or Closed")?;
    env.set_state(vif, XenbusState::Closed)
}

/// Waits (as `waiting_for`) until the backend is Closing or further, then logs its state, the
/// time since the corruption at `t0` and its `error` key.
fn report_refusal(env: &mut Env, vif: &Vif, t0: u64, waiting_for: &str) -> Result<(), String> {
    let s = env.wait_backend(vif, waiting_for, REFUSAL_TIMEOUT_MS, |s| {
        s >= XenbusState::Closing
    })?;
    let error = env
        .read(&format!("{}/error", vif.backend))?
        .unwrap_or_default();
    log::info!(
        "NC2_GUEST_HOSTILE_REFUSED backend state {} ({s:?}) {} ms after the corruption; error key: {error:?}",
        s as u8,
        env.now_ms() - t0
    );
    Ok(())
}

pub fn run(env: &mut Env, vif: &Vif, args: &Args, h: Hostile) -> Result<(), String> {
    let t_connect = env.now_ms();
    match h {
        Hostile::NetifProdJump | Hostile::NetifBadGref => {
            let mut link = NetifLink::connect(env, vif)?;
            log::info!(
                "NC2_GUEST_CONNECTED over netif in {} ms (hostile mode {h:?})",
                env.now_ms() - t_connect
            );
            good_frames(env, &mut link, vif.mac, args)?;
            let t0 = env.now_ms();
            if h == Hostile::NetifProdJump {
                let mem = link.tx_ring_mem();
                let prod = mem.load_u32(REQ_PROD, Ordering::Acquire);
                mem.store_u32(REQ_PROD, prod.wrapping_add(0x1_0000), Ordering::Release);
                log::info!(
                    "NC2_GUEST_CORRUPTED tx req_prod {prod} -> {}",
                    prod.wrapping_add(0x1_0000)
                );
            } else {
                link.post_bad_rx_buffer()
                    .map_err(|e| format!("posting the bad buffer: {e}"))?;
                log::info!("NC2_GUEST_CORRUPTED rx buffer posted with grant ref 0xfffffff0");
                link.kick()?;
                provoke_delivery(env, vif, &mut link, args)?;
            }
            link.kick()?;
            await_refusal(env, vif, t0)?;
        }
        Hostile::Nc2BadSize | Hostile::Nc2IndexJump => {
            let mut link = Nc2Link::connect(env, vif)?;
            log::info!(
                "NC2_GUEST_CONNECTED over nc2 in {} ms (hostile mode {h:?})",
                env.now_ms() - t_connect
            );
            good_frames(env, &mut link, vif.mac, args)?;
            let t0 = env.now_ms();
            let what = if h == Hostile::Nc2BadSize {
                link.corrupt_message_size()
            } else {
                link.corrupt_index_jump()
            };
            log::info!("NC2_GUEST_CORRUPTED {what}");
            link.kick()?;
            await_refusal(env, vif, t0)?;
        }
        Hostile::XsGarbage => {
            env.wait_backend(vif, "InitWait", REFUSAL_TIMEOUT_MS, |s| {
                s >= XenbusState::InitWait
            })?;
            let f = vif.front.clone();
            for (k, v) in [
                ("tx-ring-ref", "zz-not-a-ref"),
                ("rx-ring-ref", "-1"),
                ("event-channel", "4294967296"),
                ("request-rx-copy", "1"),
            ] {
                env.write(&format!("{f}/{k}"), v)?;
            }
            env.set_state(vif, XenbusState::Initialised)?;
            let t0 = env.now_ms();
            log::info!("NC2_GUEST_CORRUPTED garbage ring keys at Initialised");
            report_refusal(env, vif, t0, "Closing")?;
            // Then the state key itself: not a number at all.
            env.write(&format!("{f}/state"), "banana")?;
            let s = env.wait_backend(vif, "Closed", REFUSAL_TIMEOUT_MS, |s| {
                s == XenbusState::Closed
            })?;
            log::info!(
                "NC2_GUEST_HOSTILE_STATE_GARBAGE backend state {} ({s:?})",
                s as u8
            );
        }
    }
    Ok(())
}
