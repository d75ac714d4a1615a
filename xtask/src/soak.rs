//! `cargo xtask soak --minutes M` (issue 16, item 8): eight guests of mixed
//! load at once for M minutes, then a report of what a long run does to
//! the monitor: monitor faults, VM restarts, wrong results, and each
//! node's free memory at the end against the start.
//!
//! The guests (busybox, one vCPU each; each loops until its uptime passes
//! M minutes, checking every result, then prints `SOAK NAME rounds=N
//! errors=E`):
//! - `compute0/1`: md5 of `seq 1 20000` against the host's;
//! - `memory0/1`: fill 96 MiB of a tmpfs with zeros, check its md5, free it;
//! - `disk0/1`: 4 MiB of random data raw to a persistent disk, page cache
//!   dropped, read back and compared;
//! - `crash0/1` (`restart = "on-crash"`): each boot computes, then crashes
//!   its kernel (sysrq) or resets (`reboot -f`), alternately, until its
//!   boot number passes the restarts the length allows; the last boot
//!   reports like the others.
//!
//! CI runs the 1-minute version (the `soak` step of `cargo xtask test`).

use crate::boot::{self, Env};
use crate::exec::{self, MultiOutcome, Report};
use crate::qemu::Session;
use crate::util::{host_md5, root, write_if_changed};
use crate::{machine, manifest};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long the guests keep their load up.
    #[arg(long, default_value_t = 1.0)]
    pub minutes: f64,
    #[arg(long, short, default_value = "numa2")]
    pub machine: String,
}

impl SoakArgs {
    /// The `soak` step of `cargo xtask test`: one minute on numa2.
    pub fn ci() -> Self {
        SoakArgs { minutes: 1.0, machine: "numa2".into() }
    }
}

/// The md5 each compute round must print: of `seq 1 20000`.
const SEQ_N: u32 = 20_000;
/// MiB a memory guest fills per round, and its VM's size.
const FILL_MIB: u32 = 96;
/// Restarts a crashing guest makes per minute of the run (at least one):
/// under TCG each boot takes about a minute of wall time among 8 VMs.
const RESTARTS_PER_MINUTE: f64 = 1.0;

/// The loop every load guest runs: `body` at least once and until uptime
/// passes `secs`, each round's check adding to `errors`. At least once:
/// under a loaded TCG host a second can pass between reading the start and
/// the first test (CI saw a restarted guest report `rounds=0`).
fn looped(name: &str, secs: u64, body: &str) -> String {
    format!(
        "end=$(( $(cut -d. -f1 /proc/uptime) + {secs} )); rounds=0; errors=0
while :; do
{body}
rounds=$((rounds + 1))
[ $(cut -d. -f1 /proc/uptime) -lt $end ] || break
done
echo \"SOAK {name} rounds=$rounds errors=$errors\""
    )
}

/// The run's manifest, and each guest's name.
fn manifest_text(minutes: f64) -> Result<(String, Vec<String>)> {
    let secs = (minutes * 60.0).round().max(1.0) as u64;
    let seq: String = (1..=SEQ_N).map(|i| format!("{i}\n")).collect();
    let seq_md5 = host_md5(seq.as_bytes())?;
    let zeros_md5 = host_md5(&vec![0u8; (FILL_MIB as usize) << 20])?;
    let compute = format!("[ \"$(seq 1 {SEQ_N} | md5sum | cut -d' ' -f1)\" = {seq_md5} ] || errors=$((errors + 1))");
    let memory = format!(
        "dd if=/dev/zero of=/soak/fill bs=1M count={FILL_MIB} 2>/dev/null
[ \"$(md5sum < /soak/fill | cut -d' ' -f1)\" = {zeros_md5} ] || errors=$((errors + 1))
rm /soak/fill"
    );
    // The data goes through a tmpfs of its own: the initramfs's root is
    // sized early in boot (11 MiB of a 128 MiB guest, 7 of them the
    // initramfs), so 4 MiB more did not fit once the archive grew.
    let disk = "dd if=/dev/urandom of=/soak/r bs=1M count=4 2>/dev/null
dd if=/soak/r of=/dev/vda bs=1M conv=fsync 2>/dev/null; echo 3 > /proc/sys/vm/drop_caches
[ \"$(head -c 4194304 /dev/vda | md5sum)\" = \"$(md5sum < /soak/r)\" ] || errors=$((errors + 1))";
    let restarts = ((minutes * RESTARTS_PER_MINUTE).round() as u32).max(1);
    let crash = |name: &str| {
        format!(
            "boot=$(grep -o 'disco.boot=[0-9]*' /proc/cmdline | cut -d= -f2)
if [ \"$boot\" -le {restarts} ]; then
  [ \"$(seq 1 {SEQ_N} | md5sum | cut -d' ' -f1)\" = {seq_md5} ] || echo \"SOAK-WRONG boot $boot\"
  if [ $((boot % 2)) = 1 ]; then echo c > /proc/sysrq-trigger; else reboot -f; fi
  sleep 60
fi
{}",
            looped(name, 1, &compute)
        )
    };
    let mut text = String::new();
    let mut names = Vec::new();
    // `keys` go before the exec, `tables` (its disks) after it.
    let mut vm = |name: String, mib: u32, keys: &str, exec: String, tables: String| {
        text += &format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"{mib}M\"\n{keys}exec = '''\n{exec}\n'''\n\n{tables}"
        );
        names.push(name);
    };
    let mount = format!("mkdir -p /soak && mount -t tmpfs -o size={}M soak /soak\n", FILL_MIB + 8);
    let scratch = "mkdir -p /soak && mount -t tmpfs -o size=8M soak /soak\n".to_string();
    for i in 0..2 {
        let name = |kind: &str| format!("{kind}{i}");
        vm(name("compute"), 128, "", looped(&name("compute"), secs, &compute), String::new());
        vm(name("memory"), 256, "", mount.clone() + &looped(&name("memory"), secs, &memory), String::new());
        let image = format!("[[vm.disk]]\nimage = \"soak-disk{i}\"\nmode = \"persistent\"\nsize = \"16M\"\n\n");
        vm(name("disk"), 128, "", scratch.clone() + &looped(&name("disk"), secs, disk), image);
        // Its boots: the first, and one after each crash or reset (the
        // monitor's default bound, 5, would end a long soak's early).
        let keys = format!("restart = \"on-crash\"\nmax_restarts = {}\n", restarts + 1);
        vm(name("crash"), 128, &keys, crash(&name("crash")), String::new());
    }
    Ok((text, names))
}

/// Reads the outcome: every guest's summary, restarts, monitor faults and
/// the free memory per node at the end against the start.
fn report(out: &MultiOutcome, minutes: f64) -> Report {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let restarts = ((minutes * RESTARTS_PER_MINUTE).round() as u32).max(1);
    for vm in &out.vms {
        let summary = vm.output.iter().find(|l| l.starts_with("SOAK ")).cloned().unwrap_or_default();
        let errors = crate::util::stat(&summary, "errors=");
        let rounds = crate::util::stat(&summary, "rounds=");
        lines.push(format!(
            "{:9} {:>14} rounds {:>4} errors {:>2} restarts {:>2}",
            vm.name,
            vm.describe(),
            rounds.map_or("-".into(), |r| r.to_string()),
            errors.map_or("-".into(), |e| e.to_string()),
            vm.reboots
        ));
        if !vm.ok() {
            problems.push(format!("vm {}: {}", vm.name, vm.describe()));
        }
        match (rounds, errors) {
            (Some(r), Some(0)) if r > 0 => {}
            _ => problems.push(format!("vm {}: `{summary}`: expected rounds > 0 and errors=0", vm.name)),
        }
        if vm.output.iter().any(|l| l.starts_with("SOAK-WRONG")) {
            problems.push(format!("vm {}: a boot computed a wrong result", vm.name));
        }
        if vm.name.starts_with("crash") && vm.reboots != restarts {
            problems.push(format!("vm {}: {} restarts, {restarts} expected", vm.name, vm.reboots));
        }
    }
    let mut r = Report { lines, problems };
    out.health(&mut r);
    r
}

/// One soak run; Err if it showed any problem.
pub fn run(env: &mut Env, a: &SoakArgs) -> Result<Report> {
    let m = machine::load(&a.machine)?;
    let (text, names) = manifest_text(a.minutes)?;
    let file = root().join(".cache/soak.toml");
    write_if_changed(&file, text.as_bytes())?;
    let man = manifest::parse(&file.display().to_string(), &text, &m, &root())?;
    let tag = "soak";
    let cmd = boot::manifest_command(env, &m, &man, tag, false)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Boots under TCG among 8 VMs take minutes; each restart another.
    let timeout = Duration::from_secs_f64(a.minutes * 60.0 * 3.0 + 900.0);
    let t0 = Instant::now();
    let out = exec::run_multi(Session::spawn(cmd, tag, false)?, &names, timeout)?;
    let mut r = report(&out, a.minutes);
    r.lines.push(format!("wall time {:.0} s; log {}", t0.elapsed().as_secs_f64(), out.log));
    if !r.problems.is_empty() {
        bail!("{}\n{}\nlast lines:\n{}", r.lines.join("\n"), r.problems.join("\n"), out.tail);
    }
    Ok(r)
}

/// `cargo xtask soak`.
pub fn main(a: SoakArgs) -> Result<u8> {
    let mut env = Env::prepare()?;
    println!(
        "soak: 8 guests (2 compute, 2 memory, 2 disk, 2 crashing and restarting) for {} min on {}; each checks \
         every result; the report is the monitor's faults, restarts and free memory per node at the end",
        a.minutes, a.machine
    );
    let r = run(&mut env, &a)?;
    for l in &r.lines {
        println!("{l}");
    }
    Ok(0)
}
