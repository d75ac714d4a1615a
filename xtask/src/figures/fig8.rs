//! `cargo xtask bench fig8`: Disco's Fig. 8, what page migration and
//! replication buy the engineering and raytrace workloads.
//!
//! One VM with a vCPU per CPU of the machine (memory first touched where
//! its vCPUs run) under the monitor with each placement mode, the
//! all-local bound (first-touch with every miss at the local latency: a
//! machine whose every node had the data), and native Linux on the same
//! machine with NUMA balancing off (IRIX's place in the paper: no
//! migration) and on. Disco compared IRIX on the NUMA machine with IRIX on
//! Disco with migration and replication: engineering -33%, raytrace -38%
//! execution time; local misses 16% -> 78% and 6% -> 76%.

use super::collect::Outcome;
use super::jobs::Spec;
use super::plot::Bars;
use super::{checksum_verdict, method_base, select, FigArgs, Figure, Report};
use crate::machine::Machine;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub const FIGURE: Figure = Figure { name: "fig8", machine: "numa2", plan, report };

const WORKLOADS: [&str; 2] = ["engineering", "raytrace"];
/// Rows per workload, in table order.
pub const MODES: [&str; 6] = ["native-off", "native-on", "first-touch", "migrate", "replicate", "all-local"];
/// The plugin's default local miss latency (`local_ns`).
const LOCAL_NS: &str = "300";

/// Disco's published numbers: (execution time change with migration and
/// replication vs IRIX, local misses under IRIX %, under Disco %).
fn paper(workload: &str) -> Option<(f64, f64, f64)> {
    match workload {
        "engineering" => Some((-33.0, 16.0, 78.0)),
        "raytrace" => Some((-38.0, 6.0, 76.0)),
        _ => None,
    }
}

fn plan(a: &FigArgs, m: &Machine, dir: &Path) -> Result<Vec<Spec>> {
    let workloads = select(&a.workloads, &WORKLOADS, &WORKLOADS, "workload")?;
    let modes = select(&a.modes, &MODES, &MODES, "mode")?;
    let local_ns = a.params.split(',').find_map(|kv| kv.trim().strip_prefix("local_ns=")).unwrap_or(LOCAL_NS);
    let mut specs = Vec::new();
    for w in &workloads {
        for mode in &modes {
            let id = format!("{w}-{mode}");
            let mut s = Spec {
                vcpus: m.cpus() as u32,
                native: mode.starts_with("native"),
                numa_balancing: u8::from(mode == "native-on"),
                ..Spec::new("fig8", id, dir, &m.name, w, &a.size, &a.params)
            };
            match mode.as_str() {
                "migrate" | "replicate" => {
                    (s.placement, s.placement_params) = (mode.clone(), a.placement_params.clone())
                }
                "all-local" => {
                    let sep = if a.params.is_empty() { "" } else { "," };
                    s.numa_sim = format!("{}{sep}remote_ns={local_ns}", a.params);
                }
                _ => {}
            }
            specs.push(s);
        }
    }
    Ok(specs)
}

fn report(outcomes: &[Outcome]) -> Result<Report> {
    let mut t = String::new();
    let s0 = &outcomes[0].spec;
    writeln!(t, "fig8: page placement on {} ({} vCPUs / CPUs), size {}", s0.machine, s0.vcpus, s0.size)?;
    writeln!(
        t,
        "{:12} {:12} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8}",
        "workload", "mode", "sim ms", "vs off", "vs f-t", "local %", "migrated", "replicas", "wall s", "checksum"
    )?;
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    let mut groups: Vec<String> = outcomes.iter().map(|o| o.spec.workload.clone()).collect();
    groups.dedup();
    let get = |w: &str, m: &str| find(outcomes, w, m);
    let rel = |o: &Outcome, base: Option<&Outcome>| base.map(|b| 100.0 * (o.sim_ms / b.sim_ms - 1.0));
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1}%"));
    let num = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for w in &groups {
        for m in MODES {
            let Some(o) = get(w, m) else { continue };
            let (vs_off, vs_ft) = (rel(o, get(w, "native-off")), rel(o, get(w, "first-touch")));
            let verdict = checksum_verdict(o, outcomes);
            if !matches!(verdict, "ok" | "=native" | "agree") {
                wrong.push(o.spec.id.clone());
            }
            writeln!(
                t,
                "{:12} {:12} {:10.1} {:>8} {:>8} {:8.1} {:>9} {:>8} {:7.0} {:>8}",
                w,
                m,
                o.sim_ms,
                pct(vs_off),
                pct(vs_ft),
                o.local_pct,
                num(o.migrated),
                num(o.replicated),
                o.wall_s,
                verdict
            )?;
            rows.push(serde_json::json!({
                "workload": w, "mode": m, "sim_ms": o.sim_ms, "vs_native_off_pct": vs_off,
                "vs_first_touch_pct": vs_ft, "local_pct": o.local_pct, "pages_migrated": o.migrated,
                "replicas_made": o.replicated, "wall_s": o.wall_s, "checksum": o.checksum(), "checksum_verdict": verdict,
                "job": o.spec.to_line()?,
            }));
        }
    }
    writeln!(t, "beside Disco (Fig. 8: IRIX on NUMA vs IRIX on Disco with migration and replication):")?;
    let mut paper_json = Vec::new();
    for w in &groups {
        let Some((dt, l0, l1)) = paper(w) else { continue };
        let ours = get(w, "replicate").zip(get(w, "native-off"));
        let line = match ours {
            Some((r, n)) => format!(
                "ours (native-off -> replicate) {:+.1}%, local misses {:.0}% -> {:.0}%",
                100.0 * (r.sim_ms / n.sim_ms - 1.0),
                n.local_pct,
                r.local_pct
            ),
            None => "ours: needs the native-off and replicate rows".into(),
        };
        writeln!(t, "  {w:12} paper {dt:+.0}% time, local misses {l0:.0}% -> {l1:.0}%; {line}")?;
        paper_json.push(
            serde_json::json!({"workload": w, "time_change_pct": dt, "local_pct_irix": l0, "local_pct_disco": l1}),
        );
    }
    let plot = plot_of(outcomes, &groups);
    let method = format!(
        "{} Fig. 8: one VM with a vCPU per CPU and 1 GiB (home node 0) under the monitor with placement \
         first-touch, migrate and replicate; all-local is first-touch with remote_ns = \
         local_ns (every miss at local cost: the bound, as the paper's UMA machine); native-off/-on boot the same \
         kernel directly on the machine (all CPUs, the root image on QEMU's own virtio-blk; memory: what the plugin's \
         counter region leaves, `mem=` below it) with kernel.numa_balancing 0 / 1 (Linux's default scan periods: the \
         Debian root has no `mount` for debugfs). 'vs off' / 'vs f-t': simulated time against native-off and first-touch. 'migrated', 'replicas': the \
         monitor's statistics over the whole run (natively: numa_pages_migrated). Checksums: engineering against the \
         host's recomputation of memsim.v, raytrace against the native run's image.",
        method_base(outcomes)
    );
    let json = serde_json::json!({ "figure": "fig8", "machine": s0.machine, "size": s0.size, "rows": rows, "paper": paper_json });
    Ok(Report { table: t, method, json, plot, wrong })
}

/// The run of workload `w` in mode `m`.
fn find<'a>(outcomes: &'a [Outcome], w: &str, m: &str) -> Option<&'a Outcome> {
    outcomes.iter().find(|o| o.spec.workload == w && o.mode() == m)
}

fn plot_of(outcomes: &[Outcome], groups: &[String]) -> Vec<Bars> {
    let get = |w: &str, m: &str| find(outcomes, w, m);
    let modes: Vec<&str> = MODES.iter().copied().filter(|m| outcomes.iter().any(|o| o.mode() == *m)).collect();
    let series = |f: &dyn Fn(&Outcome) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
        modes.iter().map(|m| (m.to_string(), groups.iter().map(|w| get(w, m).and_then(f)).collect())).collect()
    };
    let norm = |o: &Outcome| {
        let base = get(&o.spec.workload, "native-off").or_else(|| get(&o.spec.workload, "first-touch"))?;
        Some(o.sim_ms / base.sim_ms)
    };
    let paper_time: Vec<Option<f64>> = groups.iter().map(|w| paper(w).map(|p| 1.0 + p.0 / 100.0)).collect();
    let paper_local: Vec<Option<f64>> = groups.iter().map(|w| paper(w).map(|p| p.2)).collect();
    vec![
        Bars {
            title: "Fig. 8: simulated time, normalized to native numa_balancing=0".into(),
            y_label: "normalized time".into(),
            groups: groups.to_vec(),
            series: series(&norm),
            paper: Some(("Disco (mig.+repl.)".into(), paper_time)),
        },
        Bars {
            title: "local misses".into(),
            y_label: "% local".into(),
            groups: groups.to_vec(),
            series: series(&|o: &Outcome| Some(o.local_pct)),
            paper: Some(("Disco (mig.+repl.)".into(), paper_local)),
        },
    ]
}
