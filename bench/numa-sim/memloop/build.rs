fn main() {
    // A fixed-address static executable that Linux loads as ET_EXEC.
    println!("cargo:rustc-link-arg-bins=--image-base=0x400000");
    println!("cargo:rustc-link-arg-bins=-e_start");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
}
