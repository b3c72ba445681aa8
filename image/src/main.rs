//! `image`: builds nc2dd and runs it.
//!
//! ```text
//! cargo run -p image -- build [--system FILE]             build, check, pack into target/nc2dd/
//! cargo run -p image -- run [--system FILE] [-- ARGS...]  build, then boot in QEMU (serial here)
//! cargo run -p image -- check-note ELF     check a kernel's Xen PVH note
//! ```

use std::process::{Command, ExitCode};

use image::assemble::{self, Options};
use image::qemu::QemuConfig;

fn usage() -> ExitCode {
    eprintln!(
        "usage: image build [--system FILE] | image run [--system FILE] [-- QEMU-ARGS...] | \
         image check-note KERNEL-ELF\n\
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
    match assemble::build(&opts) {
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
