//! What the workloads of `cargo xtask bench placement` share (the memloop
//! ones in `bench_placement.rs`, the scene in `bench_scene.rs`): the
//! options, one measured row, and readers of the plugin's report and of
//! the monitor's statistics.

use crate::numasim_json::Json;
use anyhow::{Context, Result};
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(900);
/// NUMA balancing's scan delay and minimum period natively (as `bench autonuma`'s default).
pub const SCAN_MS: u32 = 100;
/// Options of `cargo xtask bench placement`.
#[derive(clap::Args, Debug)]
pub struct PlacementArgs {
    #[arg(long, short, default_value = "numa2")]
    pub machine: String,
    /// Hot data per workload (the hot-cold buffer is 4x this; the scene is this).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub mib: u32,
    /// Passes over the hot data (the scene's workers make a tenth of them in each of two phases).
    #[arg(long, default_value_t = 100)]
    pub passes: u32,
    /// numa-sim parameters (k=v,...), as for `run --numa-sim=`.
    #[arg(long, default_value = "", value_name = "PARAMS")]
    pub params: String,
    /// The monitor's policy parameters, as for `run --placement-params`.
    #[arg(long, default_value = "", value_name = "PARAMS")]
    pub placement_params: String,
    /// Only workloads whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Skip the native Linux runs.
    #[arg(long)]
    pub no_native: bool,
}

/// One measured run.
pub struct Row {
    pub workload: &'static str,
    pub mode: &'static str,
    /// Simulated CPU time of the region of interest, summed over CPUs.
    pub sim_ms: f64,
    pub local_pct: f64,
    pub migrated: Option<u64>,
    /// Replica frames made (placement `replicate`).
    pub replicated: Option<u64>,
    /// Simulated cost of the monitor's mover per page it migrated or
    /// replicated.
    pub us_per_page: Option<f64>,
    pub wall_s: f64,
    pub checksum_ok: bool,
}

impl Row {
    /// A native Linux run (NUMA balancing `on` or off): pages it migrated
    /// from `/proc/vmstat` in `output`, no replicas or mover cost.
    pub fn native(
        workload: &'static str,
        on: bool,
        (sim_ms, local_pct): (f64, f64),
        output: &[String],
        wall_s: f64,
        checksum_ok: bool,
    ) -> Row {
        let migrated =
            output.iter().find_map(|l| l.strip_prefix("numa_pages_migrated ")).and_then(|n| n.trim().parse().ok());
        let mode = if on { "native numa_balancing=1" } else { "native numa_balancing=0" };
        Row { workload, mode, sim_ms, local_pct, migrated, replicated: None, us_per_page: None, wall_s, checksum_ok }
    }
}

/// The number after `key` in vm w's last statistics line that has it
/// (`key` e.g. `placement: migrated `).
pub fn vm_stat(lines: &[String], key: &str) -> Option<u64> {
    let key = format!("stats: vm w: {key}");
    let rest = lines.iter().rev().find_map(|l| Some(&l[l.find(&key)? + key.len()..]))?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Simulated CPU time (ms, all CPUs) and local-miss share (%, all nodes)
/// of region of interest `index`.
pub fn roi_at(r: &Json, index: usize) -> Result<(f64, f64)> {
    let roi = r
        .get("roi")
        .and_then(|v| v.at(index))
        .with_context(|| format!("no region of interest {index} in the report (did the workload run?)"))?;
    let sum = |list: &str, key: &str| -> f64 {
        roi.get(list).map(Json::items).unwrap_or_default().iter().filter_map(|c| c.get(key)?.num()).sum()
    };
    let (local, remote) = (sum("nodes", "local_misses"), sum("nodes", "remote_misses"));
    let pct = if local + remote > 0.0 { 100.0 * local / (local + remote) } else { 0.0 };
    Ok((sum("cpus", "sim_ns") / 1e6, pct))
}
