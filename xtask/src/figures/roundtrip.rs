//! Host test of issue 15 (5): a figure's job list round-trips through
//! `--jobs` and `--collect`. The jobs are written and read back, each
//! run's output directory is filled with canned outputs (`fixtures/`:
//! console tails and a plugin report saved from real runs), and the figure
//! is built from them as `--collect` builds it.

use super::collect;
use super::jobs::{self, Spec};
use super::{fig5, fig6, fig7, fig8, write_report, FigArgs, Figure};
use crate::machine;
use std::path::{Path, PathBuf};

const REPORT: &str = include_str!("fixtures/numasim.json");

fn console(s: &Spec) -> &'static str {
    match s.id.as_str() {
        "pmake-native" if s.fig == "fig7" => return include_str!("fixtures/fig7-pmake-native.console.txt"),
        "pmake-1vm" => return include_str!("fixtures/fig7-pmake-1vm.console.txt"),
        "pmake-8vm" => return include_str!("fixtures/fig7-pmake-8vm.console.txt"),
        _ => {}
    }
    match (s.fig.as_str(), s.share.as_str()) {
        ("fig6", "none") => return include_str!("fixtures/fig6-2-private.console.txt"),
        ("fig6", _) => return include_str!("fixtures/fig6-2-shared.console.txt"),
        _ => {}
    }
    match (s.workload.as_str(), s.native) {
        ("engineering", false) => include_str!("fixtures/engineering-monitor.console.txt"),
        ("engineering", true) => include_str!("fixtures/engineering-native.console.txt"),
        ("raytrace", false) => include_str!("fixtures/raytrace-monitor.console.txt"),
        _ => include_str!("fixtures/raytrace-native.console.txt"),
    }
}

/// The plugin's report of a run: fig7's from its own runs (one region per VM).
fn report(s: &Spec) -> &'static str {
    match (s.fig.as_str(), s.id.as_str()) {
        ("fig7", "pmake-native") => include_str!("fixtures/fig7-pmake-native.numasim.json"),
        ("fig7", "pmake-1vm") => include_str!("fixtures/fig7-pmake-1vm.numasim.json"),
        ("fig7", "pmake-8vm") => include_str!("fixtures/fig7-pmake-8vm.numasim.json"),
        _ => REPORT,
    }
}

fn args(workloads: &[&str]) -> FigArgs {
    FigArgs {
        machine: Some("numa2".into()),
        workloads: Some(workloads.iter().map(|w| w.to_string()).collect()),
        modes: None,
        size: "small".into(),
        params: String::new(),
        placement_params: String::new(),
        jobs: None,
        collect: None,
        out: None,
        vms_list: None,
        memory: None,
        hold: None,
    }
}

/// What a run elsewhere leaves behind, written under `dir` (the specs'
/// `--out` paths are relative to the repository root, so they are
/// re-rooted here).
fn fake_outputs(specs: &[Spec], dir: &Path) {
    for s in specs {
        let d = dir.join(&s.id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("console.txt"), console(s)).unwrap();
        if s.numa_sim != super::run::NO_SIM {
            std::fs::write(d.join("numasim.json"), report(s)).unwrap();
        }
        let run = serde_json::json!({ "job": s.to_line().unwrap(), "wall_s": 100.0 });
        std::fs::write(d.join("run.json"), run.to_string()).unwrap();
    }
}

/// Plans `fig`, writes and reads its job file, fakes the runs, collects.
fn round_trip(fig: &Figure, a: &FigArgs) -> (usize, super::Report, PathBuf) {
    let tmp = std::env::temp_dir().join(format!("xtask-fig-{}-{}", fig.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let m = machine::load(fig.machine).unwrap();
    let specs = (fig.plan)(a, &m, Path::new("target/bench/x-runs")).unwrap();
    let file = tmp.join("jobs.sh");
    jobs::write(&file, fig.name, &specs).unwrap();
    let back = jobs::read(&file).unwrap();
    assert_eq!(back, specs, "the job file gives back the planned runs");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with(jobs::RUN_CMD)).count(), specs.len());
    let runs = tmp.join("runs");
    fake_outputs(&back, &runs);
    let outcomes = collect::all(&runs).unwrap();
    assert_eq!(outcomes.len(), specs.len());
    let r = (fig.report)(&outcomes).unwrap();
    let (json, svg) = write_report(fig, &r, &tmp).unwrap();
    assert!(std::fs::read_to_string(svg).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(json).unwrap().contains("\"method\""));
    (specs.len(), r, tmp)
}

#[test]
fn fig8_round_trips_through_jobs_and_collect() {
    let (n, r, tmp) = round_trip(&fig8::FIGURE, &args(&["engineering", "raytrace"]));
    assert_eq!(n, 12);
    assert_eq!(r.json["rows"].as_array().unwrap().len(), 12);
    assert!(r.wrong.is_empty(), "{:?}\n{}", r.wrong, r.table);
    // The fixture's region of interest: 4 CPUs' sim_ns summed, its nodes' local share.
    let ms = 1235.637723 + 1001.387344 + 14.419796 + 105.509002;
    let row = &r.json["rows"][0];
    assert!((row["sim_ms"].as_f64().unwrap() - ms).abs() < 0.01, "{row}");
    let local = 100.0 * (283949.0 + 2316.0) / (283949.0 + 7557.0 + 2316.0 + 14264.0);
    assert!((row["local_pct"].as_f64().unwrap() - local).abs() < 0.01, "{row}");
    assert_eq!(row["checksum_verdict"], "ok");
    let ray = r.json["rows"].as_array().unwrap().iter().find(|x| x["mode"] == "migrate" && x["workload"] == "raytrace");
    assert_eq!(ray.unwrap()["checksum_verdict"], "=native");
    assert!(r.table.contains("paper -33% time, local misses 16% -> 78%"), "{}", r.table);
    std::fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn fig5_round_trips_through_jobs_and_collect() {
    let (n, r, tmp) = round_trip(&fig5::FIGURE, &args(&["engineering", "raytrace"]));
    assert_eq!(n, 4);
    assert_eq!(r.json["rows"][0]["ratio"].as_f64(), Some(1.0), "same canned report for both: {}", r.table);
    assert!(r.table.contains("not available"), "{}", r.table);
    std::fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn fig6_round_trips_through_jobs_and_collect() {
    // The default plan: 1, 2, 4, 8 VMs x shared, private, engineering.
    let m = machine::load("numa2").unwrap();
    let all = (fig6::FIGURE.plan)(&args(&["engineering"]), &m, Path::new("d")).unwrap();
    assert_eq!(all.iter().map(|s| s.vms).collect::<Vec<_>>(), [1, 1, 2, 2, 4, 4, 8, 8]);
    assert!(all.iter().all(|s| s.census && s.disk == "cow" && s.numa_sim == "off" && s.hold > 0 && s.vcpus == 1));
    assert_eq!((all[0].share.as_str(), all[1].share.as_str()), ("fig6", "none"));
    // 8 VMs of 256 MiB do not fit numa2's 2 GiB (64 MiB for the monitor): 240 each, in every run.
    assert!(all.iter().all(|s| s.memory == 240), "{:?}", all.iter().map(|s| s.memory).collect::<Vec<_>>());
    let mut big = args(&["engineering"]);
    big.memory = Some(256);
    assert!((fig6::FIGURE.plan)(&big, &m, Path::new("d")).is_err());
    // Collected from the canned consoles of real 2-VM runs, one per mode.
    let mut a = args(&["engineering"]);
    a.vms_list = Some(vec![2]);
    let (n, r, tmp) = round_trip(&fig6::FIGURE, &a);
    assert_eq!(n, 2);
    let rows = r.json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(r.wrong.is_empty(), "{:?}\n{}", r.wrong, r.table);
    let row = &rows[0];
    assert_eq!(
        (row["vms"].as_u64(), row["mode"].as_str(), row["census_ok"].as_bool()),
        (Some(2), Some("shared"), Some(true))
    );
    assert_eq!(row["checksum_verdict"], "ok");
    let (frames, pages) = (row["machine_frames"].as_u64().unwrap(), row["guest_pages"].as_u64().unwrap());
    assert_eq!(row["captured"].as_u64(), Some(pages - frames));
    assert!(row["ratio_to_1vm"].is_null() && row["workload_s_mean"].as_f64().unwrap() > 1.0, "{row}");
    // Private: every page in a frame of its own, nothing shared.
    let private = &rows[1];
    assert_eq!((private["mode"].as_str(), private["captured"].as_u64()), (Some("private"), Some(0)));
    assert_eq!(
        (private["boot_image_pages_shared"].as_u64(), private["cache_blocks_mapped"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(r.table.contains("time cost of sharing, 2 VMs"), "{}", r.table);
    assert!(r.table.contains("beside Disco (Fig. 6, pmake): 1 VM 27 MB; 8 VMs 38 MB"), "{}", r.table);
    assert!(r.table.contains("needs the 1- and 8-VM rows"), "{}", r.table);
    std::fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn fig7_round_trips_through_jobs_and_collect() {
    // Collected from three real pmake runs (numa4-big, 2026-12-03).
    let mut a = args(&["pmake"]);
    a.machine = None;
    let (n, r, tmp) = round_trip(&fig7::FIGURE, &a);
    assert_eq!(n, 3);
    assert!(r.wrong.is_empty(), "{:?}\n{}", r.wrong, r.table);
    let rows = r.json["rows"].as_array().unwrap();
    let get = |m: &str| rows.iter().find(|x| x["mode"] == m).unwrap();
    let (native, eight) = (get("native"), get("8vm"));
    assert_eq!(
        (eight["vms"].as_u64(), eight["vcpus"].as_u64(), eight["regions"].as_u64()),
        (Some(8), Some(1), Some(8))
    );
    // The eight VMs' own run times, summed; natively the region's CPUs.
    assert!((eight["sim_ms"].as_f64().unwrap() - 76378.2).abs() < 0.1, "{eight}");
    assert!((native["sim_ms"].as_f64().unwrap() - 54217.1).abs() < 0.1, "{native}");
    assert!(eight["local_pct"].is_null() && native["local_pct"].as_f64().is_some());
    assert!(r.table.contains("0.60"), "Disco's 8-VM bar: {}", r.table);
    // A part whose objects differ from the native build's is wrong.
    let eight_dir = tmp.join("runs/pmake-8vm/console.txt");
    let text = std::fs::read_to_string(&eight_dir).unwrap().replacen(
        "OBJECT src/engine/attack.o 7",
        "OBJECT src/engine/attack.o 8",
        1,
    );
    std::fs::write(&eight_dir, text).unwrap();
    let outcomes = collect::all(&tmp.join("runs")).unwrap();
    let r = (fig7::FIGURE.report)(&outcomes).unwrap();
    assert_eq!(r.wrong, ["pmake-8vm"], "{}", r.table);
    assert!(r.table.contains("1 differ from the native build's"), "{}", r.table);
    // Eight CPUs only.
    let m = machine::load("numa2").unwrap();
    assert!((fig7::FIGURE.plan)(&args(&["pmake"]), &m, Path::new("d")).is_err());
    std::fs::remove_dir_all(tmp).unwrap();
}
