//! Building the bootable artefacts: cross-compile, check, pack.
//!
//! Owns: the `cargo build --target x86_64-unknown-none` invocation (the target is passed here,
//! never set at the workspace root, so host `cargo test` keeps working), the PVH-note check on the
//! kernel, the boot module holding the servers, and where artefacts land. Outputs are written to
//! a temporary name and renamed, so concurrent builds never leave a half-written file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{fmt, fs};

use nc2dd_abi::bootmodule::{Builder, EntryKind};

use crate::elfnote;

pub const TARGET: &str = "x86_64-unknown-none";

/// Every server binary a system description may name: (server name, cargo package). The binary
/// has the server's name.
pub const SERVERS: &[(&str, &str)] = &[
    ("supervisor", "userland"),
    ("nic-ixgbe", "nic-ixgbe"),
    ("netback", "netback"),
    ("test-task", "test-tasks"),
    ("nc2-guest", "nc2-guest"),
];

/// The names a description may use for `server`.
pub fn known_servers() -> Vec<&'static str> {
    SERVERS.iter().map(|(s, _)| *s).collect()
}
pub const KERNEL_ELF: &str = "nc2dd.elf";
/// The kernel with the boot module inside, for loaders that take no module.
pub const STANDALONE_ELF: &str = "nc2dd-standalone.elf";
pub const MODULE: &str = "nc2dd-modules.bin";

/// The workspace this tool was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("image/ has a parent")
        .to_path_buf()
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Cargo target directory for the cross build (kept apart from the host build's, so a
    /// build started from inside `cargo test` never waits on the outer cargo's lock).
    pub target_dir: PathBuf,
    /// Where the artefacts land.
    pub out_dir: PathBuf,
    /// Extra cargo features for the kernel crate.
    pub kernel_features: Vec<String>,
    /// The system description to pack.
    pub system: PathBuf,
    /// A default kernel command line packed into the boot module (used when the loader passes
    /// none).
    pub cmdline: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        let target = workspace_root().join("target");
        Self {
            target_dir: target.join("cross"),
            out_dir: target.join("nc2dd"),
            kernel_features: Vec::new(),
            system: workspace_root().join("image").join("system.toml"),
            cmdline: None,
        }
    }
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct Artefacts {
    pub kernel: PathBuf,
    /// The kernel with `module` embedded.
    pub standalone: PathBuf,
    pub module: PathBuf,
    pub pvh_entry: u64,
    pub servers: Vec<(String, u64)>,
}

#[derive(Debug)]
pub enum BuildError {
    Io(PathBuf, std::io::Error),
    Cargo(String),
    Note(PathBuf, elfnote::NoteError),
    Module(String),
    System(crate::system::SystemError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            BuildError::Cargo(m) => write!(f, "cross build failed: {m}"),
            BuildError::Note(p, e) => write!(f, "kernel {} rejected: {e}", p.display()),
            BuildError::Module(m) => write!(f, "boot module: {m}"),
            BuildError::System(e) => write!(f, "system description: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

fn io<T>(p: &Path, r: std::io::Result<T>) -> Result<T, BuildError> {
    r.map_err(|e| BuildError::Io(p.to_path_buf(), e))
}

/// Writes `data` to `path` atomically (temporary file in the same directory, then rename).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    io(&tmp, fs::write(&tmp, data))?;
    io(path, fs::rename(&tmp, path))
}

/// How a package is compiled and linked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Runs at its link address with no loader to relocate it: static relocation model.
    Kernel,
    /// The kernel again, with a boot module embedded (its own target directory, so the plain
    /// kernel is not rebuilt each time).
    Standalone,
    /// Position-independent (the target's default), linked at the fixed user base with the
    /// relocations already applied, so the kernel loads it by program headers alone.
    Server,
}

fn subdir(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Kernel => "kernel",
        Flavour::Standalone => "kernel-standalone",
        Flavour::Server => "servers",
    }
}

fn cargo_build(
    opts: &Options,
    flavour: Flavour,
    packages: &[&str],
    features: &[String],
    embed: Option<&Path>,
) -> Result<(), BuildError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Separate target directories: the two flavours use different flags for the same
    // dependencies, and sharing one directory would rebuild them on every switch.
    let rustflags = match flavour {
        Flavour::Kernel | Flavour::Standalone => "-Crelocation-model=static",
        Flavour::Server => "",
    };
    match embed {
        Some(module) => cmd.env("NC2DD_EMBED_MODULE", module),
        None => cmd.env_remove("NC2DD_EMBED_MODULE"),
    };
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(opts.target_dir.join(subdir(flavour)))
        // With --target given, these flags do not reach host build scripts.
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    for p in packages {
        cmd.args(["-p", p]);
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let status = cmd
        .status()
        .map_err(|e| BuildError::Cargo(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(BuildError::Cargo(format!(
            "`cargo build -p {}` exited with {status}",
            packages.join(" -p ")
        )));
    }
    Ok(())
}

fn output(opts: &Options, flavour: Flavour, bin: &str) -> PathBuf {
    opts.target_dir
        .join(subdir(flavour))
        .join(TARGET)
        .join("release")
        .join(bin)
}

/// Builds the kernel and the servers, checks the kernel's PVH note, packs the boot module.
pub fn build(opts: &Options) -> Result<Artefacts, BuildError> {
    // The description is checked before anything is built, so a bad one fails fast.
    let system = crate::system::load(&opts.system, &known_servers()).map_err(BuildError::System)?;
    io(&opts.out_dir, fs::create_dir_all(&opts.out_dir))?;
    cargo_build(
        opts,
        Flavour::Kernel,
        &["kernel"],
        &opts.kernel_features,
        None,
    )?;
    let kernel_built = output(opts, Flavour::Kernel, "nc2dd");
    let kernel_bytes = io(&kernel_built, fs::read(&kernel_built))?;
    let pvh_entry = elfnote::check_pvh_note(&kernel_bytes)
        .map_err(|e| BuildError::Note(kernel_built.clone(), e))?;

    let names = system.servers();
    let mut packages: Vec<&str> = SERVERS
        .iter()
        .filter(|(s, _)| names.contains(s))
        .map(|(_, p)| *p)
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let mut module = Builder::new();
    module.add("system", EntryKind::SystemTable, system.to_table());
    if let Some(c) = &opts.cmdline {
        module.add("cmdline", EntryKind::CommandLine, c.as_bytes().to_vec());
    }
    let mut servers = Vec::new();
    cargo_build(opts, Flavour::Server, &packages, &[], None)?;
    for name in names {
        let path = output(opts, Flavour::Server, name);
        let bytes = io(&path, fs::read(&path))?;
        servers.push((name.to_string(), bytes.len() as u64));
        module.add(name, EntryKind::Server, bytes);
    }
    let module = module
        .build()
        .map_err(|e| BuildError::Module(e.to_string()))?;

    let kernel = opts.out_dir.join(KERNEL_ELF);
    let module_path = opts.out_dir.join(MODULE);
    write_atomic(&kernel, &kernel_bytes)?;
    write_atomic(&module_path, &module)?;

    // The standalone kernel: one build directory serves every system, so builds of different
    // systems take turns (build and copy under one lock) instead of overwriting each other.
    let lock_path = opts.target_dir.join("kernel-standalone.lock");
    io(&opts.target_dir, fs::create_dir_all(&opts.target_dir))?;
    let lock = io(&lock_path, fs::File::create(&lock_path))?;
    io(&lock_path, lock.lock())?;
    cargo_build(
        opts,
        Flavour::Standalone,
        &["kernel"],
        &opts.kernel_features,
        Some(&module_path),
    )?;
    let built = output(opts, Flavour::Standalone, "nc2dd");
    let standalone_bytes = io(&built, fs::read(&built))?;
    drop(lock);
    elfnote::check_pvh_note(&standalone_bytes).map_err(|e| BuildError::Note(built.clone(), e))?;
    let standalone = opts.out_dir.join(STANDALONE_ELF);
    write_atomic(&standalone, &standalone_bytes)?;
    Ok(Artefacts {
        kernel,
        standalone,
        module: module_path,
        pvh_entry,
        servers,
    })
}
