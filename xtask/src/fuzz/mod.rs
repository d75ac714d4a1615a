//! `cargo xtask fuzz`: coverage-free, structure-aware fuzzing of every
//! parser of guest- or user-controlled input, in plain Rust (no fuzzer
//! runtime to install, stable toolchain). Each target (see [`targets`])
//! checks the invariants its parser promises; the loop ([`engine`])
//! replays the seeds and the corpus files in `xtask/fuzz-corpus/<target>/`
//! (crash regressions among them), then mutates.
//!
//! Long runs re-run xtask in the `fuzz` profile (optimized, with debug
//! assertions and overflow checks), one target after another on one core.
//! `cargo xtask test` runs every target a few seconds in-process
//! ([`short`]).

mod engine;
mod input;
mod mutate;
mod report;
mod rng;
mod targets;

use crate::util::root;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Set in the child that runs in the `fuzz` profile.
const CHILD_ENV: &str = "DISCO_FUZZ_OPTIMIZED";

#[derive(Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop a target after this many executions (before --seconds if it is faster).
    #[arg(long, value_name = "N")]
    execs: Option<u64>,
    /// Only these targets, comma-separated (see --list).
    #[arg(long, value_name = "NAME,...")]
    target: Option<String>,
    /// Run one input file through the target (with --target) and show the panic, if any.
    #[arg(long, value_name = "FILE", requires = "target")]
    replay: Option<PathBuf>,
    /// The mutator's seed (runs are reproducible for one seed and time).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// List the targets.
    #[arg(long)]
    list: bool,
    /// Run in this process (debug build) instead of the optimized `fuzz` profile.
    #[arg(long)]
    in_process: bool,
}

pub fn main(a: FuzzArgs) -> Result<u8> {
    if a.list {
        for t in targets::all() {
            println!("{:12} {}", t.name, t.about);
        }
        return Ok(0);
    }
    let chosen = chosen(a.target.as_deref())?;
    if let Some(file) = &a.replay {
        return replay(&chosen[0], file);
    }
    if !a.in_process && std::env::var_os(CHILD_ENV).is_none() {
        return optimized(&a);
    }
    let mut all = Vec::new();
    for t in &chosen {
        let budget = engine::Budget { time: Duration::from_secs(a.seconds), execs: a.execs.unwrap_or(u64::MAX) };
        let stats = run_one(t, budget, a.seed);
        report::line(&stats);
        all.push(stats);
    }
    let json = root().join("target/bench/fuzz.json");
    report::write_json(&json, a.seconds, a.execs, &all)?;
    println!("fuzz: wrote {}", crate::util::rel(&json));
    Ok(u8::from(all.iter().any(|s| s.crashes > 0)))
}

/// `cargo xtask test`'s part: every target for `secs` seconds in this
/// process; an error names the crashes.
pub fn short(secs: u64) -> Result<()> {
    let mut failed = Vec::new();
    for t in targets::all() {
        let stats = run_one(&t, engine::Budget { time: Duration::from_secs(secs), execs: u64::MAX }, 1);
        report::line(&stats);
        for (file, msg) in &stats.crash_files {
            failed.push(format!("{}: {} ({})", t.name, msg.lines().next().unwrap_or(""), crate::util::rel(file)));
        }
    }
    if !failed.is_empty() {
        bail!("fuzz crashes:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

fn chosen(names: Option<&str>) -> Result<Vec<targets::Target>> {
    let Some(names) = names else { return Ok(targets::all()) };
    names
        .split(',')
        .map(|n| match targets::all().into_iter().find(|t| t.name == n) {
            Some(t) => Ok(t),
            None => {
                let list: Vec<&str> = targets::all().iter().map(|t| t.name).collect();
                bail!("no fuzz target `{n}`; targets: {}", list.join(", "))
            }
        })
        .collect()
}

/// The target's seeds, then its corpus files (sorted).
fn seeds(t: &targets::Target) -> Vec<Vec<u8>> {
    let mut v = (t.seeds)();
    let dir = corpus_dir(t.name);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    v.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
    v
}

fn corpus_dir(name: &str) -> PathBuf {
    root().join("xtask/fuzz-corpus").join(name)
}

fn run_one(t: &targets::Target, budget: engine::Budget, seed: u64) -> engine::Stats {
    let crash_dir = root().join("target/fuzz/crashes");
    engine::quiet_panics(|| engine::run(t, seeds(t), budget, seed, &crash_dir))
}

fn replay(t: &targets::Target, file: &Path) -> Result<u8> {
    let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match engine::quiet_panics(|| engine::exec(t, &input)) {
        Ok(_) => {
            println!("fuzz {}: {} runs without a panic", t.name, file.display());
            Ok(0)
        }
        Err(msg) => {
            println!("fuzz {}: {} panics:\n{msg}", t.name, file.display());
            Ok(1)
        }
    }
}

/// Runs this command again in the `fuzz` profile.
fn optimized(a: &FuzzArgs) -> Result<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args(["run", "--quiet", "--profile", "fuzz", "--package", "xtask", "--", "fuzz"]);
    cmd.args(["--seconds", &a.seconds.to_string(), "--seed", &a.seed.to_string()]);
    if let Some(t) = &a.target {
        cmd.args(["--target", t]);
    }
    if let Some(n) = a.execs {
        cmd.args(["--execs", &n.to_string()]);
    }
    let status = cmd.env(CHILD_ENV, "1").status().context("cannot run cargo")?;
    Ok(status.code().unwrap_or(1) as u8)
}
