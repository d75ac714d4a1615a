//! Running QEMU: attached to the terminal, or as a captured session.
//!
//! A captured session reads QEMU's stdout and stderr line by line on two
//! threads, writes every line to a log file (and optionally the terminal),
//! and hands lines to the caller with a deadline. QEMU runs in its own
//! process group and gets SIGKILL when xtask dies (PR_SET_PDEATHSIG); the
//! session kills the group when dropped, so no QEMU outlives a run, a failed
//! test or a Ctrl-C.

use crate::console_lines::Reassembler;
use crate::util::{new_log, rel, show};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-aarch64";
/// Lines kept in memory for failure reports.
const TAIL_KEEP: usize = 200;

/// Console wiring for a terminal session: serial and QEMU monitor share
/// stdio (Ctrl-A x quits, Ctrl-A c for the QEMU monitor); Ctrl-C goes to the guest.
pub fn interactive_console() -> Vec<String> {
    [
        "-display",
        "none",
        "-chardev",
        "stdio,id=con,mux=on,signal=off",
        "-serial",
        "chardev:con",
        "-mon",
        "chardev=con,mode=readline",
    ]
    .map(String::from)
    .to_vec()
}

/// Console wiring for captured runs: serial on stdout, no QEMU monitor.
pub fn captured_console() -> Vec<String> {
    ["-display", "none", "-monitor", "none", "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
        .map(String::from)
        .to_vec()
}

/// Makes the child die with xtask; optionally puts it in its own group.
fn guard(cmd: &mut Command, own_group: bool) {
    if own_group {
        cmd.process_group(0);
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs QEMU on the terminal; returns its exit code (signals -> 128+n).
pub fn interactive(mut cmd: Command) -> Result<i32> {
    eprintln!("run: {}", show(&cmd));
    eprintln!("run: Ctrl-A x quits QEMU, Ctrl-A c toggles the QEMU monitor");
    // Same process group: QEMU must stay in the terminal's foreground group.
    guard(&mut cmd, false);
    let status = cmd.status().with_context(|| format!("cannot start {QEMU}"))?;
    Ok(code(status))
}

/// Exit code of a process the way a shell reports it.
pub fn code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// What a captured session produces.
#[derive(Debug)]
pub enum Event {
    Line(String),
    Exit(ExitStatus),
    Timeout,
}

enum Msg {
    Line(String),
    Eof,
}

/// A running, captured QEMU.
pub struct Session {
    child: Child,
    rx: Receiver<Msg>,
    open_streams: usize,
    log: File,
    pub log_path: PathBuf,
    pub started: Instant,
    tee: bool,
    tail: VecDeque<String>,
    exited: Option<ExitStatus>,
    /// QEMU's stdin (the serial console's input), for [`Session::send`].
    input: Option<ChildStdin>,
}

impl Session {
    /// Spawns `cmd` with stdin null, logging to `.cache/logs/<tag>-<time>.log`.
    /// `tee` also copies every line to xtask's stderr.
    pub fn spawn(cmd: Command, tag: &str, tee: bool) -> Result<Session> {
        Self::start(cmd, tag, tee, false)
    }

    /// Like [`Session::spawn`], but QEMU's stdin is a pipe that
    /// [`Session::send`] types into (the console's input).
    pub fn spawn_with_input(cmd: Command, tag: &str) -> Result<Session> {
        Self::start(cmd, tag, false, true)
    }

    fn start(mut cmd: Command, tag: &str, tee: bool, input: bool) -> Result<Session> {
        let (mut log, log_path) = new_log(tag)?;
        writeln!(log, "# {}", show(&cmd))?;
        if tee {
            eprintln!("run: {}", show(&cmd));
            eprintln!("run: log in {}", rel(&log_path));
        }
        guard(&mut cmd, true);
        cmd.stdin(if input { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("cannot start {QEMU}"))?;
        let input = child.stdin.take();
        let (tx, rx) = channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for stream in [out, err] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream);
                let mut buf = Vec::new();
                let mut joiner = Reassembler::default();
                while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                    buf.clear();
                    let Some(line) = joiner.feed(&line) else { continue };
                    if tx.send(Msg::Line(line)).is_err() {
                        return;
                    }
                }
                for line in joiner.flush() {
                    let _ = tx.send(Msg::Line(line));
                }
                let _ = tx.send(Msg::Eof);
            });
        }
        Ok(Session {
            child,
            rx,
            open_streams: 2,
            log,
            log_path,
            started,
            tee,
            tail: VecDeque::new(),
            exited: None,
            input,
        })
    }

    /// The next line, QEMU's exit (after all output), or the deadline.
    pub fn next(&mut self, deadline: Instant) -> Event {
        if let Some(s) = self.exited {
            return Event::Exit(s);
        }
        loop {
            if self.open_streams == 0 {
                // Both pipes closed: QEMU is gone or about to be.
                match self.child.wait() {
                    Ok(s) => {
                        self.exited = Some(s);
                        let _ = writeln!(self.log, "# {QEMU} exited: {s}");
                        return Event::Exit(s);
                    }
                    Err(_) => return Event::Timeout,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Line(l)) => {
                    let _ = writeln!(self.log, "{l}");
                    if self.tee {
                        eprintln!("{l}");
                    }
                    if self.tail.len() == TAIL_KEEP {
                        self.tail.pop_front();
                    }
                    self.tail.push_back(l.clone());
                    return Event::Line(l);
                }
                Ok(Msg::Eof) => self.open_streams -= 1,
                Err(RecvTimeoutError::Timeout) => return Event::Timeout,
                Err(RecvTimeoutError::Disconnected) => self.open_streams = 0,
            }
        }
    }

    /// Types `bytes` on the console (sessions from [`Session::spawn_with_input`]).
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let input = self.input.as_mut().context("this QEMU session has no console input")?;
        input.write_all(bytes).and_then(|()| input.flush()).context("writing to QEMU's console input")?;
        let _ = writeln!(self.log, "# xtask typed {bytes:?}");
        Ok(())
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> String {
        let skip = self.tail.len().saturating_sub(n);
        self.tail.iter().skip(skip).map(|l| format!("  | {l}\n")).collect()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks QEMU to quit (SIGTERM to its group: QEMU shuts down cleanly, so
    /// plugins write their reports at exit) and returns the lines it still
    /// prints; kills it if it has not exited within `wait`.
    pub fn terminate(&mut self, wait: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        if self.exited.is_none() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: signalling our own child's process group; no memory involved.
            unsafe {
                libc::kill(-pid, libc::SIGTERM);
            }
            let _ = writeln!(self.log, "# xtask sent SIGTERM to {QEMU}");
            let until = Instant::now() + wait;
            while let Event::Line(l) = self.next(until) {
                lines.push(l);
            }
        }
        self.kill();
        lines
    }

    /// Kills QEMU's process group (idempotent) and reaps it.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child's process group; no memory involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        if let Ok(s) = self.child.wait() {
            self.exited = Some(s);
            let _ = writeln!(self.log, "# {QEMU} killed by xtask");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

/// QEMU's version line, for reports.
pub fn version() -> String {
    Command::new(QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(String::from))
        .unwrap_or_else(|| format!("{QEMU} (version unknown)"))
}
