//! Small shared helpers: where things live, running commands, time stamps.
//!
//! Everything xtask produces goes under `<repo>/.cache` (gitignored) or
//! `<repo>/target`, so a `git clean -fdX` gets a fresh tree and nothing is
//! ever written outside the repository except by `setup` (apt).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The repository root: xtask always lives in `<root>/xtask`, so this holds
/// however `cargo xtask` was started (any working directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// `<root>/.cache/<sub>`, created on demand.
pub fn cache_dir(sub: &str) -> Result<PathBuf> {
    let dir = root().join(".cache").join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A path relative to the repository root when possible: shorter messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// One command line as a user would type it (for messages and logs).
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|<>()*?".contains(c)) {
            s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs a command with inherited output; fails naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout; stderr is included in the error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let Output { status, stdout, stderr } =
        cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status}): {}", show(cmd), String::from_utf8_lossy(&stderr).trim());
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Whether a program is on PATH (no `which` dependency).
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// UTC time stamp `YYYYmmdd-HHMMSS` for log names (no date crate needed).
pub fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil-from-days (H. Hinnant), valid for the whole Unix era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Writes `data` to `path` only when the content differs, so timestamps (and
/// anything keyed on them) stay put when nothing changed.
pub fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool> {
    if std::fs::read(path).map(|old| old == data).unwrap_or(false) {
        return Ok(false);
    }
    // Per-process temporary name: concurrent xtask runs share this tree.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(true)
}

/// A file for one run only: `.cache/<sub>/<tag>.pid<PID>.<ext>`. Several
/// xtask processes may run at once in one tree (people, CI, helpers), so
/// per-run files carry the owner's pid; [`gc_run_files`] removes those
/// whose owner is gone.
pub fn run_file(sub: &str, tag: &str, ext: &str) -> Result<PathBuf> {
    Ok(cache_dir(sub)?.join(format!("{tag}.pid{}.{ext}", std::process::id())))
}

/// Deletes per-run files of processes that no longer exist.
pub fn gc_run_files(subs: &[&str]) {
    for sub in subs {
        let Ok(dir) = std::fs::read_dir(root().join(".cache").join(sub)) else {
            continue;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = run_file_owner(&name) {
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Logs kept in `.cache/logs` (oldest go first).
const KEEP_LOGS: usize = 300;

fn prune_logs(dir: &Path, keep: usize) {
    let Ok(d) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(SystemTime, PathBuf)> =
        d.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    if logs.len() < keep {
        return;
    }
    logs.sort();
    for (_, p) in &logs[..logs.len() + 1 - keep] {
        let _ = std::fs::remove_file(p);
    }
}

/// The pid in a `<tag>.pid<PID>.<ext>` name.
fn run_file_owner(name: &str) -> Option<u32> {
    let at = name.rfind(".pid")?;
    name[at + 4..].split('.').next()?.parse().ok()
}

/// Creates `.cache/logs/<tag>-<time>.log`, never reusing a name (two runs
/// of one tag may start in the same second).
pub fn new_log(tag: &str) -> Result<(std::fs::File, PathBuf)> {
    let dir = cache_dir("logs")?;
    prune_logs(&dir, KEEP_LOGS);
    let stamp = timestamp();
    for n in 1.. {
        let name = if n == 1 { format!("{tag}-{stamp}.log") } else { format!("{tag}-{stamp}-{n}.log") };
        let path = dir.join(name);
        match std::fs::File::create_new(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_file_names() {
        assert_eq!(run_file_owner("test-guest-boot.pid1234.cpio"), Some(1234));
        assert_eq!(run_file_owner("base.cpio"), None);
        assert_eq!(run_file_owner("bench-autonuma-1.cpio"), None);
        let p = run_file("initramfs", "t", "cpio").unwrap();
        assert_eq!(run_file_owner(&p.file_name().unwrap().to_string_lossy()), Some(std::process::id()));
    }

    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(&t[8..9], "-");
        assert!(t.starts_with("20"));
    }

    #[test]
    fn show_quotes_what_needs_it() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo hi", "plain"]);
        assert_eq!(show(&c), "sh -c 'echo hi' plain");
    }
}

/// Numbers after `key` in a monitor statistics line, e.g. `replicated 12,`.
pub fn stat(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The md5 of `data`, by the host's md5sum (as the guests compute theirs).
pub fn host_md5(data: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("md5sum")?;
    child.stdin.take().expect("piped").write_all(data)?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string())
}
