//! numa-sim experiments on native Linux: the validation test (issue 4),
//! `cargo xtask bench autonuma` (Linux's own NUMA balancing, the baseline
//! page migration must beat) and `cargo xtask bench numa-sim-cost` (what the
//! instrument costs a Linux boot).

use crate::bench::median;
use crate::boot::{Boot, Env, VmShape, VM_NAME};
use crate::exec;
use crate::machine::{self, Machine};
use crate::numasim::{payload, Sim};
use crate::numasim_json::Json;
use crate::qemu::{self, Session};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(300);
/// memloop in the validation: 32 MiB (32x the modelled cache) read 4 times.
const VALIDATE_LOOP: &str = "memloop 32 4";

/// One instrumented native run.
pub struct Measured {
    pub report: Json,
    pub output: Vec<String>,
    pub wall: Duration,
    /// Sum of the counters in the shared counter region after the run.
    pub region_total: u64,
}

/// Boots the native kernel on `m` under numa-sim, runs `cmd` in the guest.
pub fn native_run(env: &mut Env, m: &Machine, cmd: &str, params: &str, tag: &str) -> Result<Measured> {
    let b = Boot {
        machine: m.clone(),
        native: true,
        native_like_vm: false,
        exec: Some(cmd.into()),
        vm: VmShape::default(),
        tag: tag.into(),
        placement: Default::default(),
    };
    let sim = Sim::new(m, params, tag)?;
    let qcmd = sim.wrap(&b.command(env, false)?, true, Some(&payload()?))?;
    let t = Instant::now();
    let out = exec::run(Session::spawn(qcmd, tag, false)?, VM_NAME, TIMEOUT)?;
    let wall = t.elapsed();
    let (_, region_total) = sim.read_region()?;
    Ok(Measured { report: sim.read_report()?, output: out.output, wall, region_total })
}

/// The first region of interest as seen from the CPU that opened it.
#[derive(Debug, Clone, Copy)]
pub struct RoiView {
    pub cpu: usize,
    pub insns: f64,
    pub misses: f64,
    pub local_pct: f64,
    pub sim_ms: f64,
}

pub fn roi(r: &Json) -> Result<RoiView> {
    let cpu =
        r.path("roi.0.begin_vcpu").context("no region of interest in the report (memloop did not run?)")? as usize;
    let p = |f: &str| r.path(&format!("roi.0.cpus.{cpu}.{f}"));
    Ok(RoiView {
        cpu,
        insns: p("insns")?,
        misses: p("local_misses")? + p("remote_misses")?,
        local_pct: p("local_pct")?,
        sim_ms: p("sim_ns")? / 1e6,
    })
}

/// Test: on numa2, memloop on CPU 0 with memory bound to node 1 takes at
/// least 90% remote misses, bound to node 0 at most 10%, and the simulated
/// time ratio matches the one the configured latencies predict (10%).
pub fn validate_test(env: &mut Env, _native: bool) -> Result<()> {
    let m = machine::load("numa2")?;
    let run = |env: &mut Env, node: usize| -> Result<(RoiView, Measured)> {
        let cmd = format!("numactl --physcpubind=0 --membind={node} {VALIDATE_LOOP}");
        let r = native_run(env, &m, &cmd, "", &format!("test-numasim-mem{node}"))?;
        if !r.output.iter().any(|l| l.starts_with("memloop: ")) {
            bail!("memloop printed nothing: {:?}", r.output);
        }
        Ok((roi(&r.report)?, r))
    };
    let (local, lr) = run(env, 0)?;
    let (remote, rr) = run(env, 1)?;
    let lat = |k: &str| lr.report.path(&format!("config.{k}"));
    let (l_ns, r_ns, i_ns) = (lat("local_ns")?, lat("remote_ns")?, lat("insn_ns")?);
    // What the model predicts for the remote run from the local run's counts.
    let predicted = (local.insns * i_ns + local.misses * r_ns) / (local.insns * i_ns + local.misses * l_ns);
    let ratio = remote.sim_ms / local.sim_ms;
    println!(
        "  numa-sim: membind=0: {:.2}% local of {:.0} misses, {:.1} ms; membind=1: {:.2}% local of {:.0} misses, {:.1} ms; \
         time ratio {ratio:.3} (predicted {predicted:.3}, latency ratio {:.1}); wall {:.1} s + {:.1} s",
        local.local_pct, local.misses, local.sim_ms, remote.local_pct, remote.misses, remote.sim_ms, r_ns / l_ns,
        lr.wall.as_secs_f64(), rr.wall.as_secs_f64()
    );
    let lines = 32.0 * 4.0 * (1 << 20) as f64 / 64.0;
    for (name, v) in [("membind=0", &local), ("membind=1", &remote)] {
        if v.cpu != 0 || v.misses < 0.9 * lines {
            bail!("{name}: expected ~{lines} misses on CPU 0 in the region of interest, got {v:?}");
        }
    }
    if 100.0 - remote.local_pct < 90.0 {
        bail!("memory on node 1: only {:.2}% remote misses (want >= 90%)", 100.0 - remote.local_pct);
    }
    if 100.0 - local.local_pct > 10.0 {
        bail!("memory on node 0: {:.2}% remote misses (want <= 10%)", 100.0 - local.local_pct);
    }
    if (ratio / predicted - 1.0).abs() > 0.10 {
        bail!("simulated time ratio {ratio:.3} differs from the predicted {predicted:.3} by more than 10%");
    }
    for (name, r) in [("membind=0", &lr), ("membind=1", &rr)] {
        let roi_misses = if name == "membind=0" { local.misses } else { remote.misses };
        if (r.region_total as f64) < roi_misses {
            bail!(
                "{name}: the shared counter region holds {} misses, fewer than the {roi_misses} of the ROI",
                r.region_total
            );
        }
    }
    Ok(())
}

/// Options of `cargo xtask bench autonuma`.
#[derive(clap::Args, Debug)]
pub struct AutonumaArgs {
    #[arg(long, short, default_value = "numa2")]
    machine: String,
    /// memloop buffer size.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    mib: u32,
    /// memloop passes over the buffer.
    #[arg(long, default_value_t = 40)]
    passes: u32,
    /// NUMA balancing scan delay and minimum scan period (max = 4x).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    scan_ms: u32,
    /// numa-sim parameters (k=v,...), as for `run --numa-sim=`.
    #[arg(long, default_value = "", value_name = "PARAMS")]
    params: String,
}

/// Options of `cargo xtask bench numa-sim-cost`.
#[derive(clap::Args, Debug)]
pub struct CostArgs {
    #[arg(long, short, default_value = "numa2")]
    machine: String,
    /// Boots of each kind (interleaved).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn autonuma_cmd(a: AutonumaArgs) -> Result<u8> {
    autonuma(&a.machine, a.mib, a.passes, a.scan_ms, &a.params).map(|_| 0)
}

pub fn cost_cmd(a: CostArgs) -> Result<u8> {
    cost(&a.machine, a.runs).map(|_| 0)
}

/// Guest shell lines that turn Linux's NUMA balancing on or off and set its
/// scan delay and minimum period to `scan_ms` (maximum 4x), via debugfs.
pub fn numa_balancing_script(on: bool, scan_ms: u32) -> String {
    format!(
        "echo {} > /proc/sys/kernel/numa_balancing\n\
         mount -t debugfs none /sys/kernel/debug 2>/dev/null\n\
         d=/sys/kernel/debug/sched/numa_balancing\n\
         for f in scan_delay_ms scan_period_min_ms; do echo {scan_ms} > $d/$f; done\n\
         echo {} > $d/scan_period_max_ms\n",
        u8::from(on),
        scan_ms * 4
    )
}

/// `cargo xtask bench autonuma`.
pub fn autonuma(machine_name: &str, mib: u32, passes: u32, scan_ms: u32, params: &str) -> Result<()> {
    let m = machine::load(machine_name)?;
    let Some(far) = m.far_cpu_node().filter(|_| m.cpus_per_node[0] > 0) else {
        bail!("autonuma needs a machine with CPUs on node 0 and on another node");
    };
    let mut env = Env::prepare()?;
    let from = m.node_cpus(far).start;
    let mut rows = Vec::new();
    for on in [0, 1] {
        // Touch the buffer on the last node's first CPU, then run on CPU 0.
        let cmd = format!(
            "{}numactl --physcpubind={from} memloop {mib} {passes} 0 || exit 1\n\
             grep -E '^(numa_pages_migrated|numa_hint_faults) ' /proc/vmstat",
            numa_balancing_script(on == 1, scan_ms)
        );
        let r = native_run(&mut env, &m, &cmd, params, &format!("bench-autonuma-{on}"))?;
        let v = roi(&r.report)?;
        let migrated = r.output.iter().find_map(|l| l.strip_prefix("numa_pages_migrated ")).unwrap_or("?").to_string();
        eprintln!("bench: numa_balancing={on}: {:.1} ms simulated, {:.1}% local", v.sim_ms, v.local_pct);
        rows.push((on, v, migrated, r.wall));
    }
    println!(
        "autonuma on {} ({} nodes x {} CPUs): memloop {mib} MiB x {passes} passes, memory touched on CPU {from} (node {}), then run on CPU 0 (node 0)",
        m.name, m.nodes, m.cpus_per_node, far
    );
    println!("numa_balancing  simulated ms  local-miss %  misses      pages migrated  wall s");
    for (on, v, migrated, wall) in &rows {
        println!(
            "{:14}  {:12.1}  {:12.2}  {:10.0}  {:>14}  {:6.1}",
            if *on == 1 { "on" } else { "off" },
            v.sim_ms,
            v.local_pct,
            v.misses,
            migrated,
            wall.as_secs_f64()
        );
    }
    println!("speedup (off/on simulated time): {:.2}", rows[0].1.sim_ms / rows[1].1.sim_ms);
    println!(
        "method: native Debian kernel under the numa-sim plugin (defaults unless --params: 1 MiB 8-way per-CPU cache, \
         64 B lines, 300/900 ns local/remote at distance 10/20, 1 ns per instruction, instruction fetches modelled); simulated time and misses of \
         CPU 0 between memloop's markers (after the move). NUMA balancing scan delay/min period {scan_ms} ms, max {} ms \
         (debugfs). QEMU: {}.",
        scan_ms * 4,
        qemu::version()
    );
    Ok(())
}

/// `cargo xtask bench numa-sim-cost`: a native Linux boot (to the exec
/// command `true` and poweroff) with and without the plugin.
pub fn cost(machine_name: &str, runs: usize) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let m = machine::load(machine_name)?;
    let mut env = Env::prepare()?;
    let kinds: [(&str, Option<&str>); 4] =
        [("plain", None), ("numa-sim", Some("")), ("data-only", Some("ifetch=off")), ("no-filter", Some("filter=off"))];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for run in 1..=runs {
        for (k, (name, params)) in kinds.iter().enumerate() {
            let tag = format!("bench-numasim-cost-{name}");
            let b = Boot {
                machine: m.clone(),
                native: true,
                native_like_vm: false,
                exec: Some("true".into()),
                vm: VmShape::default(),
                tag: tag.clone(),
                placement: Default::default(),
            };
            let cmd = b.command(&mut env, false)?;
            let sim = params.map(|p| Sim::new(&m, p, &tag)).transpose()?;
            let cmd = match &sim {
                Some(s) => s.wrap(&cmd, true, None)?,
                None => cmd,
            };
            let t = Instant::now();
            exec::run(Session::spawn(cmd, &tag, false)?, VM_NAME, TIMEOUT)?;
            let s = t.elapsed().as_secs_f64();
            eprintln!("bench: {name} run {run}/{runs}: {s:.2} s");
            times[k].push(s);
        }
    }
    println!(
        "numa-sim cost: native Linux boot to poweroff on {} ({} nodes x {} CPUs)",
        m.name, m.nodes, m.cpus_per_node
    );
    let base = median(&times[0]);
    for (k, (name, params)) in kinds.iter().enumerate() {
        let md = median(&times[k]);
        let all: Vec<String> = times[k].iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "{name:10} median {md:6.2} s  slowdown {:.2}x  (params {:?}; runs: {})",
            md / base,
            params.unwrap_or("-"),
            all.join(" ")
        );
    }
    println!(
        "method: wall time from spawning QEMU to its exit; the guest runs `true` and powers off; {runs} runs of each, \
         interleaved, median. QEMU: {}; host: {} CPUs.",
        qemu::version(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    Ok(())
}
