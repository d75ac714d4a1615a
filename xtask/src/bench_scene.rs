//! The `scene` workload of `cargo xtask bench placement`: Disco's
//! raytrace shape (issue 12, item 7). `sharedscan` fills a read-only scene
//! of `--mib` MiB from CPU 0, then a worker on every CPU reads all of it
//! `--passes / 10` times in each of two phases (the two regions of
//! interest, summed here), writing private output. The scene is read by
//! every node, so migration cannot make it local; replication can.
//!
//! Modes: first-touch, migrate and replicate under the monitor (one VM, a
//! vCPU per CPU, home node 0), the all-local bound (first-touch with every
//! miss costing the local latency: what the run would cost if each node
//! had its own copy from the start), and native Linux with NUMA balancing
//! off and on.

use crate::boot::Env;
use crate::follow::{follow, spawn};
use crate::machine::Machine;
use crate::numasim_bench::{native_run, numa_balancing_script};
use crate::numasim_json::Json;
use crate::placement_runs::{roi_at, vm_stat, PlacementArgs, Row, SCAN_MS, TIMEOUT};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// The plugin's default local miss latency (`local_ns`).
const LOCAL_NS: &str = "300";

/// Passes per phase: a tenth of `--passes`, at least 2 (the first phase
/// must outlast a watch and a replication interval).
fn passes(a: &PlacementArgs) -> u32 {
    (a.passes / 10).max(2)
}

fn command(a: &PlacementArgs, cpus: usize) -> String {
    format!("sharedscan {} {cpus} {} 0", a.mib, passes(a))
}

/// sharedscan's sum of the scene (word i = i * K), which it prints twice
/// (`before S after S`: no patch here).
fn expected_line(mib: u32) -> String {
    let words = ((mib as u64) << 20) / 8;
    let sum = (0..words).fold(0u64, |s, i| s.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    format!("sharedscan: before {sum} after {sum}")
}

fn checksum_ok(output: &[String], a: &PlacementArgs) -> bool {
    let want = expected_line(a.mib);
    output.iter().any(|l| l.trim_end() == want)
}

/// Both phases: simulated CPU ms summed, local share over all their misses.
fn both_phases(report: &Json) -> Result<(f64, f64)> {
    let (ms0, pct0) = roi_at(report, 0)?;
    let (ms1, pct1) = roi_at(report, 1)?;
    // Weighted by time: the phases do the same work.
    Ok((ms0 + ms1, (pct0 * ms0 + pct1 * ms1) / (ms0 + ms1).max(f64::MIN_POSITIVE)))
}

/// The scene's rows: monitor modes, the all-local bound, native Linux.
pub fn rows(env: &mut Env, m: &Machine, a: &PlacementArgs, initrd: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let bound = format!("{}{}remote_ns={}", a.params, if a.params.is_empty() { "" } else { "," }, local_ns(a));
    for (label, mode, params) in [
        ("first-touch", "first-touch", a.params.clone()),
        ("migrate", "migrate", a.params.clone()),
        ("replicate", "replicate", a.params.clone()),
        ("all-local bound", "first-touch", bound),
    ] {
        let r = monitor(env, m, a, initrd, label, mode, &params)?;
        eprintln!("bench: scene / {label}: {:.1} ms simulated, {:.1}% local", r.sim_ms, r.local_pct);
        rows.push(r);
    }
    if !a.no_native {
        for on in [false, true] {
            let cmd = format!(
                "{}numactl --physcpubind=0 {} || exit 1\ngrep -E '^numa_pages_migrated ' /proc/vmstat",
                numa_balancing_script(on, SCAN_MS),
                command(a, m.cpus())
            );
            let tag = format!("bench-placement-scene-native-{}", if on { "on" } else { "off" });
            let r = native_run(env, m, &cmd, &a.params, &tag)?;
            let row = Row::native(
                "scene",
                on,
                both_phases(&r.report)?,
                &r.output,
                r.wall.as_secs_f64(),
                checksum_ok(&r.output, a),
            );
            eprintln!("bench: scene / {}: {:.1} ms simulated, {:.1}% local", row.mode, row.sim_ms, row.local_pct);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The local latency the bound charges every miss: `--params`' own
/// `local_ns` if it sets one.
fn local_ns(a: &PlacementArgs) -> &str {
    a.params.split(',').find_map(|kv| kv.trim().strip_prefix("local_ns=")).unwrap_or(LOCAL_NS)
}

fn monitor(
    env: &mut Env,
    m: &Machine,
    a: &PlacementArgs,
    initrd: &Path,
    label: &'static str,
    mode: &str,
    params: &str,
) -> Result<Row> {
    let policy = match a.placement_params.as_str() {
        "" => String::new(),
        p => format!("placement_params = \"{p}\"\n"),
    };
    let memory = (a.mib + 256).next_multiple_of(64);
    let text = format!(
        "placement = \"{mode}\"\n{policy}\n[[vm]]\nname = \"w\"\nvcpus = {}\nmemory = \"{memory}M\"\nhome_node = 0\n\
         initrd = \"{}\"\nexec = '''\n{}\n'''\n",
        m.cpus(),
        initrd.display(),
        command(a, m.cpus())
    );
    let tag = format!("bench-placement-scene-{}", label.replace(' ', "-"));
    let t = Instant::now();
    let (mut s, sim) = spawn(env, &m.name, &tag, &text, Some(params))?;
    let sim = sim.expect("numa-sim requested");
    let lines = follow(&mut s, TIMEOUT, None, |_, _| Ok(()))?;
    let wall_s = t.elapsed().as_secs_f64();
    let report = sim.read_report()?;
    let output: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix("[w] ")).map(String::from).collect();
    let migrated = vm_stat(&lines, "placement: migrated ").unwrap_or(0);
    let replicated = vm_stat(&lines, "replication: replicated ").unwrap_or(0);
    let charged_ns = report.path("charged.sim_ns").unwrap_or(0.0);
    let (sim_ms, local_pct) = both_phases(&report)?;
    let moved = migrated + replicated;
    Ok(Row {
        workload: "scene",
        mode: label,
        sim_ms,
        local_pct,
        migrated: Some(migrated),
        replicated: Some(replicated),
        us_per_page: (moved > 0).then(|| charged_ns / 1e3 / moved as f64),
        wall_s,
        checksum_ok: checksum_ok(&output, a),
    })
}

/// The method text for the scene rows.
pub fn method(a: &PlacementArgs) -> String {
    format!(
        "Scene: `{}` in one VM with a vCPU per CPU (home node 0): the parent fills a {} MiB shared scene, then a \
         worker pinned to each CPU reads one word of every 64 B line of it {} times in each of two phases (the two \
         regions of interest, summed); 'local %' is over both. The all-local bound is first-touch with remote_ns = \
         local_ns ({} ns): every miss at local cost. 'us/page' divides the charged mover work by pages migrated plus \
         replicas made. Natively the parent is pinned to CPU 0.",
        format!("sharedscan {} CPUS {} 0", a.mib, passes(a)),
        a.mib,
        passes(a),
        local_ns(a)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn expected_sum_is_sharedscans() {
        // 1 MiB: words 0..131072 times K, wrapping.
        let k = 0x9e37_79b9_7f4a_7c15u64;
        let sum = (0..131072u64).fold(0u64, |s, i| s.wrapping_add(i.wrapping_mul(k)));
        assert_eq!(super::expected_line(1), format!("sharedscan: before {sum} after {sum}"));
    }
}
