//! `image`: builds nc2dd and runs it.
//!
//! ```text
//! cargo run -p image -- build [--system FILE]             build, check, pack into target/nc2dd/
//! cargo run -p image -- run [--system FILE] [-- ARGS...]  build, then boot in QEMU (serial here)
//! cargo run -p image -- check-note ELF     check a kernel's Xen PVH note
//! cargo run -p image -- bundle --pci BDF [--pci BDF]... [--name N] [--memory MIB] [--vcpus N]
//!       [--install-dir DIR] [--guest-mac MAC] [--out DIR] [--system FILE] [-- nc2dd.KEY=VALUE...]
//!                                          the deployable driver domain (docs/deploy.md)
//! ```

use std::process::{Command, ExitCode};

use image::assemble::{self, Options};
use image::bundle::{self, Deployment};
use image::qemu::QemuConfig;

fn usage() -> ExitCode {
    eprintln!(
        "usage: image build [--system FILE] | image run [--system FILE] [-- QEMU-ARGS...] | \
         image check-note KERNEL-ELF | image bundle --pci BDF [--name N] [--memory MIB] \
         [--vcpus N] [--install-dir DIR] [--guest-mac MAC] [--out DIR] [--system FILE] \
         [-- KERNEL-ARGS...]\n\
         build writes target/nc2dd/{{{},{}}}; the default system is image/system.toml",
        assemble::KERNEL_ELF,
        assemble::MODULE
    );
    ExitCode::from(2)
}

fn build(args: &[String]) -> Result<assemble::Artefacts, ExitCode> {
    let mut opts = Options::default();
    if let Some(i) = args.iter().position(|a| a == "--system") {
        let Some(path) = args.get(i + 1) else {
            return Err(usage());
        };
        opts.system = path.into();
    }
    build_with(&opts)
}

fn build_with(opts: &Options) -> Result<assemble::Artefacts, ExitCode> {
    match assemble::build(opts) {
        Ok(a) => {
            eprintln!(
                "image: kernel  {} (PVH entry {:#x})",
                a.kernel.display(),
                a.pvh_entry
            );
            eprintln!("image: module  {}", a.module.display());
            for (name, size) in &a.servers {
                eprintln!("image:   server {name}: {size} bytes");
            }
            Ok(a)
        }
        Err(e) => {
            eprintln!("image: error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `image bundle`: builds the standalone kernel with the given command line packed in, then
/// writes the bundle (image/src/bundle.rs).
fn bundle_cmd(args: &[String]) -> ExitCode {
    let (ours, kernel_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[1..i], &args[i + 1..]),
        None => (&args[1..], &args[args.len()..]),
    };
    let mut d = Deployment::default();
    let mut opts = Options::default();
    let mut out = opts.out_dir.join("bundle");
    let mut it = ours.iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else {
            eprintln!("image: {flag} needs a value");
            return usage();
        };
        let num = |v: &str| v.parse::<u64>().ok();
        match flag.as_str() {
            "--pci" => d.pci.push(v.clone()),
            "--name" => d.name = v.clone(),
            "--install-dir" => d.install_dir = v.clone(),
            "--guest-mac" => d.guest_mac = v.to_lowercase(),
            "--out" => out = v.into(),
            "--system" => opts.system = v.into(),
            "--memory" => match num(v) {
                Some(m) => d.memory_mib = m,
                None => {
                    eprintln!("image: --memory {v}: not a number of MiB");
                    return ExitCode::from(2);
                }
            },
            "--vcpus" => match num(v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => d.vcpus = n,
                None => {
                    eprintln!("image: --vcpus {v}: not a number");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("image: unknown option {flag}");
                return usage();
            }
        }
    }
    let cmdline = kernel_args.join(" ");
    if let Some(bad) = kernel_args.iter().find(|a| !a.starts_with("nc2dd.")) {
        eprintln!("image: kernel argument {bad:?}: nc2dd's arguments are nc2dd.KEY=VALUE");
        return ExitCode::from(2);
    }
    let budget = match image::system::load(&opts.system, &assemble::known_servers()) {
        Ok(s) => s.memory_budget(),
        Err(e) => {
            eprintln!("image: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Checked before the (slow) build so a typo fails at once.
    if let Err(e) = d.check(budget) {
        eprintln!("image: error: {e}");
        return ExitCode::FAILURE;
    }
    opts.cmdline = (!cmdline.is_empty()).then_some(cmdline.clone());
    let a = match build_with(&opts) {
        Ok(a) => a,
        Err(c) => return c,
    };
    match bundle::write(&out, &a.standalone, &d, budget, &cmdline) {
        Ok(b) => {
            for (name, size) in &b.files {
                eprintln!(
                    "image: bundle  {} ({size} bytes)",
                    b.dir.join(name).display()
                );
            }
            eprintln!(
                "image: copy {} to {} in dom0, then follow docs/deploy.md",
                b.dir.display(),
                d.install_dir
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("image: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => build(&args).map_or_else(|c| c, |_| ExitCode::SUCCESS),
        Some("run") => {
            let ours = args.split(|a| a == "--").next().unwrap_or(&[]);
            let a = match build(ours) {
                Ok(a) => a,
                Err(c) => return c,
            };
            let mut cfg = QemuConfig::new(a.kernel);
            cfg.module = Some(a.module);
            // The demo system ends itself once its servers have finished.
            cfg.cmdline = "console=com1 nc2dd.shutdown=allow".into();
            cfg.extra = args
                .iter()
                .skip_while(|a| *a != "--")
                .skip(1)
                .cloned()
                .collect();
            eprintln!("image: booting nc2dd in QEMU ({})", cfg.accel);
            match Command::new(QemuConfig::program())
                .args(cfg.args())
                .status()
            {
                // The kernel reports success through isa-debug-exit: (0x10 << 1) | 1.
                Ok(s)
                    if s.code()
                        == Some(nc2dd_abi::debug_exit::qemu_status(
                            nc2dd_abi::debug_exit::SUCCESS,
                        )) =>
                {
                    eprintln!("image: nc2dd exited cleanly");
                    ExitCode::SUCCESS
                }
                Ok(s) => {
                    eprintln!("image: QEMU ended with {s}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!(
                        "image: cannot start {}: {e} (run scripts/setup.sh)",
                        QemuConfig::program()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Some("bundle") => bundle_cmd(&args),
        Some("check-note") => {
            let Some(path) = args.get(1) else {
                return usage();
            };
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("image: {path}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match image::elfnote::check_pvh_note(&bytes) {
                Ok(entry) => {
                    println!("{path}: Xen PVH entry {entry:#x}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("image: {path}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
