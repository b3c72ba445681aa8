//! The README's first command, end to end: runs the demo binary that `scripts/run.sh` runs
//! (tests/src/bin/demo.rs) and checks what it promises: every ping answered with ping's 0% loss
//! summary, the second MAC's probes answered by the second VMDq pool, and the clean end through
//! the supervisor's shutdown (QEMU status 33), with exit status 0.
//!
//! The demo's clean end rests on the supervisor counting only status 0 as a normal exit; the
//! second test boots the same system with a task argument nic-ixgbe rejects and checks that its
//! exits with status 1 are reported and restarted with the back-off, and never end the system.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use image::qemu::QemuConfig;
use nc2dd_tests::netpeer::NetPeer;
use nc2dd_tests::qemu;

const COUNT: u32 = 4;

/// One test at a time: the demo process and this one both build the image into the same
/// target/nc2dd/ directory, and the two runs would compete for the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn demo_pings_nc2dd_without_loss_and_ends_cleanly() {
    let _serial = one_at_a_time();
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--count", &COUNT.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("the demo binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("stdout:\n{stdout}\nstderr (serial console):\n{stderr}");
    assert!(
        out.status.success(),
        "demo failed: {}\n{context}",
        out.status
    );
    let has = |needle: &str| {
        assert!(
            stdout.lines().any(|l| l.contains(needle)),
            "no line with {needle:?}\n{context}"
        );
    };
    has("demo: ARP reply: 192.0.2.2 is at 52:54:00:12:34:56");
    for seq in 1..=COUNT {
        has(&format!(
            "64 bytes from 192.0.2.2: icmp_seq={seq} ttl=64 time="
        ));
    }
    has(&format!(
        "{COUNT} packets transmitted, {COUNT} received, 0% packet loss"
    ));
    has("rtt min/avg/max = ");
    for seq in 1..=3 {
        has(&format!(
            "demo: probe {seq} to 52:54:00:12:34:57 acknowledged by pool 1"
        ));
    }
    has("demo: nc2dd shut down cleanly (QEMU status 33)");
    has("demo: passed");
    // The serial console was streamed, and shows the server's side of the same exchange.
    for needle in [
        "nic-ixgbe: link up",
        &format!("echo request id 20035 seq {COUNT} answered"),
        "nic-ixgbe: pool 1: frame from 02:00:00:00:00:01 to 52:54:00:12:34:57 type 0x88b5",
        "supervisor: all tasks exited normally",
        "NC2DD_PASS",
    ] {
        assert!(
            stderr.contains(needle),
            "console lacks {needle:?}\n{context}"
        );
    }
}

/// Kills QEMU when the test ends, however it ends.
struct Qemu(std::process::Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_server_exiting_with_an_error_is_restarted_with_back_off_and_never_ends_the_system() {
    let _serial = one_at_a_time();
    qemu::require_qemu();
    let a = qemu::artefacts();
    // A peer socket only so that the igb has a wire; nothing is sent on it.
    let peer = NetPeer::bind().expect("peer socket on 127.0.0.1");
    let mut cfg = QemuConfig::new(a.kernel.clone());
    cfg.module = Some(a.module.clone());
    // Five groups instead of six: nic-ixgbe rejects it and exits with status 1.
    cfg.cmdline = "console=com1 nc2dd.shutdown=allow nc2dd.nic-ixgbe.mac0=52:54:00:12:34".into();
    cfg.extra = vec![
        "-netdev".into(),
        peer.netdev("n0").expect("netdev argument"),
        "-device".into(),
        "igb,netdev=n0,mac=52:54:00:12:34:00".into(),
    ];
    let child = Command::new(QemuConfig::program())
        .args(cfg.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("QEMU starts");
    let mut qemu = Qemu(child);
    let stdout = qemu.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Each failure is reported with its status, and the delays double once restarts come
    // quickly: 0 ms, then 10, then 20.
    let want = [
        "nic-ixgbe: cannot start: task argument \"mac0\" does not parse",
        "supervisor: task 1 generation 0 failed: exited with status 1",
        "supervisor: restarting task 1 in 0 ms (restart 1)",
        "supervisor: task 1 generation 1 failed: exited with status 1",
        "supervisor: restarting task 1 in 10 ms (restart 2)",
        "supervisor: task 1 generation 2 failed: exited with status 1",
        "supervisor: restarting task 1 in 20 ms (restart 3)",
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    let mut next = 0;
    while next < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("never saw {:?}; console:\n{}", want[next], lines.join("\n"));
        };
        eprintln!("[restart] {line}");
        assert!(
            !line.contains("all tasks exited normally") && !line.contains("NC2DD_PASS"),
            "a failed task ended the system: {line}"
        );
        if line.contains(want[next]) {
            next += 1;
        }
        lines.push(line);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("supervisor: task 2 exited with status 0")),
        "netback's normal exit is still normal"
    );
    drop(qemu);
}
