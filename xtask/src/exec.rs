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
        Watcher {
            prefix: format!("[{vm_name}] "),
            state: State::Booting,
            prefixed: false,
            output: Vec::new(),
            ready: false,
            fatal: None,
        }
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
        Err(why) => {
            bail!("{why}\nlog: {}\nlast {TAIL_LINES} lines:\n{}", crate::util::rel(&s.log_path), s.tail(TAIL_LINES))
        }
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
        let w = feed(&[
            "[    0.1] Booting Linux",
            "DISCO-READY",
            "DISCO-EXEC-BEGIN",
            "6.1.0-56-arm64",
            "DISCO-EXEC-END status=0",
            "reboot: Power down",
        ]);
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

/// How one VM of a multi-VM exec run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEnd {
    /// `DISCO-EXEC-END status=N` of its last boot.
    Status(i32),
    /// The monitor's `vm NAME ended: crashed: REASON`, not followed by a restart.
    Crashed(String),
    /// Anything else (powered off without DISCO-EXEC-END, QEMU exit, timeout).
    Failed(String),
}

/// One VM's side of a multi-VM exec run.
#[derive(Debug)]
pub struct VmRun {
    pub name: String,
    /// Output of the exec of its last boot.
    pub output: Vec<String>,
    pub end: Option<VmEnd>,
    /// Boots after the first (crash restarts and guest resets).
    pub reboots: u32,
    /// Monitor lines saying it crashed.
    pub crashes: Vec<String>,
    watcher: Watcher,
}

impl VmRun {
    pub fn ok(&self) -> bool {
        self.end == Some(VmEnd::Status(0))
    }

    pub fn describe(&self) -> String {
        match &self.end {
            Some(VmEnd::Status(s)) => format!("status {s}"),
            Some(VmEnd::Crashed(r)) => format!("crashed: {r}"),
            Some(VmEnd::Failed(r)) => r.clone(),
            None => "still running".into(),
        }
    }
}

/// Follows several VMs' exec runs on one console (pure; see [`run_multi`]).
#[derive(Debug)]
pub struct MultiWatcher {
    pub vms: Vec<VmRun>,
    /// `all VMs ended; powering off` was seen.
    pub all_ended: bool,
    /// A monitor panic: ends the run.
    pub fatal: Option<String>,
}

/// `NAME` and the rest of a monitor line `... vm NAME <rest>`.
fn monitor_vm_line(line: &str) -> Option<(&str, &str)> {
    let at = line.find("disco:")?;
    let rest = &line[at..];
    let v = rest.find("] vm ").map(|i| i + 5).or_else(|| rest.find("error: vm ").map(|i| i + 10))?;
    let after = &rest[v..];
    let sp = after.find(' ')?;
    Some((&after[..sp], &after[sp + 1..]))
}

impl MultiWatcher {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> MultiWatcher {
        let vms = names
            .into_iter()
            .map(|n| VmRun {
                name: n.to_string(),
                output: Vec::new(),
                end: None,
                reboots: 0,
                crashes: Vec::new(),
                watcher: Watcher::new(n),
            })
            .collect();
        MultiWatcher { vms, all_ended: false, fatal: None }
    }

    pub fn feed(&mut self, line: &str) {
        if line.contains("MONITOR PANIC") {
            self.fatal.get_or_insert_with(|| format!("the monitor panicked: {line}"));
        }
        if line.contains("disco:") && line.contains("all VMs ended") {
            self.all_ended = true;
        }
        if let Some((name, rest)) = monitor_vm_line(line) {
            if let Some(vm) = self.vms.iter_mut().find(|v| v.name == name) {
                if let Some(reason) = rest.strip_prefix("ended: crashed: ") {
                    vm.crashes.push(line.to_string());
                    vm.end = Some(VmEnd::Crashed(reason.to_string()));
                } else if rest.starts_with("reset") || rest.starts_with("restarting") {
                    // A new boot: its exec starts over.
                    vm.reboots += 1;
                    vm.end = None;
                    vm.watcher = Watcher::new(&vm.name);
                } else if rest.starts_with("ended: powered off") && vm.end.is_none() {
                    vm.end = Some(VmEnd::Failed("powered off without DISCO-EXEC-END".into()));
                }
            }
            return;
        }
        for vm in &mut self.vms {
            if line.starts_with(&vm.watcher.prefix) {
                // Only this VM's lines: other VMs' crashes are not its own.
                vm.watcher.feed(line);
                vm.watcher.fatal = None;
                if let Some(s) = vm.watcher.status() {
                    if vm.end.is_none() {
                        vm.end = Some(VmEnd::Status(s));
                        vm.output = vm.watcher.output.clone();
                    }
                }
                break;
            }
        }
    }

    /// Every VM has an end (a crash may still be followed by a restart line).
    pub fn all_done(&self) -> bool {
        self.vms.iter().all(|v| v.end.is_some())
    }
}

/// What a long multi-VM run (soak, fault campaign) showed: the lines of
/// its report, and the problems that fail it.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
}

/// Result of a multi-VM exec run (successful or not: see [`VmRun::ok`]).
#[derive(Debug)]
pub struct MultiOutcome {
    pub vms: Vec<VmRun>,
    /// Every console line (monitor checks such as frames per node).
    pub lines: Vec<String>,
    pub log: String,
    pub tail: String,
}

impl MultiOutcome {
    /// Adds the monitor's health at the end to `r`: its faults
    /// (`MONITOR PANIC`) and each node's free memory against the start
    /// (`all frames returned`, or what is missing).
    pub fn health(&self, r: &mut Report) {
        let faults: Vec<&String> = self.lines.iter().filter(|l| l.contains("MONITOR PANIC")).collect();
        r.lines.push(format!("monitor faults: {}", faults.len()));
        r.problems.extend(faults.iter().map(|l| format!("monitor fault: {l}")));
        let returned: Vec<&String> = self.lines.iter().filter(|l| l.contains("all frames returned")).collect();
        let missing: Vec<&String> = self.lines.iter().filter(|l| l.contains("KiB free after all VMs ended")).collect();
        for l in returned.iter().chain(&missing) {
            r.lines.push(format!("memory: {}", l.split("] ").nth(1).unwrap_or(l)));
        }
        r.problems.extend(missing.iter().map(|l| format!("frames lost: {l}")));
        if returned.is_empty() && missing.is_empty() {
            r.problems.push("the monitor printed no free-memory check at the end".into());
        }
    }

    pub fn ok(&self) -> bool {
        self.vms.iter().all(VmRun::ok)
    }

    pub fn vm(&self, name: &str) -> &VmRun {
        self.vms.iter().find(|v| v.name == name).expect("VM of the manifest")
    }

    /// `Err` naming the failed VMs, with the log tail.
    pub fn check(&self) -> Result<()> {
        let bad: Vec<String> =
            self.vms.iter().filter(|v| !v.ok()).map(|v| format!("vm {}: {}", v.name, v.describe())).collect();
        if bad.is_empty() {
            return Ok(());
        }
        bail!("{}\nlog: {}\nlast {TAIL_LINES} lines:\n{}", bad.join("\n"), self.log, self.tail)
    }
}

/// Drives a session until QEMU exits (or the monitor says all VMs ended),
/// every VM's exec has ended, or `timeout`; QEMU is always killed before
/// returning. A crash that the monitor follows with a restart is not an end.
pub fn run_multi(s: Session, names: &[&str], timeout: Duration) -> Result<MultiOutcome> {
    run_multi_with(s, names, timeout, &mut ())
}

/// What a caller of [`run_multi_with`] does beside the judging: sees
/// every line as it arrives, and is asked at least every [`TICK`] while
/// the console is quiet (a watchdog may type a console command).
pub trait Observer {
    fn line(&mut self, _line: &str, _s: &mut Session) {}
    fn quiet(&mut self, _s: &mut Session) {}
}

impl Observer for () {}

/// How often a quiet console asks the [`Observer`].
pub const TICK: Duration = Duration::from_secs(5);

/// [`run_multi`] with an [`Observer`].
pub fn run_multi_with(
    mut s: Session,
    names: &[&str],
    timeout: Duration,
    observer: &mut dyn Observer,
) -> Result<MultiOutcome> {
    let deadline = s.started + timeout;
    let mut w = MultiWatcher::new(names.iter().copied());
    let mut lines = Vec::new();
    let mut done_at: Option<Instant> = None;
    let mut why: Option<String> = None;
    loop {
        let limit = done_at.map_or(deadline, |t| (t + EXIT_GRACE).min(deadline));
        match s.next(limit.min(Instant::now() + TICK)) {
            Event::Timeout if Instant::now() < limit => observer.quiet(&mut s),
            Event::Line(l) => {
                observer.line(&l, &mut s);
                w.feed(&l);
                lines.push(l);
                if let Some(f) = &w.fatal {
                    why = Some(f.clone());
                    break;
                }
                if w.all_ended {
                    // Let the power-off finish (QEMU exits at once).
                    done_at.get_or_insert_with(Instant::now);
                }
                if w.all_done() && done_at.is_none() {
                    done_at = Some(Instant::now());
                }
                if !w.all_done() {
                    done_at = done_at.filter(|_| w.all_ended);
                }
            }
            Event::Exit(st) => {
                if !st.success() {
                    why = Some(format!("QEMU exited with status {}", code(st)));
                }
                break;
            }
            Event::Timeout if done_at.is_some() && Instant::now() < deadline => {
                if !w.all_ended {
                    why = Some(format!(
                        "every VM ended but the monitor did not power off within {}s",
                        EXIT_GRACE.as_secs()
                    ));
                }
                break;
            }
            Event::Timeout => {
                why = Some(format!("timed out after {}s", timeout.as_secs()));
                break;
            }
        }
    }
    s.kill();
    for vm in &mut w.vms {
        if vm.end.is_none() || (why.is_some() && vm.ok()) {
            let r = why.clone().unwrap_or_else(|| "QEMU exited without its DISCO-EXEC-END".into());
            if vm.end.is_none() {
                vm.end = Some(VmEnd::Failed(if vm.watcher.ready { r } else { format!("{r} (before {READY})") }));
            }
        }
    }
    if let Some(why) = &why {
        // A run-level failure fails the run even when each VM looked fine.
        if w.vms.iter().all(VmRun::ok) {
            w.vms[0].end = Some(VmEnd::Failed(why.clone()));
        }
    }
    Ok(MultiOutcome { vms: w.vms, lines, log: crate::util::rel(&s.log_path), tail: s.tail(TAIL_LINES) })
}

#[cfg(test)]
mod multi_tests {
    use super::*;

    #[test]
    fn two_vms_one_restarts() {
        let mut w = MultiWatcher::new(["a", "b"]);
        for l in [
            "disco: [  0.100 cpu0] vm a started: 2 vCPUs",
            "[a] DISCO-READY",
            "[b] DISCO-READY",
            "[a] DISCO-EXEC-BEGIN",
            "[b] DISCO-EXEC-BEGIN",
            "[b] Kernel panic - not syncing: sysrq triggered crash",
            "disco: [  3.000 cpu2] error: vm b ended: crashed: guest panic",
            "[a] sum=42",
            "disco: [  3.100 cpu2] vm b restarting (restart = on-crash, boot 2)",
            "[a] DISCO-EXEC-END status=0",
            "disco: [  4.000 cpu0] vm a ended: powered off",
            "[b] DISCO-READY",
            "[b] DISCO-EXEC-BEGIN",
            "[b] sum=43",
            "[b] DISCO-EXEC-END status=0",
            "disco: [  9.000 cpu2] vm b ended: powered off",
            "disco: [  9.100 cpu2] node 0: all frames returned (1000 KiB free)",
            "disco: [  9.100 cpu2] all VMs ended; powering off",
        ] {
            w.feed(l);
        }
        assert!(w.all_ended && w.all_done() && w.fatal.is_none());
        assert_eq!(w.vms[0].output, ["sum=42"]);
        assert_eq!(w.vms[1].output, ["sum=43"]);
        assert!(w.vms.iter().all(VmRun::ok));
        assert_eq!((w.vms[1].reboots, w.vms[1].crashes.len()), (1, 1));
    }

    #[test]
    fn crash_without_restart_and_silent_poweroff() {
        let mut w = MultiWatcher::new(["a", "b"]);
        w.feed("disco: [  3.000 cpu2] error: vm a ended: crashed: stage-2 fault at 0x0");
        w.feed("disco: [  4.000 cpu2] vm b ended: powered off");
        assert_eq!(w.vms[0].end, Some(VmEnd::Crashed("stage-2 fault at 0x0".into())));
        assert!(matches!(w.vms[1].end, Some(VmEnd::Failed(_))));
        assert_eq!(
            monitor_vm_line("disco: [  1.234 cpu0] vm a-1 reset: booting it again"),
            Some(("a-1", "reset: booting it again"))
        );
    }
}
