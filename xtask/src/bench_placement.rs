//! `cargo xtask bench placement`: what dynamic page migration buys, in the
//! ccNUMA plugin's simulated time (issue 11, item 11).
//!
//! Every run executes `memloop` (a memory-bound loop between the plugin's
//! region-of-interest markers) in one guest on a machine of two or more
//! nodes, under the plugin. Workloads, in the shapes of Disco's
//! engineering workload:
//! - `moved`: the process's data is first touched on a far node (the last
//!   one with CPUs), then the process runs on node 0 (under the monitor
//!   its VM is moved with `Ctrl-] m`; natively memloop moves itself to
//!   CPU 0);
//! - `hot-cold`: the same with a buffer of which only a quarter is hot;
//!   the cold rest must stay where it is;
//! - `local`: data touched and used on node 0: migration cannot gain, so
//!   it must not cost.
//!
//! - `scene` (`bench_scene.rs`): Disco's raytrace shape, a read-shared
//!   scene read by workers on every CPU: only replication can make it
//!   local.
//!
//! Modes: the monitor with first-touch placement, with migration (plugin
//! counters) and, for `scene`, with replication; the all-local bound (the
//! same workload started on node 0 under first-touch; for `scene`, every
//! miss at local latency), and the native Debian kernel with
//! `numa_balancing` off and on (as `bench autonuma`).

use crate::bench::wrap;
use crate::boot::Env;
use crate::follow::{fail, follow, spawn};
use crate::machine::{self, Machine};
use crate::numasim::payload;
use crate::numasim_bench::{native_run, numa_balancing_script};
use crate::numasim_json::Json;
use crate::placement_runs::{roi_at, vm_stat, PlacementArgs, Row, SCAN_MS, TIMEOUT};
use crate::qemu;
use crate::util::{cache_dir, rel, root, write_if_changed};
use anyhow::{bail, Context, Result};
use std::time::Instant;

/// memloop sleeps this long after touching its buffer (the VM moves then).
const WAIT_MS: u32 = 1000;

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    /// Buffer size as a multiple of the hot data.
    size_factor: u32,
    /// First touched on the far node, then used on node 0.
    moved: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload { name: "moved", size_factor: 1, moved: true },
    Workload { name: "hot-cold", size_factor: 4, moved: true },
    Workload { name: "local", size_factor: 1, moved: false },
];

pub fn placement_cmd(a: PlacementArgs) -> Result<u8> {
    let m = machine::load(&a.machine)?;
    let Some(far) = m.far_cpu_node().filter(|_| m.cpus_per_node[0] > 0) else {
        bail!("bench placement needs a machine with CPUs on node 0 and on another node ({} has not)", m.name);
    };
    if a.mib == 0 || a.passes == 0 {
        bail!("--mib and --passes must be at least 1");
    }
    let mut env = Env::prepare()?;
    let initrd = initrd_with_memloop(&env)?;
    let mut rows = Vec::new();
    for w in WORKLOADS.iter().filter(|w| a.only.as_deref().is_none_or(|o| w.name.contains(o))) {
        let mut modes: Vec<(&'static str, &str, bool)> = vec![("first-touch", "first-touch", w.moved)];
        modes.push(("migrate", "migrate", w.moved));
        modes.push(("replicate", "replicate", w.moved));
        if w.moved {
            modes.push(("all-local bound", "first-touch", false));
        }
        for (label, mode, moved) in modes {
            let r = monitor_run(&mut env, &m, far, &a, &initrd, w, label, mode, moved)?;
            eprintln!("bench: {} / {label}: {:.1} ms simulated, {:.1}% local", w.name, r.sim_ms, r.local_pct);
            rows.push(r);
        }
        if !a.no_native {
            for on in [false, true] {
                let r = native(&mut env, &m, far, &a, w, on)?;
                eprintln!("bench: {} / {}: {:.1} ms simulated, {:.1}% local", w.name, r.mode, r.sim_ms, r.local_pct);
                rows.push(r);
            }
        }
    }
    if a.only.as_deref().is_none_or(|o| "scene".contains(o)) {
        rows.extend(crate::bench_scene::rows(&mut env, &m, &a, &initrd)?);
    }
    let mut method = method(&m, far, &a);
    if rows.iter().any(|r| r.workload == "scene") {
        method = format!("{method} {}", crate::bench_scene::method(&a));
    }
    print_table(&m, &rows);
    println!("{}", wrap(&method, 100));
    let json = to_json(&m, &a, &rows, &method);
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("placement.json");
    std::fs::write(&path, json).with_context(|| format!("writing {}", rel(&path)))?;
    println!("json: {}", rel(&path));
    if rows.iter().any(|r| !r.checksum_ok) {
        bail!("a run computed a wrong checksum (see the table)");
    }
    Ok(0)
}

/// The base guest initramfs plus memloop, sharedscan and numactl.
pub(crate) fn initrd_with_memloop(env: &Env) -> Result<std::path::PathBuf> {
    let mut data = std::fs::read(&env.base_initrd)?;
    data.extend(std::fs::read(payload()?)?);
    let path = cache_dir("initramfs")?.join("bench-placement.cpio");
    write_if_changed(&path, &data)?;
    Ok(path)
}

/// The same programs after the disk VMs' initramfs (virtio modules).
pub(crate) fn disk_initrd_with_memloop(env: &mut Env) -> Result<std::path::PathBuf> {
    let mut data = std::fs::read(env.disk_initrd()?)?;
    data.extend(std::fs::read(payload()?)?);
    let path = cache_dir("initramfs")?.join("bench-disk.cpio");
    write_if_changed(&path, &data)?;
    Ok(path)
}

/// memloop's checksum: one word per page holds the page's offset, and each
/// pass reads the first word of every line of the hot part.
fn expected_checksum(hot_mib: u32, passes: u32) -> u64 {
    let pages = (hot_mib as u64) << 8;
    let per_pass = (0..pages).fold(0u64, |s, p| s.wrapping_add(p * 4096));
    per_pass.wrapping_mul(passes as u64)
}

fn memloop_args(a: &PlacementArgs, w: &Workload) -> String {
    format!("{} {} - {WAIT_MS} {}", a.mib * w.size_factor, a.passes, a.mib)
}

fn checksum_ok(output: &[String], a: &PlacementArgs) -> bool {
    let want = expected_checksum(a.mib, a.passes);
    output.iter().any(|l| l.trim_end().ends_with(&format!("passes, checksum {want}")))
}

#[allow(clippy::too_many_arguments)]
fn monitor_run(
    env: &mut Env,
    m: &Machine,
    far: usize,
    a: &PlacementArgs,
    initrd: &std::path::Path,
    w: &Workload,
    label: &'static str,
    mode: &str,
    moved: bool,
) -> Result<Row> {
    let home = if moved { far } else { 0 };
    let params = if a.placement_params.is_empty() {
        String::new()
    } else {
        format!("placement_params = \"{}\"\n", a.placement_params)
    };
    let memory = (a.mib * w.size_factor + 192).next_multiple_of(64);
    let text = format!(
        "placement = \"{mode}\"\n{params}\n[[vm]]\nname = \"w\"\nvcpus = 1\nmemory = \"{memory}M\"\nhome_node = {home}\n\
         initrd = \"{}\"\nexec = '''\nmemloop {}\n'''\n",
        initrd.display(),
        memloop_args(a, w)
    );
    let tag = format!("bench-placement-{}-{}", w.name, label.replace(' ', "-"));
    let t = Instant::now();
    let (mut s, sim) = spawn(env, &m.name, &tag, &text, Some(&a.params))?;
    let sim = sim.expect("numa-sim requested");
    let lines = follow(&mut s, TIMEOUT, None, |s, line| {
        if moved && line.is_some_and(|l| l.starts_with("[w] memloop: touched")) {
            s.send(b"\x1dm00")?;
        }
        Ok(())
    })?;
    let wall_s = t.elapsed().as_secs_f64();
    if moved && !lines.iter().any(|l| l.contains("vm w moves to node 0")) {
        return Err(fail(&s, "the monitor never confirmed the move of vm w to node 0".into()));
    }
    let report = sim.read_report()?;
    let output: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix("[w] ")).map(String::from).collect();
    let migrated = vm_stat(&lines, "placement: migrated ").unwrap_or(0);
    let replicated = vm_stat(&lines, "replication: replicated ").unwrap_or(0);
    let charged_ns = report.path("charged.sim_ns").unwrap_or(0.0);
    let (sim_ms, local_pct) = roi_totals(&report)?;
    Ok(Row {
        workload: w.name,
        mode: label,
        sim_ms,
        local_pct,
        migrated: Some(migrated),
        replicated: Some(replicated),
        us_per_page: (migrated + replicated > 0).then(|| charged_ns / 1e3 / (migrated + replicated) as f64),
        wall_s,
        checksum_ok: checksum_ok(&output, a),
    })
}

fn native(env: &mut Env, m: &Machine, far: usize, a: &PlacementArgs, w: &Workload, on: bool) -> Result<Row> {
    let from = if w.moved { m.node_cpus(far).start } else { 0 };
    let args = memloop_args(a, w).replacen(" - ", " 0 ", 1);
    let cmd = format!(
        "{}numactl --physcpubind={from} memloop {args} || exit 1\n\
         grep -E '^numa_pages_migrated ' /proc/vmstat",
        numa_balancing_script(on, SCAN_MS)
    );
    let tag = format!("bench-placement-{}-native-{}", w.name, if on { "on" } else { "off" });
    let r = native_run(env, m, &cmd, &a.params, &tag)?;
    Ok(Row::native(w.name, on, roi_totals(&r.report)?, &r.output, r.wall.as_secs_f64(), checksum_ok(&r.output, a)))
}

/// Simulated CPU time (ms, all CPUs) and local-miss share (%, all nodes)
/// of the first region of interest.
pub(crate) fn roi_totals(r: &Json) -> Result<(f64, f64)> {
    roi_at(r, 0)
}

fn print_table(m: &Machine, rows: &[Row]) {
    println!("placement on {} ({} nodes x {} CPUs)", m.name, m.nodes, m.cpus_per_node);
    println!(
        "{:9} {:25} {:>12} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8}",
        "workload", "mode", "sim CPU ms", "local %", "migrated", "replicas", "us/page", "wall s", "checksum"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in rows {
        println!(
            "{:9} {:25} {:12.1} {:8.2} {:>9} {:>9} {:>9} {:7.1} {:>8}",
            r.workload,
            r.mode,
            r.sim_ms,
            r.local_pct,
            opt(r.migrated.map(|n| n.to_string())),
            opt(r.replicated.map(|n| n.to_string())),
            opt(r.us_per_page.map(|u| format!("{u:.2}"))),
            r.wall_s,
            if r.checksum_ok { "ok" } else { "WRONG" }
        );
    }
    for t in targets(rows) {
        println!("target: {t}");
    }
}

/// The issue's targets, checked against the rows (reported, not asserted).
fn targets(rows: &[Row]) -> Vec<String> {
    let get = |w: &str, mode: &str| rows.iter().find(|r| r.workload == w && r.mode == mode);
    let mut out = Vec::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for w in ["moved", "hot-cold"] {
        let Some(mig) = get(w, "migrate") else { continue };
        out.push(format!(
            "{w}: migrate >= 90% local misses: {:.1}% ({})",
            mig.local_pct,
            verdict(mig.local_pct >= 90.0)
        ));
        if let Some(b) = get(w, "all-local bound") {
            let over = 100.0 * (mig.sim_ms / b.sim_ms - 1.0);
            out.push(format!(
                "{w}: migrate within 10% of the all-local bound: {over:+.1}% ({})",
                verdict(over <= 10.0)
            ));
        }
        if let Some(n) = get(w, "native numa_balancing=1") {
            out.push(format!(
                "{w}: migrate faster than native AutoNUMA: {:.1} vs {:.1} ms ({})",
                mig.sim_ms,
                n.sim_ms,
                verdict(mig.sim_ms < n.sim_ms)
            ));
        }
        if let Some(u) = mig.us_per_page {
            out.push(format!("{w}: <= 10 us simulated per migrated page: {u:.2} us ({})", verdict(u <= 10.0)));
        }
    }
    for mode in ["migrate", "replicate"] {
        if let (Some(ft), Some(r)) = (get("local", "first-touch"), get("local", mode)) {
            let over = 100.0 * (r.sim_ms / ft.sim_ms - 1.0);
            out.push(format!("local: {mode} <= 2% slower than first-touch: {over:+.1}% ({})", verdict(over <= 2.0)));
        }
    }
    if let Some(rep) = get("scene", "replicate") {
        let pct = rep.local_pct;
        out.push(format!("scene: replicate >= 90% local misses: {pct:.1}% ({})", verdict(pct >= 90.0)));
        if let Some(b) = get("scene", "all-local bound") {
            let over = 100.0 * (rep.sim_ms / b.sim_ms - 1.0);
            out.push(format!(
                "scene: replicate within 10% of the all-local bound: {over:+.1}% ({})",
                verdict(over <= 10.0)
            ));
        }
        if let Some(u) = rep.us_per_page {
            out.push(format!("scene: simulated cost per replica or migrated page: {u:.2} us"));
        }
    }
    out
}

fn method(m: &Machine, far: usize, a: &PlacementArgs) -> String {
    format!(
        "method: each row is one boot of {} under the numa-sim plugin (params: {:?}; defaults: 1 MiB 8-way per-CPU \
         cache, 64 B lines, 300/900 ns local/remote at distance 10/20, 1 ns per instruction, instruction fetches \
         modelled). The guest runs `memloop SIZE {} - {WAIT_MS} {}`: it writes every page of SIZE MiB (hot MiB x 1 for \
         moved/local, x 4 for hot-cold), sleeps {WAIT_MS} ms, then reads every 64 B line of the first {} MiB {} times \
         between the plugin's markers. 'sim CPU ms' is the simulated time of that region summed over all CPUs (guest, \
         monitor and kernel threads alike), 'local %' its share of local misses. Under the monitor the VM has 1 vCPU; \
         for moved workloads it starts on node {} and is moved to node 0 (Ctrl-] m) when memloop says it has touched \
         its data; 'migrated' and 'us/page' come from the monitor's statistics and the plugin's charged-work sum over \
         the mover (copy, remap, TLB invalidation; HINT #0x7c/#0x7d), over the whole run. Monitor policy params: \
         {:?} (empty: defaults). Natively memloop is pinned to a CPU of node {} while touching and then to CPU 0; NUMA \
         balancing scan delay/min period 100 ms, max 400 ms. Deterministic up to guest scheduling; wall time is the \
         host's and noisy. QEMU: {}.",
        m.name,
        a.params,
        a.passes,
        a.mib,
        a.mib,
        a.passes,
        far,
        a.placement_params,
        far,
        qemu::version()
    )
}

fn to_json(m: &Machine, a: &PlacementArgs, rows: &[Row], method: &str) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload, "mode": r.mode, "sim_cpu_ms": r.sim_ms, "local_pct": r.local_pct,
                "pages_migrated": r.migrated, "replicas_made": r.replicated,
                "sim_us_per_moved_or_replicated_page": r.us_per_page,
                "wall_s": r.wall_s, "checksum_ok": r.checksum_ok,
            })
        })
        .collect();
    let v = serde_json::json!({
        "bench": "placement", "machine": m.name, "hot_mib": a.mib, "passes": a.passes,
        "numa_sim_params": a.params, "placement_params": a.placement_params,
        "rows": rows, "method": method,
    });
    serde_json::to_string_pretty(&v).expect("plain values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_memloop() {
        // 1 MiB: 256 pages at offsets 0, 4096, ..; 2 passes.
        let per_pass: u64 = (0..256u64).map(|p| p * 4096).sum();
        assert_eq!(expected_checksum(1, 2), 2 * per_pass);
    }

    #[test]
    fn roi_totals_sum_cpus_and_nodes() {
        let r = Json::parse(
            r#"{"roi":[{"nodes":[{"local_misses":90,"remote_misses":10},{"local_misses":0,"remote_misses":0}],
                "cpus":[{"sim_ns":1000000},{"sim_ns":500000}]}]}"#,
        )
        .unwrap();
        assert_eq!(roi_totals(&r).unwrap(), (1.5, 90.0));
    }
}
