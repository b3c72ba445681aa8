//! The image tool refuses a kernel built without the Xen PVH note.

use image::assemble::{self, BuildError, Options};

#[test]
fn kernel_without_pvh_note_is_rejected() {
    let target = assemble::workspace_root().join("target");
    let opts = Options {
        target_dir: target.join("cross-no-note"),
        out_dir: target.join("nc2dd-no-note"),
        kernel_features: vec!["omit-pvh-note".into()],
        ..Options::default()
    };
    match assemble::build(&opts) {
        Err(e @ BuildError::Note(..)) => {
            let msg = e.to_string();
            assert!(msg.contains("no Xen PVH entry note"), "{msg}");
            assert!(msg.contains("XEN_ELFNOTE_PHYS32_ENTRY"), "{msg}");
        }
        other => panic!("expected the PVH note check to fail, got {other:?}"),
    }
    assert!(
        !opts.out_dir.join(assemble::KERNEL_ELF).exists(),
        "a rejected kernel was written out"
    );
}
