//! The initramfs of a VM with disks: the base archive followed by one more
//! holding what a guest needs for its virtio-blk disks, all from Debian's
//! packages, unmodified:
//!
//! - the kernel package's own modules for virtio-mmio, virtio-blk, ext4
//!   and virtio-net (a VM with `[[vm.net]]` gets this archive too),
//!   with their dependencies, under `/lib/modules/disco/`, and
//!   `/lib/modules/disco/order`: their names in load order, which the
//!   guest's init loads with busybox `insmod` (no modprobe, no depmod: the
//!   package ships no `modules.dep`, so the order comes from each module's
//!   own `depends=` in its `.modinfo`);
//! - `mke2fs` from `e2fsprogs` (busybox's has no ext4) with its shared
//!   libraries and `/etc/mke2fs.conf`, as `/usr/sbin/mkfs.ext4` (the name
//!   Debian links it under too, which makes ext4 the default type): the
//!   init's `busybox --install -s` replaces `/usr/sbin/mke2fs` with its own
//!   applet;
//! - the `overlay` module, for a read-only root disk (`mount = "/"`) under
//!   a writable tmpfs layer, and the workload scripts of `bench/workloads/`
//!   under `/disco/workloads/`, which the init copies into that root's
//!   `/opt/disco/workloads/` (so editing a script needs no image rebuild).

use crate::debs::{self, Guest};
use crate::initramfs::Cpio;
use crate::util::{cache_dir, rel, root, write_if_changed};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules a guest with disks, a network or a balloon loads (their
/// dependencies come along: `virtio_net` needs `net_failover` and
/// `failover`).
/// crc32c: ext4 and jbd2 checksum metadata through the crypto API, which
/// finds the implementation by name, so no `depends=` names it.
const ROOT_MODULES: &[&str] =
    &["crc32c_generic", "virtio_mmio", "virtio_blk", "ext4", "overlay", "virtio_net", "virtio_balloon"];
/// Packages behind `mke2fs`, and the libraries it loads (`readelf -d`).
const E2FS_DEBS: &[&str] = &["e2fsprogs", "libext2fs2", "libcom-err2", "libblkid1", "libuuid1", "libc6"];
const E2FS_LIBS: &[&str] = &[
    "libext2fs.so.2",
    "libcom_err.so.2",
    "libblkid.so.1",
    "libuuid.so.1",
    "libe2p.so.2",
    "libc.so.6",
    "ld-linux-aarch64.so.1",
];
const MULTIARCH: &str = "aarch64-linux-gnu";

/// `base` + the disk archive, rebuilt when its inputs change.
pub fn with_disk_tools(base: &Path, guest: &Guest) -> Result<PathBuf> {
    let mut data = std::fs::read(base)?;
    data.extend(archive(guest)?);
    let path = cache_dir("initramfs")?.join("disk.cpio");
    if write_if_changed(&path, &data)? {
        eprintln!("build: {} (rebuilt)", rel(&path));
    }
    Ok(path)
}

fn archive(guest: &Guest) -> Result<Vec<u8>> {
    let modules = debs::modules_dir(guest)?;
    let index = index_modules(&modules.join("kernel"))?;
    let order = load_order(ROOT_MODULES, |name| {
        let path = index.get(name).ok_or_else(|| anyhow!("module {name} is not in {}", rel(&modules)))?;
        Ok(depends(&std::fs::read(path)?))
    })?;
    let mut c = Cpio::default();
    for d in ["lib", "lib/modules", "lib/modules/disco", &format!("lib/{MULTIARCH}"), "usr", "usr/sbin", "etc"] {
        c.dir(d);
    }
    for name in &order {
        c.file(&format!("lib/modules/disco/{name}.ko"), 0o644, &std::fs::read(&index[name])?);
    }
    c.file("lib/modules/disco/order", 0o644, (order.join("\n") + "\n").as_bytes());

    let e2fs = e2fs_packages()?;
    let read = |p: PathBuf| std::fs::read(&p).with_context(|| format!("reading {}", rel(&p)));
    c.file("usr/sbin/mkfs.ext4", 0o755, &read(e2fs.join("sbin/mke2fs"))?);
    c.file("etc/mke2fs.conf", 0o644, &read(e2fs.join("etc/mke2fs.conf"))?);
    for lib in E2FS_LIBS {
        let found = ["lib", "usr/lib"].iter().map(|d| e2fs.join(d).join(MULTIARCH).join(lib)).find(|p| p.exists());
        let path = found.ok_or_else(|| anyhow!("{lib} is not in {}", rel(&e2fs)))?;
        // Sonames are symlinks in the packages: store the file they name.
        c.file(&format!("lib/{MULTIARCH}/{lib}"), 0o755, &read(std::fs::canonicalize(&path)?)?);
    }
    c.symlink("lib/ld-linux-aarch64.so.1", &format!("{MULTIARCH}/ld-linux-aarch64.so.1"));
    add_tree(&mut c, &root().join("bench/workloads"), "disco/workloads")?;
    Ok(c.finish())
}

/// `dir` and everything below it (files keep their execute bit) as `to`.
fn add_tree(c: &mut Cpio, dir: &Path, to: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut parts = String::new();
    for p in to.split('/') {
        parts = if parts.is_empty() { p.to_string() } else { format!("{parts}/{p}") };
        c.dir(&parts);
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).with_context(|| format!("reading {}", rel(dir)))?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = format!("{to}/{}", p.file_name().unwrap_or_default().to_string_lossy());
        if p.is_dir() {
            add_tree(c, &p, &name)?;
        } else {
            let mode = if std::fs::metadata(&p)?.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            c.file(&name, mode, &std::fs::read(&p)?);
        }
    }
    Ok(())
}

/// The e2fsprogs packages, unpacked into `.cache/e2fs-guest`.
fn e2fs_packages() -> Result<PathBuf> {
    let dest = cache_dir("e2fs-guest")?;
    if !dest.join("sbin/mke2fs").is_file() {
        debs::unpack_all(E2FS_DEBS, &dest)?;
    }
    Ok(dest)
}

/// Module name (`-` as `_`, as the kernel names them) -> `.ko` file.
fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", rel(&d)))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                index.insert(stem.replace('-', "_"), p);
            }
        }
    }
    Ok(index)
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated `key=value`
/// strings): the modules whose symbols it uses.
pub fn depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list).split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect()
        })
        .unwrap_or_default()
}

/// `roots` and everything they depend on, each after its dependencies.
pub fn load_order(roots: &[&str], mut deps: impl FnMut(&str) -> Result<Vec<String>>) -> Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    // Depth-first; `path` catches a dependency cycle.
    fn visit(
        name: &str,
        deps: &mut dyn FnMut(&str) -> Result<Vec<String>>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|o| o == name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
        }
        path.push(name.to_string());
        for d in deps(name)? {
            visit(&d, deps, order, path)?;
        }
        path.pop();
        order.push(name.to_string());
        Ok(())
    }
    for r in roots {
        visit(r, &mut deps, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_from_modinfo() {
        let ko = b"\x7fELF....\0license=GPL\0depends=jbd2,mbcache,crc16\0name=ext4\0";
        assert_eq!(depends(ko), ["jbd2", "mbcache", "crc16"]);
        assert!(depends(b"\0depends=\0name=virtio_blk\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }

    #[test]
    fn dependencies_load_first_once() {
        let graph = |n: &str| -> Result<Vec<String>> {
            Ok(match n {
                "ext4" => vec!["jbd2".into(), "mbcache".into(), "crc16".into()],
                "jbd2" => vec!["crc16".into()],
                _ => vec![],
            })
        };
        let order = load_order(&["virtio_blk", "ext4", "jbd2"], graph).unwrap();
        assert_eq!(order, ["virtio_blk", "crc16", "jbd2", "mbcache", "ext4"]);
        let cyclic = |n: &str| -> Result<Vec<String>> { Ok(vec![if n == "a" { "b" } else { "a" }.into()]) };
        assert!(load_order(&["a"], cyclic).unwrap_err().to_string().contains("cycle"));
    }
}
