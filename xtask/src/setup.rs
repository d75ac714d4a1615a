//! `setup`: makes the host able to build and boot, idempotently.
//!
//! Every step first checks cheaply whether its work is already done, so a
//! set-up machine costs a few milliseconds (run/test/bench call this each
//! time). Only what is missing is installed, with one progress line each.
//! No registry host name appears here: the backports source reuses the URI
//! and key of the machine's existing Debian source.

use crate::util::{on_path, output, run};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the monitor is built for.
pub const MONITOR_TARGET: &str = "aarch64-unknown-none";
/// Host packages the tools need, with the QEMU package handled specially.
const PACKAGES: &[&str] = &["qemu-system-arm", "cpio", "e2fsprogs"];
/// QEMU older than this lacks what the design relies on (EL2 Image boot, plugin API 4).
const MIN_QEMU_MAJOR: u32 = 10;
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Runs every host step; the guest packages are fetched by [`crate::debs`].
pub fn host() -> Result<()> {
    rust_target()?;
    apt()
}

fn rust_target() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    if Path::new(sysroot.trim()).join("lib/rustlib").join(MONITOR_TARGET).is_dir() {
        return Ok(());
    }
    if !on_path("rustup") {
        bail!(
            "setup: the Rust target {MONITOR_TARGET} is missing and rustup is not installed; \
             install Rust with rustup, then run this again."
        );
    }
    eprintln!("setup: installing Rust target {MONITOR_TARGET} (rustup target add) ...");
    run(Command::new("rustup").args(["target", "add", MONITOR_TARGET]))
}

/// What apt must still do; empty means nothing to do (and no root needed).
#[derive(Default, Debug)]
struct AptPlan {
    add_arch: bool,
    add_backports: Option<Stanza>,
    update: bool,
    install: Vec<&'static str>,
    install_qemu: bool,
}

fn apt() -> Result<()> {
    let codename = os_codename().unwrap_or_default();
    let backports = codename == "bookworm";
    let mut plan = AptPlan::default();
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    plan.add_arch = !foreign.split_whitespace().any(|a| a == "arm64");
    if backports && !has_suite("bookworm-backports")? {
        plan.add_backports = Some(bookworm_stanza()?);
    }
    let installed = installed_versions()?;
    for &pkg in PACKAGES {
        match installed.iter().find(|(p, _)| p == pkg) {
            None => {
                if pkg == "qemu-system-arm" {
                    plan.install_qemu = true;
                } else {
                    plan.install.push(pkg);
                }
            }
            Some((_, v)) if pkg == "qemu-system-arm" && qemu_major(v) < MIN_QEMU_MAJOR => plan.install_qemu = true,
            Some(_) => {}
        }
    }
    let lists_ok = lists_present(backports);
    plan.update = plan.add_arch || plan.add_backports.is_some() || !lists_ok;
    if !plan.update && plan.install.is_empty() && !plan.install_qemu {
        return Ok(());
    }
    require_root(&plan)?;
    if plan.add_arch {
        eprintln!("setup: adding the arm64 foreign architecture (dpkg --add-architecture) ...");
        run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    }
    if let Some(st) = &plan.add_backports {
        let path = Path::new(SOURCES_DIR).join("bookworm-backports.sources");
        eprintln!("setup: adding apt source bookworm-backports ({}) ...", path.display());
        std::fs::write(&path, st.render("bookworm-backports"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if plan.update {
        apt_update()?;
    }
    if !plan.install.is_empty() {
        eprintln!("setup: installing {} ...", plan.install.join(" "));
        run(apt_get().args(["install", "-y", "--no-install-recommends"]).args(&plan.install))?;
    }
    if plan.install_qemu {
        let mut cmd = apt_get();
        cmd.args(["install", "-y", "--no-install-recommends"]);
        if backports {
            eprintln!("setup: installing qemu-system-arm from bookworm-backports ...");
            cmd.args(["-t", "bookworm-backports"]);
        } else {
            eprintln!("setup: installing qemu-system-arm ...");
        }
        run(cmd.arg("qemu-system-arm"))?;
        let v = installed_versions()?;
        let got = v.iter().find(|(p, _)| p == "qemu-system-arm").map(|(_, v)| v.as_str());
        if got.map(qemu_major).unwrap_or(0) < MIN_QEMU_MAJOR {
            bail!("setup: qemu-system-arm {got:?} is older than {MIN_QEMU_MAJOR}; this project needs QEMU {MIN_QEMU_MAJOR} or newer.");
        }
    }
    Ok(())
}

/// `apt-get update`, announced; also used by [`crate::debs`] when lists are stale.
pub fn apt_update() -> Result<()> {
    if !is_root() {
        bail!("setup: the apt package lists are stale and refreshing them (apt-get update) needs root; run as root.");
    }
    eprintln!("setup: refreshing package lists (apt-get update) ...");
    run(apt_get().args(["update", "-q"]))
}

/// apt-get that never asks a question (CI has no stdin).
pub fn apt_get() -> Command {
    let mut c = Command::new("apt-get");
    // Wait for a concurrent apt/dpkg instead of failing on its lock.
    c.env("DEBIAN_FRONTEND", "noninteractive").args(["-q", "-o", "Dpkg::Use-Pty=0", "-o", "DPkg::Lock::Timeout=300"]);
    c
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(plan: &AptPlan) -> Result<()> {
    if is_root() {
        return Ok(());
    }
    let mut what = Vec::new();
    if plan.add_arch {
        what.push("the arm64 foreign architecture".to_string());
    }
    if plan.add_backports.is_some() {
        what.push("the bookworm-backports apt source".to_string());
    }
    if plan.install_qemu {
        what.push(format!("qemu-system-arm >= {MIN_QEMU_MAJOR}"));
    }
    what.extend(plan.install.iter().map(|s| s.to_string()));
    if what.is_empty() {
        what.push("fresh apt package lists".to_string());
    }
    bail!("setup: this host still needs {}, and installing them needs root (apt-get); run as root.", what.join(", "))
}

fn os_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).map(|v| v.trim_matches('"').to_string())
}

/// `(package, version)` for each installed package of [`PACKAGES`].
fn installed_versions() -> Result<Vec<(String, String)>> {
    // dpkg-query exits 1 when some package is unknown; its stdout still lists the rest.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status} ${Version}\n"])
        .args(PACKAGES)
        .output()
        .context("cannot run dpkg-query (is this a Debian host?)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (p, s, v) = (f.next()?, f.next()?, f.next()?);
            (s == "installed").then(|| (p.to_string(), v.to_string()))
        })
        .collect())
}

/// Major upstream version of a Debian version string (`1:10.0.2+ds-2` -> 10).
fn qemu_major(version: &str) -> u32 {
    let upstream = version.split_once(':').map(|(_, v)| v).unwrap_or(version);
    upstream.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Whether apt has lists for arm64 (and backports when used): otherwise the
/// arch or source was added without an update, and downloads would fail.
fn lists_present(backports: bool) -> bool {
    let Ok(dir) = std::fs::read_dir("/var/lib/apt/lists") else {
        return false;
    };
    let names: Vec<String> = dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let arm64 = names.iter().any(|n| n.contains("binary-arm64_Packages"));
    let bp = !backports || names.iter().any(|n| n.contains("_dists_bookworm-backports_"));
    arm64 && bp
}

/// One deb822 source stanza (the fields setup cares about).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stanza {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
}

impl Stanza {
    fn render(&self, suite: &str) -> String {
        let mut s = format!(
            "# Added by `cargo xtask setup`: QEMU {MIN_QEMU_MAJOR} comes from {suite}.\n\
             Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n",
            self.uris.join(" ")
        );
        if let Some(k) = &self.signed_by {
            s.push_str(&format!("Signed-By: {k}\n"));
        }
        s
    }
}

/// Every source stanza on the machine: deb822 `.sources` files and one-line
/// `sources.list` entries alike.
fn all_stanzas() -> Result<Vec<Stanza>> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        out.extend(text.lines().filter_map(parse_one_line));
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(SOURCES_DIR).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => out.extend(parse_deb822(&text)),
            Some("list") => out.extend(text.lines().filter_map(parse_one_line)),
            _ => {}
        }
    }
    Ok(out)
}

fn has_suite(suite: &str) -> Result<bool> {
    Ok(all_stanzas()?.iter().any(|s| s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == suite)))
}

/// The stanza to copy for backports (and `cargo xtask disks`' deb-src): the one carrying the plain `bookworm` suite.
pub fn bookworm_stanza() -> Result<Stanza> {
    all_stanzas()?
        .into_iter()
        .find(|s| s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == "bookworm"))
        .ok_or_else(|| anyhow!("setup: no apt source for the suite `bookworm` found in /etc/apt/sources.list or {SOURCES_DIR}; cannot derive the bookworm-backports source from it"))
}

/// Parses deb822 text into stanzas (blank-line separated, `#` comments,
/// continuation lines ignored except for Signed-By paths on one line).
pub fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    let mut enabled = true;
    let mut flush = |cur: &mut Stanza, enabled: &mut bool| {
        if !cur.uris.is_empty() && *enabled {
            out.push(std::mem::take(cur));
        }
        *cur = Stanza::default();
        *enabled = true;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut cur, &mut enabled);
            continue;
        }
        if line.starts_with('#') || line.starts_with(|c: char| c.is_whitespace()) {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let words = || v.split_whitespace().map(String::from).collect::<Vec<_>>();
        match k.trim().to_ascii_lowercase().as_str() {
            "types" => cur.types = words(),
            "uris" => cur.uris = words(),
            "suites" => cur.suites = words(),
            "components" => cur.components = words(),
            "signed-by" if !v.trim().is_empty() => cur.signed_by = Some(v.trim().to_string()),
            "enabled" => enabled = v.trim() != "no",
            _ => {}
        }
    }
    flush(&mut cur, &mut enabled);
    out
}

/// Parses one `sources.list` line: `deb [opt=v ...] URI suite comp...`.
pub fn parse_one_line(line: &str) -> Option<Stanza> {
    let line = line.split('#').next()?.trim();
    let (ty, rest) = line.split_once(char::is_whitespace)?;
    if ty != "deb" && ty != "deb-src" {
        return None;
    }
    let mut rest = rest.trim_start();
    let mut signed_by = None;
    if let Some(r) = rest.strip_prefix('[') {
        let (opts, after) = r.split_once(']')?;
        signed_by = opts.split_whitespace().find_map(|o| o.strip_prefix("signed-by=")).map(String::from);
        rest = after;
    }
    let mut f = rest.split_whitespace();
    let uri = f.next()?.to_string();
    let suite = f.next()?.to_string();
    Some(Stanza {
        types: vec![ty.into()],
        uris: vec![uri],
        suites: vec![suite],
        components: f.map(String::from).collect(),
        signed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_stanzas() {
        let t = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                 Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://x/y\n\
                 Suites: z\nEnabled: no\n";
        let s = parse_deb822(t);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].signed_by.as_deref(), Some("/usr/share/keyrings/k.gpg"));
        let r = s[0].render("bookworm-backports");
        assert!(r.contains("URIs: http://mirror.example/debian\nSuites: bookworm-backports\n"), "{r}");
        assert!(r.contains("Signed-By: /usr/share/keyrings/k.gpg"));
    }

    #[test]
    fn one_line_sources() {
        let s =
            parse_one_line("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib").unwrap();
        assert_eq!(s.uris, ["http://m.example/debian"]);
        assert_eq!(s.suites, ["bookworm"]);
        assert_eq!(s.signed_by.as_deref(), Some("/k.gpg"));
        assert!(parse_one_line("# deb http://a b c").is_none());
        assert!(parse_one_line("").is_none());
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(qemu_major("1:10.0.2+ds-2+deb13u1~bpo12+1"), 10);
        assert_eq!(qemu_major("1:7.2+dfsg-7+deb12u6"), 7);
        assert_eq!(qemu_major("garbage"), 0);
    }
}
