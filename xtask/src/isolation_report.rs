//! The numbers of `cargo xtask bench isolation` (`bench_isolation.rs`):
//! what one run measured (the well-behaved VM's regions of interest in the
//! plugin's report, its `isoload` lines on the console, the hogs' progress
//! lines) and the table of slowdowns against the VM alone. Plain data in,
//! plain data out, so it is tested on the host.

use crate::bench::median;
use crate::numasim_json::Json;
use anyhow::{bail, Context, Result};
use std::fmt::Write;

/// The workloads, in the order the well-behaved VM runs them.
pub const WORKLOADS: [&str; 2] = ["cpu", "mem"];

/// One region of interest of the well-behaved VM, as the plugin saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRoi {
    pub vmid: u64,
    /// Its vCPU's simulated time between the markers, ran and waited.
    pub elapsed_ms: f64,
    pub run_ms: f64,
    pub wait_ms: f64,
    pub switches: u64,
    /// Every CPU's simulated time in the region (all VMs and the monitor).
    pub machine_ms: f64,
    /// EL0 / EL1 / EL2 ms of the VM's time, when its vCPU stayed on the
    /// CPU that opened the region (no switch to it: that CPU's delta is
    /// then all the VM's), else None.
    pub el_ms: Option<[f64; 3]>,
}

/// The report's regions of interest; each must carry its VM's times.
pub fn sim_rois(r: &Json) -> Result<Vec<SimRoi>> {
    let rois = r.get("roi").context("the numa-sim report has no `roi` list")?.items();
    rois.iter()
        .enumerate()
        .map(|(i, roi)| {
            let vm = roi.get("vm").filter(|v| **v != Json::Null).with_context(|| {
                format!(
                    "region of interest {i} has no VM times: the plugin saw no `msr vttbr_el2` \
                     (no register access, or not under the monitor?)"
                )
            })?;
            let ms = |k: &str| vm.path(k).map(|ns| ns / 1e6);
            let cpus = roi.get("cpus").map(Json::items).unwrap_or_default();
            let machine_ns: f64 = cpus.iter().filter_map(|c| c.get("sim_ns")?.num()).sum();
            let (begin, end) = (roi.path("begin_vcpu")? as usize, roi.path("end_vcpu")? as usize);
            let stayed = begin == end && vm.path("switches")? == 0.0;
            let el_ms = cpus.get(begin).filter(|_| stayed).and_then(|c| {
                let el = c.get("el_sim_ns")?.items();
                let v: Vec<f64> = el.iter().filter_map(|x| x.num()).map(|ns| ns / 1e6).collect();
                <[f64; 3]>::try_from(v).ok()
            });
            Ok(SimRoi {
                vmid: vm.path("vmid")? as u64,
                elapsed_ms: ms("elapsed_ns")?,
                run_ms: ms("run_ns")?,
                wait_ms: ms("wait_ns")?,
                switches: vm.path("switches")? as u64,
                machine_ms: machine_ns / 1e6,
                el_ms,
            })
        })
        .collect()
}

/// The plugin's model parameters, from its report's `config`, in words.
pub fn plugin_config(r: &Json) -> String {
    let Some(c) = r.get("config") else { return "(not in the report)".into() };
    let n = |k: &str| c.get(k).and_then(Json::num).unwrap_or(f64::NAN);
    let b = |k: &str| if c.get(k) == Some(&Json::Bool(true)) { "on" } else { "off" };
    format!(
        "per-CPU cache {} KiB {}-way, {} B lines; miss {} ns local, {} ns at distance 20; {} ns per instruction; \
         same-line filter {}, instruction fetches {}",
        n("cache") / 1024.0,
        n("assoc"),
        n("line"),
        n("local_ns"),
        n("remote_ns"),
        n("insn_ns"),
        b("filter"),
        b("ifetch")
    )
}

/// An `isoload: mode=M roi_ns=N checksum=C` line of VM `vm`.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub mode: String,
    pub wall_ms: f64,
    pub checksum: u64,
}

/// VM `vm`'s isoload lines, in order.
pub fn loads(lines: &[String], vm: &str) -> Result<Vec<Load>> {
    let prefix = format!("[{vm}] isoload: ");
    let mut out = Vec::new();
    for l in lines.iter().filter_map(|l| l.trim_start().strip_prefix(&prefix)) {
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                .with_context(|| format!("no `{k}=` in `isoload: {l}`"))
        };
        out.push(Load {
            mode: field("mode")?.to_string(),
            wall_ms: field("roi_ns")?.parse::<f64>().context("roi_ns")? / 1e6,
            checksum: field("checksum")?.parse().context("checksum")?,
        });
    }
    Ok(out)
}

/// What `isoload cpu MILLIONS` must print: xorshift64 from its seed.
pub fn cpu_checksum(millions: u64) -> u64 {
    let mut x: u64 = 88172645463325252;
    for _ in 0..millions * 1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// What `isoload mem MIB PASSES` must print: the first word of each page
/// holds the page's offset, the other lines read 0.
pub fn mem_checksum(mib: u64, passes: u64) -> u64 {
    let pages = mib << 8;
    (0..pages).fold(0u64, |s, p| s.wrapping_add(p * 4096)).wrapping_mul(passes)
}

/// Index of the first line containing `needle`.
pub fn find(lines: &[String], needle: &str) -> Option<usize> {
    lines.iter().position(|l| l.contains(needle))
}

/// Progress lines of VM `vm` (its prefix, containing `mark`) in
/// `lines[from..to]`.
pub fn progress(lines: &[String], vm: &str, mark: &str, from: usize, to: usize) -> usize {
    let prefix = format!("[{vm}] ");
    lines[from.min(lines.len())..to.min(lines.len())]
        .iter()
        .filter(|l| l.trim_start().starts_with(&prefix) && l.contains(mark))
        .count()
}

/// One measurement of one workload in one configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub config: String,
    pub workload: String,
    pub sim: SimRoi,
    pub wall_ms: f64,
}

/// A row of the table: medians over the runs, and slowdowns against the
/// same workload alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub workload: String,
    pub config: String,
    pub runs: usize,
    pub elapsed_ms: f64,
    pub run_ms: f64,
    pub wait_ms: f64,
    pub wall_ms: f64,
    /// Medians of the samples' EL0 / EL1 / EL2 ms (where all have them).
    pub el_ms: Option<[f64; 3]>,
    pub sim_slowdown_pct: Option<f64>,
    pub wall_slowdown_pct: Option<f64>,
}

fn pct(x: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| 100.0 * (x / base - 1.0))
}

/// Rows per workload and configuration (in `configs` order; the first,
/// `alone`, is the base).
pub fn rows(samples: &[Sample], configs: &[&str]) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for w in WORKLOADS {
        let mut base: Option<(f64, f64)> = None;
        for c in configs {
            let s: Vec<&Sample> = samples.iter().filter(|s| s.workload == w && s.config == *c).collect();
            if s.is_empty() {
                bail!("no sample of workload {w} with {c}");
            }
            let m = |f: fn(&Sample) -> f64| median(&s.iter().map(|x| f(x)).collect::<Vec<_>>());
            let (elapsed, wall) = (m(|x| x.sim.elapsed_ms), m(|x| x.wall_ms));
            let b = *base.get_or_insert((elapsed, wall));
            out.push(Row {
                workload: w.into(),
                config: c.to_string(),
                runs: s.len(),
                elapsed_ms: elapsed,
                run_ms: m(|x| x.sim.run_ms),
                wait_ms: m(|x| x.sim.wait_ms),
                wall_ms: wall,
                el_ms: s
                    .iter()
                    .map(|x| x.sim.el_ms)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| std::array::from_fn(|i| median(&v.iter().map(|e| e[i]).collect::<Vec<_>>()))),
                sim_slowdown_pct: (*c != configs[0]).then(|| pct(elapsed, b.0)).flatten(),
                wall_slowdown_pct: (*c != configs[0]).then(|| pct(wall, b.1)).flatten(),
            });
        }
    }
    Ok(out)
}

/// The table, one line per row, with the target beside each slowdown.
pub fn table(rows: &[Row], target_pct: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | neighbours | runs | sim elapsed ms | (run / waited) | EL0 / EL1 / EL2 ms | sim slowdown | wall ms | wall slowdown |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let show = |p: Option<f64>, judge: bool| match p {
        None => "-".to_string(),
        Some(p) if judge => format!("{p:+.1}% {}", if p <= target_pct { "(ok)" } else { "(over)" }),
        Some(p) => format!("{p:+.1}%"),
    };
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | ({:.1} / {:.1}) | {} | {} | {:.0} | {} |",
            r.workload,
            r.config,
            r.runs,
            r.elapsed_ms,
            r.run_ms,
            r.wait_ms,
            r.el_ms.map_or("-".into(), |e| format!("{:.1} / {:.1} / {:.1}", e[0], e[1], e[2])),
            show(r.sim_slowdown_pct, true),
            r.wall_ms,
            show(r.wall_slowdown_pct, false)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rois_need_vm_times() {
        let r = Json::parse(
            r#"{"roi":[{"begin_vcpu":0,"end_vcpu":0,"cpus":[{"sim_ns":2000000},{"sim_ns":3000000}],
                 "vm":{"vmid":1,"run_ns":1500000,"wait_ns":500000,"elapsed_ns":2000000,"switches":4}},
                {"begin_vcpu":1,"end_vcpu":1,"cpus":[{"sim_ns":0},{"sim_ns":3000000,"el_sim_ns":[2000000, 500000, 500000]}],
                 "vm":{"vmid":1,"run_ns":3000000,"wait_ns":0,"elapsed_ns":3000000,"switches":0}}]}"#,
        )
        .unwrap();
        let v = sim_rois(&r).unwrap();
        assert_eq!(
            v[0],
            SimRoi { vmid: 1, elapsed_ms: 2.0, run_ms: 1.5, wait_ms: 0.5, switches: 4, machine_ms: 5.0, el_ms: None }
        );
        // It stayed on CPU 1: that CPU's level split is the VM's.
        assert_eq!(v[1].el_ms, Some([2.0, 0.5, 0.5]));
        let r = Json::parse(r#"{"roi":[{"begin_vcpu":0,"end_vcpu":0,"cpus":[],"vm":null}]}"#).unwrap();
        assert!(sim_rois(&r).unwrap_err().to_string().contains("no VM times"));
        assert!(sim_rois(&Json::parse("{}").unwrap()).is_err());
    }

    #[test]
    fn plugin_config_in_words() {
        let r = Json::parse(
            r#"{"config":{"cache":1048576,"assoc":8,"line":64,"local_ns":300,"remote_ns":900,"insn_ns":1,"filter":true,"ifetch":false}}"#,
        )
        .unwrap();
        assert_eq!(
            plugin_config(&r),
            "per-CPU cache 1024 KiB 8-way, 64 B lines; miss 300 ns local, 900 ns at distance 20; 1 ns per instruction; \
             same-line filter on, instruction fetches off"
        );
        assert_eq!(plugin_config(&Json::parse("{}").unwrap()), "(not in the report)");
    }

    #[test]
    fn isoload_lines_and_checksums() {
        let l = lines(&[
            "[good] isoload: mode=cpu roi_ns=1500000 checksum=42",
            "[hog] isoload: mode=mem roi_ns=1 checksum=1",
            "  [good] isoload: mode=mem roi_ns=2000000000 checksum=7",
        ]);
        let v = loads(&l, "good").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], Load { mode: "cpu".into(), wall_ms: 1.5, checksum: 42 });
        assert_eq!(v[1].wall_ms, 2000.0);
        assert!(loads(&lines(&["[good] isoload: mode=cpu checksum=1"]), "good").is_err());
        // xorshift64 (Marsaglia's 13/7/17) from the seed, 0 steps = the seed.
        assert_eq!(cpu_checksum(0), 88172645463325252);
        // 1 MiB: pages 0..255, offsets summed, twice.
        assert_eq!(mem_checksum(1, 2), 2 * 4096 * (255 * 256 / 2));
    }

    #[test]
    fn hog_progress_in_a_window() {
        let l = lines(&[
            "[a] HOG x",
            "[good] ISO-START",
            "[a] HOG y",
            "[b] memhog: round 3",
            "[a] HOG z",
            "[good] ISO-DONE",
        ]);
        let (s, e) = (find(&l, "ISO-START").unwrap(), find(&l, "ISO-DONE").unwrap());
        assert_eq!((s, e), (1, 5));
        assert_eq!(progress(&l, "a", "HOG", s, e), 2);
        assert_eq!(progress(&l, "b", "memhog: round", s, e), 1);
        assert_eq!(progress(&l, "c", "HOG", s, e), 0);
    }

    fn sample(config: &str, workload: &str, elapsed: f64, wall: f64) -> Sample {
        let sim = SimRoi {
            vmid: 1,
            elapsed_ms: elapsed,
            run_ms: elapsed,
            wait_ms: 0.0,
            switches: 1,
            machine_ms: elapsed,
            el_ms: Some([elapsed, 0.0, 0.0]),
        };
        Sample { config: config.into(), workload: workload.into(), sim, wall_ms: wall }
    }

    #[test]
    fn slowdowns_against_alone() {
        let s = [
            sample("alone", "cpu", 100.0, 1000.0),
            sample("alone", "cpu", 102.0, 1200.0),
            sample("alone", "mem", 50.0, 500.0),
            sample("hog", "cpu", 103.0, 2200.0),
            sample("hog", "mem", 60.0, 1000.0),
        ];
        let r = rows(&s, &["alone", "hog"]).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].elapsed_ms, r[0].runs, r[0].sim_slowdown_pct), (101.0, 2, None));
        assert!((r[1].sim_slowdown_pct.unwrap() - 1.98).abs() < 0.01);
        assert!((r[1].wall_slowdown_pct.unwrap() - 100.0).abs() < 1e-9);
        assert!((r[3].sim_slowdown_pct.unwrap() - 20.0).abs() < 1e-9);
        let t = table(&r, 4.0);
        assert!(
            t.contains("| cpu | hog | 1 | 103.0 | (103.0 / 0.0) | 103.0 / 0.0 / 0.0 | +2.0% (ok) | 2200 | +100.0% |"),
            "{t}"
        );
        assert!(t.contains("+20.0% (over)"));
        assert!(rows(&s, &["alone", "missing"]).is_err());
    }
}
