//! Links the bare-metal kernel with its own linker script (host builds are left alone), and
//! embeds a boot module when the image tool asks for a standalone kernel
//! (`NC2DD_EMBED_MODULE=<file>`): loaders that take no module (Xen's HVM `firmware_override`)
//! then still get the servers.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed={dir}/link.ld");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-env-changed=NC2DD_EMBED_MODULE");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded-module.bin");
    match std::env::var_os("NC2DD_EMBED_MODULE") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.to_string_lossy());
            std::fs::copy(&path, &out).expect("NC2DD_EMBED_MODULE names a readable file");
        }
        None => std::fs::write(&out, []).expect("OUT_DIR is writable"),
    }
}
