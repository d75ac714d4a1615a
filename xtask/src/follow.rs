//! Runs of the monitor that the caller steers while they run: a manifest's
//! VMs on a machine, optionally under the ccNUMA plugin, with console input
//! attached (`Ctrl-] m` moves a VM), followed line by line until the
//! monitor powers off. Used by the placement tests and `bench placement`.

use crate::boot::{self, Boot, Env};
use crate::exec::TAIL_LINES;
use crate::qemu::{Event, Session};
use crate::util::{rel, root};
use crate::{machine, manifest, numasim};
use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// How long QEMU may take to exit after the monitor's last line (the
/// plugin writes its report at exit).
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// Starts QEMU on `machine` with the VMs of manifest `text`, console input
/// attached, under the ccNUMA plugin with `numa_sim` parameters if given.
/// Keep the returned [`numasim::Sim`] until QEMU has exited.
pub fn spawn(
    env: &mut Env,
    machine: &str,
    tag: &str,
    text: &str,
    numa_sim: Option<&str>,
) -> Result<(Session, Option<numasim::Sim>)> {
    let m = machine::load(machine)?;
    let man = manifest::parse(&format!("<{tag} manifest>"), text, &m, &root())?;
    let b = Boot {
        machine: m.clone(),
        native: false,
        native_like_vm: false,
        exec: None, // the caller reads the plugin's report itself, if at all
        vm: Default::default(),
        tag: tag.to_string(),
        placement: Default::default(),
    };
    let cmd = boot::manifest_command(env, &m, &man, &b.tag, false)?;
    let (cmd, sim) = numasim::for_run(&b, cmd, numa_sim)?;
    Ok((Session::spawn_with_input(cmd, &b.tag)?, sim))
}

/// A failure with the run's log path and tail.
pub fn fail(s: &Session, why: String) -> anyhow::Error {
    anyhow!("{why}\nlog: {}\nlast {TAIL_LINES} lines:\n{}", rel(&s.log_path), s.tail(TAIL_LINES))
}

/// Follows the run until the monitor says `all VMs ended` and QEMU exits,
/// calling `act` on every console line and, if `every` is set, also with
/// `None` each time that much passes without one. Fails on a monitor
/// panic, a crashed VM or `timeout`. Returns every line; QEMU is gone
/// afterwards.
pub fn follow(
    s: &mut Session,
    timeout: Duration,
    every: Option<Duration>,
    mut act: impl FnMut(&mut Session, Option<&str>) -> Result<()>,
) -> Result<Vec<String>> {
    let end = s.started + timeout;
    let mut lines = Vec::new();
    let mut tick = every.map(|d| Instant::now() + d);
    loop {
        let until = tick.map_or(end, |t| t.min(end));
        match s.next(until) {
            Event::Line(l) => {
                act(s, Some(&l))?;
                if l.contains("MONITOR PANIC") || l.contains("ended: crashed") {
                    return Err(fail(s, format!("the guest or the monitor failed: {l}")));
                }
                let done = l.contains("all VMs ended");
                lines.push(l);
                if done {
                    break;
                }
            }
            Event::Exit(_) => break,
            Event::Timeout if Instant::now() >= end => return Err(fail(s, "the VMs did not finish in time".into())),
            Event::Timeout => {
                act(s, None)?;
                tick = every.map(|d| Instant::now() + d);
            }
        }
    }
    let until = Instant::now() + EXIT_WAIT;
    while let Event::Line(l) = s.next(until) {
        lines.push(l);
    }
    s.kill();
    Ok(lines)
}
