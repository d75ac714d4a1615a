//! `--collect DIR`: reads the output directories of a figure's runs
//! (`run.rs` wrote them, here or elsewhere) into [`Outcome`]s, the one
//! input of every figure's table, JSON and plot.

use super::jobs::Spec;
use super::run::{vm_name, NO_SIM};
use crate::numasim_json::Json;
use crate::placement_runs::{roi_at, vm_stat};
use crate::workload_results::{database_results, memsim_lines, result_fields};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub spec: Spec,
    pub wall_s: f64,
    /// Simulated CPU time of the first region of interest, summed over CPUs
    /// (0 without the plugin, `--numa-sim off`).
    pub sim_ms: f64,
    /// Its share of local misses, over all nodes.
    pub local_pct: f64,
    /// Regions of interest in the report (one per VM that ran the
    /// workload; natively one), and the simulated time the VMs ran in
    /// theirs (`roi[i].vm.run_ns`, summed; 0 natively).
    pub regions: usize,
    pub vm_run_ms: f64,
    /// Its simulated time by exception level (EL0, EL1, EL2), ms, summed
    /// over CPUs; None from a plugin without the split.
    pub el_ms: Option<[f64; 3]>,
    /// Every VM's `RESULT` fields, in VM order.
    pub results: Vec<BTreeMap<String, String>>,
    /// Every VM's command ended with status 0.
    pub exit_ok: bool,
    /// Pages the monitor migrated / replicas it made (monitor runs), or
    /// Linux's `numa_pages_migrated` (native runs, in `migrated`).
    pub migrated: Option<u64>,
    pub replicated: Option<u64>,
    /// The checksum against a host reference: Some(ok), None without one
    /// (raytrace: compared with the native run by the figure).
    pub checksum_ok: Option<bool>,
    /// The run's console (`console.txt`), for what a figure reads itself.
    pub lines: Vec<String>,
}

impl Outcome {
    /// The run's mode: its id after `WORKLOAD-` (fig7, fig8: `native`, `8vm`, `migrate`, ...).
    pub fn mode(&self) -> &str {
        self.spec.id.strip_prefix(&format!("{}-", self.spec.workload)).unwrap_or(&self.spec.id)
    }

    pub fn checksum(&self) -> &str {
        self.results.first().and_then(|r| r.get("checksum")).map(String::as_str).unwrap_or("")
    }
}

/// Every run under `dir` (one subdirectory each), sorted by job id.
pub fn all(dir: &Path) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.join("run.json").is_file() {
            out.push(one(&p).with_context(|| format!("run output {}", p.display()))?);
        }
    }
    if out.is_empty() {
        bail!("no run outputs (DIR/ID/run.json) under {}", dir.display());
    }
    out.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    Ok(out)
}

/// One run's output directory.
pub fn one(dir: &Path) -> Result<Outcome> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {f}"));
    let run = Json::parse(&read("run.json")?)?;
    let Some(Json::Str(line)) = run.get("job") else { bail!("run.json has no `job` line") };
    let spec = Spec::parse_line(line)?;
    let wall_s = run.path("wall_s")?;
    let lines: Vec<String> = read("console.txt")?.lines().map(String::from).collect();
    // Without the plugin (`--numa-sim off`): no report, and 0 simulated ms.
    let (sim_ms, local_pct, el_ms, (regions, vm_run_ms)) = if spec.numa_sim == NO_SIM {
        (0.0, 0.0, None, (0, 0.0))
    } else {
        let report = Json::parse(&read("numasim.json")?).context("numasim.json")?;
        let (sim_ms, local_pct) = roi_at(&report, 0)?;
        (sim_ms, local_pct, el_split(&report), vm_runs(&report))
    };
    let mut results = Vec::new();
    let mut exit_ok = true;
    for i in 0..spec.vms {
        let out = guest_lines(&lines, &spec, &vm_name(spec.vms, i));
        exit_ok &= out.iter().any(|l| l.trim_end() == "DISCO-EXEC-END status=0");
        results.push(result_fields(&out).unwrap_or_default());
    }
    let (migrated, replicated) = if spec.native {
        let n = lines.iter().find_map(|l| l.trim().strip_prefix("numa_pages_migrated ")?.trim().parse().ok());
        (n, None)
    } else if spec.vms == 1 {
        (vm_stat(&lines, "placement: migrated "), vm_stat(&lines, "replication: replicated "))
    } else {
        (None, None)
    };
    let checksum_ok = reference_ok(&spec.workload, &results)?;
    Ok(Outcome {
        spec,
        wall_s,
        sim_ms,
        local_pct,
        regions,
        vm_run_ms,
        el_ms,
        results,
        exit_ok,
        migrated,
        replicated,
        checksum_ok,
        lines,
    })
}

/// The regions of interest, and their VMs' `run_ns` summed, in ms.
fn vm_runs(r: &Json) -> (usize, f64) {
    let rois = r.get("roi").map(Json::items).unwrap_or_default();
    let run = rois.iter().filter_map(|x| x.get("vm")?.get("run_ns")?.num()).sum::<f64>();
    (rois.len(), run / 1e6)
}

/// The first region of interest's `el_sim_ns` (numa-sim's `el.rs`), summed over CPUs.
fn el_split(r: &Json) -> Option<[f64; 3]> {
    let mut v = [0.0; 3];
    for c in r.get("roi")?.at(0)?.get("cpus")?.items() {
        let e = c.get("el_sim_ns")?;
        for (i, x) in v.iter_mut().enumerate() {
            *x += e.at(i)?.num()? / 1e6;
        }
    }
    Some(v)
}

/// A VM's own lines: `[NAME] ` stripped under the monitor, all natively.
pub fn guest_lines(lines: &[String], spec: &Spec, name: &str) -> Vec<String> {
    if spec.native {
        return lines.to_vec();
    }
    let p = format!("[{name}] ");
    lines.iter().filter_map(|l| l.strip_prefix(&p)).map(String::from).collect()
}

/// Every VM's result checked against what the host computes (as the
/// workload tests do), where there is such a reference.
fn reference_ok(workload: &str, results: &[BTreeMap<String, String>]) -> Result<Option<bool>> {
    let mut all = true;
    for r in results {
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let ok = match workload {
            "engineering" => {
                let cycles: u32 = get("cycles").parse().unwrap_or(0);
                cycles > 0 && crate::util::host_md5(memsim_lines(cycles).as_bytes())? == get("checksum")
            }
            "database" => {
                let n: i64 = get("lineitems").parse().unwrap_or(0);
                n >= 60 && crate::util::host_md5(database_results(n).as_bytes())? == get("checksum")
            }
            // A part of a split build (fig7) links nothing: fig7 compares its objects.
            "pmake" if r.contains_key("part") => get("files").parse::<u32>().is_ok_and(|f| f > 0),
            "pmake" => get("answer").contains("d8h4") || get("answer").contains("Qh4"),
            _ => return Ok(None),
        };
        all &= ok;
    }
    Ok(Some(all && !results.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn el_split_sums_cpus_of_the_first_region() {
        let r = Json::parse(
            r#"{"roi":[{"cpus":[{"el_sim_ns":[1000000, 2000000, 0]},{"el_sim_ns":[0, 0, 3000000]}]},
                {"cpus":[{"el_sim_ns":[9, 9, 9]}]}]}"#,
        )
        .unwrap();
        assert_eq!(el_split(&r), Some([1.0, 2.0, 3.0]));
        assert_eq!(el_split(&Json::parse(r#"{"roi":[{"cpus":[{"sim_ns":1}]}]}"#).unwrap()), None);
    }

    #[test]
    fn vm_runs_sum_every_region_of_a_vm() {
        let r = Json::parse(
            r#"{"roi":[{"cpus":[],"vm":{"vmid":1,"run_ns":2000000}},{"cpus":[],"vm":{"vmid":2,"run_ns":500000}},
                {"cpus":[],"vm":null}]}"#,
        )
        .unwrap();
        assert_eq!(vm_runs(&r), (3, 2.5));
        assert_eq!(vm_runs(&Json::parse(r#"{"cpus":[]}"#).unwrap()), (0, 0.0));
    }
}
