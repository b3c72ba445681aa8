//! The QEMU harness: boot an image with a deadline and judge the run by its serial output.
//!
//! Owns: starting QEMU (command line from `image::qemu`), streaming serial lines as they come,
//! failing fast on a failure marker, requiring the expected marker and QEMU's exact exit status
//! (never "any odd code": QEMU's own errors exit with 1), and keeping every run's full serial log
//! under `target/qemu-logs/<name>.log`. QEMU is killed when the deadline passes or the harness
//! is dropped, so a hung guest cannot hang the test suite.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::assemble::{self, Artefacts, Options};
use image::qemu::{Accel, QemuConfig};
use nc2dd_abi::{debug_exit, markers};

/// What a run must show to pass.
#[derive(Debug, Clone)]
pub struct Expect {
    /// A line containing this must appear.
    pub marker: &'static str,
    /// Stop at once (after collecting the rest of the dump) when a line contains one of these.
    pub fail_on: Vec<&'static str>,
    /// QEMU's exact exit status.
    pub status: i32,
}

impl Expect {
    /// A clean boot: the pass marker, then the success exit.
    pub fn pass() -> Self {
        Self {
            marker: markers::PASS,
            fail_on: vec![markers::FAIL, markers::PANIC, markers::FAULT],
            status: debug_exit::qemu_status(debug_exit::SUCCESS),
        }
    }

    /// A run that must end in a CPU exception dump and the failure exit.
    pub fn fault() -> Self {
        Self {
            marker: markers::FAULT,
            fail_on: vec![markers::PANIC, markers::PASS],
            status: debug_exit::qemu_status(debug_exit::FAILURE),
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub status: Option<i32>,
    pub accel: Accel,
    pub elapsed: Duration,
    pub log_path: PathBuf,
}

impl Outcome {
    /// The first line containing `needle`.
    pub fn line_with(&self, needle: &str) -> Option<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .find(|l| l.contains(needle))
    }
}

/// Builds the image of the real system (`image/system.toml`) once per test process (the cross
/// build has its own target directory, so this never waits on the cargo that runs the tests).
pub fn artefacts() -> &'static Artefacts {
    static BUILT: OnceLock<Artefacts> = OnceLock::new();
    BUILT.get_or_init(|| {
        assemble::build(&Options::default()).unwrap_or_else(|e| panic!("image build failed: {e}"))
    })
}

/// Builds the image of test system `tests/systems/<name>.toml` once per test process, into
/// `target/nc2dd-systems/<name>/`.
pub fn system_artefacts(name: &str) -> Artefacts {
    system_artefacts_with(name, None)
}

/// As [`system_artefacts`], with a default kernel command line packed into the boot module
/// (into `target/nc2dd-systems/<name>-cmdline/`).
pub fn system_artefacts_with(name: &str, cmdline: Option<&str>) -> Artefacts {
    static BUILT: Mutex<BTreeMap<(String, Option<String>), Artefacts>> =
        Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry((name.to_string(), cmdline.map(String::from)))
        .or_insert_with(|| {
            let root = assemble::workspace_root();
            let dir = if cmdline.is_some() {
                format!("{name}-cmdline")
            } else {
                name.to_string()
            };
            let opts = Options {
                out_dir: root.join("target").join("nc2dd-systems").join(dir),
                system: root
                    .join("tests")
                    .join("systems")
                    .join(format!("{name}.toml")),
                cmdline: cmdline.map(String::from),
                ..Options::default()
            };
            assemble::build(&opts).unwrap_or_else(|e| panic!("image build of {name} failed: {e}"))
        })
        .clone()
}

/// Fails (never skips) when QEMU is missing, naming the setup script.
pub fn require_qemu() {
    let ok = Command::new(QemuConfig::program())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} not found: QEMU tests cannot run; install it with scripts/setup.sh",
        QemuConfig::program()
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_dir() -> PathBuf {
    assemble::workspace_root().join("target").join("qemu-logs")
}

/// Boots `cfg` and checks the run against `expect`. On failure the error holds the reason and
/// the log path; the log is kept either way.
pub fn run(
    name: &str,
    cfg: &QemuConfig,
    deadline: Duration,
    expect: &Expect,
) -> Result<Outcome, String> {
    require_qemu();
    std::fs::create_dir_all(log_dir()).map_err(|e| format!("log dir: {e}"))?;
    let log_path = log_dir().join(format!("{name}.log"));
    let mut log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let args = cfg.args();
    let _ = writeln!(
        log,
        "# {} {}\n# accel: {}",
        QemuConfig::program(),
        args.join(" "),
        cfg.accel
    );
    eprintln!(
        "[{name}] booting in QEMU ({}), log {}",
        cfg.accel,
        log_path.display()
    );

    let start = Instant::now();
    let child = Command::new(QemuConfig::program())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let stderr_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let mut lines = Vec::new();
    let mut seen_marker = false;
    let mut failure: Option<String> = None;
    let mut stop_at: Option<Instant> = None;
    loop {
        let limit = stop_at.unwrap_or(start + deadline);
        let now = Instant::now();
        if now >= limit {
            if stop_at.is_none() {
                failure.get_or_insert(format!("deadline of {deadline:?} passed"));
            }
            break;
        }
        match rx.recv_timeout(limit - now) {
            Ok(line) => {
                eprintln!("[{name}] {line}");
                let _ = writeln!(log, "{line}");
                if line.contains(expect.marker) {
                    seen_marker = true;
                }
                if failure.is_none()
                    && let Some(m) = expect.fail_on.iter().find(|m| line.contains(*m))
                {
                    failure = Some(format!("failure marker {m}: {line}"));
                    // Keep reading briefly so the whole dump lands in the log.
                    stop_at = Some(Instant::now() + Duration::from_secs(1));
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Serial output ended (or we stopped reading): give QEMU a moment to report its status.
    let mut status = None;
    let wait_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < wait_until {
        if let Ok(Some(s)) = child.0.try_wait() {
            status = s.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    let qemu_stderr = stderr_thread.join().unwrap_or_default();
    if !qemu_stderr.is_empty() {
        let _ = writeln!(log, "# qemu stderr:\n{qemu_stderr}");
    }
    let elapsed = start.elapsed();
    let _ = writeln!(log, "# exit status {status:?} after {elapsed:?}");
    let outcome = Outcome {
        lines,
        status,
        accel: cfg.accel,
        elapsed,
        log_path: log_path.clone(),
    };

    let verdict = if let Some(f) = failure {
        Err(f)
    } else if !seen_marker {
        Err(format!("marker {} never appeared", expect.marker))
    } else if status != Some(expect.status) {
        Err(format!(
            "QEMU exit status {status:?}, expected {}",
            expect.status
        ))
    } else {
        Ok(())
    };
    match verdict {
        Ok(()) => Ok(outcome),
        Err(why) => Err(format!(
            "{name}: {why} (accel {}, log {}){}",
            cfg.accel,
            log_path.display(),
            if qemu_stderr.is_empty() {
                String::new()
            } else {
                format!("\nqemu: {qemu_stderr}")
            }
        )),
    }
}
