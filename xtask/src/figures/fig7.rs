//! `cargo xtask bench fig7`: Disco's Fig. 7, scalability: the same eight
//! CPUs of work natively, in one VM of eight vCPUs, and in eight VMs of
//! one vCPU each, on a machine of eight CPUs.
//!
//! The work is the same in every run. pmake: the engine's 34 objects,
//! `make -j8` in one kernel, or split eight ways (`PART=i/8`, each VM
//! compiles every eighth object with `-j1`). database: the query set eight
//! times at once (`STREAMS=8`: eight sessions on one server), or once in
//! each of eight VMs with a server each. Disco: eight VMs ran pmake 1.67x
//! faster than IRIX on the same eight processors (IRIX's kernel
//! synchronization did not scale; eight small kernels have less to share).
//!
//! The measure is simulated CPU time, not makespan: natively the region's
//! time summed over CPUs; under the monitor the time the VMs ran in their
//! own regions (`roi[i].vm.run_ns`, one region per VM, summed). Lock
//! contention costs instructions (spinning) and misses, so it shows.

use super::collect::{guest_lines, Outcome};
use super::jobs::Spec;
use super::plot::Bars;
use super::run::vm_name;
use super::{checksum_verdict, method_base, select, FigArgs, Figure, Report};
use crate::machine::Machine;
use anyhow::{bail, Result};
use std::fmt::Write;
use std::path::Path;

pub const FIGURE: Figure = Figure { name: "fig7", machine: "numa4-big", plan, report };

const WORKLOADS: [&str; 2] = ["pmake", "database"];
/// Rows per workload, in table order.
const MODES: [&str; 3] = ["native", "1vm", "8vm"];
/// The CPUs of work, and of the machine.
const WIDTH: u32 = 8;
/// MiB in all: natively, for the one VM, and split among the eight.
const MEMORY: u64 = 2048;
/// Disco's Fig. 7 (8 VMs against IRIX on 8 processors, normalized time).
fn paper(workload: &str) -> Option<f64> {
    match workload {
        "pmake" => Some(1.0 / 1.67),
        _ => None,
    }
}

/// The workload's environment in a run of `vms` VMs.
fn env(workload: &str, vms: u32) -> String {
    match (workload, vms) {
        ("pmake", 1) => format!("NPROC={WIDTH}"),
        ("pmake", _) => "PART={i}/{n} NPROC=1".into(),
        (_, 1) => format!("STREAMS={WIDTH}"),
        _ => "STREAMS=1".into(),
    }
}

fn plan(a: &FigArgs, m: &Machine, dir: &Path) -> Result<Vec<Spec>> {
    if m.cpus() != WIDTH as usize {
        bail!("fig7 needs a machine of {WIDTH} CPUs (numa4-big: 4 nodes x 2), not {} ({})", m.name, m.cpus());
    }
    if a.size != "small" {
        bail!("fig7 splits the small workloads only (--size small)");
    }
    let workloads = select(&a.workloads, &WORKLOADS, &WORKLOADS, "workload")?;
    let modes = select(&a.modes, &MODES, &MODES, "mode")?;
    let mut specs = Vec::new();
    for w in &workloads {
        for mode in &modes {
            let vms = if mode == "8vm" { WIDTH } else { 1 };
            specs.push(Spec {
                vms,
                vcpus: WIDTH / vms,
                memory: MEMORY / u64::from(vms),
                native: mode == "native",
                env: env(w, vms),
                ..Spec::new("fig7", format!("{w}-{mode}"), dir, &m.name, w, &a.size, &a.params)
            });
        }
    }
    Ok(specs)
}

/// The measure: see the module doc.
fn sim_ms(o: &Outcome) -> f64 {
    if o.spec.native {
        o.sim_ms
    } else {
        o.vm_run_ms
    }
}

/// pmake's objects, `path md5` sorted, from every VM of the run.
fn objects(o: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = (0..o.spec.vms)
        .flat_map(|i| guest_lines(&o.lines, &o.spec, &vm_name(o.spec.vms, i)))
        .filter_map(|l| l.trim_end().strip_prefix("OBJECT ").map(String::from))
        .collect();
    v.sort();
    v
}

/// What is wrong with a run beyond its checksums: a VM without its own
/// region, or (pmake) objects that differ from the native build's.
fn problem(o: &Outcome, native: Option<&Outcome>) -> Option<String> {
    if !o.spec.native && o.regions != o.spec.vms as usize {
        return Some(format!("{} regions for {} VMs", o.regions, o.spec.vms));
    }
    if o.spec.workload != "pmake" {
        return None;
    }
    let mine = objects(o);
    match native.map(objects) {
        _ if mine.is_empty() => Some("no OBJECT lines".into()),
        Some(n) if o.spec.native || n == mine => None,
        Some(n) => Some(format!(
            "{} objects, {} differ from the native build's",
            mine.len(),
            mine.iter().filter(|x| !n.contains(x)).count()
        )),
        None => None,
    }
}

/// The share of local misses in the region, where there is one region
/// (eight VMs' overlapping regions each hold every CPU's misses).
fn local_pct(o: &Outcome) -> Option<f64> {
    (o.regions == 1).then_some(o.local_pct)
}

/// The region's simulated time at EL0, EL1 and EL2 in % of its total, where
/// there is one region.
fn levels(o: &Outcome) -> Option<[f64; 3]> {
    let el = o.el_ms.filter(|_| o.regions == 1)?;
    let total: f64 = el.iter().sum();
    (total > 0.0).then(|| el.map(|x| 100.0 * x / total))
}

/// The guest's own time of the region: the slowest VM's `seconds`.
fn guest_s(o: &Outcome) -> Option<f64> {
    o.results.iter().filter_map(|r| r.get("seconds")?.parse::<f64>().ok()).reduce(f64::max)
}

fn report(outcomes: &[Outcome]) -> Result<Report> {
    let mut t = String::new();
    let s0 = &outcomes[0].spec;
    writeln!(t, "fig7: scalability on {}, {WIDTH} CPUs of work, size {}", s0.machine, s0.size)?;
    writeln!(
        t,
        "{:9} {:7} {:>9} {:>10} {:>7} {:>6} {:>8} {:>14} {:>8} {:>7}  {}",
        "workload",
        "run",
        "VMs x vC",
        "sim ms",
        "vs nat",
        "paper",
        "local %",
        "EL0/1/2 %",
        "guest s",
        "wall s",
        "checks"
    )?;
    let mut groups: Vec<String> = outcomes.iter().map(|o| o.spec.workload.clone()).collect();
    groups.sort_by_key(|w| WORKLOADS.iter().position(|k| k == w));
    groups.dedup();
    let get = |w: &str, m: &str| outcomes.iter().find(|o| o.spec.workload == w && o.mode() == m);
    let (mut rows, mut wrong) = (Vec::new(), Vec::new());
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for w in &groups {
        let native = get(w, "native");
        for m in MODES {
            let Some(o) = get(w, m) else { continue };
            let ratio = native.map(|n| sim_ms(o) / sim_ms(n));
            let verdict = checksum_verdict(o, outcomes);
            let problem = problem(o, native);
            let checks = match &problem {
                Some(p) => format!("{verdict}; {p}"),
                None => verdict.to_string(),
            };
            if problem.is_some() || !matches!(verdict, "ok" | "=native" | "agree") {
                wrong.push(o.spec.id.clone());
            }
            let paper_here = if m == "8vm" { paper(w) } else { None };
            writeln!(
                t,
                "{:9} {:7} {:>9} {:10.1} {:>7} {:>6} {:>8} {:>14} {:>8} {:7.0}  {checks}",
                w,
                m,
                format!("{} x {}", o.spec.vms, o.spec.vcpus),
                sim_ms(o),
                opt(ratio, 3),
                opt(paper_here, 2),
                opt(local_pct(o), 1),
                levels(o).map_or("-".into(), |l| l.map(|x| format!("{x:.0}")).join("/")),
                opt(guest_s(o), 1),
                o.wall_s,
            )?;
            rows.push(serde_json::json!({
                "workload": w, "mode": m, "vms": o.spec.vms, "vcpus": o.spec.vcpus, "sim_ms": sim_ms(o),
                "vs_native": ratio, "paper": paper_here, "local_pct": local_pct(o), "el_pct": levels(o), "guest_s": guest_s(o), "wall_s": o.wall_s,
                "regions": o.regions, "checksum": verdict, "problem": problem, "job": o.spec.to_line()?,
            }));
        }
    }
    let method = format!(
        "{} Fig. 7: the same {WIDTH} CPUs of work three ways on a machine of {WIDTH} CPUs: natively (the Debian \
         kernel on all CPUs and, as in fig5, all memory below the plugin's counter region), in one VM of {WIDTH} vCPUs ({MEMORY} MiB) and in {WIDTH} VMs of 1 vCPU \
         ({} MiB each), placement first-touch, each VM's root the read-only `debian` image. pmake: the engine's 34 \
         objects at -O0, make -j{WIDTH} in one kernel, or PART=i/{WIDTH} (every {WIDTH}th object, -j1) in VM i; \
         every object's md5 must equal the native build's, and the unsplit builds' gnuchess must find the mate. \
         database: the query set by {WIDTH} sessions at once on one server (STREAMS={WIDTH}), or by one session in \
         each VM (its own server and tables); every session's rows must equal the host's recomputation. Here \
         'sim ms' is simulated CPU time: natively the region's time summed over CPUs; under the monitor the time \
         the VMs ran in their own regions (roi[i].vm.run_ns summed: guest work and the monitor's in their exits), \
         one region per VM. 'local %', 'EL0/1/2 %': the region's share of local misses and its time at \
         EL0 (guest user), EL1 (guest kernel) and EL2 (monitor) (runs of one region: eight VMs' regions overlap). 'guest s': the \
         slowest VM's own clock over its region. Disco: {WIDTH} VMs ran pmake \
         1.67x faster than IRIX on {WIDTH} processors (normalized 0.60).",
        method_base(outcomes),
        MEMORY / u64::from(WIDTH)
    );
    let plot = vec![Bars {
        title: "Fig. 7: simulated CPU time for the same work, normalized to native".into(),
        y_label: "normalized time".into(),
        groups: groups.clone(),
        series: series_of(outcomes, &groups),
        paper: Some(("Disco (8 VMs / IRIX)".into(), groups.iter().map(|w| paper(w)).collect())),
    }];
    let json = serde_json::json!({ "figure": "fig7", "machine": s0.machine, "size": s0.size, "rows": rows });
    Ok(Report { table: t, method, json, plot, wrong })
}

/// Per monitor mode, each workload's time against its native run.
fn series_of(outcomes: &[Outcome], groups: &[String]) -> Vec<(String, Vec<Option<f64>>)> {
    let get = |w: &str, m: &str| outcomes.iter().find(|o| o.spec.workload == w && o.mode() == m);
    [("1vm", "1 VM x 8 vCPUs"), ("8vm", "8 VMs x 1 vCPU")]
        .iter()
        .map(|(m, label)| {
            let v = groups.iter().map(|w| Some(sim_ms(get(w, m)?) / sim_ms(get(w, "native")?))).collect();
            (label.to_string(), v)
        })
        .collect()
}
