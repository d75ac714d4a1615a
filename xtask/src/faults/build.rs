//! The attacker's tools, built on the host: the kernel module
//! (`bench/faults/disco_inject.c`) against Debian's own headers for the
//! guest kernel, with Debian's cross compiler, and the static EL0 program
//! (`bench/faults/fault-user.c`); then the attacker's initrd, the base
//! initramfs with `/faults/` appended (Linux unpacks concatenated cpio
//! archives).
//!
//! Host packages `gcc-aarch64-linux-gnu` and `libc6-dev-arm64-cross` are
//! installed on first use (not by `setup`: only the campaign needs them);
//! `linux-headers-<release>` (arm64), its `-common` part and the host's
//! `linux-kbuild-*` (the build scripts, host binaries) are downloaded and
//! unpacked into `.cache/faults/headers/`, nothing installed. Outputs are
//! rebuilt when their sources change.

use super::plan::{self, Kind};
use crate::debs::{self, Guest};
use crate::initramfs::Cpio;
use crate::setup::apt_get;
use crate::util::{cache_dir, on_path, output, rel, root, run, write_if_changed};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const CROSS: &str = "aarch64-linux-gnu-";
const CROSS_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

fn sources() -> PathBuf {
    root().join("bench/faults")
}

/// Installs the cross compiler when it is missing (root, Debian packages).
fn cross_compiler() -> Result<()> {
    if on_path(&format!("{CROSS}gcc")) && Path::new("/usr/aarch64-linux-gnu/lib/libc.a").is_file() {
        return Ok(());
    }
    eprintln!("faults: installing {} (the attacker's tools are cross-compiled) ...", CROSS_PACKAGES.join(" "));
    run(apt_get().args(["install", "-y", "--no-install-recommends"]).args(CROSS_PACKAGES))
        .context("installing the cross compiler (needs root and the Debian archive)")
}

fn host_arch() -> Result<String> {
    Ok(output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_string())
}

/// `Depends:` of a .deb, as package names.
fn depends(deb: &Path) -> Result<Vec<String>> {
    let text = output(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"))?;
    Ok(text.split(',').filter_map(|d| d.split_whitespace().next()).map(String::from).collect())
}

/// The unpacked headers of the guest kernel: the directory `make -C` takes.
fn headers(guest: &Guest) -> Result<PathBuf> {
    let dir = cache_dir("faults/headers")?;
    let tree = dir.join("usr/src").join(format!("linux-headers-{}", guest.release));
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    let arch_deb = debs::fetch_arch(&format!("linux-headers-{}", guest.release), "arm64")?;
    let deps = depends(&arch_deb)?;
    let common = deps.iter().find(|d| d.starts_with("linux-headers-") && d.ends_with("-common"));
    let kbuild = deps.iter().find(|d| d.starts_with("linux-kbuild-"));
    let (Some(common), Some(kbuild)) = (common, kbuild) else {
        return Err(anyhow!("{} depends on {deps:?}: no -common headers or linux-kbuild", rel(&arch_deb)));
    };
    let debs = [arch_deb.clone(), debs::fetch_arch(common, "all")?, debs::fetch_arch(kbuild, &host_arch()?)?];
    debs::unpack_debs(&debs, &dir)?;
    // The arch Makefile includes the common one by its installed path.
    let makefile = tree.join("Makefile");
    let text = std::fs::read_to_string(&makefile)?;
    let installed = format!("/usr/src/{common}");
    let here = dir.join("usr/src").join(common);
    std::fs::write(&makefile, text.replace(&installed, &here.display().to_string()))?;
    Ok(tree)
}

/// Rebuilds `out` with `build` when `inputs` (plus `key`) changed since the
/// last build (a stamp of their contents beside it).
fn rebuilt(out: &Path, inputs: &[PathBuf], key: &str, build: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut stamp = key.to_string();
    for i in inputs {
        let data = std::fs::read(i).with_context(|| format!("reading {}", rel(i)))?;
        stamp += &format!("\n{} {}", rel(i), crate::util::host_md5(&data)?);
    }
    let stamp_file = out.with_extension("stamp");
    if out.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(());
    }
    build()?;
    std::fs::write(stamp_file, stamp)?;
    Ok(())
}

/// `disco_inject.ko` for the guest kernel.
fn module(guest: &Guest) -> Result<PathBuf> {
    let dir = cache_dir("faults/module")?;
    let ko = dir.join("disco_inject.ko");
    let inputs = [sources().join("disco_inject.c"), sources().join("Kbuild")];
    rebuilt(&ko, &inputs, &guest.release, || {
        cross_compiler()?;
        let tree = headers(guest)?;
        for i in &inputs {
            std::fs::copy(i, dir.join(i.file_name().expect("a file")))?;
        }
        eprintln!("faults: building disco_inject.ko against linux-headers-{} ...", guest.release);
        run(Command::new("make")
            .arg("-C")
            .arg(&tree)
            .arg(format!("M={}", dir.display()))
            .arg(format!("CROSS_COMPILE={CROSS}"))
            // The headers' rules pick the cross compiler from these.
            .arg(format!("DEB_BUILD_ARCH={}", host_arch()?))
            .args(["DEB_HOST_ARCH=arm64", "DEB_HOST_GNU_TYPE=aarch64-linux-gnu"])
            .arg("modules"))
    })?;
    Ok(ko)
}

/// The static `fault-user` binary.
fn user() -> Result<PathBuf> {
    let out = cache_dir("faults")?.join("fault-user");
    let src = sources().join("fault-user.c");
    rebuilt(&out, std::slice::from_ref(&src), "", || {
        cross_compiler()?;
        run(Command::new(format!("{CROSS}gcc")).args(["-static", "-O2", "-Wall", "-o"]).arg(&out).arg(&src))
    })?;
    Ok(out)
}

/// The attacker's initrd: `base` with `/faults/{disco_inject.ko,
/// fault-user, plan}` appended.
pub fn attacker_initrd(guest: &Guest, base: &Path, plan: &[Vec<Kind>]) -> Result<PathBuf> {
    let (ko, user) = (module(guest)?, user()?);
    let mut cpio = Cpio::default();
    cpio.dir("faults");
    cpio.file("faults/disco_inject.ko", 0o644, &std::fs::read(&ko)?);
    cpio.file("faults/fault-user", 0o755, &std::fs::read(&user)?);
    cpio.file("faults/plan", 0o644, plan::text(plan).as_bytes());
    let mut bytes = std::fs::read(base).with_context(|| format!("reading {}", rel(base)))?;
    bytes.extend(cpio.finish());
    let out = cache_dir("faults")?.join("attacker.cpio");
    write_if_changed(&out, &bytes)?;
    Ok(out)
}
