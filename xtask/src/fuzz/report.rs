//! What a fuzz run prints and writes (`target/bench/fuzz.json`).

use super::engine::Stats;
use anyhow::Result;
use std::path::Path;

pub fn line(s: &Stats) {
    println!(
        "fuzz {:12} {:>11} execs in {:6.1} s ({:>9.0} execs/s), corpus {:4}, crashes {}",
        s.name,
        s.execs,
        s.secs,
        s.per_sec(),
        s.corpus,
        s.crashes
    );
    for (file, msg) in &s.crash_files {
        println!("  crash {}: {}", crate::util::rel(file), msg.replace('\n', " "));
    }
}

pub fn write_json(path: &Path, seconds: u64, execs: Option<u64>, all: &[Stats]) -> Result<()> {
    let targets: Vec<serde_json::Value> = all
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "execs": s.execs,
                "seconds": s.secs,
                "execs_per_sec": s.per_sec(),
                "corpus": s.corpus,
                "seconds_limit": seconds,
                "execs_limit": execs,
                "crashes": s.crashes,
                "crash_files": s.crash_files.iter().map(|(f, m)| serde_json::json!({
                    "file": crate::util::rel(f),
                    "panic": m,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Targets not run this time keep their entries from earlier runs.
    let old: Vec<serde_json::Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|d| d["targets"].as_array().cloned())
        .unwrap_or_default();
    let ran = |v: &serde_json::Value| all.iter().any(|s| v["name"] == s.name);
    let mut targets: Vec<serde_json::Value> = old.into_iter().filter(|v| !ran(v)).chain(targets).collect();
    targets.sort_by_key(|v| v["name"].as_str().unwrap_or("").to_string());
    let doc = serde_json::json!({ "targets": targets });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}
