//! docs/deploy.md followed on the nested Xen bed, command by command.
//!
//! The test builds the bundle with the image tool's library (the same code as
//! `cargo run -p image -- bundle`), puts it in dom0 (the bed's /nc2dd plays the copied bundle),
//! then runs the deployment guide's commands in dom0. Every command it runs must appear verbatim
//! in docs/deploy.md (with the guide's example PCI address where the bed's igb is used), so the
//! guide cannot drift from what was tested. A domain with the bundle's guest vif line then shows
//! the time from `xl create` to the backend's InitWait; the driver domain's footprint (image
//! size, memory, time to serving) is printed.

use std::fs;
use std::time::Duration;

use image::assemble::{self, Options};
use image::bundle::{self, Deployment};
use nc2dd_tests::xenbed::{self, BedConfig, BedError, Flavour, XenBed};

const TEST: &str = "xen_deploy";
/// The PCI address the guide's examples use, and the bed's igb that stands in for it.
const DOC_PCI: &str = "0000:04:00.0";
const BED_PCI: &str = "0000:00:04.0";
const INSTALL_DIR: &str = "/usr/local/lib/nc2dd";
const NC2DD_ARGS: &str = "nc2dd.netback.ip=192.0.2.2";

fn report(line: &str) {
    eprintln!("[{TEST}] {line}");
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(xenbed::log_dir().join(format!("{TEST}.times")))
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
}

fn fail(bed: &XenBed, e: BedError) -> ! {
    panic!("{e}\nserial log: {}", bed.log_path().display())
}

fn guide() -> String {
    let path = assemble::workspace_root().join("docs").join("deploy.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a command of the guide in dom0 (the bed's PCI address in place of the guide's).
fn step(bed: &mut XenBed, guide: &str, cmd: &str) -> String {
    assert!(
        guide.lines().any(|l| l.trim() == cmd),
        "docs/deploy.md no longer has the command {cmd:?}: keep the guide and this test together"
    );
    let cmd = cmd.replace(DOC_PCI, BED_PCI);
    bed.run(&cmd, Duration::from_secs(180))
        .unwrap_or_else(|e| fail(bed, e))
}

#[test]
fn the_deployment_guide_works_on_the_test_bed() {
    xenbed::retry_on_bed_fault("the_deployment_guide_works_on_the_test_bed", || {
        xenbed::check_qemu().unwrap_or_else(|e| panic!("{e}"));
        let guide = guide();
        let _ = fs::create_dir_all(xenbed::log_dir());
        let _ = fs::remove_file(xenbed::log_dir().join(format!("{TEST}.times")));

        // 1. The bundle.
        let root = assemble::workspace_root();
        let opts = Options {
            out_dir: root.join("target").join("nc2dd-deploy"),
            cmdline: Some(NC2DD_ARGS.into()),
            ..Options::default()
        };
        let art = assemble::build(&opts).unwrap_or_else(|e| panic!("image build failed: {e}"));
        let budget = image::system::load(&opts.system, &assemble::known_servers())
            .unwrap_or_else(|e| panic!("{e}"))
            .memory_budget();
        let dep = Deployment {
            pci: vec![BED_PCI.into()],
            install_dir: INSTALL_DIR.into(),
            ..Deployment::default()
        };
        let b = bundle::write(
            &opts.out_dir.join("bundle"),
            &art.standalone,
            &dep,
            budget,
            NC2DD_ARGS,
        )
        .unwrap_or_else(|e| panic!("bundle: {e}"));
        let size = |name: &str| b.files.iter().find(|(n, _)| n == name).map(|f| f.1);
        let elf_size = size("nc2dd.elf").expect("the bundle has the kernel");
        report(&format!(
            "image: nc2dd.elf {elf_size} bytes ({:.2} MB; target under 4 MB)",
            elf_size as f64 / 1e6
        ));
        assert!(elf_size < 4_000_000, "the image grew past 4 MB");
        let snippet = fs::read_to_string(b.dir.join("guest-vif.cfg")).expect("guest-vif.cfg");
        let vif_line = snippet
            .lines()
            .find(|l| l.starts_with("vif = "))
            .expect("the snippet has a vif line")
            .to_string();
        // A second domain that carries the guest snippet's vif line: the backend must reach
        // InitWait for its `xl create` to succeed (libxl waits 10 s).
        let guest_cfg = format!(
            "name = \"guest1\"\ntype = \"pvh\"\nkernel = \"{INSTALL_DIR}/nc2dd.elf\"\nmemory = 64\n\
             vcpus = 1\n{vif_line}\non_poweroff = \"destroy\"\non_crash = \"destroy\"\n"
        );
        let mut cfg = BedConfig::new(TEST);
        cfg.flavour = Flavour::Hvm;
        cfg.overall_timeout = Duration::from_secs(600);
        for (name, _) in &b.files {
            let data = fs::read(b.dir.join(name)).expect("bundle file");
            cfg.dom0_files.push((name.clone(), data));
        }
        cfg.dom0_files
            .push(("guest1.cfg".into(), guest_cfg.into_bytes()));
        let mut bed = XenBed::boot(cfg).unwrap_or_else(|e| panic!("{e}"));
        for m in [
            "NC2DD_FAIL",
            "NC2DD_PANIC",
            "NC2DD_FAULT",
            "Triple fault",
            "xen gateway: bring-up failed",
        ] {
            bed.add_fail_marker(m);
        }
        report(&format!(
            "Xen + dom0 boot to shell: {:.1} s",
            bed.boot_time.as_secs_f64()
        ));

        // 2. Install: the bed put the bundle in /nc2dd, as if copied there.
        bed.run("cd /nc2dd", Duration::from_secs(30))
            .unwrap_or_else(|e| fail(&bed, e));
        step(&mut bed, &guide, "mkdir -p /usr/local/lib/nc2dd");
        step(
            &mut bed,
            &guide,
            "cp nc2dd.elf nc2dd.cfg guest-vif.cfg /usr/local/lib/nc2dd/",
        );

        // 3. The NIC to pciback.
        step(&mut bed, &guide, "xl pci-assignable-add 0000:04:00.0");
        let listed = step(&mut bed, &guide, "xl pci-assignable-list");
        assert!(listed.contains(BED_PCI), "not assignable:\n{listed}");

        // 4. The driver domain.
        let before = bed.cursor();
        let started = std::time::Instant::now();
        step(&mut bed, &guide, "xl create /usr/local/lib/nc2dd/nc2dd.cfg");
        let listed = step(&mut bed, &guide, "xl list nc2dd");
        assert!(listed.contains("nc2dd"), "{listed}");
        bed.rewind(before);
        let serving = bed
            .wait_for("netback: serving vifs of domain", Duration::from_secs(180))
            .unwrap_or_else(|e| fail(&bed, e));
        report(&format!(
            "xl create nc2dd to netback serving: {:.1} s (nested TCG)",
            serving
                .arrived
                .saturating_duration_since(started)
                .as_secs_f64()
        ));
        let log = step(&mut bed, &guide, "xl dmesg | grep \"(d$(xl domid nc2dd))\"");
        assert!(
            log.contains("netback: serving vifs of domain"),
            "the guide's log command does not show nc2dd's log:\n{log}"
        );
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("memory in use with all tasks loaded"))
        {
            report(&format!("memory: {}", line.trim()));
        }

        // 5. A domain with the snippet's vif.
        let before = bed.cursor();
        let g = bed
            .xl_create("/nc2dd/guest1.cfg", "guest1", Duration::from_secs(180))
            .unwrap_or_else(|e| fail(&bed, e));
        bed.rewind(before);
        let initwait = bed
            .wait_for(
                &format!("backend/vif/{}/0/state = 2", g.domid),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| fail(&bed, e));
        report(&format!(
            "xl create guest to backend InitWait: {:.2} s (libxl allows 10 s; nested TCG)",
            initwait
                .arrived
                .saturating_duration_since(g.started)
                .as_secs_f64()
        ));

        // 6. The vif in xenstore, as the guide reads it.
        let ls = step(
            &mut bed,
            &guide,
            "xenstore-ls /local/domain/$(xl domid nc2dd)/backend/vif",
        );
        for key in [
            "feature-rx-copy = \"1\"",
            "feature-sg = \"1\"",
            "state = \"2\"",
        ] {
            assert!(
                ls.contains(key),
                "{key} missing from the vif's backend:\n{ls}"
            );
        }

        // 7. Stop and give the NIC back.
        bed.run("xl destroy guest1", Duration::from_secs(120))
            .unwrap_or_else(|e| fail(&bed, e));
        step(&mut bed, &guide, "xl destroy nc2dd");
        step(&mut bed, &guide, "xl pci-assignable-remove -r 0000:04:00.0");
        let listed = step(&mut bed, &guide, "xl pci-assignable-list");
        assert!(
            !listed.lines().any(|l| l.trim() == BED_PCI),
            "the NIC is still assignable after remove:\n{listed}"
        );
    });
}
