//! `cargo xtask faults --count N` (issue 16, item 4): a fault-injection
//! campaign. One attacker VM injects N faults drawn from twelve kinds
//! (`plan.rs`), one after another, and is restarted after each one that
//! ends it, while two victim VMs compute known results; at the end the
//! report says what was injected, whether it stayed contained (the
//! victims' results bit-exact, the monitor alive, every VM ended cleanly),
//! how often the attacker restarted, how long it took to come back, and
//! whether every frame returned to its node.
//!
//! The guest side is `bench/faults/`: a kernel module for what needs EL1
//! (HVC, SMC, trapped system registers, garbage virtqueues, CPU_OFF, a
//! masked spin, an oops), built against Debian's headers for the guest
//! kernel, and a static EL0 program for guest-physical accesses through
//! `/dev/mem` (`build.rs`). The guests under test stay unmodified.
//!
//! CI runs a short campaign (the `faults` step of `cargo xtask test`).

mod build;
mod collect;
pub mod plan;
mod run;

use crate::boot::{self, Env};
use crate::exec::{self, Report};
use crate::qemu::Session;
use crate::util::{host_md5, root, write_if_changed};
use crate::{machine, manifest};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct FaultsArgs {
    /// Injections in all (at least 1000 for a full campaign).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// The plan's seed: the same seed injects the same faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, short, default_value = "numa2")]
    pub machine: String,
    /// Start with every kind once (seven boots), then random ones.
    #[arg(long)]
    pub every_kind: bool,
    /// Run only these boots of the plan (1-based, inclusive), so that a long
    /// campaign runs in parts: the same seed and count give the same plan.
    #[arg(long, value_name = "FIRST..LAST", value_parser = parse_boots)]
    pub boots: Option<(usize, usize)>,
    /// Instead of a run: sum the JSON reports of a campaign's parts (the
    /// `faults*.json` files `--boots` runs wrote) into one report.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["boots", "every_kind"])]
    pub collect: Vec<std::path::PathBuf>,
}

fn parse_boots(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{text}`: expected FIRST..LAST, 1 <= FIRST <= LAST (e.g. 1..80)");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?);
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

impl FaultsArgs {
    /// The `faults` step of `cargo xtask test`: every kind once.
    pub fn ci() -> Self {
        FaultsArgs {
            count: plan::KINDS.len(),
            seed: 1,
            machine: "numa2".into(),
            every_kind: true,
            boots: None,
            collect: Vec::new(),
        }
    }
}

fn median(v: &mut [Duration]) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// One campaign (or part of one); Err if it could not run. The report's
/// problems say what was not contained.
pub fn run(env: &mut Env, a: &FaultsArgs) -> Result<(Report, collect::Summary)> {
    let m = machine::load(&a.machine)?;
    let whole = plan::plan(a.count, a.seed, a.every_kind);
    let (first, last) = a.boots.unwrap_or((1, whole.len()));
    if last > whole.len() {
        bail!(
            "--boots {first}..{last}: the plan of {} injections (seed {}) has {} boots",
            a.count,
            a.seed,
            whole.len()
        );
    }
    let plan = whole[first - 1..last].to_vec();
    let planned: usize = plan.iter().map(Vec::len).sum();
    // The disk initrd: it has the virtio modules (the attacker has a NIC).
    let base = env.disk_initrd()?;
    let initrd = build::attacker_initrd(&env.guest, &base, &plan)?;
    let seq: String = (1..=run::SEQ_N).map(|i| format!("{i}\n")).collect();
    let fill: String = (1..=run::FILL_N).map(|i| format!("{i}\n")).collect();
    let (seq_md5, fill_md5) = (host_md5(seq.as_bytes())?, host_md5(fill.as_bytes())?);
    let text = run::manifest_text(plan.len(), first - 1, a.seed, &initrd, &seq_md5, &fill_md5);
    let file = root().join(".cache/faults/campaign.toml");
    write_if_changed(&file, text.as_bytes())?;
    let man = manifest::parse(&file.display().to_string(), &text, &m, &root())?;
    let tag = "faults";
    let cmd = boot::manifest_command(env, &m, &man, tag, false)?;
    // Each boot of the attacker takes tens of seconds under TCG.
    let timeout = Duration::from_secs(600 + 90 * plan.len() as u64);
    let t0 = Instant::now();
    let mut watch = run::Watch::new();
    let out = exec::run_multi_with(Session::spawn_with_input(cmd, tag)?, &run::VMS, timeout, &mut watch)?;
    let wall = t0.elapsed();
    let mut lines = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let total = watch.total();
    lines.push(format!(
        "injected {total} faults ({planned} planned: boots {first}..{last} of {} of the {}-injection plan, seed {}) \
         in {} attacker boots; wall time {:.0} s",
        whole.len(),
        a.count,
        a.seed,
        out.vm("attacker").reboots + 1,
        wall.as_secs_f64()
    ));
    let show = |ends: Vec<(String, u32)>| ends.iter().map(|(e, n)| format!("{e} {n}")).collect::<Vec<_>>().join(", ");
    lines.push(format!("  {:9} {:>5}  boots it ended, by how", "kind", "count"));
    for k in plan::KINDS {
        let n = watch.injected.get(&k).copied().unwrap_or(0);
        lines.push(format!("  {:9} {n:>5}  {}", k.name(), show(watch.ends_of(Some(k)))));
        // The covering plan's boots each end with one kind: check how.
        let expected = run::expected_ends(k);
        if a.every_kind && n == 0 {
            problems.push(format!("kind {}: never injected (--every-kind)", k.name()));
        }
        if a.every_kind && !expected.is_empty() {
            let bad: Vec<(String, u32)> =
                watch.ends_of(Some(k)).into_iter().filter(|(e, _)| !expected.contains(&e.as_str())).collect();
            if n == 0 || !bad.is_empty() {
                problems
                    .push(format!("kind {}: injected {n}, boots ended by {bad:?}: expected {expected:?}", k.name()));
            }
        }
    }
    lines.push(format!(
        "attacker: restarts {}; boots that printed FAULTS-SURVIVED {}; boots ended with no fault pending (survivors' \
         own resets, the last boot): {}; oopses {}; watchdog resets {}",
        out.vm("attacker").reboots,
        watch.survived,
        show(watch.ends_of(None)),
        watch.oopsed,
        watch.watchdog_resets
    ));
    let mut rec = watch.recoveries.clone();
    let max = rec.iter().max().copied();
    if let (Some(med), Some(max)) = (median(&mut rec), max) {
        lines.push(format!(
            "recovery (attacker's end to its next FAULTS-READY, {} times): median {:.1} s, max {:.1} s",
            rec.len(),
            med.as_secs_f64(),
            max.as_secs_f64()
        ));
    }
    for name in &run::VMS[1..] {
        match run::victim_result(&out, name) {
            Some((rounds, 0)) if rounds > 0 => lines.push(format!("victim {name}: {rounds} rounds, all bit-exact")),
            r => problems.push(format!("victim {name}: {r:?} (rounds, errors): expected rounds > 0 and no errors")),
        }
    }
    for vm in &out.vms {
        if !vm.ok() {
            problems.push(format!("vm {}: {}", vm.name, vm.describe()));
        }
    }
    if !watch.done {
        problems.push("the attacker never reached its last boot (FAULTS-DONE)".into());
    }
    if (total as usize) < planned / 2 {
        problems.push(format!("only {total} of {planned} planned injections were seen"));
    }
    let mut r = Report { lines, problems };
    out.health(&mut r);
    let contained = if r.problems.is_empty() { total } else { 0 };
    r.lines.push(format!("contained: {contained} of {total} ({} problems); log {}", r.problems.len(), out.log));
    let summary = collect::Summary {
        seed: a.seed,
        count: a.count,
        boots: (first, last),
        planned,
        injected: watch.injected.iter().map(|(k, n)| (k.name().to_string(), *n)).collect(),
        total,
        contained,
        attacker_boots: out.vm("attacker").reboots + 1,
        watchdog_resets: watch.watchdog_resets,
        recoveries_s: watch.recoveries.iter().map(Duration::as_secs_f64).collect(),
        victims: run::VMS[1..]
            .iter()
            .map(|name| (name.to_string(), run::victim_result(&out, name).unwrap_or((0, u64::MAX))))
            .collect(),
        monitor_faults: out.lines.iter().filter(|l| l.contains("MONITOR PANIC")).count(),
        wall_s: wall.as_secs_f64(),
        problems: r.problems.clone(),
    };
    Ok((r, summary))
}

/// `cargo xtask faults`.
pub fn main(a: FaultsArgs) -> Result<u8> {
    if !a.collect.is_empty() {
        return collect::main(&a.collect);
    }
    let mut env = Env::prepare()?;
    println!(
        "faults: {} injections (seed {}) by VM `attacker` (2 vCPUs; restart = always) on {}, beside victims \
         `compute` and `memory`, which check every result; kinds: {}; contained = victims bit-exact, no monitor \
         fault, every VM ended, every frame returned",
        a.count,
        a.seed,
        a.machine,
        plan::KINDS.map(|k| k.name()).join(", ")
    );
    let (r, summary) = run(&mut env, &a)?;
    for l in &r.lines {
        println!("{l}");
    }
    write_json(&a, &r, &summary)?;
    if !r.problems.is_empty() {
        bail!("{}", r.problems.join("\n"));
    }
    Ok(0)
}

/// `target/bench/faults.json` (with `--boots`: `faults-seedS-bootsF-L.json`):
/// the report's lines and problems, and the numbers `--collect` sums.
fn write_json(a: &FaultsArgs, r: &Report, summary: &collect::Summary) -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "count": a.count, "seed": a.seed, "machine": a.machine, "boots": a.boots,
        "report": r.lines, "problems": r.problems, "summary": summary,
    });
    let name = match a.boots {
        Some((f, l)) => format!("faults-seed{}-boots{f}-{l}.json", a.seed),
        None => "faults.json".into(),
    };
    std::fs::write(dir.join(name), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}
