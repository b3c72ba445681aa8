//! The QEMU command line for booting nc2dd, shared by `image run` and the test harness.
//!
//! Owns: accelerator choice and the fixed devices every run has: q35, serial on stdio, no
//! display, no reboot, and `isa-debug-exit` so the kernel can end the run with a status.
//!
//! KVM is used when /dev/kvm opens and is a hardware-virtualisation KVM, with
//! `-cpu host,-arch-capabilities` (plain `-cpu host` aborts on the project's machines). Some
//! machines offer KVM through the `kvm_pvm` module instead (paging-based virtualisation without
//! VMX/SVM): there nc2dd's kernel boots, but the first ring-3 to ring-0 transition of a task
//! (`int 0xfd` or `syscall`) comes back as #UD or at the wrong privilege level, so those machines
//! get TCG. `NC2DD_ACCEL=tcg|kvm` overrides the choice.

use std::fmt;
use std::path::PathBuf;

use nc2dd_abi::debug_exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

/// KVM when /dev/kvm is usable, else TCG; `NC2DD_ACCEL` forces one.
pub fn detect_accel() -> Accel {
    match std::env::var("NC2DD_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg,
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    let opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    if opens && !pvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub kernel: PathBuf,
    pub module: Option<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Further arguments (NICs, netdevs).
    pub extra: Vec<String>,
}

impl QemuConfig {
    pub fn new(kernel: PathBuf) -> Self {
        Self {
            kernel,
            module: None,
            cmdline: String::new(),
            memory_mib: 128,
            cpus: 2,
            accel: detect_accel(),
            extra: Vec::new(),
        }
    }

    pub fn program() -> &'static str {
        "qemu-system-x86_64"
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &[&str]| a.extend(s.iter().map(|s| s.to_string()));
        push(&[
            "-machine",
            "q35",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]);
        push(&["-monitor", "none", "-nodefaults"]);
        match self.accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
            Accel::Tcg => push(&["-accel", "tcg", "-cpu", "qemu64,+nx"]),
        }
        push(&[
            "-m",
            &format!("{}M", self.memory_mib),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&[
            "-device",
            &format!("isa-debug-exit,iobase={:#x},iosize=0x04", debug_exit::PORT),
        ]);
        push(&["-kernel", &self.kernel.to_string_lossy()]);
        if let Some(m) = &self.module {
            push(&["-initrd", &m.to_string_lossy()]);
        }
        if !self.cmdline.is_empty() {
            push(&["-append", &self.cmdline]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}
