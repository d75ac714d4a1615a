//! `cargo xtask faults --collect FILE...`: a long campaign runs in parts
//! (`--boots FIRST..LAST`, each writing its JSON report); this sums the
//! parts' numbers into the campaign's report. The parts must come from
//! one plan (same seed and count) and must not overlap.

use crate::util::{rel, root};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The numbers of one run (or part), as its JSON's `summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub count: usize,
    /// The plan's boots this run covered (1-based, inclusive).
    pub boots: (usize, usize),
    pub planned: usize,
    /// Injections seen, by kind name.
    pub injected: BTreeMap<String, u32>,
    pub total: u32,
    /// Injections contained: all of them when the run had no problem.
    pub contained: u32,
    pub attacker_boots: u32,
    pub watchdog_resets: u32,
    pub recoveries_s: Vec<f64>,
    /// Per victim: rounds and rounds with a wrong result.
    pub victims: BTreeMap<String, (u64, u64)>,
    pub monitor_faults: usize,
    pub wall_s: f64,
    pub problems: Vec<String>,
}

/// Sums `parts`; Err if they are not parts of one plan.
pub fn sum(parts: &[Summary]) -> Result<Summary> {
    let Some(first) = parts.first() else { bail!("no parts to collect") };
    let mut s = Summary { seed: first.seed, count: first.count, boots: (usize::MAX, 0), ..Summary::default() };
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for p in parts {
        if (p.seed, p.count) != (s.seed, s.count) {
            bail!(
                "a part of plan (seed {}, count {}) beside one of (seed {}, count {})",
                p.seed,
                p.count,
                s.seed,
                s.count
            );
        }
        if let Some(o) = covered.iter().find(|c| c.0 <= p.boots.1 && p.boots.0 <= c.1) {
            bail!("boots {}..{} overlap boots {}..{}", p.boots.0, p.boots.1, o.0, o.1);
        }
        covered.push(p.boots);
        s.boots = (s.boots.0.min(p.boots.0), s.boots.1.max(p.boots.1));
        s.planned += p.planned;
        for (k, n) in &p.injected {
            *s.injected.entry(k.clone()).or_default() += n;
        }
        s.total += p.total;
        s.contained += p.contained;
        s.attacker_boots += p.attacker_boots;
        s.watchdog_resets += p.watchdog_resets;
        s.recoveries_s.extend(&p.recoveries_s);
        for (v, (rounds, errors)) in &p.victims {
            let e = s.victims.entry(v.clone()).or_default();
            *e = (e.0 + rounds, e.1.saturating_add(*errors));
        }
        s.monitor_faults += p.monitor_faults;
        s.wall_s += p.wall_s;
        s.problems.extend(p.problems.iter().map(|m| format!("boots {}..{}: {m}", p.boots.0, p.boots.1)));
    }
    Ok(s)
}

/// The boots of `s`'s range that no part covered, as ranges.
fn gaps(parts: &[Summary]) -> Vec<(usize, usize)> {
    let mut covered: Vec<(usize, usize)> = parts.iter().map(|p| p.boots).collect();
    covered.sort();
    let mut out = Vec::new();
    let mut next = covered.first().map_or(1, |c| c.0);
    for (a, b) in covered {
        if a > next {
            out.push((next, a - 1));
        }
        next = next.max(b + 1);
    }
    out
}

pub fn main(files: &[PathBuf]) -> Result<u8> {
    let mut parts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", f.display()))?;
        let summary = json
            .get("summary")
            .with_context(|| format!("{}: no `summary` (written before `--collect` existed?)", f.display()))?;
        parts.push(
            serde_json::from_value::<Summary>(summary.clone()).with_context(|| format!("{}: summary", f.display()))?,
        );
    }
    let s = sum(&parts)?;
    let mut rec = s.recoveries_s.clone();
    rec.sort_by(f64::total_cmp);
    println!(
        "faults, collected from {} parts (seed {}, {}-injection plan): boots {}..{}, {} injections ({} planned), {} contained",
        parts.len(),
        s.seed,
        s.count,
        s.boots.0,
        s.boots.1,
        s.total,
        s.planned,
        s.contained
    );
    for (k, n) in &s.injected {
        println!("  {k:9} {n:>5}");
    }
    if let (Some(med), Some(max)) = (rec.get(rec.len() / 2), rec.last()) {
        println!("recovery ({} times): median {med:.1} s, max {max:.1} s", rec.len());
    }
    for (v, (rounds, errors)) in &s.victims {
        println!("victim {v}: {rounds} rounds, {errors} wrong");
    }
    println!(
        "attacker boots {}, watchdog resets {}, monitor faults {}, wall time {:.0} s",
        s.attacker_boots, s.watchdog_resets, s.monitor_faults, s.wall_s
    );
    let holes = gaps(&parts);
    if !holes.is_empty() {
        println!("boots not covered by any part: {holes:?}");
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("faults-seed{}-collected.json", s.seed));
    std::fs::write(&path, serde_json::to_string_pretty(&serde_json::json!({ "summary": s, "gaps": holes }))?)?;
    println!("json: {}", rel(&path));
    if !s.problems.is_empty() {
        bail!("{}", s.problems.join("\n"));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(boots: (usize, usize), panics: u32) -> Summary {
        Summary {
            seed: 1,
            count: 1000,
            boots,
            planned: 4,
            injected: [("panic".to_string(), panics)].into(),
            total: panics,
            contained: panics,
            attacker_boots: 2,
            recoveries_s: vec![1.0],
            victims: [("compute".to_string(), (10, 0))].into(),
            ..Summary::default()
        }
    }

    #[test]
    fn sums_parts_and_finds_gaps_and_overlaps() {
        let parts = [part((1, 10), 3), part((21, 30), 2)];
        let s = sum(&parts).unwrap();
        assert_eq!((s.boots, s.total, s.contained, s.planned), ((1, 30), 5, 5, 8));
        assert_eq!(s.injected["panic"], 5);
        assert_eq!(s.victims["compute"], (20, 0));
        assert_eq!(gaps(&parts), vec![(11, 20)]);
        assert!(sum(&[part((1, 10), 1), part((10, 12), 1)]).is_err(), "overlap");
        let mut other = part((11, 12), 1);
        other.seed = 2;
        assert!(sum(&[part((1, 10), 1), other]).is_err(), "another plan");
    }

    #[test]
    fn a_summary_round_trips_through_json() {
        let p = part((3, 4), 1);
        let back: Summary = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
