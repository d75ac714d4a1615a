//! `cargo xtask bench fig5|fig6|fig7|fig8`: Disco's figures (issue 15, item 3), each
//! a set of independent runs (`jobs.rs`) of the Debian workloads under the
//! ccNUMA plugin, then one report: a table beside the paper's numbers, the
//! method, `target/bench/figN.json` and `target/bench/figN.svg`.
//!
//! There is one path: plan the runs, write them as a job file, run the
//! file's lines (here, one after another; or elsewhere: `--jobs FILE`),
//! collect their output directories (`--collect DIR`). Simulated time
//! between the workloads' region markers is the measure; wall time is
//! printed beside it.

pub mod collect;
pub mod fig5;
pub mod fig6;
pub mod fig7;
pub mod fig8;
pub mod footprint;
pub mod jobs;
pub mod plot;
pub mod run;

use crate::bench::wrap;
use crate::boot::Env;
use crate::machine::{self, Machine};
use crate::util::{rel, root};
use anyhow::{bail, Context, Result};
use collect::Outcome;
use jobs::Spec;
use std::path::{Path, PathBuf};

/// Options shared by the figure commands.
#[derive(clap::Args, Debug, Clone)]
pub struct FigArgs {
    /// The machine (default: numa2; fig7: numa4-big, 8 CPUs).
    #[arg(long, short)]
    pub machine: Option<String>,
    /// Workloads, comma-separated (fig5: engineering,raytrace,database by default, and pmake; fig6: engineering by default, and pmake, slow under TCG; fig8: engineering,raytrace).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// Runs per workload, comma-separated (default all; fig5: native,monitor; fig6: shared,private; fig8: native-off,native-on,first-touch,migrate,replicate,all-local).
    #[arg(long, value_delimiter = ',')]
    pub modes: Option<Vec<String>>,
    /// Workload size: small or full.
    #[arg(long, default_value = "small")]
    pub size: String,
    /// numa-sim parameters (k=v,...), as for `run --numa-sim=` (fig6 runs without the plugin).
    #[arg(long, default_value = "", value_name = "PARAMS")]
    pub params: String,
    /// The monitor's placement policy parameters, as for `run --placement-params` (fig8's migrate and replicate rows).
    #[arg(long, default_value = "", value_name = "PARAMS")]
    pub placement_params: String,
    /// Only write the runs as shell command lines into FILE (one QEMU run each), for running elsewhere.
    #[arg(long, value_name = "FILE", conflicts_with = "collect")]
    pub jobs: Option<PathBuf>,
    /// Only build the table, JSON and plot from the run outputs under DIR (DIR/ID/run.json ...).
    #[arg(long, value_name = "DIR")]
    pub collect: Option<PathBuf>,
    /// Where the runs write their outputs (default target/bench/FIG-runs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// fig6: how many VMs boot at once, one run per count, comma-separated (default 1,2,4,8).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub vms_list: Option<Vec<u32>>,
    /// fig6: memory per VM in MiB, the same in every run (default 256, or less so that the largest run fits the machine: 240 on numa2).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// fig6: seconds VM 0 stays up after its workload (the others twice as long), so that all are alive at the census (default 30 + 10 per VM).
    #[arg(long, value_name = "SECS")]
    pub hold: Option<u64>,
}

/// What a figure module gives: its runs, and its report from their outcomes.
pub struct Figure {
    pub name: &'static str,
    /// The machine when `--machine` is not given.
    pub machine: &'static str,
    pub plan: fn(&FigArgs, &Machine, &Path) -> Result<Vec<Spec>>,
    pub report: fn(&[Outcome]) -> Result<Report>,
}

/// A figure's results, ready to print and write.
pub struct Report {
    pub table: String,
    pub method: String,
    pub json: serde_json::Value,
    pub plot: Vec<plot::Bars>,
    /// Runs whose checksum or exit status was wrong.
    pub wrong: Vec<String>,
}

/// `cargo xtask bench FIG`.
pub fn main(fig: &Figure, a: FigArgs) -> Result<u8> {
    if let Some(dir) = &a.collect {
        return finish(fig, &collect::all(dir)?);
    }
    let m = machine::load(a.machine.as_deref().unwrap_or(fig.machine))?;
    let dir = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("target/bench/{}-runs", fig.name)));
    let specs = (fig.plan)(&a, &m, &dir)?;
    if specs.is_empty() {
        bail!("no runs selected (see --workloads and --modes)");
    }
    if let Some(file) = &a.jobs {
        jobs::write(file, fig.name, &specs)?;
        println!(
            "{}: {} jobs in {}; outputs go to {}; then `cargo xtask bench {} --collect {}`",
            fig.name,
            specs.len(),
            file.display(),
            dir.display(),
            fig.name,
            dir.display()
        );
        return Ok(0);
    }
    // Here: the same job file, run line by line, then collected.
    let abs = root().join(&dir);
    if abs.exists() {
        std::fs::remove_dir_all(&abs).with_context(|| format!("clearing {}", abs.display()))?;
    }
    let file = abs.join("jobs.sh");
    jobs::write(&file, fig.name, &specs)?;
    let mut env = Env::prepare()?;
    let lines = jobs::read(&file)?;
    let mut failed = Vec::new();
    for (i, s) in lines.iter().enumerate() {
        eprintln!("{}: run {}/{}: {}", fig.name, i + 1, lines.len(), s.id);
        if let Err(e) = run::run(&mut env, s) {
            eprintln!("{}: run {} failed:\n{e:#}", fig.name, s.id);
            failed.push(s.id.clone());
        }
    }
    let code = finish(fig, &collect::all(&abs)?)?;
    if !failed.is_empty() {
        bail!("runs failed (see above): {}", failed.join(", "));
    }
    Ok(code)
}

/// Prints the table and method, writes the JSON and the plot.
fn finish(fig: &Figure, outcomes: &[Outcome]) -> Result<u8> {
    let r = (fig.report)(outcomes)?;
    print!("{}", r.table);
    println!("{}", wrap(&r.method, 100));
    let (json, svg) = write_report(fig, &r, &root().join("target/bench"))?;
    println!("json: {}\nplot: {}", rel(&json), rel(&svg));
    if !r.wrong.is_empty() {
        bail!("runs with a wrong checksum or exit status: {}", r.wrong.join(", "));
    }
    Ok(0)
}

/// `DIR/FIG.json` (the rows and the method) and `DIR/FIG.svg`.
fn write_report(fig: &Figure, r: &Report, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join(format!("{}.json", fig.name));
    let mut v = r.json.clone();
    v["method"] = serde_json::Value::String(r.method.clone());
    std::fs::write(&json, serde_json::to_string_pretty(&v)?)?;
    let svg = dir.join(format!("{}.svg", fig.name));
    plot::write(&svg, &r.plot)?;
    Ok((json, svg))
}

/// The selection of `--workloads` (default `all`), each checked against `known`.
pub fn select(given: &Option<Vec<String>>, known: &[&str], default: &[&str], what: &str) -> Result<Vec<String>> {
    let v: Vec<String> = given.clone().unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    for w in &v {
        if !known.contains(&w.as_str()) {
            bail!("unknown {what} {w:?} (known: {})", known.join(", "));
        }
    }
    Ok(v)
}

/// The plugin and machine part of a method text, from the runs themselves.
pub fn method_base(outcomes: &[Outcome]) -> String {
    let s = &outcomes[0].spec;
    let distinct = |f: fn(&Spec) -> &str| {
        let mut p: Vec<&str> = outcomes.iter().map(|o| f(&o.spec)).collect();
        p.sort();
        p.dedup();
        p
    };
    let params = distinct(|s| s.numa_sim.as_str());
    let policy = distinct(|s| s.placement_params.as_str());
    format!(
        "Each row is one boot of machine {} under the numa-sim plugin (params per run: {params:?}; defaults: 1 MiB \
         8-way per-CPU cache, 64 B lines, 300/900 ns local/remote at distance 10/20, 1 ns per instruction, \
         instruction fetches modelled), running bench/workloads/W.sh {} in a Debian guest whose root is the \
         `debian` image. 'sim ms' is the simulated time of the workload's region of interest (its DISCO-ROI \
         markers, the plugin's HINT #0x7a/#0x7b) summed over all CPUs, 'local %' its share of local misses; wall \
         time is the whole run's, on a shared 2-core host, and noisy. Monitor placement parameters per run: {policy:?} \
         (empty: the defaults). QEMU: {}.",
        s.machine,
        s.size,
        crate::qemu::version()
    )
}

/// A raytrace-like workload has no host reference: its rows must agree with
/// a native run (the reference of the workload test), or, collected
/// without one, with each other (`agree`).
pub fn checksum_verdict(o: &Outcome, all: &[Outcome]) -> &'static str {
    if !o.exit_ok {
        return "FAILED";
    }
    match o.checksum_ok {
        Some(true) => "ok",
        Some(false) => "WRONG",
        None => {
            let same: Vec<&Outcome> = all.iter().filter(|x| x.spec.workload == o.spec.workload).collect();
            let native = same.iter().find(|x| x.spec.native);
            match native {
                _ if o.checksum().is_empty() => "WRONG",
                Some(n) if n.checksum() == o.checksum() => "=native",
                // Without a native run: the runs can only agree with each other.
                None if same.iter().all(|x| x.checksum() == o.checksum()) => "agree",
                _ => "DIFFERS",
            }
        }
    }
}

#[cfg(test)]
mod roundtrip;
