//! Links the monitor at its load address (see link.ld).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=src/arch/head.S");
    println!("cargo:rerun-if-changed=src/arch/vectors.S");
}
