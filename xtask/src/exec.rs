//! The `--exec` protocol: run one command in the guest and judge the run.
//!
//! The guest's init prints `DISCO-READY`, `DISCO-EXEC-BEGIN`, the command's
//! output, `DISCO-EXEC-END status=N`, and powers off (see
//! `guest-hints/guest/init`). Under the monitor, guest lines may carry a
//! `[vm0] ` prefix and monitor lines interleave; the [`Watcher`] strips the
//! one and drops the other. It is pure (fed line by line), so its rules are
//! unit-tested without QEMU; [`run`] drives it from a live session.

use crate::qemu::{code, Event, Session};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub const READY: &str = "DISCO-READY";
pub const BEGIN: &str = "DISCO-EXEC-BEGIN";
pub const END: &str = "DISCO-EXEC-END status=";
/// How long QEMU may take to exit after the command ended (poweroff).
const EXIT_GRACE: Duration = Duration::from_secs(30);
/// Lines of log shown with a failure.
pub const TAIL_LINES: usize = 40;

#[derive(Debug, PartialEq)]
enum State {
    Booting,
    Running,
    Ended(i32),
}

/// Follows the console of one exec run.
#[derive(Debug)]
pub struct Watcher {
    prefix: String,
    state: State,
    /// The BEGIN marker came with the VM prefix: only prefixed lines are the guest's.
    prefixed: bool,
    pub output: Vec<String>,
    /// Set when `DISCO-READY` is seen.
    pub ready: bool,
    /// A fatal line (monitor panic, VM crash), as the reason to report.
    pub fatal: Option<String>,
}

impl Watcher {
    pub fn new(vm_name: &str) -> Watcher {
        Watcher { prefix: format!("[{vm_name}] "), state: State::Booting, prefixed: false, output: Vec::new(), ready: false, fatal: None }
    }

    /// `(had prefix, text without it)`.
    fn split<'a>(&self, line: &'a str) -> (bool, &'a str) {
        match line.strip_prefix(&self.prefix) {
            Some(rest) => (true, rest),
            None => (false, line),
        }
    }

    /// Feeds one console line.
    pub fn feed(&mut self, line: &str) {
        if line.contains("MONITOR PANIC") {
            self.fatal.get_or_insert_with(|| format!("the monitor panicked: {line}"));
        }
        // The monitor logs `disco: [   1.234 cpu0] error: vm vm0 ended: crashed: ...`.
        if line.contains("disco:") && line.contains("ended: crashed") {
            self.fatal.get_or_insert_with(|| format!("the VM crashed: {line}"));
        }
        let (has_prefix, text) = self.split(line);
        match self.state {
            State::Booting => {
                if text.contains(READY) {
                    self.ready = true;
                }
                if text.contains(BEGIN) {
                    self.state = State::Running;
                    self.prefixed = has_prefix;
                }
            }
            State::Running => {
                if let Some(at) = text.find(END) {
                    let digits: String = text[at + END.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
                    self.state = State::Ended(digits.parse().unwrap_or(-1));
                } else if has_prefix || !self.prefixed {
                    self.output.push(text.to_string());
                }
            }
            State::Ended(_) => {}
        }
    }

    /// The command's shell status once `DISCO-EXEC-END` was seen.
    pub fn status(&self) -> Option<i32> {
        match self.state {
            State::Ended(s) => Some(s),
            _ => None,
        }
    }
}

/// Result of a successful exec run.
#[derive(Debug)]
pub struct Outcome {
    pub output: Vec<String>,
    /// From QEMU's start to the `DISCO-READY` line.
    pub ready_after: Option<Duration>,
}

/// Drives a session until QEMU exits after `DISCO-EXEC-END status=0`
/// (success) or a failure rule fires; QEMU is always killed before returning.
pub fn run(mut s: Session, vm_name: &str, timeout: Duration) -> Result<Outcome> {
    let deadline = s.started + timeout;
    let mut w = Watcher::new(vm_name);
    let mut ready_after = None;
    let mut ended_at: Option<Instant> = None;
    let verdict: std::result::Result<(), String> = loop {
        let limit = ended_at.map_or(deadline, |t| (t + EXIT_GRACE).min(deadline));
        match s.next(limit) {
            Event::Line(l) => {
                w.feed(&l);
                if w.ready && ready_after.is_none() {
                    ready_after = Some(s.elapsed());
                }
                if let Some(f) = &w.fatal {
                    break Err(f.clone());
                }
                match w.status() {
                    Some(0) if ended_at.is_none() => ended_at = Some(Instant::now()),
                    Some(0) => {}
                    Some(n) => break Err(format!("the command failed in the guest (status {n})")),
                    None => {}
                }
            }
            Event::Exit(st) => {
                break match w.status() {
                    Some(0) if st.success() => Ok(()),
                    Some(0) => Err(format!("QEMU exited with status {} after the command ended", code(st))),
                    _ if !w.ready => Err(format!("QEMU exited (status {}) before the guest was up ({READY} never seen)", code(st))),
                    _ => Err(format!("QEMU exited (status {}) without DISCO-EXEC-END", code(st))),
                };
            }
            Event::Timeout if ended_at.is_some() && Instant::now() < deadline => {
                break Err(format!(
                    "the command ended but QEMU did not exit within {}s (the monitor must power the machine off when its last VM ends)",
                    EXIT_GRACE.as_secs()
                ))
            }
            Event::Timeout => {
                let stage = if !w.ready { "before DISCO-READY" } else if w.status().is_none() { "while the command ran" } else { "waiting for QEMU to exit" };
                break Err(format!("timed out after {}s {stage}", timeout.as_secs()));
            }
        }
    };
    s.kill();
    match verdict {
        Ok(()) => Ok(Outcome { output: w.output, ready_after }),
        Err(why) => bail!(
            "{why}\nlog: {}\nlast {TAIL_LINES} lines:\n{}",
            crate::util::rel(&s.log_path),
            s.tail(TAIL_LINES)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Watcher {
        let mut w = Watcher::new("vm0");
        for l in lines {
            w.feed(l);
        }
        w
    }

    #[test]
    fn native_console() {
        let w = feed(&["[    0.1] Booting Linux", "DISCO-READY", "DISCO-EXEC-BEGIN", "6.1.0-56-arm64", "DISCO-EXEC-END status=0", "reboot: Power down"]);
        assert!(w.ready);
        assert_eq!(w.output, ["6.1.0-56-arm64"]);
        assert_eq!(w.status(), Some(0));
    }

    #[test]
    fn monitor_console_prefixes_and_interleaving() {
        let w = feed(&[
            "[INFO] disco: starting vm0",
            "[vm0] DISCO-READY",
            "[vm0] DISCO-EXEC-BEGIN",
            "[vm0] line one",
            "[INFO] placement: 3 pages migrated",
            "[vm0] [INFO] not a monitor line",
            "[vm0] DISCO-EXEC-END status=135",
        ]);
        assert_eq!(w.output, ["line one", "[INFO] not a monitor line"]);
        assert_eq!(w.status(), Some(135));
        assert!(w.fatal.is_none());
    }

    #[test]
    fn fatal_lines() {
        let w = feed(&["DISCO-READY", "[ERROR] MONITOR PANIC at src/main.rs:3"]);
        assert!(w.fatal.unwrap().contains("panicked"));
        let w = feed(&["disco: vm vm0 ended: crashed (unhandled EL1 sync exception)"]);
        assert!(w.fatal.unwrap().contains("crashed"));
        let w = feed(&["disco: [    3.120 cpu1] error: vm vm0 ended: crashed: stage-2 fault at 0x0"]);
        assert!(w.fatal.unwrap().contains("crashed"));
        let w = feed(&["disco: [    9.000 cpu0] vm vm0 ended: powered off"]);
        assert!(w.fatal.is_none());
    }

    #[test]
    fn no_end_means_no_status() {
        let w = feed(&["DISCO-READY", "DISCO-EXEC-BEGIN", "partial"]);
        assert_eq!(w.status(), None);
        assert_eq!(w.output, ["partial"]);
    }
}
