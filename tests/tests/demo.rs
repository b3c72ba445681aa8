//! The README's first command, end to end: runs the demo binary that `scripts/run.sh` runs
//! (tests/src/bin/demo.rs) and checks what it promises: every ping answered with ping's 0% loss
//! summary, the second MAC's probes answered by the second VMDq pool, and the clean end through
//! the supervisor's shutdown (QEMU status 33), with exit status 0.

use std::process::{Command, Stdio};

const COUNT: u32 = 4;

#[test]
fn demo_pings_nc2dd_without_loss_and_ends_cleanly() {
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
