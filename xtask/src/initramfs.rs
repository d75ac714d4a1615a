//! The guest initramfs: busybox plus the init script, as "newc" cpio.
//!
//! Written in Rust (no root, no device-node privileges, byte-for-byte
//! reproducible: all mtimes and owners are 0), rebuilt whenever its inputs
//! change (the archive is regenerated in memory, ~2 MB, and the file only
//! rewritten when the bytes differ). A run with `--exec` appends a second,
//! tiny archive holding `/exec.sh`; Linux unpacks concatenated archives in
//! order, so the base archive is shared by every run.
//!
//! Layout: `/init` <- `guest-hints/guest/init`, `/usr/bin/*` <-
//! `guest-hints/guest/bin/*`, `/bin/busybox`, `/bin/sh`, `/dev/console`.

use crate::util::{cache_dir, rel, root, run_file, write_if_changed};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A newc ("070701") cpio writer.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields =
            [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, &[], (0, 0));
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, data, (0, 0));
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes(), (0, 0));
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, &[], (major, minor));
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// Where the guest-side sources live.
pub fn guest_dir() -> PathBuf {
    root().join("guest-hints/guest")
}

/// Builds (if changed) `.cache/initramfs/base.cpio` and returns its path.
pub fn base(busybox: &Path) -> Result<PathBuf> {
    let mut c = Cpio::default();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc"] {
        c.dir(d);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    c.char_dev("dev/console", 0o600, 5, 1);
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", rel(busybox)))?;
    c.file("bin/busybox", 0o755, &bb);
    c.symlink("bin/sh", "busybox");
    let init = guest_dir().join("init");
    c.file("init", 0o755, &std::fs::read(&init).with_context(|| format!("reading {}", rel(&init)))?);
    let mut extra: Vec<PathBuf> = std::fs::read_dir(guest_dir().join("bin"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    extra.sort();
    for p in extra {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        c.file(&format!("usr/bin/{name}"), 0o755, &std::fs::read(&p)?);
    }
    let path = cache_dir("initramfs")?.join("base.cpio");
    if write_if_changed(&path, &c.finish())? {
        eprintln!("build: {} (rebuilt)", rel(&path));
    }
    Ok(path)
}

/// The archive a VM boots: the base alone, or the base followed by an
/// archive holding `/exec.sh` (a per-run file, see [`run_file`]).
pub fn with_exec(base: &Path, exec: Option<&str>, tag: &str) -> Result<PathBuf> {
    let Some(cmd) = exec else {
        return Ok(base.to_path_buf());
    };
    let mut data = std::fs::read(base)?;
    data.extend(exec_archive(cmd));
    let path = run_file("initramfs", tag, "cpio")?;
    write_if_changed(&path, &data)?;
    Ok(path)
}

/// The second archive: one file, `/exec.sh`.
pub fn exec_archive(cmd: &str) -> Vec<u8> {
    let mut c = Cpio::default();
    c.file("exec.sh", 0o644, format!("{cmd}\n").as_bytes());
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back `(name, mode, data)` triples: the newc layout, independently.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
        let mut off = 0usize;
        let total = b.len();
        while off < total {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| hex(&b[6 + 8 * i..14 + 8 * i]);
            let (mode, size, namesz) = (field(1), field(6) as usize, field(11) as usize);
            let name = String::from_utf8(b[110..110 + namesz - 1].to_vec()).unwrap();
            let data_at = (110 + namesz + 3) & !3;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size + 3) & !3;
            b = &b[next..];
            off += next;
            if name == "TRAILER!!!" {
                break;
            }
            out.push((name, mode, data));
        }
        out
    }

    #[test]
    fn newc_round_trip() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.file("bin/x", 0o755, b"hello");
        c.symlink("bin/sh", "busybox");
        c.char_dev("dev/console", 0o600, 5, 1);
        let a = c.finish();
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a);
        assert_eq!(e.len(), 4);
        assert_eq!(e[1], ("bin/x".to_string(), S_IFREG | 0o755, b"hello".to_vec()));
        assert_eq!(e[2].2, b"busybox");
        assert_eq!(e[3].1, S_IFCHR | 0o600);
    }

    #[test]
    fn exec_archive_holds_the_command() {
        let e = parse(&exec_archive("uname -r"));
        assert_eq!(e, vec![("exec.sh".to_string(), S_IFREG | 0o644, b"uname -r\n".to_vec())]);
    }

    /// Cross-checks with the system `cpio` tool when present.
    #[test]
    fn system_cpio_lists_it() {
        if !crate::util::on_path("cpio") {
            return;
        }
        let mut c = Cpio::default();
        c.dir("d");
        c.file("d/f", 0o644, b"abc");
        let a = c.finish();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d\nd/f\n");
    }
}
