//! Integration tests of copy-on-write disks and the block cache (issue 14,
//! items 1-2, tests 6a-b): several VMs boot from one base image, each
//! under its own overlay in the monitor, the base never changes, and the
//! blocks they read are one machine frame each, shared inside a trust
//! group.

use super::shared_pages::stat;
use super::smp::{spawn, with_log};
use super::GUEST_TIMEOUT;
use crate::boot::Env;
use crate::exec;
use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom};
use std::process::Command;

/// MiB of random data each VM writes and reads back.
const BIG_MIB: u64 = 8;

/// `cow-root`: VMs `a`, `b` and `c` (1 vCPU, 256 MiB) have the Debian base
/// image as their root, `mode = "cow"`. Each writes a file of its own in
/// /root, replaces a file of the base (/etc/motd) and writes
/// [`BIG_MIB`] MiB of random data, then (after dropping the page cache, so
/// the reads reach the disk) lists /root and reads everything back.
/// Required: each sees only its own file and its own /etc/motd, the
/// random file reads back with the md5 it had when written, a file only
/// the base has (/usr/lib/os-release) reads as in the base image (debugfs on
/// the host), the root is mounted read-write, each VM's statistics show
/// its overlay blocks, every node reports `all frames returned`, and the
/// base image's bytes in the disk file hash the same after the run as
/// before.
pub fn cow_root(env: &mut Env) -> Result<()> {
    let image = crate::rootfs::ensure()?;
    let disk_file = crate::manifest::default_disk_file();
    // The base image goes into the disk file now (not only at boot), so
    // that a fresh clone has something to hash before the run.
    crate::disk::ensure_base_image(&disk_file, crate::rootfs::IMAGE, &image)?;
    let before = base_md5(&disk_file)?;
    let exec = |name: &str| {
        format!(
            "echo {name}-own > /root/cow-{name} && echo {name} > /etc/motd
dd if=/dev/urandom of=/root/big bs=1M count={BIG_MIB} 2>/dev/null
echo big-written=$(md5sum < /root/big | cut -d' ' -f1)
sync; echo 3 > /proc/sys/vm/drop_caches
echo big-read=$(md5sum < /root/big | cut -d' ' -f1)
echo own=$(ls /root | grep '^cow-' | tr '\\n' ' ')
echo motd=$(cat /etc/motd)
echo os-release=$(md5sum < /usr/lib/os-release | cut -d' ' -f1)
echo root-rw=$(grep -c '^/dev/vda / ext4 rw' /proc/mounts)"
        )
    };
    let vm = |name: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"256M\"\nexec = '''\n{}\n'''\n\n\
             [[vm.disk]]\nimage = \"{}\"\nmode = \"cow\"\nmount = \"/\"\n\n",
            exec(name),
            crate::rootfs::IMAGE
        )
    };
    let names = ["a", "b", "c"];
    let text: String = names.iter().map(|n| vm(n)).collect();
    let (s, _) = spawn(env, "cow-root", &text, false)?;
    let out = exec::run_multi(s, &names, GUEST_TIMEOUT)?;
    out.check()?;
    let os_release = debugfs_md5(&image.image, "/usr/lib/os-release")?;
    let mut errs = Vec::new();
    for name in names {
        let lines = &out.vm(name).output;
        let get = |key: &str| super::field(lines, key).map(str::to_string).unwrap_or_else(|_| "(missing)".into());
        let mut want = |key: &str, expected: &str, what: &str| {
            let got = get(key);
            if got != expected {
                errs.push(format!("vm {name}: {what}: got `{got}`, expected `{expected}`"));
            }
        };
        want("own=", &format!("cow-{name}"), "its files in /root (its own only)");
        want("motd=", name, "/etc/motd, which it rewrote");
        want("os-release=", &os_release, "md5 of the base's /usr/lib/os-release");
        want("root-rw=", "1", "/dev/vda mounted read-write as /");
        let written = get("big-written=");
        want("big-read=", &written, "md5 of its random file read back after dropping caches");
        let key = format!("stats: vm {name}: disk vda: copy-on-write blocks ");
        let blocks: u64 = out
            .lines
            .iter()
            .find_map(|l| l.split_once(&key).and_then(|(_, r)| r.split_whitespace().next()?.parse().ok()))
            .unwrap_or(0);
        if blocks < BIG_MIB * 256 {
            errs.push(format!(
                "vm {name}: {blocks} copy-on-write blocks in its statistics, at least {} expected",
                BIG_MIB * 256
            ));
        }
    }
    if out.lines.iter().filter(|l| l.contains("all frames returned")).count() < 2 {
        errs.push("not every node reports `all frames returned`".into());
    }
    check_overlap(&out.lines, &mut errs);
    let after = base_md5(&disk_file)?;
    if after != before {
        errs.push(format!("the base image changed: md5 {before} before the run, {after} after"));
    }
    with_log(&out, errs)
}

/// The physical disk's statistics line must show requests of several
/// CPUs in flight at once (three VMs boot from the base image together):
/// at least one queued while another was in flight, at most two or more.
fn check_overlap(lines: &[String], errs: &mut Vec<String>) {
    let Some(line) = lines.iter().find(|l| l.contains("stats: physical disk: ")) else {
        errs.push("no `stats: physical disk:` line".into());
        return;
    };
    let number = |key: &str, before: bool| -> u64 {
        let (head, tail) = line.split_once(key).unwrap_or(("", ""));
        let word = if before { head.split_whitespace().last() } else { tail.split_whitespace().next() };
        word.and_then(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()).unwrap_or(0)
    };
    let overlapped = number(" queued while another was in flight", true);
    let most = number("at most ", false);
    println!("  physical disk: {overlapped} requests queued while another was in flight, at most {most} in flight");
    if overlapped == 0 || most < 2 {
        errs.push(format!("the physical disk never had two requests in flight at once: `{}`", line.trim()));
    }
}

/// A big file of the base image (gcc's cc1, 27 MiB).
const BIG_FILE: &str = "/usr/lib/gcc/aarch64-linux-gnu/12/cc1";
/// Pages of [`BIG_FILE`] each sharing VM must map from the block cache.
const MIN_CACHED: u64 = 6000;
/// Seconds each VM waits after its first reads, so that all have read
/// when the first to end takes the census.
const HOLD_S: u64 = 20;

/// `block-cache-shared` (issue 14, tests 6b, 6c, 6e): VMs `a`, `b` and `c`
/// (no `share_group`: the run's default group), `d` and `e` (group `x`)
/// and `f` (`share_group = "none"`), Debian root copy-on-write. Each reads
/// [`BIG_FILE`] and /usr/lib/os-release and waits [`HOLD_S`] s so that
/// all have read when the census is taken (`census = true`: at the first
/// VM's end); then `a` rewrites the first block of [`BIG_FILE`] and
/// appends a line to os-release, and all drop their page caches and read
/// both again. Required: every md5 equals the host's (debugfs), `a`'s with
/// its changes, the others' without; every VM but `f` maps at least
/// [`MIN_CACHED`] pages from the block cache, `f` none; the cache ends
/// with fewer blocks than the VMs mapped together; the census shows at
/// least [`MIN_CACHED`] frames mapped by 3 VMs (the default group) and by 2
/// (group `x`), and none by 4 or more (no frame crosses a group); every
/// node reports `all frames returned`.
pub fn block_cache_shared(env: &mut Env) -> Result<()> {
    let image = crate::rootfs::ensure()?;
    let exec = |name: &str| {
        let change = if name == "a" {
            format!(
                "printf 'rewritten by a' | dd of={BIG_FILE} conv=notrunc 2>/dev/null; echo extra >> /usr/lib/os-release"
            )
        } else {
            ":".into()
        };
        format!(
            "echo big=$(md5sum < {BIG_FILE} | cut -d' ' -f1)
cat /usr/lib/os-release > /dev/null
sleep {HOLD_S}
{change}
echo os-release=$(md5sum < /usr/lib/os-release | cut -d' ' -f1)
sync; echo 3 > /proc/sys/vm/drop_caches
echo big-again=$(md5sum < {BIG_FILE} | cut -d' ' -f1)
echo os-release-again=$(md5sum < /usr/lib/os-release | cut -d' ' -f1)"
        )
    };
    let vm = |name: &str, extra: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"256M\"\n{extra}exec = '''\n{}\n'''\n\n\
             [[vm.disk]]\nimage = \"{}\"\nmode = \"cow\"\nmount = \"/\"\n\n",
            exec(name),
            crate::rootfs::IMAGE
        )
    };
    let x = "share_group = \"x\"\n";
    let text = format!(
        "census = true\n\n{}{}{}{}{}{}",
        vm("a", ""),
        vm("b", ""),
        vm("c", ""),
        vm("d", x),
        vm("e", x),
        vm("f", "share_group = \"none\"\n")
    );
    let names = ["a", "b", "c", "d", "e", "f"];
    let (s, _) = spawn(env, "block-cache-shared", &text, false)?;
    // Six Debian guests and a census of all their pages.
    let out = exec::run_multi(s, &names, 2 * GUEST_TIMEOUT)?;
    out.check()?;
    let big_bytes = debugfs_bytes(&image.image, BIG_FILE)?;
    let big = super::host_md5(&big_bytes)?;
    let mut rewritten = big_bytes.clone();
    rewritten[..14].copy_from_slice(b"rewritten by a");
    let rewritten = super::host_md5(&rewritten)?;
    let os_release = debugfs_bytes(&image.image, "/usr/lib/os-release")?;
    let plain = super::host_md5(&os_release)?;
    let appended = super::host_md5(&[os_release, b"extra\n".to_vec()].concat())?;
    let mut errs = Vec::new();
    let mut mapped = 0;
    for name in names {
        let lines = &out.vm(name).output;
        let (want_os, want_big) = if name == "a" { (&appended, &rewritten) } else { (&plain, &big) };
        for (key, want) in
            [("big=", &big), ("os-release=", want_os), ("big-again=", want_big), ("os-release-again=", want_os)]
        {
            let got = super::field(lines, key).unwrap_or("(missing)");
            if got != want.as_str() {
                errs.push(format!("vm {name}: `{key}` {got}, expected {want}"));
            }
        }
        let key = format!("stats: vm {name}: replication:");
        let n = out.lines.iter().find(|l| l.contains(&key)).and_then(|l| stat(l, "block cache mapped")).unwrap_or(0);
        match name {
            "f" if n != 0 => errs.push(format!("vm f (share_group \"none\") mapped {n} cached blocks")),
            "f" => {}
            _ if n < MIN_CACHED => {
                errs.push(format!("vm {name}: {n} pages mapped from the block cache, at least {MIN_CACHED} expected"))
            }
            _ => mapped += n,
        }
    }
    let cached: Option<u64> = out
        .lines
        .iter()
        .find_map(|l| l.split_once("block cache: ").and_then(|(_, r)| r.split_whitespace().next()?.parse().ok()));
    match cached {
        Some(c) if c < mapped => {}
        other => errs.push(format!(
            "block cache holds {other:?} blocks at the end; the VMs mapped {mapped} pages of it: not shared"
        )),
    }
    // The census at the first VM's end: frames by how many VMs map them.
    let census = out.lines.iter().find(|l| l.contains("census: 6 VMs")).cloned().unwrap_or_default();
    let by = |label: &str| number_before(&census, &format!(" by {label} VMs"));
    for (label, ok, want) in [
        ("3", by("3").is_some_and(|n| n >= MIN_CACHED), "at least MIN_CACHED (the default group)"),
        ("2", by("2").is_some_and(|n| n >= MIN_CACHED), "at least MIN_CACHED (group x)"),
        ("4-7", by("4-7") == Some(0), "none (a frame across groups)"),
    ] {
        if !ok {
            errs.push(format!("census: {:?} frames by {label} VMs, expected {want}: `{census}`", by(label)));
        }
    }
    if out.lines.iter().filter(|l| l.contains("all frames returned")).count() < 2 {
        errs.push("not every node reports `all frames returned`".into());
    }
    with_log(&out, errs)
}

/// The number just before `what` in `line` (`..., 7012 by 3 VMs, ...`).
fn number_before(line: &str, what: &str) -> Option<u64> {
    let head = &line[..line.find(what)?];
    head.trim_end().rsplit(' ').next()?.parse().ok()
}

/// Lines of `seq` boot 1 writes raw to the persistent disk.
const SEQ_LINES: u64 = 100_000;

/// `cow-persistent-restart`: VM `r` (`restart = "on-crash"`) has the
/// Debian root copy-on-write (vda) and a persistent image (vdb). Boot 1
/// writes a file to its root and `seq` output raw to vdb, syncs, and
/// crashes its kernel; boot 2 looks for both. Required: one crash and one
/// restart; after it the root file is gone (an overlay ends with its VM)
/// and vdb still holds the data (its md5 equals the host's).
pub fn cow_persistent_restart(env: &mut Env) -> Result<()> {
    crate::rootfs::ensure()?;
    let data: String = (1..=SEQ_LINES).map(|i| format!("{i}\n")).collect();
    let want = super::host_md5(data.as_bytes())?;
    let exec = format!(
        "if grep -q disco.boot=1 /proc/cmdline; then
  echo mine > /root/boot1-file && seq 1 {SEQ_LINES} > /tmp/seq && dd if=/tmp/seq of=/dev/vdb bs=4k conv=fsync 2>/dev/null
  sync; echo written; echo c > /proc/sysrq-trigger
fi
echo boot=$(grep -o 'disco.boot=[0-9]*' /proc/cmdline)
echo root-file=$(cat /root/boot1-file 2>/dev/null || echo gone)
echo vdb=$(head -c {} /dev/vdb | md5sum | cut -d' ' -f1)",
        data.len()
    );
    let text = format!(
        "[[vm]]\nname = \"r\"\nvcpus = 1\nmemory = \"256M\"\nrestart = \"on-crash\"\nexec = '''\n{exec}\n'''\n\n\
         [[vm.disk]]\nimage = \"{}\"\nmode = \"cow\"\nmount = \"/\"\n\n\
         [[vm.disk]]\nimage = \"test-restart\"\nmode = \"persistent\"\nsize = \"16M\"\n",
        crate::rootfs::IMAGE
    );
    let (s, _) = spawn(env, "cow-persistent-restart", &text, false)?;
    let out = exec::run_multi(s, &["r"], GUEST_TIMEOUT)?;
    out.check()?;
    let r = out.vm("r");
    let mut errs = Vec::new();
    if r.reboots != 1 || r.crashes.is_empty() {
        errs.push(format!(
            "expected one crash and one restart, saw {} crash line(s) and {} reboot(s)",
            r.crashes.len(),
            r.reboots
        ));
    }
    for (key, want, what) in [
        ("boot=", "disco.boot=2", "the boot after the restart"),
        ("root-file=", "gone", "the copy-on-write root's file of boot 1"),
        ("vdb=", want.as_str(), "md5 of the persistent disk's data"),
    ] {
        let got = super::field(&r.output, key).unwrap_or("(missing)");
        if got != want {
            errs.push(format!("vm r: {what}: got `{got}`, expected `{want}`"));
        }
    }
    with_log(&out, errs)
}

/// md5 of the `debian` base image's bytes in the disk file.
fn base_md5(file: &std::path::Path) -> Result<String> {
    let header = crate::disk::read_header(file)?;
    let entry = header.find(crate::rootfs::IMAGE).with_context(|| format!("{}: no base image", file.display()))?;
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(entry.offset))?;
    let mut bytes = Vec::with_capacity(entry.size as usize);
    f.take(entry.size).read_to_end(&mut bytes)?;
    super::host_md5(&bytes)
}

/// md5 of file `path` in the ext4 image `image`.
fn debugfs_md5(image: &std::path::Path, path: &str) -> Result<String> {
    super::host_md5(&debugfs_bytes(image, path)?)
}

/// File `path` of the ext4 image `image`, read with debugfs.
fn debugfs_bytes(image: &std::path::Path, path: &str) -> Result<Vec<u8>> {
    let out = Command::new("debugfs").args(["-R", &format!("cat {path}")]).arg(image).output().context("debugfs")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("debugfs cat {path} {}: {}", image.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}
