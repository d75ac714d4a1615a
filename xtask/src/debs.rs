//! Guest packages: Debian's arm64 kernel and busybox-static, unmodified.
//!
//! They are fetched with `apt-get download` (no installation, no root) into
//! `.cache/debs/` and unpacked with `dpkg-deb -x`, so the guest runs exactly
//! what Debian ships. Once unpacked, the check is a directory listing: fast.

use crate::setup::{apt_get, apt_update};
use crate::util::{cache_dir, output, rel, run};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the guest side is built from.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Uncompressed arm64 `Image` (Debian names it `vmlinuz-*` anyway).
    pub kernel: PathBuf,
    /// `uname -r` of that kernel: the name of its `/lib/modules` directory.
    pub release: String,
    /// Statically linked arm64 busybox.
    pub busybox: PathBuf,
}

/// Makes sure both packages are unpacked; downloads only what is missing.
pub fn ensure() -> Result<Guest> {
    let kdir = cache_dir("kernel")?;
    if find_kernel(&kdir).is_err() {
        let pkg = kernel_package()?;
        eprintln!("setup: downloading guest kernel {pkg}:arm64 ...");
        unpack(&fetch(&pkg)?, &kdir)?;
    }
    let (kernel, release) = find_kernel(&kdir)?;
    let bdir = cache_dir("busybox")?;
    let busybox = bdir.join("bin/busybox");
    if !busybox.is_file() {
        eprintln!("setup: downloading guest userland busybox-static:arm64 ...");
        unpack(&fetch("busybox-static")?, &bdir)?;
        if !busybox.is_file() {
            bail!("busybox-static:arm64 did not contain bin/busybox");
        }
    }
    Ok(Guest { kernel, release, busybox })
}

/// The versioned image package behind the `linux-image-arm64` metapackage.
fn kernel_package() -> Result<String> {
    let text = output(Command::new("apt-cache").args(["depends", "linux-image-arm64:arm64"]))?;
    parse_depends(&text).ok_or_else(|| {
        anyhow!("`apt-cache depends linux-image-arm64:arm64` names no linux-image-*-arm64 package:\n{text}")
    })
}

/// Finds `linux-image-<release>-arm64` in `apt-cache depends` output.
pub fn parse_depends(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let dep = l.trim().trim_start_matches('|').strip_prefix("Depends:")?.trim();
        let name = dep.trim_matches(|c| c == '<' || c == '>').split(':').next()?;
        (name.starts_with("linux-image-") && name != "linux-image-arm64").then(|| name.to_string())
    })
}

/// `apt-get download PKG:arm64` into `.cache/debs`, with one `apt-get update`
/// and retry when the lists are stale (a superseded version 404s).
fn fetch(pkg: &str) -> Result<PathBuf> {
    fetch_arch(pkg, "arm64")
}

/// [`fetch`] for any architecture: `arm64`, `all` (no qualifier) or the
/// host's (the kernel's build scripts, which run on the host).
pub fn fetch_arch(pkg: &str, arch: &str) -> Result<PathBuf> {
    let dir = cache_dir("debs")?;
    if let Ok(deb) = newest_deb(&dir, pkg, arch) {
        return Ok(deb);
    }
    let spec = if arch == "all" { pkg.to_string() } else { format!("{pkg}:{arch}") };
    eprintln!("setup: downloading {spec} ...");
    let download = || {
        // Root downloads normally drop to the _apt user, who cannot write
        // here; keep root instead of loosening the directory's permissions.
        run(apt_get().current_dir(&dir).args(["-o", "APT::Sandbox::User=root", "download"]).arg(&spec))
    };
    if download().is_err() {
        apt_update()?;
        download()?;
    }
    newest_deb(&dir, pkg, arch)
}

fn newest_deb(dir: &Path, pkg: &str, arch: &str) -> Result<PathBuf> {
    let prefix = format!("{pkg}_");
    let suffix = format!("_{arch}.deb");
    std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(&suffix)
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .ok_or_else(|| anyhow!("apt-get download left no {pkg}_*{suffix} in {}", rel(dir)))
}

/// Unpacks into a fresh sibling directory, then swaps it in: an interrupted
/// unpack never looks complete.
fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).with_context(|| format!("moving {} into place", rel(&tmp)))
}

/// Downloads `pkgs` (arm64) and unpacks them all into `dest`, swapped in
/// whole as [`unpack`] does; nothing is installed.
pub fn unpack_all(pkgs: &[&str], dest: &Path) -> Result<()> {
    let debs = pkgs.iter().map(|p| fetch(p)).collect::<Result<Vec<_>>>()?;
    unpack_debs(&debs, dest)
}

/// Unpacks `debs` all into `dest`, swapped in whole.
pub fn unpack_debs(debs: &[PathBuf], dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for deb in debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).with_context(|| format!("moving {} into place", rel(&tmp)))
}

/// The kernel's module tree, `<kernel dir>/lib/modules/<release>`.
pub fn modules_dir(guest: &Guest) -> Result<PathBuf> {
    let kdir = cache_dir("kernel")?;
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| kdir.join(m).join(&guest.release))
        .find(|d| d.is_dir())
        .ok_or_else(|| anyhow!("no lib/modules/{} in {}", guest.release, rel(&kdir)))
}

/// `(Image path, release)` from an unpacked kernel package.
fn find_kernel(dir: &Path) -> Result<(PathBuf, String)> {
    let boot = dir.join("boot");
    let image = std::fs::read_dir(&boot)
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        })
        .ok_or_else(|| anyhow!("no boot/vmlinuz-* in {}", rel(dir)))?;
    // bookworm ships /lib/modules, later releases /usr/lib/modules.
    let release = ["lib/modules", "usr/lib/modules"]
        .iter()
        .filter_map(|m| std::fs::read_dir(dir.join(m)).ok())
        .find_map(|mut d| d.next().and_then(|e| e.ok()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("no lib/modules/<release> in {}", rel(dir)))?;
    Ok((image, release))
}

#[cfg(test)]
mod tests {
    #[test]
    fn depends_parsing() {
        let t = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-56-arm64:arm64\n";
        assert_eq!(super::parse_depends(t).as_deref(), Some("linux-image-6.1.0-56-arm64"));
        assert_eq!(
            super::parse_depends("x\n  Depends: <linux-image-6.1.0-9-arm64>\n").as_deref(),
            Some("linux-image-6.1.0-9-arm64")
        );
        assert_eq!(super::parse_depends("nothing"), None);
    }
}
