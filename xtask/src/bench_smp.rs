//! `cargo xtask bench smp`: what the monitor costs a parallel CPU-bound
//! workload, for N = 1, 2, 4 vCPUs.
//!
//! For each N the same kernel and initramfs boot natively (limited to N CPUs
//! with `maxcpus=`) and as one VM with N vCPUs under the monitor, alternating
//! so drift in host load hits both alike. In the guest, N shell processes
//! each count to the same number, so with perfect scaling the time is the
//! same for every N. The guest times them itself (`/proc/uptime`), so boot
//! time is left out.

use crate::bench::{median, wrap};
use crate::boot::{Boot, Env, VmShape, VM_NAME};
use crate::exec;
use crate::machine::{self, Machine};
use crate::qemu::{self, Session};
use anyhow::{bail, Context, Result};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct SmpArgs {
    #[arg(long, short, default_value = "numa2")]
    pub machine: String,
    /// Runs of each kind per N (alternating native/monitor).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The Ns: vCPUs of the VM, CPUs of the native kernel.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4", value_name = "N,...")]
    pub vcpus: Vec<u32>,
    /// Shell loop iterations per process (150000: about 3 s under TCG).
    #[arg(long, default_value_t = 150_000)]
    pub iterations: u32,
}

/// The guest's result line starts with this.
const MARK: &str = "smp-bench:";

/// The guest command: `n` background subshells, each counting to `iters`
/// with busybox ash builtins only (one CPU-bound process, no forks, no I/O
/// until it prints its count), timed with `/proc/uptime` around them.
fn script(n: u32, iters: u32) -> String {
    format!(
        "read t0 x < /proc/uptime\n\
         j=0\n\
         while [ $j -lt {n} ]; do (i=0; while [ $i -lt {iters} ]; do i=$((i+1)); done; echo \"job $i\") & j=$((j+1)); done\n\
         wait\n\
         read t1 x < /proc/uptime\n\
         echo \"{MARK} nproc=$(nproc) t0=$t0 t1=$t1\"\n"
    )
}

/// Seconds the workload took, after checking the guest had `n` CPUs and all
/// `n` processes finished their count.
fn elapsed(output: &[String], n: u32, iters: u32) -> Result<f64> {
    let done = output.iter().filter(|l| l.trim() == format!("job {iters}")).count();
    let line = output.iter().find_map(|l| l.trim().strip_prefix(MARK)).context("no result line in the output")?;
    let field = |k: &str| -> Result<&str> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            .with_context(|| format!("no `{k}=` in `{MARK}{line}`"))
    };
    let nproc: u32 = field("nproc")?.parse().context("bad nproc")?;
    if nproc != n {
        bail!("the guest has {nproc} CPUs online, expected {n}");
    }
    if done as u32 != n {
        bail!("{done} of {n} processes printed `job {iters}`: {output:?}");
    }
    let t0: f64 = field("t0")?.parse().context("bad t0")?;
    let t1: f64 = field("t1")?.parse().context("bad t1")?;
    if t1 < t0 {
        bail!("the guest's uptime went backwards ({t0} -> {t1})");
    }
    Ok(t1 - t0)
}

/// One boot of the workload with `n` CPUs; the guest-measured seconds.
fn once(env: &mut Env, m: &Machine, native: bool, n: u32, iters: u32) -> Result<f64> {
    let kind = if native { "native" } else { "monitor" };
    let b = Boot {
        machine: m.clone(),
        native,
        native_like_vm: true,
        exec: Some(script(n, iters)),
        vm: VmShape { vcpus: n, ..VmShape::default() },
        tag: format!("bench-smp-{kind}-{n}"),
        placement: Default::default(),
    };
    // Boot (< 60 s even when slow) plus the whole workload on one host CPU at
    // a tenth of the expected speed.
    let timeout = Duration::from_secs(120 + u64::from(n) * u64::from(iters) / 5_000);
    let out = exec::run(Session::spawn(b.command(env, false)?, &b.tag, false)?, VM_NAME, timeout)?;
    elapsed(&out.output, n, iters)
}

/// The runs of one N and one kind.
#[derive(Default)]
struct Series {
    times: Vec<f64>,
    /// The first failure's first line; no further runs of this series.
    broken: Option<String>,
}

impl Series {
    fn cell(&self) -> (String, String) {
        match (&self.broken, self.times.is_empty()) {
            (Some(e), true) => ("failed".into(), e.clone()),
            (_, true) => ("-".into(), String::new()),
            _ => {
                let all: Vec<String> = self.times.iter().map(|t| format!("{t:.2}")).collect();
                (format!("{:.2} s", median(&self.times)), all.join(" "))
            }
        }
    }
}

pub fn smp_cmd(a: SmpArgs) -> Result<u8> {
    smp(&a.machine, a.runs, &a.vcpus, a.iterations).map(|_| 0)
}

/// `cargo xtask bench smp`.
pub fn smp(machine_name: &str, runs: usize, ns: &[u32], iters: u32) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if iters == 0 {
        bail!("--iterations must be at least 1");
    }
    let m = machine::load(machine_name)?;
    if ns.is_empty() {
        bail!("--vcpus needs at least one N");
    }
    if let Some(n) = ns.iter().find(|&&n| n == 0 || n as usize > m.cpus()) {
        bail!(
            "--vcpus {n}: N must be 1..={} (the CPUs of {}, which the native baseline is limited to)",
            m.cpus(),
            m.name
        );
    }
    let mut env = Env::prepare()?;
    let mut rows: Vec<[Series; 2]> = ns.iter().map(|_| Default::default()).collect();
    for run in 1..=runs {
        for (&n, row) in ns.iter().zip(&mut rows) {
            for (s, native) in row.iter_mut().zip([true, false]) {
                let kind = if native { "native" } else { "monitor" };
                if s.broken.is_some() {
                    continue;
                }
                match once(&mut env, &m, native, n, iters) {
                    Ok(t) => {
                        eprintln!("bench: N={n} {kind} run {run}/{runs}: {t:.2} s");
                        s.times.push(t);
                    }
                    Err(e) => {
                        eprintln!("bench: N={n} {kind} run {run} failed; skipping its remaining runs:\n{e:#}");
                        s.broken = Some(format!("{e}").lines().next().unwrap_or_default().to_string());
                    }
                }
            }
        }
    }
    let vm = VmShape::default();
    println!(
        "parallel CPU-bound workload on {} ({} nodes x {} CPUs): N processes x {iters} shell loop iterations, guest {} MiB",
        m.name, m.nodes, m.cpus_per_node, vm.memory_mib
    );
    println!(
        "{:>3}  {:>14}  {:>14}  {:>14}  runs native | monitor",
        "N", "native median", "monitor median", "monitor/native"
    );
    for (&n, [nat, mon]) in ns.iter().zip(&rows) {
        let ((nm, nr), (mm, mr)) = (nat.cell(), mon.cell());
        let ratio = match (nat.times.is_empty(), mon.times.is_empty()) {
            (false, false) => format!("{:.2}", median(&mon.times) / median(&nat.times)),
            _ => "-".into(),
        };
        println!("{n:>3}  {nm:>14}  {mm:>14}  {ratio:>14}  {nr} | {mr}");
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let method = format!(
        "method: for each N, the same Debian kernel {} and initramfs boot natively on {} (kernel limited with \
         maxcpus=N mem={}M) and as VM {VM_NAME} with N vCPUs and {} MiB under the monitor; {runs} runs of each \
         per N, alternating native/monitor, median reported. After boot the guest starts N background busybox \
         ash subshells that each count to {iters} with shell builtins (one CPU-bound process each: no forks, no \
         I/O), waits for all, and reports the time between reading /proc/uptime (10 ms resolution, the guest's \
         generic timer) before starting them and after the wait, so boot is excluded; it also checks nproc = N \
         and every count. Each process does the same work, so with perfect scaling every N takes as long as \
         N=1. QEMU: {} (TCG, one host thread per vCPU), machine {} with {} CPUs; host: {cpus} CPUs. Where N is \
         larger than the host's CPUs (N=4 on a 2-core host) QEMU's vCPU threads share host CPUs, so times grow \
         with N in both columns and absolute scaling says nothing; the monitor/native ratio at each N is the \
         result.",
        env.guest.release,
        m.name,
        vm.memory_mib,
        vm.memory_mib,
        qemu::version(),
        m.name,
        m.cpus()
    );
    println!("{}", wrap(&method, 100));
    if rows.iter().flatten().any(|s| s.broken.is_some()) {
        bail!("some runs failed (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_guest_result() {
        let out = lines(&["job 100", "job 100", "smp-bench: nproc=2 t0=1.37 t1=4.53"]);
        assert!((elapsed(&out, 2, 100).unwrap() - 3.16).abs() < 1e-9);
    }

    #[test]
    fn rejects_wrong_cpus_missing_jobs_and_garbage() {
        let e = |v: &[&str], n| elapsed(&lines(v), n, 100).unwrap_err().to_string();
        assert!(e(&["job 100", "smp-bench: nproc=4 t0=1 t1=2"], 1).contains("4 CPUs online, expected 1"));
        assert!(e(&["job 100", "smp-bench: nproc=2 t0=1 t1=2"], 2).contains("1 of 2 processes"));
        assert!(e(&["job 100"], 1).contains("no result line"));
        assert!(e(&["job 100", "smp-bench: nproc=1 t0=1"], 1).contains("no `t1=`"));
        assert!(e(&["job 100", "smp-bench: nproc=1 t0=3 t1=2"], 1).contains("backwards"));
    }

    #[test]
    fn script_starts_n_jobs_of_the_same_work() {
        let s = script(4, 1234);
        assert!(s.contains("[ $j -lt 4 ]") && s.contains("[ $i -lt 1234 ]") && s.contains(MARK));
    }
}
