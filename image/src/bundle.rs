//! The deployable bundle: what a Xen host owner copies to dom0 to run nc2dd as an HVM driver
//! domain that owns a passed-through NIC.
//!
//! Owns: the text of the emitted xl configurations (driver domain and guest vif snippet), the
//! checks on the deployment settings, and the bundle's layout on disk:
//!
//! ```text
//! <out>/nc2dd.elf        the standalone kernel (boot module and command line inside)
//! <out>/nc2dd.cfg        xl config of the driver domain
//! <out>/guest-vif.cfg    the vif line a guest's config needs to use nc2dd
//! <out>/MANIFEST         the settings used and the files' sizes
//! ```
//!
//! Why `firmware_override` and not `kernel=`: xl boots an HVM domain's `kernel=` through
//! hvmloader's direct-boot path, which did not start the PVH-entry ELF with the NIC passed
//! through; `firmware_override` has Xen's domain builder load the ELF in place of hvmloader and
//! enter it at its PVH entry, which works. That path takes no ramdisk and no command line, so
//! the boot module and the command line travel inside the ELF (the standalone kernel).
//!
//! Invariants: the emitted configs always say `type = "hvm"` (Xen passes PCI devices through to
//! HVM and PV domains, not PVH) and `driver_domain = 1`; every PCI address is checked before it
//! is written; the memory is at least what the system description budgets plus the kernel's own.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Memory the kernel needs beside the tasks' budget: its heap, page tables, the image.
pub const KERNEL_OVERHEAD_MIB: u64 = 16;

/// The deployment settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The driver domain's name; guests name it in `backend=`.
    pub name: String,
    /// PCI functions to pass through, `DDDD:BB:DD.F` or `BB:DD.F`.
    pub pci: Vec<String>,
    /// Domain memory in MiB.
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Where dom0 keeps nc2dd.elf (the path written into the config).
    pub install_dir: String,
    /// MAC of the example guest vif in the snippet.
    pub guest_mac: String,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            name: "nc2dd".into(),
            pci: Vec::new(),
            memory_mib: 64,
            vcpus: 2,
            install_dir: "/usr/local/lib/nc2dd".into(),
            guest_mac: "00:16:3e:00:00:10".into(),
        }
    }
}

/// A setting that cannot be deployed.
#[derive(Debug, PartialEq, Eq)]
pub enum DeployError {
    NoPci,
    BadPci(String),
    BadName(String),
    TooLittleMemory { have: u64, need: u64 },
    BadVcpus(u32),
    BadInstallDir(String),
    BadMac(String),
}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPci => write!(
                f,
                "no NIC to pass through: give its PCI address with --pci (see `lspci -D` in dom0)"
            ),
            Self::BadPci(p) => write!(
                f,
                "{p:?} is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hexadecimal)"
            ),
            Self::BadName(n) => write!(
                f,
                "{n:?} is not a usable domain name (letters, digits, '-', '_', '.')"
            ),
            Self::TooLittleMemory { have, need } => write!(
                f,
                "{have} MiB is too little: the system description budgets {need} MiB with the kernel"
            ),
            Self::BadVcpus(n) => write!(f, "{n} vCPUs: nc2dd runs with 1 to 64"),
            Self::BadInstallDir(d) => write!(f, "{d:?} is not an absolute dom0 path"),
            Self::BadMac(m) => write!(f, "{m:?} is not a MAC address (xx:xx:xx:xx:xx:xx)"),
        }
    }
}

impl std::error::Error for DeployError {}

/// `DDDD:BB:DD.F` (domain optional, added as 0000), hexadecimal, device < 32, function < 8.
pub fn normalise_pci(s: &str) -> Result<String, DeployError> {
    let bad = || DeployError::BadPci(s.to_string());
    let parts: Vec<&str> = s.split(':').collect();
    let (dom, bus, devfn) = match parts.as_slice() {
        [b, df] => ("0000", *b, *df),
        [d, b, df] => (*d, *b, *df),
        _ => return Err(bad()),
    };
    let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
    let hex = |t: &str, max_len: usize| {
        (!t.is_empty() && t.len() <= max_len && t.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
    };
    let (Some(d), Some(b), Some(v), Some(fu)) =
        (hex(dom, 4), hex(bus, 2), hex(dev, 2), hex(func, 1))
    else {
        return Err(bad());
    };
    if v >= 32 || fu >= 8 {
        return Err(bad());
    }
    Ok(format!("{d:04x}:{b:02x}:{v:02x}.{fu:x}"))
}

fn check_mac(m: &str) -> Result<(), DeployError> {
    let ok = m.split(':').count() == 6
        && m.split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(DeployError::BadMac(m.to_string()))
    }
}

impl Deployment {
    /// Checks the settings against the system's memory budget (bytes); returns the PCI
    /// addresses in xl's form.
    pub fn check(&self, system_budget: u64) -> Result<Vec<String>, DeployError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(DeployError::BadName(self.name.clone()));
        }
        if self.pci.is_empty() {
            return Err(DeployError::NoPci);
        }
        let pci = self
            .pci
            .iter()
            .map(|p| normalise_pci(p))
            .collect::<Result<Vec<_>, _>>()?;
        let need = system_budget.div_ceil(1 << 20) + KERNEL_OVERHEAD_MIB;
        if self.memory_mib < need {
            return Err(DeployError::TooLittleMemory {
                have: self.memory_mib,
                need,
            });
        }
        if !(1..=64).contains(&self.vcpus) {
            return Err(DeployError::BadVcpus(self.vcpus));
        }
        if !self.install_dir.starts_with('/') || self.install_dir.contains(['"', '\n']) {
            return Err(DeployError::BadInstallDir(self.install_dir.clone()));
        }
        check_mac(&self.guest_mac)?;
        Ok(pci)
    }

    /// The driver domain's xl config. `pci` comes from [`Deployment::check`].
    pub fn driver_domain_cfg(&self, pci: &[String]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# nc2dd: the network driver domain (emitted by `cargo run -p image -- bundle`).\n\
             # Start with `xl create {dir}/nc2dd.cfg` after `xl pci-assignable-add` of each\n\
             # device below; see docs/deploy.md.\n\
             name = \"{name}\"\n\
             # HVM: Xen passes PCI devices through to HVM and PV domains, not to PVH ones.\n\
             type = \"hvm\"\n\
             # The PVH-entry kernel is loaded in place of hvmloader (kernel= does not boot it\n\
             # with a device passed through); it carries its servers and command line inside.\n\
             firmware_override = \"{dir}/nc2dd.elf\"\n\
             memory = {mem}\n\
             vcpus = {vcpus}\n\
             pci = [ {pci} ]\n\
             # Lets guests' vifs name this domain as their backend.\n\
             driver_domain = 1\n\
             # No emulated display or disks: logs go to Xen's console (`xl dmesg`, lines\n\
             # prefixed with this domain's id) and counters to xenstore.\n\
             vnc = 0\n\
             sdl = 0\n\
             serial = \"none\"\n\
             on_poweroff = \"destroy\"\n\
             on_reboot = \"restart\"\n\
             on_crash = \"restart\"",
            name = self.name,
            dir = self.install_dir,
            mem = self.memory_mib,
            vcpus = self.vcpus,
            pci = pci
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", "),
        );
        s
    }

    /// The line a guest's config needs for a vif on nc2dd.
    pub fn guest_vif_snippet(&self) -> String {
        format!(
            "# A guest's network interface on nc2dd: add this to the guest's xl config (one entry\n\
             # per interface; give every vif its own MAC, nc2dd gives each MAC its own NIC queue\n\
             # pair). Stock Linux guests connect with netif (xen-netfront); guests built from\n\
             # nc2dd's kernel connect with netchannel2 on the same line.\n\
             vif = [ \"backend={name},mac={mac}\" ]\n",
            name = self.name,
            mac = self.guest_mac
        )
    }
}

/// What [`write`] produced.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub files: Vec<(String, u64)>,
}

/// Writes the bundle into `out` from the standalone kernel at `standalone`.
pub fn write(
    out: &Path,
    standalone: &Path,
    d: &Deployment,
    system_budget: u64,
    cmdline: &str,
) -> Result<Bundle, String> {
    let pci = d.check(system_budget).map_err(|e| e.to_string())?;
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let elf = fs::read(standalone).map_err(|e| io(standalone, e))?;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("nc2dd.elf", elf),
        ("nc2dd.cfg", d.driver_domain_cfg(&pci).into_bytes()),
        ("guest-vif.cfg", d.guest_vif_snippet().into_bytes()),
    ];
    let mut manifest = String::new();
    let _ = writeln!(
        manifest,
        "nc2dd bundle\nname: {}\npci: {}\nmemory: {} MiB\nvcpus: {}\ninstall-dir: {}\ncommand line: {}",
        d.name,
        pci.join(" "),
        d.memory_mib,
        d.vcpus,
        d.install_dir,
        if cmdline.is_empty() {
            "(none)"
        } else {
            cmdline
        }
    );
    let mut sizes = Vec::new();
    for (name, bytes) in &files {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        let _ = writeln!(manifest, "{name}  ({} bytes)", bytes.len());
        sizes.push((name.to_string(), bytes.len() as u64));
    }
    let path = out.join("MANIFEST");
    fs::write(&path, manifest).map_err(|e| io(&path, e))?;
    Ok(Bundle {
        dir: out.to_path_buf(),
        files: sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep() -> Deployment {
        Deployment {
            pci: vec!["04:00.0".into()],
            ..Deployment::default()
        }
    }

    #[test]
    fn pci_addresses_are_normalised_or_refused() {
        assert_eq!(normalise_pci("04:00.0").unwrap(), "0000:04:00.0");
        assert_eq!(normalise_pci("0000:3B:1f.7").unwrap(), "0000:3b:1f.7");
        for bad in [
            "",
            "04:00",
            "4:00.0.1",
            "0000:04:20.0",
            "04:00.8",
            "zz:00.0",
            "1:2:3:4",
            "04:00.",
            "00000:04:00.0",
        ] {
            assert_eq!(
                normalise_pci(bad),
                Err(DeployError::BadPci(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_driver_domain_config_is_hvm_with_the_nic_and_driver_domain() {
        let d = dep();
        let pci = d.check(32 << 20).unwrap();
        let cfg = d.driver_domain_cfg(&pci);
        for line in [
            "name = \"nc2dd\"",
            "type = \"hvm\"",
            "firmware_override = \"/usr/local/lib/nc2dd/nc2dd.elf\"",
            "memory = 64",
            "vcpus = 2",
            "pci = [ \"0000:04:00.0\" ]",
            "driver_domain = 1",
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
        }
        // Only comments and `key = value` lines: xl parses it.
        for l in cfg.lines() {
            assert!(l.starts_with('#') || l.contains(" = "), "{l:?}");
        }
        assert!(
            d.guest_vif_snippet()
                .contains("vif = [ \"backend=nc2dd,mac=00:16:3e:00:00:10\" ]")
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let d = Deployment::default();
        assert_eq!(d.check(0), Err(DeployError::NoPci));
        let mut d = dep();
        d.memory_mib = 40;
        assert_eq!(
            d.check(32 << 20),
            Err(DeployError::TooLittleMemory { have: 40, need: 48 })
        );
        let mut d = dep();
        d.name = "a b".into();
        assert!(matches!(d.check(0), Err(DeployError::BadName(_))));
        let mut d = dep();
        d.vcpus = 0;
        assert_eq!(d.check(0), Err(DeployError::BadVcpus(0)));
        let mut d = dep();
        d.install_dir = "relative".into();
        assert!(matches!(d.check(0), Err(DeployError::BadInstallDir(_))));
        let mut d = dep();
        d.guest_mac = "00:16:3e:00:00".into();
        assert!(matches!(d.check(0), Err(DeployError::BadMac(_))));
    }

    #[test]
    fn the_bundle_holds_the_kernel_configs_and_a_manifest() {
        let dir = std::env::temp_dir().join(format!("nc2dd-bundle-test-{}", std::process::id()));
        let elf = dir.join("in.elf");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&elf, b"\x7fELF-not-really").unwrap();
        let out = dir.join("bundle");
        let b = write(&out, &elf, &dep(), 32 << 20, "nc2dd.netback.ip=192.0.2.1").unwrap();
        let names: Vec<&str> = b.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["nc2dd.elf", "nc2dd.cfg", "guest-vif.cfg"]);
        assert_eq!(
            fs::read(out.join("nc2dd.elf")).unwrap(),
            b"\x7fELF-not-really"
        );
        let m = fs::read_to_string(out.join("MANIFEST")).unwrap();
        assert!(
            m.contains("command line: nc2dd.netback.ip=192.0.2.1"),
            "{m}"
        );
        assert!(m.contains("nc2dd.elf  (15 bytes)"), "{m}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
