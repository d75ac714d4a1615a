//! `cargo xtask disks`: the Debian arm64 root filesystem the workloads run
//! from (issue 15), as an ext4 image made by `mke2fs -d` (no mount, no
//! loop device), and as the base image `debian` of a physical disk file.
//!
//! Recipe (`../shared/DESIGN.md`, "Guest disks from Debian packages"):
//!
//! 1. **Resolve** with apt itself: `apt-get -s install` of [`PACKAGES`]
//!    under a private `APT_CONFIG` (`.cache/rootfs/apt/apt.conf`): only
//!    the arm64 architecture, an empty dpkg status (so the whole closure of
//!    Depends and Pre-Depends is listed, no Recommends), the machine's own
//!    sources and package lists (setup added arm64 to them).
//! 2. **Download** those debs into `.cache/rootfs/debs/` (apt skips the
//!    ones already there).
//! 3. **Unpack** each with `dpkg-deb --fsys-tarfile | tar -x
//!    --keep-directory-symlink` into a fresh tree whose `bin`, `sbin`,
//!    `lib` are links into `usr/` (merged /usr kept; plain `dpkg-deb -x`
//!    would replace the links by directories). Nothing is configured: what
//!    the maintainer scripts would have made is written as plain files
//!    ([`fixups`]: passwd/group, the `postgres` user, the awk/cc/c++ and
//!    /bin/sh links).
//! 4. **Source** for pmake: gnuchess's `.orig.tar.gz`, by `apt-get source
//!    --download-only` under a second private config whose only source is
//!    a `deb-src` stanza with the URI and Signed-By of the machine's own
//!    bookworm source (read at run time) and its own lists directory, so
//!    the system's lists are untouched. It goes to `/opt/disco/src/`.
//! 5. **Image**: `mke2fs -t ext4 -d TREE` (owners, modes, setuid bits and
//!    symlinks as tar left them; no journal: the image is only ever read),
//!    `.cache/rootfs/debian.ext4`, sized to the tree plus 14% and 64 MiB.
//!
//! The build is cached: `.cache/rootfs/debian.stamp` holds the resolved
//! closure (name=version of every package), the source package and
//! [`RECIPE`]; the image is rebuilt only when that text changes. The
//! workload scripts are not in the image: the disk initramfs carries
//! `bench/workloads/` (see `disk_tools.rs`), so editing a script needs no
//! image rebuild.

use crate::disk::Built;
use crate::setup::{apt_get, apt_update, bookworm_stanza};
use crate::util::{cache_dir, output, rel, run, show};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The name of the image in disk files (`[[vm.disk]] image = "debian"`).
pub const IMAGE: &str = "debian";

/// What the image holds: the Essential set (apt's `?essential` pattern),
/// then each workload's packages.
pub const PACKAGES: &[&str] = &[
    "?essential",
    // base: the first alternative of usr-is-merged would pull in usrmerge
    // and perl; mawk is the awk Essential packages expect.
    "usr-is-merged",
    "mawk",
    // pmake
    "gcc",
    "g++",
    "make",
    "libc6-dev",
    // database (pgbench is in postgresql-15 itself)
    "postgresql-15",
    // raytrace (the last two are arch-all; apt's arm64 config has them)
    "povray",
    "povray-includes",
    "povray-examples",
    // engineering (verilator, +84 MB, is left out: iverilog is enough for
    // the workload and keeps the image small)
    "iverilog",
];

/// The source package pmake compiles (Disco's pmake compiled GNU chess).
pub const SOURCE_PACKAGE: &str = "gnuchess";

/// Bumped when the unpacking or fix-ups change, so a cached image is redone.
const RECIPE: &str = "rootfs recipe 1";

/// The `postgres` user and group of the image (what postgresql-common's
/// postinst would add; any free system id will do).
const POSTGRES_UID: u32 = 102;
const POSTGRES_GID: u32 = 104;

/// Builds `.cache/rootfs/debian.ext4` if its stamp is out of date; prints
/// progress on stderr. Checked once per xtask invocation (resolving takes
/// a few seconds).
pub fn ensure() -> Result<Built> {
    static DONE: std::sync::Mutex<Option<Built>> = std::sync::Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = &*done {
        return Ok(b.clone());
    }
    let b = build()?;
    *done = Some(b.clone());
    Ok(b)
}

fn build() -> Result<Built> {
    let dir = cache_dir("rootfs")?;
    let image = dir.join(format!("{IMAGE}.ext4"));
    let stamp_file = dir.join(format!("{IMAGE}.stamp"));
    let apt_conf = binary_config(&dir)?;
    let t0 = Instant::now();
    let closure = match resolve(&apt_conf) {
        Ok(c) => c,
        Err(_) => {
            // Missing or stale lists: one refresh, then it must work.
            apt_update()?;
            resolve(&apt_conf)?
        }
    };
    let src = source_tarball(&dir)?;
    let mut stamp = format!("{RECIPE}\nsource {}\n", src.file_name().unwrap_or_default().to_string_lossy());
    for p in &closure {
        let _ = writeln!(stamp, "{}={}", p.name, p.version);
    }
    if image.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(Built { image, stamp });
    }
    eprintln!("disks: building the `{IMAGE}` root filesystem: {} packages (arm64) ...", closure.len());
    let debs = dir.join("debs");
    download(&apt_conf, &debs)?;
    let tree = dir.join(format!("{IMAGE}.root"));
    unpack(&closure, &debs, &tree)?;
    fixups(&tree)?;
    let srcdir = tree.join("opt/disco/src");
    std::fs::create_dir_all(&srcdir)?;
    std::fs::copy(&src, srcdir.join(src.file_name().expect("a file")))?;
    let bytes = make_ext4(&tree, &image)?;
    // The tree is as large as the image: keep only the image.
    std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", rel(&tree)))?;
    std::fs::write(&stamp_file, &stamp)?;
    eprintln!(
        "disks: {} ({} packages, {} of files, image {}) built in {:.0} s",
        rel(&image),
        closure.len(),
        crate::disk::human(bytes),
        crate::disk::human(std::fs::metadata(&image)?.len()),
        t0.elapsed().as_secs_f64()
    );
    Ok(Built { image, stamp })
}

/// `cargo xtask disks`: the image, then the base image `debian` of the
/// default disk file.
pub fn main() -> Result<u8> {
    crate::setup::host()?;
    let built = ensure()?;
    let file = crate::manifest::default_disk_file();
    let header = crate::disk::ensure_base_image(&file, IMAGE, &built)?;
    print!("{}", crate::disk::list_text(&file, &header));
    Ok(0)
}

/// The private apt configuration for arm64 binary packages.
fn binary_config(dir: &Path) -> Result<PathBuf> {
    let apt = dir.join("apt");
    std::fs::create_dir_all(&apt)?;
    let status = apt.join("status");
    if !status.exists() {
        std::fs::write(&status, "")?;
    }
    let conf = apt.join("apt.conf");
    let text = format!(
        "// Written by `cargo xtask disks` (xtask/src/rootfs.rs): resolve arm64 packages\n\
         // as for an empty system, with the machine's own sources and lists.\n\
         APT::Architecture \"arm64\";\nAPT::Architectures {{ \"arm64\"; }};\n\
         APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n\
         Dir::State::status \"{}\";\nAPT::Sandbox::User \"root\";\n",
        status.display()
    );
    crate::util::write_if_changed(&conf, text.as_bytes())?;
    Ok(conf)
}

/// One package of the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl Pkg {
    /// The file name apt gives the downloaded deb (an epoch's `:` as `%3a`).
    pub fn deb_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

fn apt_with(conf: &Path) -> Command {
    let mut c = apt_get();
    c.env("APT_CONFIG", conf);
    c
}

/// The closure apt would install, from `apt-get -s install`.
fn resolve(conf: &Path) -> Result<Vec<Pkg>> {
    let text = output(apt_with(conf).args(["-s", "install", "-y"]).args(PACKAGES))?;
    let pkgs = parse_simulation(&text);
    ensure!(pkgs.len() > 50, "apt-get -s install resolved only {} packages:\n{text}", pkgs.len());
    Ok(pkgs)
}

/// `Inst NAME (VERSION RELEASE [ARCH])` lines of a simulated install.
pub fn parse_simulation(text: &str) -> Vec<Pkg> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let inner = rest.strip_prefix('(')?.split(')').next()?;
            let version = inner.split_whitespace().next()?;
            let arch = inner.rsplit_once('[')?.1.strip_suffix(']')?;
            Some(Pkg { name: name.to_string(), version: version.to_string(), arch: arch.to_string() })
        })
        .collect()
}

fn download(conf: &Path, debs: &Path) -> Result<()> {
    std::fs::create_dir_all(debs.join("partial"))?;
    let mut cmd = apt_with(conf);
    cmd.arg("-o").arg(format!("Dir::Cache::archives={}/", debs.display()));
    cmd.args(["-qq", "install", "--download-only", "-y"]).args(PACKAGES);
    eprintln!("disks: downloading what is missing into {} ...", rel(debs));
    if run(&mut cmd).is_err() {
        apt_update()?;
        run(&mut cmd)?;
    }
    Ok(())
}

/// Unpacks every deb into a fresh `tree` with merged /usr.
fn unpack(closure: &[Pkg], debs: &Path, tree: &Path) -> Result<()> {
    if tree.exists() {
        std::fs::remove_dir_all(tree).with_context(|| format!("removing {}", rel(tree)))?;
    }
    for d in ["usr/bin", "usr/sbin", "usr/lib"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    for (link, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        std::os::unix::fs::symlink(to, tree.join(link))?;
    }
    eprintln!("disks: unpacking {} packages into {} ...", closure.len(), rel(tree));
    for (i, p) in closure.iter().enumerate() {
        let deb = debs.join(p.deb_name());
        ensure!(deb.is_file(), "{} is missing after the download", rel(&deb));
        if i % 40 == 0 {
            eprintln!("disks:   {i}/{} {}", closure.len(), p.name);
        }
        // dpkg-deb --fsys-tarfile X | tar -x --keep-directory-symlink -C tree
        let mut dpkg = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting dpkg-deb")?;
        let mut tar = Command::new("tar");
        tar.args(["-x", "--keep-directory-symlink", "--same-owner", "-p", "-C"]).arg(tree);
        let status = tar.stdin(dpkg.stdout.take().expect("piped")).status().context("starting tar")?;
        let dstatus = dpkg.wait()?;
        ensure!(status.success() && dstatus.success(), "unpacking {} failed ({}, {dstatus})", rel(&deb), show(&tar));
    }
    Ok(())
}

/// What maintainer scripts would have done, as plain files.
fn fixups(tree: &Path) -> Result<()> {
    let read = |p: &str| {
        let path = tree.join(p);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", rel(&path)))
    };
    // base-passwd's postinst copies its masters; postgresql-common adds
    // the postgres user (home /var/lib/postgresql) and group.
    let mut passwd = read("usr/share/base-passwd/passwd.master")?;
    let _ = writeln!(
        passwd,
        "postgres:x:{POSTGRES_UID}:{POSTGRES_GID}:PostgreSQL administrator:/var/lib/postgresql:/bin/sh"
    );
    let mut group = read("usr/share/base-passwd/group.master")?;
    let _ = writeln!(group, "postgres:x:{POSTGRES_GID}:");
    std::fs::write(tree.join("etc/passwd"), passwd)?;
    std::fs::write(tree.join("etc/group"), group)?;
    std::fs::write(tree.join("etc/hostname"), "disco-guest\n")?;
    std::fs::write(tree.join("etc/hosts"), "127.0.0.1 localhost disco-guest\n::1 localhost\n")?;
    // update-alternatives and dash's postinst would make these links.
    for (link, target) in [
        ("usr/bin/awk", "mawk"),
        ("usr/bin/cc", "gcc"),
        ("usr/bin/c++", "g++"),
        ("usr/bin/sh", "dash"),
        ("usr/bin/pager", "more"),
    ] {
        let path = tree.join(link);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &path)?;
        }
    }
    for (d, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
        ("var/lib/postgresql", 0o755),
        ("var/run/postgresql", 0o2775),
        ("opt/disco", 0o755),
    ] {
        let path = tree.join(d);
        std::fs::create_dir_all(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    for d in ["var/lib/postgresql", "var/run/postgresql"] {
        std::os::unix::fs::chown(tree.join(d), Some(POSTGRES_UID), Some(POSTGRES_GID))?;
    }
    Ok(())
}

/// gnuchess's upstream tarball, `apt-get source --download-only` under a
/// private deb-src configuration (cached in `.cache/rootfs/src/`).
fn source_tarball(dir: &Path) -> Result<PathBuf> {
    let srcdir = dir.join("src");
    std::fs::create_dir_all(&srcdir)?;
    if let Some(t) = find_orig(&srcdir)? {
        return Ok(t);
    }
    let st = bookworm_stanza()?;
    let apt = dir.join("apt-src");
    let parts = apt.join("sources.list.d");
    let lists = apt.join("lists");
    std::fs::create_dir_all(lists.join("partial"))?;
    std::fs::create_dir_all(&parts)?;
    let mut sources = format!(
        "# Written by `cargo xtask disks`: the machine's bookworm source as deb-src.\n\
         Types: deb-src\nURIs: {}\nSuites: bookworm\nComponents: main\n",
        st.uris.join(" ")
    );
    if let Some(k) = &st.signed_by {
        let _ = writeln!(sources, "Signed-By: {k}");
    }
    std::fs::write(parts.join("src.sources"), sources)?;
    let status = apt.join("status");
    std::fs::write(&status, "")?;
    let conf = apt.join("apt.conf");
    std::fs::write(
        &conf,
        format!(
            "Dir::Etc::SourceList \"/dev/null\";\nDir::Etc::SourceParts \"{}\";\nDir::State::Lists \"{}\";\n\
             Dir::State::status \"{}\";\nDir::Cache \"{}\";\nAPT::Sandbox::User \"root\";\n",
            parts.display(),
            lists.display(),
            status.display(),
            apt.join("cache").display()
        ),
    )?;
    eprintln!("disks: fetching the {SOURCE_PACKAGE} source (deb-src lists in {}) ...", rel(&apt));
    run(apt_with(&conf).args(["update", "-q"]))?;
    run(apt_with(&conf).current_dir(&srcdir).args(["source", "--download-only", SOURCE_PACKAGE]))?;
    find_orig(&srcdir)?
        .ok_or_else(|| anyhow!("apt-get source left no {SOURCE_PACKAGE}_*.orig.tar.* in {}", rel(&srcdir)))
}

fn find_orig(srcdir: &Path) -> Result<Option<PathBuf>> {
    let prefix = format!("{SOURCE_PACKAGE}_");
    Ok(std::fs::read_dir(srcdir)?.flatten().map(|e| e.path()).find(|p| {
        let n = p.file_name().unwrap_or_default().to_string_lossy();
        n.starts_with(&prefix) && n.contains(".orig.tar.") && !n.ends_with(".asc")
    }))
}

/// `mke2fs -d`: returns the bytes of the files put in.
fn make_ext4(tree: &Path, image: &Path) -> Result<u64> {
    let used = tree_bytes(tree)?;
    // Room for metadata (inodes, directories) and a little slack; 1 MiB multiple.
    let size = (used + used / 7 + (64 << 20)).next_multiple_of(1 << 20);
    let tmp = image.with_extension("ext4.new");
    let _ = std::fs::remove_file(&tmp);
    eprintln!(
        "disks: mke2fs -d {} ({} of files, image {}) ...",
        rel(tree),
        crate::disk::human(used),
        crate::disk::human(size)
    );
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-L", IMAGE, "-b", "4096", "-d"])
        .arg(tree)
        .arg(&tmp)
        .arg(format!("{}k", size >> 10));
    if let Err(e) = run(&mut cmd) {
        let _ = std::fs::remove_file(&tmp);
        bail!("{e:#}");
    }
    std::fs::rename(&tmp, image)?;
    Ok(used)
}

/// Bytes of the regular files under `dir` (4 KiB blocks each), not following links.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let m = e.path().symlink_metadata()?;
            if m.is_dir() {
                todo.push(e.path());
            }
            total += m.len().next_multiple_of(4096);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulation_lines() {
        let t = "NOTE: This is only a simulation!\nInst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [arm64])\n\
                 Inst usr-is-merged (37~deb12u1 Debian:12.15/oldstable [all])\n\
                 Inst povray (1:3.7.0.10-2 Debian:12.15/oldstable [arm64]) []\nConf libc6 (2.36 Debian [arm64])\n";
        let p = parse_simulation(t);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].deb_name(), "libc6_2.36-9+deb12u14_arm64.deb");
        assert_eq!(p[1].deb_name(), "usr-is-merged_37~deb12u1_all.deb");
        assert_eq!(p[2].deb_name(), "povray_1%3a3.7.0.10-2_arm64.deb");
    }
}
