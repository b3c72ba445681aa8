//! Links the nc2-guest task with the userland linker script on the bare-metal target (servers
//! load at the user image base, relocations pre-applied).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let script = format!("{dir}/../../userland/link.ld");
    println!("cargo:rerun-if-changed={script}");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rustc-link-arg-bins=--apply-dynamic-relocs");
    }
}
