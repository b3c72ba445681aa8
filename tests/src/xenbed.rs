//! The nested Xen test bed: Xen 4.17 and a Debian dom0 booted in QEMU (TCG with emulated SVM,
//! q35 with an intel-iommu, an igb NIC), driven over the serial console.
//!
//! What this module owns:
//! - finding or assembling the bed (`tests/xenbed/build-bed.sh`, cached outside the source tree);
//! - one QEMU process per [`XenBed`], started with a hard overall deadline: a watchdog kills QEMU
//!   when it passes, and dropping the bed kills it too;
//! - the serial console: every byte is appended to `target/xenbed-logs/<test>.log` (the log is
//!   kept after the run, pass or fail), and waits scan it for markers with their own deadline;
//! - fail-fast markers: a Xen panic, a dom0 kernel panic or a failed dom0 init step ends any wait
//!   at once with the offending line;
//! - dom0 commands: each is followed by `echo` of a unique marker carrying `$?`, so a command's
//!   exit status is checked, not just its output;
//! - files for dom0 (the nc2dd ELF, xl configs): packed into a `newc` cpio archive appended to the
//!   cached initramfs, so they appear under `/nc2dd` in dom0.
//!
//! Invariant: at most one nested Xen runs at a time on the machine (it uses both cores under TCG):
//! [`XenBed::boot`] holds an exclusive lock on `target/xenbed-logs/.bed.lock` until the bed is
//! dropped, across threads and processes.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// dom0 prints this when xenstored, xen-init-dom0 and xenconsoled are up (tests/xenbed/dom0-init.sh).
pub const DOM0_READY: &str = "NC2DD_DOM0_READY";

/// Ctrl-A three times hands the serial console to Xen; `q` dumps every domain's vCPUs (event
/// flags, pause state), `d` the registers of every physical CPU; three more Ctrl-As give the
/// console back to dom0.
const XEN_DEBUG_KEYS: &str = "\x01\x01\x01qd\x01\x01\x01";
/// How long a timed-out wait keeps looking after the poke.
const POKE_WAIT: Duration = Duration::from_secs(15);

/// Lines that end every wait at once: nothing good follows them.
const FATAL_MARKERS: &[(&str, FatalKind)] = &[
    ("Panic on CPU", FatalKind::XenPanic),
    ("Kernel panic - not syncing", FatalKind::Dom0Panic),
    ("NC2DD_DOM0_INIT_FAILED", FatalKind::Dom0InitFailed),
];

/// The workspace root (the `tests` crate sits one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where serial logs are kept: `NC2DD_XENBED_LOG_DIR`, else `<workspace>/target/xenbed-logs`.
pub fn log_dir() -> PathBuf {
    match std::env::var_os("NC2DD_XENBED_LOG_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target").join("xenbed-logs"),
    }
}

/// Which dom0 root to assemble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Toolstack only: PV and PVH guests.
    Pvh,
    /// Adds qemu-system-xen and SeaBIOS to dom0, for HVM guests (and PCI passthrough).
    Hvm,
}

/// The three files QEMU boots, as assembled by `build-bed.sh`.
#[derive(Clone, Debug)]
pub struct BedFiles {
    pub dir: PathBuf,
    pub xen: PathBuf,
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    /// Wall time of the assembly step (near zero when the bed was cached).
    pub assembly_time: Duration,
}

/// Everything that can stop a bed run, each saying what was missing or what went wrong.
#[derive(Debug)]
pub enum BedError {
    /// QEMU is absent or lacks a device the bed needs.
    QemuMissing(String),
    /// `build-bed.sh` failed or produced an incomplete bed.
    BedBuild(String),
    /// Another file the run needs is missing (for example the nc2dd ELF).
    Missing(String),
    /// A wait ran past its deadline.
    Timeout {
        waiting_for: String,
        after: Duration,
        tail: String,
    },
    /// A fail-fast marker appeared on the console.
    Fatal {
        kind: FatalKind,
        line: String,
    },
    /// QEMU exited while the harness still waited for something.
    QemuExited {
        waiting_for: String,
        tail: String,
        stderr: String,
    },
    /// A dom0 command exited with a non-zero status.
    CommandFailed {
        cmd: String,
        status: i32,
        output: String,
    },
    Io(String, io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalKind {
    XenPanic,
    Dom0Panic,
    Dom0InitFailed,
    /// A marker the test added with [`XenBed::add_fail_marker`].
    Test,
}

impl fmt::Display for BedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BedError::QemuMissing(s) => write!(f, "QEMU unusable: {s}"),
            BedError::BedBuild(s) => write!(f, "test bed assembly failed: {s}"),
            BedError::Missing(s) => write!(f, "missing: {s}"),
            BedError::Timeout {
                waiting_for,
                after,
                tail,
            } => write!(
                f,
                "timed out after {:.1} s waiting for {waiting_for:?}; console tail:\n{tail}",
                after.as_secs_f64()
            ),
            BedError::Fatal { kind, line } => write!(f, "{kind:?} on the console: {line}"),
            BedError::QemuExited {
                waiting_for,
                tail,
                stderr,
            } => write!(
                f,
                "QEMU exited while waiting for {waiting_for:?}; its stderr:\n{stderr}\n\
                 console tail:\n{tail}"
            ),
            BedError::CommandFailed {
                cmd,
                status,
                output,
            } => write!(f, "dom0 command {cmd:?} exited {status}; output:\n{output}"),
            BedError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for BedError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BedError {
    let what = what.into();
    move |e| BedError::Io(what, e)
}

/// Checks that `qemu-system-x86_64` exists and has the igb model (bookworm's QEMU 7.2 lacks it).
pub fn check_qemu() -> Result<(), BedError> {
    let out = Command::new(qemu_binary())
        .args(["-device", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            BedError::QemuMissing(format!(
                "cannot run {} ({e}); scripts/setup.sh installs QEMU 10 from bookworm-backports",
                qemu_binary()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("\"igb\"") {
        return Err(BedError::QemuMissing(format!(
            "{} has no igb device model; scripts/setup.sh installs QEMU 10 from bookworm-backports",
            qemu_binary()
        )));
    }
    Ok(())
}

fn qemu_binary() -> String {
    std::env::var("NC2DD_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_string())
}

/// Finds the bed: `NC2DD_XENBED_DIR` if set (used as is), else runs `tests/xenbed/build-bed.sh`,
/// which assembles it on first use and answers from its cache afterwards.
pub fn build_bed(flavour: Flavour) -> Result<BedFiles, BedError> {
    let start = Instant::now();
    let dir = match std::env::var_os("NC2DD_XENBED_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let script = workspace_root().join("tests/xenbed/build-bed.sh");
            let mut cmd = Command::new("bash");
            cmd.arg(&script);
            if flavour == Flavour::Hvm {
                cmd.arg("--hvm");
            }
            // The script's progress goes to our stderr so a slow cold assembly is visible.
            let out = cmd
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| BedError::BedBuild(format!("cannot run {}: {e}", script.display())))?;
            if !out.status.success() {
                return Err(BedError::BedBuild(format!(
                    "{} exited with {} (its messages are above)",
                    script.display(),
                    out.status
                )));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout.lines().last().unwrap_or("").trim();
            if last.is_empty() {
                return Err(BedError::BedBuild(format!(
                    "{} printed no bed directory",
                    script.display()
                )));
            }
            PathBuf::from(last)
        }
    };
    let files = BedFiles {
        xen: dir.join("xen"),
        vmlinuz: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.gz"),
        dir,
        assembly_time: start.elapsed(),
    };
    let remedy = if std::env::var_os("NC2DD_XENBED_DIR").is_some() {
        "NC2DD_XENBED_DIR must name a directory that tests/xenbed/build-bed.sh printed".to_string()
    } else {
        format!("delete {} to rebuild it", files.dir.display())
    };
    for f in [&files.xen, &files.vmlinuz, &files.initramfs] {
        if !f.is_file() {
            return Err(BedError::BedBuild(format!(
                "the bed lacks {} ({remedy})",
                f.display()
            )));
        }
    }
    Ok(files)
}

/// How the outer QEMU's igb NIC is connected. Either way traffic stays on this machine.
#[derive(Clone, Debug)]
pub enum Netdev {
    /// QEMU's user-mode network with `restrict=on`: no route out of the VM.
    UserRestricted,
    /// A QEMU `socket` netdev, e.g. `listen=127.0.0.1:5555` or `udp=127.0.0.1:5556,localaddr=127.0.0.1:5555`.
    Socket(String),
    /// A whole `-netdev` argument with `id=n0` in it (e.g. `NetPeer::netdev("n0")`'s `dgram`).
    Spec(String),
}

/// One bed run.
#[derive(Clone, Debug)]
pub struct BedConfig {
    /// Names the log file: `<log_dir>/<test_name>.log`.
    pub test_name: String,
    pub flavour: Flavour,
    pub netdev: Netdev,
    /// Files placed under `/nc2dd/<name>` in dom0 (mode 0755).
    pub dom0_files: Vec<(String, Vec<u8>)>,
    /// Hard limit on the whole QEMU run, from spawn to drop.
    pub overall_timeout: Duration,
    /// Limit for Xen + dom0 to reach [`DOM0_READY`].
    pub boot_timeout: Duration,
    /// Appended to Xen's command line.
    pub xen_cmdline_extra: String,
}

impl BedConfig {
    pub fn new(test_name: &str) -> Self {
        BedConfig {
            test_name: test_name.to_string(),
            flavour: Flavour::Pvh,
            netdev: Netdev::UserRestricted,
            dom0_files: Vec::new(),
            overall_timeout: Duration::from_secs(300),
            boot_timeout: Duration::from_secs(150),
            xen_cmdline_extra: String::new(),
        }
    }
}

/// Console bytes shared between the reader threads and the waits.
struct Console {
    buf: Vec<u8>,
    /// (end offset, arrival time) of every read, to time stages by when text arrived rather
    /// than by when a wait looked for it.
    arrivals: Vec<(usize, Instant)>,
    eof: bool,
    /// QEMU's own messages (bad arguments, missing files), kept apart from the console text.
    stderr: Vec<u8>,
}

impl Console {
    fn arrival_of(&self, offset: usize) -> Instant {
        let i = self.arrivals.partition_point(|(end, _)| *end < offset);
        self.arrivals
            .get(i)
            .or(self.arrivals.last())
            .map_or_else(Instant::now, |(_, t)| *t)
    }
}

struct Shared {
    console: Mutex<Console>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A reader thread that panicked leaves the data intact; the log is still worth reading.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops the watchdog when the bed is dropped first.
struct Watchdog {
    done: Mutex<bool>,
    cv: Condvar,
}

/// A running nested Xen. Dropping it kills QEMU and releases the bed lock.
pub struct XenBed {
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    log: Arc<Mutex<File>>,
    log_path: PathBuf,
    cursor: usize,
    fatal: FatalScanner,
    next_marker: u64,
    started: Instant,
    deadline: Instant,
    watchdog: Arc<Watchdog>,
    /// Wall time from spawning QEMU to [`DOM0_READY`].
    pub boot_time: Duration,
    pub files: BedFiles,
    _lock: File,
}

impl XenBed {
    /// Assembles (or finds) the bed, boots it, and waits for the dom0 shell.
    pub fn boot(cfg: BedConfig) -> Result<XenBed, BedError> {
        check_qemu()?;
        let files = build_bed(cfg.flavour)?;
        let logs = log_dir();
        fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;

        // One nested Xen at a time on this machine, across test threads and processes.
        let lock_path = logs.join(".bed.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        lock_file
            .lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;

        let initrd = if cfg.dom0_files.is_empty() {
            files.initramfs.clone()
        } else {
            let run_dir = logs.join(format!("{}.run", cfg.test_name));
            fs::create_dir_all(&run_dir)
                .map_err(io_err(format!("creating {}", run_dir.display())))?;
            let path = run_dir.join("initramfs.cpio.gz");
            write_initrd_with_files(&files.initramfs, &cfg.dom0_files, &path)?;
            path
        };

        let log_path = logs.join(format!("{}.log", cfg.test_name));
        let log_file =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let log = Arc::new(Mutex::new(log_file));

        let args = qemu_args(&files, &initrd, &cfg)?;
        let started = Instant::now();
        let deadline = started + cfg.overall_timeout;
        {
            let mut l = lock(&log);
            let _ = writeln!(
                l,
                "## harness: {} {}\n## harness: bed {}",
                qemu_binary(),
                args.join(" "),
                files.dir.display()
            );
        }
        let mut child = Command::new(qemu_binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BedError::QemuMissing(format!("cannot start {}: {e}", qemu_binary())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let shared = Arc::new(Shared {
            console: Mutex::new(Console {
                buf: Vec::new(),
                arrivals: Vec::new(),
                eof: false,
                stderr: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        if let Some(out) = stdout {
            spawn_reader(out, Arc::clone(&shared), Arc::clone(&log), true);
        }
        if let Some(err) = stderr {
            spawn_reader(err, Arc::clone(&shared), Arc::clone(&log), false);
        }
        let child = Arc::new(Mutex::new(child));
        let watchdog = Arc::new(Watchdog {
            done: Mutex::new(false),
            cv: Condvar::new(),
        });
        spawn_watchdog(
            Arc::clone(&child),
            Arc::clone(&watchdog),
            Arc::clone(&log),
            deadline,
        );

        let mut bed = XenBed {
            child,
            stdin,
            shared,
            log,
            log_path,
            cursor: 0,
            fatal: FatalScanner::default(),
            next_marker: 0,
            started,
            deadline,
            watchdog,
            boot_time: Duration::ZERO,
            files,
            _lock: lock_file,
        };
        bed.wait_for(DOM0_READY, cfg.boot_timeout)?;
        bed.boot_time = started.elapsed();
        bed.note(&format!(
            "dom0 ready after {:.1} s",
            bed.boot_time.as_secs_f64()
        ));
        Ok(bed)
    }

    /// The serial log of this run.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The console offset from which the next wait searches.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Moves the search start back to `pos` (from [`XenBed::cursor`]), for text that may have
    /// arrived while a command was still running, such as guest output during `xl create`.
    pub fn rewind(&mut self, pos: usize) {
        self.cursor = self.cursor.min(pos);
    }

    /// Makes every later wait fail at once when `marker` shows up on the console.
    pub fn add_fail_marker(&mut self, marker: &str) {
        self.fatal.extra.push(marker.to_string());
        // Rescan what arrived since the last match.
        self.fatal.scanned = self.fatal.scanned.min(self.cursor);
    }

    /// Writes a harness note into the log (not into the console text waits search).
    pub fn note(&self, msg: &str) {
        let mut l = lock(&self.log);
        let _ = writeln!(
            l,
            "\n## harness +{:.3}s: {msg}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Types `text` on the console. Sent in small pieces: Xen's serial input ring towards dom0
    /// holds little, and drops characters when dom0 falls behind.
    pub fn send(&mut self, text: &str) -> Result<(), BedError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BedError::Missing("QEMU's stdin was closed".to_string()))?;
        for chunk in text.as_bytes().chunks(32) {
            stdin
                .write_all(chunk)
                .and_then(|_| stdin.flush())
                .map_err(io_err("writing to QEMU's serial console"))?;
            thread::sleep(Duration::from_millis(15));
        }
        Ok(())
    }

    /// Runs a dom0 shell command and returns its output; fails unless it exits 0.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<String, BedError> {
        let (status, output) = self.run_status(cmd, timeout)?;
        if status != 0 {
            return Err(BedError::CommandFailed {
                cmd: cmd.to_string(),
                status,
                output,
            });
        }
        Ok(output)
    }

    /// Runs a dom0 shell command and returns its exit status and output (the console text between
    /// the command and its status marker, which includes the echoed command line and any
    /// hypervisor or guest lines that arrived meanwhile).
    pub fn run_status(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String), BedError> {
        self.next_marker += 1;
        let n = self.next_marker;
        let (echoed, needle) = status_marker(n);
        self.note(&format!("run: {cmd}"));
        let begin = self.cursor;
        self.send(&format!("{cmd}\n{echoed}\n"))?;
        let mut status = 0;
        // The marker counts only once its status digits and closing underscores have arrived.
        let found = self.wait_until(&needle, timeout, |hay| {
            let pos = find(hay, needle.as_bytes())?;
            let (st, end) = parse_status(hay, pos + needle.len())?;
            status = st;
            Some((pos, end))
        })?;
        let output = {
            let c = lock(&self.shared.console);
            String::from_utf8_lossy(&c.buf[begin..found.start]).into_owned()
        };
        Ok((status, output))
    }

    /// `xl create`s the domain `name` from `cfg_path` (a dom0 path) paused, reads its domain id,
    /// then unpauses it. Creating it paused makes the id certain even for a guest that finishes
    /// and powers off at once. The console cursor is left just before the unpause, so a wait for
    /// [`Domain::console_prefix`] sees the guest's first line however early it came.
    pub fn xl_create(
        &mut self,
        cfg_path: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Domain, BedError> {
        let started = Instant::now();
        self.run(&format!("xl create -p {cfg_path}"), timeout)?;
        let out = self.run(&format!("xl domid {name}"), timeout)?;
        let domid = out
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .next_back()
            .ok_or_else(|| BedError::CommandFailed {
                cmd: format!("xl domid {name}"),
                status: 0,
                output: format!("no domain id in the output:\n{out}"),
            })?;
        let before_unpause = self.cursor();
        self.run(&format!("xl unpause {name}"), timeout)?;
        self.rewind(before_unpause);
        Ok(Domain {
            domid,
            console_prefix: format!("(d{domid}) "),
            started,
        })
    }

    /// Waits until `needle` appears on the console after everything matched so far. Returns the
    /// full line that holds it. Fails at once on a fatal marker, when QEMU exits, or when `timeout`
    /// (or the bed's overall deadline) passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Match, BedError> {
        self.wait_until(needle, timeout, |hay| {
            find(hay, needle.as_bytes()).map(|pos| (pos, pos + needle.len()))
        })
    }

    /// The wait loop: `matcher` gets the console text after the cursor and returns the span it
    /// was looking for (relative to that text); `needle` names it in errors.
    fn wait_until(
        &mut self,
        needle: &str,
        timeout: Duration,
        mut matcher: impl FnMut(&[u8]) -> Option<(usize, usize)>,
    ) -> Result<Match, BedError> {
        let waited_from = Instant::now();
        let mut deadline = (waited_from + timeout).min(self.deadline);
        let mut poked = false;
        let shared = Arc::clone(&self.shared);
        let mut c = lock(&shared.console);
        loop {
            if let Some(fatal) = self.fatal.scan(&c.buf) {
                drop(c);
                self.note(&format!("fatal marker: {fatal:?}"));
                return Err(fatal);
            }
            if let Some((s, e)) = matcher(&c.buf[self.cursor..]) {
                let start = self.cursor + s;
                let end = self.cursor + e;
                let line = line_around(&c.buf, start);
                let arrived = c.arrival_of(end);
                self.cursor = end;
                if poked {
                    drop(c);
                    let msg = format!("{needle:?} arrived only after the console poke");
                    self.note(&msg);
                    eprintln!("[bed] warning: {msg} (see {})", self.log_path().display());
                }
                return Ok(Match {
                    start,
                    end,
                    line,
                    arrived,
                });
            }
            if c.eof && Instant::now() >= self.deadline {
                // The watchdog killed QEMU: say so rather than "QEMU exited".
                let tail = tail_of(&c.buf);
                drop(c);
                self.note(&format!("overall deadline passed waiting for {needle:?}"));
                return Err(BedError::Timeout {
                    waiting_for: format!("{needle} (the bed's overall deadline)"),
                    after: waited_from.elapsed(),
                    tail,
                });
            }
            if c.eof {
                drop(c);
                self.note(&format!("QEMU exited while waiting for {needle:?}"));
                // Its last words on stderr may still be on the way.
                thread::sleep(Duration::from_millis(200));
                let c = lock(&shared.console);
                return Err(BedError::QemuExited {
                    waiting_for: needle.to_string(),
                    tail: tail_of(&c.buf),
                    stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
                });
            }
            let now = Instant::now();
            if now >= deadline && !poked && now + POKE_WAIT < self.deadline {
                // Before failing, ask Xen what every vCPU is doing (the dump lands in the log),
                // which also shows whether the hypervisor's console itself had stalled.
                drop(c);
                poked = true;
                self.note(&format!(
                    "timeout waiting for {needle:?}: poking Xen's console (debug keys q, d)"
                ));
                let _ = self.send(XEN_DEBUG_KEYS);
                deadline = Instant::now() + POKE_WAIT;
                c = lock(&shared.console);
                continue;
            }
            if now >= deadline {
                let tail = tail_of(&c.buf);
                drop(c);
                self.note(&format!("timeout waiting for {needle:?}"));
                return Err(BedError::Timeout {
                    waiting_for: needle.to_string(),
                    after: now - waited_from,
                    tail,
                });
            }
            c = shared
                .changed
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Kills QEMU now (also done on drop).
    pub fn kill(&mut self) {
        {
            let mut done = lock(&self.watchdog.done);
            *done = true;
            self.watchdog.cv.notify_all();
        }
        self.stdin = None;
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for XenBed {
    fn drop(&mut self) {
        self.note("stopping QEMU");
        self.kill();
    }
}

/// Finds fail-fast markers in console text, each line once.
#[derive(Default)]
struct FatalScanner {
    /// Console offset up to which complete lines were scanned.
    scanned: usize,
    /// Markers added by the test.
    extra: Vec<String>,
}

impl FatalScanner {
    /// Scans the complete lines of `buf` not scanned yet; returns the first fatal one.
    fn scan(&mut self, buf: &[u8]) -> Option<BedError> {
        // Up to the last newline only, so a marker split across reads is seen whole later.
        let from = self.scanned.min(buf.len());
        let upto = from + buf[from..].iter().rposition(|&b| b == b'\n')? + 1;
        let region = &buf[from..upto];
        self.scanned = upto;
        let builtin = FATAL_MARKERS.iter().map(|(m, k)| (*m, *k));
        let extra = self.extra.iter().map(|m| (m.as_str(), FatalKind::Test));
        builtin
            .chain(extra)
            .filter_map(|(m, kind)| find(region, m.as_bytes()).map(|pos| (pos, kind)))
            .min_by_key(|(pos, _)| *pos)
            .map(|(pos, kind)| BedError::Fatal {
                kind,
                line: line_around(buf, from + pos),
            })
    }
}

/// A guest started by [`XenBed::xl_create`].
#[derive(Clone, Debug)]
pub struct Domain {
    pub domid: u32,
    /// How Xen prefixes the guest's port-0xE9 output on the serial console: `(dN) `.
    pub console_prefix: String,
    /// When `xl create` was sent.
    pub started: Instant,
}

/// Where a needle was found: byte offsets into the console text and the line holding it.
#[derive(Clone, Debug)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    /// The line holding the needle, as far as it had arrived.
    pub line: String,
    /// When the needle's last byte came off the serial line.
    pub arrived: Instant,
}

/// The status marker line for command `n`, and the text only its output contains. The `''` in
/// the echoed command keeps the terminal's echo of the line from matching.
pub fn status_marker(n: u64) -> (String, String) {
    (format!("echo __DONE_{n}''_$?__"), format!("__DONE_{n}_"))
}

/// Parses `<digits>__` at `at`; returns the status and the offset after the marker.
fn parse_status(buf: &[u8], at: usize) -> Option<(i32, usize)> {
    let rest = buf.get(at..)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || rest.get(digits..digits + 2) != Some(b"__".as_slice()) {
        return None;
    }
    let status = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((status, at + digits + 2))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn line_around(buf: &[u8], pos: usize) -> String {
    let start = buf[..pos]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let end = buf[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |p| pos + p);
    String::from_utf8_lossy(&buf[start..end])
        .trim_end_matches('\r')
        .to_string()
}

fn tail_of(buf: &[u8]) -> String {
    let from = buf.len().saturating_sub(3000);
    String::from_utf8_lossy(&buf[from..]).into_owned()
}

fn spawn_reader(
    mut src: impl Read + Send + 'static,
    shared: Arc<Shared>,
    log: Arc<Mutex<File>>,
    is_console: bool,
) {
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            let n = match src.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut l = lock(&log);
                let _ = if is_console {
                    l.write_all(&chunk[..n])
                } else {
                    write!(
                        l,
                        "\n## qemu stderr: {}",
                        String::from_utf8_lossy(&chunk[..n])
                    )
                };
                let _ = l.flush();
            }
            let mut c = lock(&shared.console);
            if is_console {
                c.buf.extend_from_slice(&chunk[..n]);
                let end = c.buf.len();
                c.arrivals.push((end, Instant::now()));
                shared.changed.notify_all();
            } else {
                c.stderr.extend_from_slice(&chunk[..n]);
            }
        }
        if is_console {
            lock(&shared.console).eof = true;
            shared.changed.notify_all();
        }
    });
}

fn spawn_watchdog(
    child: Arc<Mutex<Child>>,
    wd: Arc<Watchdog>,
    log: Arc<Mutex<File>>,
    deadline: Instant,
) {
    thread::spawn(move || {
        let mut done = lock(&wd.done);
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                drop(done);
                let _ = writeln!(
                    lock(&log),
                    "\n## harness: overall deadline passed, killing QEMU"
                );
                let mut c = lock(&child);
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
            done = wd
                .cv
                .wait_timeout(done, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    });
}

fn qemu_args(files: &BedFiles, initrd: &Path, cfg: &BedConfig) -> Result<Vec<String>, BedError> {
    let path = |p: &Path| -> Result<String, BedError> {
        let s = p
            .to_str()
            .ok_or_else(|| BedError::Missing(format!("a UTF-8 path for {}", p.display())))?;
        // QEMU splits -initrd on commas; a path with one would be read as two modules.
        if s.contains(',') {
            return Err(BedError::Missing(format!("a path without commas: {s}")));
        }
        Ok(s.to_string())
    };
    let netdev = match &cfg.netdev {
        Netdev::UserRestricted => "user,id=n0,restrict=on".to_string(),
        Netdev::Socket(spec) => format!("socket,id=n0,{spec}"),
        Netdev::Spec(spec) => spec.clone(),
    };
    // `no-sharept`: the emulated CPU is AMD (SVM, NPT) and the emulated IOMMU Intel (VT-d). Xen
    // reads the VMX EPT capability MSR as zero under TCG and then shares the NPT-format p2m
    // with VT-d; after a p2m change it flushes only AMD IOMMUs, so the VT-d IOTLB would keep
    // translations for pages a passthrough domain no longer owns (grant unmaps). Separate VT-d
    // tables get VT-d's own flushes.
    let mut xen_cmdline =
        "console=com1 com1=115200,8n1 dom0_mem=512M noreboot guest_loglvl=all iommu=1,no-sharept"
            .to_string();
    if !cfg.xen_cmdline_extra.is_empty() {
        xen_cmdline.push(' ');
        xen_cmdline.push_str(&cfg.xen_cmdline_extra);
    }
    Ok(vec![
        "-accel".into(),
        "tcg".into(),
        // Emulated SVM + nested paging give Xen HVM and HAP; without removing `monitor` Xen's
        // idle loop takes a #GP on mwait under TCG.
        "-cpu".into(),
        "EPYC,+svm,+npt,-monitor".into(),
        "-machine".into(),
        "q35,kernel-irqchip=split".into(),
        "-device".into(),
        "intel-iommu,intremap=on,caching-mode=on".into(),
        "-m".into(),
        "2048".into(),
        "-smp".into(),
        "2".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-netdev".into(),
        netdev,
        // Not at 00:02.0: qemu-xen refuses to pass through a device there (IGD slot).
        "-device".into(),
        "igb,netdev=n0,addr=04.0".into(),
        "-kernel".into(),
        path(&files.xen)?,
        "-append".into(),
        xen_cmdline,
        "-initrd".into(),
        format!(
            "{} console=hvc0 earlyprintk=xen quiet,{}",
            path(&files.vmlinuz)?,
            path(initrd)?
        ),
    ])
}

/// Writes `base` (a gzipped cpio) followed by an uncompressed `newc` archive of `files` under
/// `/nc2dd`. Linux unpacks concatenated archives; the second must start 4-byte aligned.
fn write_initrd_with_files(
    base: &Path,
    files: &[(String, Vec<u8>)],
    out: &Path,
) -> Result<(), BedError> {
    let mut data = fs::read(base).map_err(io_err(format!("reading {}", base.display())))?;
    while !data.len().is_multiple_of(4) {
        data.push(0);
    }
    let mut entries: Vec<CpioEntry<'_>> = vec![CpioEntry::dir("nc2dd")];
    let names: Vec<String> = files.iter().map(|(n, _)| format!("nc2dd/{n}")).collect();
    for ((name, bytes), path) in files.iter().zip(&names) {
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(BedError::Missing(format!(
                "a plain file name for a dom0 file, not {name:?}"
            )));
        }
        entries.push(CpioEntry::file(path, bytes));
    }
    data.extend_from_slice(&cpio_newc(&entries));
    fs::write(out, data).map_err(io_err(format!("writing {}", out.display())))
}

/// One member of a `newc` cpio archive.
pub struct CpioEntry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

impl<'a> CpioEntry<'a> {
    pub fn dir(path: &'a str) -> Self {
        CpioEntry {
            path,
            mode: 0o040755,
            data: &[],
        }
    }
    pub fn file(path: &'a str, data: &'a [u8]) -> Self {
        CpioEntry {
            path,
            mode: 0o100755,
            data,
        }
    }
}

/// Encodes entries as a `newc` ("070701") cpio archive with its trailer: the format the Linux
/// initramfs unpacker reads.
pub fn cpio_newc(entries: &[CpioEntry<'_>]) -> Vec<u8> {
    fn pad4(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
    }
    fn member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        member(&mut out, i as u32 + 1, e.path, e.mode, e.data);
    }
    member(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// Runs a nested-Xen test body, once more if it failed in one of the bed's known rare ways
/// ([`known_bed_fault`]).
///
/// Three rare failures are not understood yet: a domain triple-faulting at the moment dom0 was
/// creating another domain (the register dump is Xen's own); nc2dd's vCPU spinning in the
/// kernel with interrupts off, its event-channel upcall waiting for the gateway lock that no
/// one should hold (the Xen debug-key dump a timed-out wait takes shows the RIP); and dom0's
/// `xl` aborting on a corrupted heap of its own while it creates a guest (seen once, with
/// `malloc(): corrupted top size`). Such a failure keeps its serial logs (renamed
/// `*.bed-fault.log`), says so loudly, and the test runs again; any other failure, or a second
/// one, fails the test.
pub fn retry_on_bed_fault(name: &str, body: impl Fn()) {
    retry_keeping(name, body, keep_bed_fault_logs)
}

/// Which known rare bed failure, if any, a test's panic message shows.
pub fn known_bed_fault(msg: &str) -> Option<&'static str> {
    if msg.contains("Triple fault") {
        Some("a domain triple-faulted")
    } else if msg.contains("timed out after") {
        // A timed-out wait whose poke found nc2dd's vCPU spinning in the kernel with
        // interrupts off (the gateway's upcall waiting for the gateway lock, seen twice).
        Some("a wait timed out")
    } else if msg.contains("dom0 command") && DOM0_TOOL_CRASHES.iter().any(|m| msg.contains(m)) {
        Some("a dom0 tool crashed")
    } else {
        None
    }
}

/// What glibc and the shell print when a dom0 tool dies of a corrupted heap or a bad access.
const DOM0_TOOL_CRASHES: [&str; 4] = [
    "malloc(): ",
    "free(): ",
    "Segmentation fault",
    "double free or corruption",
];

fn retry_keeping(name: &str, body: impl Fn(), keep_logs: impl Fn() -> Vec<String>) {
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&body));
    let Err(e) = first else { return };
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let Some(what) = known_bed_fault(&msg) else {
        std::panic::resume_unwind(e);
    };
    let kept = keep_logs();
    eprintln!(
        "[{name}] WARNING: {what} ({}); logs kept: {}; running the test once more",
        msg.lines().next().unwrap_or(""),
        kept.join(", ")
    );
    body();
}

/// Renames the fresh serial logs that show a known bed fault to `*.bed-fault.log`.
fn keep_bed_fault_logs() -> Vec<String> {
    let mut kept = Vec::new();
    if let Ok(dir) = fs::read_dir(log_dir()) {
        for f in dir.flatten() {
            let p = f.path();
            let fresh = f
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < Duration::from_secs(3600)));
            let is_log = p.extension().is_some_and(|x| x == "log")
                && !p.to_string_lossy().ends_with(".bed-fault.log");
            let failed = fs::read(&p).is_ok_and(|b| {
                contains(&b, b"Triple fault")
                    || contains(&b, b"poking Xen's console")
                    || DOM0_TOOL_CRASHES.iter().any(|m| contains(&b, m.as_bytes()))
            });
            if fresh && is_log && failed {
                let to = p.with_extension("bed-fault.log");
                if fs::rename(&p, &to).is_ok() {
                    kept.push(to.display().to_string());
                }
            }
        }
    }
    kept
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_triple_fault_is_run_once_more_and_other_failures_are_not() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let runs = AtomicUsize::new(0);
        let none = Vec::new;
        retry_keeping(
            "unit",
            || {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("Test on the console: (XEN) d1v0 Triple fault - invoking HVM shutdown");
                }
            },
            none,
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let runs = AtomicUsize::new(0);
        let other = std::panic::catch_unwind(|| {
            retry_keeping(
                "unit",
                || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    panic!("the file changed on its way: checksums differ");
                },
                none,
            )
        });
        assert!(other.is_err());
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "other failures are not retried"
        );
        let twice = std::panic::catch_unwind(|| {
            retry_keeping("unit", || panic!("Triple fault again"), none);
        });
        assert!(twice.is_err(), "a second triple fault fails");
    }

    #[test]
    fn known_bed_faults_are_told_apart_from_real_failures() {
        let xl_abort = "dom0 command \"xl create -p /nc2dd/wire-a.cfg\" exited 134; output:\n\
                        Parsing config from /nc2dd/wire-a.cfg\nmalloc(): corrupted top size\nAborted";
        assert_eq!(known_bed_fault(xl_abort), Some("a dom0 tool crashed"));
        assert_eq!(
            known_bed_fault("(XEN) d3v0 Triple fault - invoking HVM shutdown action 1"),
            Some("a domain triple-faulted")
        );
        assert_eq!(
            known_bed_fault("waiting for \"netback: serving\" timed out after 60 s"),
            Some("a wait timed out")
        );
        // A dom0 command that fails on its own terms, or a guest's malloc message that did not
        // come from a dom0 command, is a real failure.
        assert_eq!(
            known_bed_fault(
                "dom0 command \"xl create /nc2dd/g.cfg\" exited 3; output: libxl: error"
            ),
            None
        );
        assert_eq!(
            known_bed_fault("guest said: malloc(): corrupted top size"),
            None
        );
        assert_eq!(known_bed_fault("checksums differ"), None);
    }

    use super::*;

    #[test]
    fn status_marker_echo_never_matches_its_needle() {
        let (echoed, needle) = status_marker(7);
        assert!(find(echoed.as_bytes(), needle.as_bytes()).is_none());
        // What the shell prints for `echo __DONE_7''_$?__` after a command exiting 3.
        let printed = b"__DONE_7_3__\n";
        assert_eq!(find(printed, needle.as_bytes()), Some(0));
        assert_eq!(parse_status(printed, needle.len()), Some((3, 12)));
    }

    #[test]
    fn parse_status_rejects_partial_or_odd_markers() {
        assert_eq!(parse_status(b"__DONE_1_", 9), None);
        assert_eq!(parse_status(b"__DONE_1_12", 9), None);
        assert_eq!(parse_status(b"__DONE_1_$?__", 9), None);
        assert_eq!(parse_status(b"__DONE_1_1234__", 9), None);
        assert_eq!(parse_status(b"__DONE_1_127__x", 9), Some((127, 14)));
    }

    #[test]
    fn line_around_returns_the_whole_line() {
        let buf = b"first\r\n(XEN) Panic on CPU 0:\nlast";
        let pos = find(buf, b"Panic").unwrap();
        assert_eq!(line_around(buf, pos), "(XEN) Panic on CPU 0:");
        assert_eq!(line_around(buf, buf.len() - 1), "last");
    }

    #[test]
    fn cpio_newc_layout() {
        let data = b"hello";
        let a = cpio_newc(&[CpioEntry::dir("d"), CpioEntry::file("d/f", data)]);
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        // Header (110 bytes) + "d\0" padded to 112, then the file header at 112.
        assert_eq!(&a[110..112], b"d\0");
        assert_eq!(&a[112..118], b"070701");
        // The file's size field (7th field) is 5.
        let size_field = &a[112 + 6 + 6 * 8..112 + 6 + 7 * 8];
        assert_eq!(size_field, b"00000005");
        // Name "d/f\0" right after the header, data 4-aligned after it.
        let name_at = 112 + 110;
        assert_eq!(&a[name_at..name_at + 4], b"d/f\0");
        let data_at = (name_at + 4).next_multiple_of(4);
        assert_eq!(&a[data_at..data_at + 5], data);
        let trailer = find(&a, b"TRAILER!!!").unwrap();
        assert!(trailer > data_at);
    }

    fn dummy_files() -> BedFiles {
        BedFiles {
            dir: PathBuf::from("/bed"),
            xen: PathBuf::from("/bed/xen"),
            vmlinuz: PathBuf::from("/bed/vmlinuz"),
            initramfs: PathBuf::from("/bed/initramfs.cpio.gz"),
            assembly_time: Duration::ZERO,
        }
    }

    fn arg_after<'a>(args: &'a [String], flag: &str, containing: &str) -> Option<&'a str> {
        args.windows(2)
            .find(|w| w[0] == flag && w[1].contains(containing))
            .map(|w| w[1].as_str())
    }

    #[test]
    fn qemu_args_carry_the_measured_machine_and_the_chosen_netdev() {
        let mut cfg = BedConfig::new("t");
        cfg.xen_cmdline_extra = "sched=credit".into();
        let args = qemu_args(&dummy_files(), Path::new("/run/initrd"), &cfg).unwrap();
        assert_eq!(arg_after(&args, "-accel", ""), Some("tcg"));
        assert_eq!(
            arg_after(&args, "-cpu", ""),
            Some("EPYC,+svm,+npt,-monitor")
        );
        assert_eq!(
            arg_after(&args, "-machine", ""),
            Some("q35,kernel-irqchip=split")
        );
        assert!(arg_after(&args, "-device", "intel-iommu,intremap=on,caching-mode=on").is_some());
        assert_eq!(
            arg_after(&args, "-device", "igb"),
            Some("igb,netdev=n0,addr=04.0")
        );
        assert_eq!(
            arg_after(&args, "-netdev", ""),
            Some("user,id=n0,restrict=on")
        );
        let append = arg_after(&args, "-append", "").unwrap();
        assert!(append.contains("guest_loglvl=all") && append.ends_with(" sched=credit"));
        assert_eq!(
            arg_after(&args, "-initrd", ""),
            Some("/bed/vmlinuz console=hvc0 earlyprintk=xen quiet,/run/initrd")
        );

        cfg.netdev = Netdev::Socket("listen=127.0.0.1:5555".into());
        let args = qemu_args(&dummy_files(), Path::new("/run/initrd"), &cfg).unwrap();
        assert_eq!(
            arg_after(&args, "-netdev", ""),
            Some("socket,id=n0,listen=127.0.0.1:5555")
        );
    }

    #[test]
    fn qemu_args_refuse_a_module_path_with_a_comma() {
        let cfg = BedConfig::new("t");
        let e = qemu_args(&dummy_files(), Path::new("/run/a,b"), &cfg).unwrap_err();
        assert!(e.to_string().contains("/run/a,b"), "{e}");
    }

    #[test]
    fn watchdog_kills_the_child_at_the_deadline() {
        let child = Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let child = Arc::new(Mutex::new(child));
        let wd = Arc::new(Watchdog {
            done: Mutex::new(false),
            cv: Condvar::new(),
        });
        let log_path = std::env::temp_dir().join(format!("xenbed-wd-{}.log", std::process::id()));
        let log = Arc::new(Mutex::new(File::create(&log_path).unwrap()));
        let start = Instant::now();
        spawn_watchdog(
            Arc::clone(&child),
            wd,
            log,
            start + Duration::from_millis(100),
        );
        loop {
            if let Ok(Some(_)) = lock(&child).try_wait() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the watchdog did not kill the child"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let note = fs::read_to_string(&log_path).unwrap();
        let _ = fs::remove_file(&log_path);
        assert!(note.contains("overall deadline passed"), "{note}");
    }

    #[test]
    fn dom0_files_follow_the_base_initramfs_4_byte_aligned() {
        let dir = std::env::temp_dir().join(format!("xenbed-initrd-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let base = dir.join("base");
        fs::write(&base, b"12345").unwrap();
        let out = dir.join("out");
        let files = vec![("a.cfg".to_string(), b"x".to_vec())];
        write_initrd_with_files(&base, &files, &out).unwrap();
        let data = fs::read(&out).unwrap();
        assert_eq!(&data[..8], b"12345\0\0\0");
        assert_eq!(&data[8..14], b"070701");
        assert!(find(&data, b"nc2dd/a.cfg\0").is_some());
        let bad = vec![("../x".to_string(), Vec::new())];
        assert!(write_initrd_with_files(&base, &bad, &out).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn fatal_markers_end_waits_with_the_line() {
        // A bed whose console is fed by hand: no QEMU, so only the scanning logic runs.
        let mut scanner = FatalScanner::default();
        assert!(scanner.scan(b"(XEN) booting\n(XEN) Panic on CP").is_none());
        let e = scanner
            .scan(b"(XEN) booting\n(XEN) Panic on CPU 1:\n")
            .expect("the completed line is fatal");
        match e {
            BedError::Fatal { kind, line } => {
                assert_eq!(kind, FatalKind::XenPanic);
                assert_eq!(line, "(XEN) Panic on CPU 1:");
            }
            other => panic!("unexpected {other}"),
        }
    }
}
