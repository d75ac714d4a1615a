//! Integration test of page replication (issue 12, items 2, 3 and 6):
//! a read-shared data set read from both nodes is replicated, a write
//! collapses it and every reader sees the written data, and every frame
//! comes back when the VM ends.

use super::field;
use crate::bench_placement::initrd_with_memloop;
use crate::follow::{fail, follow, spawn};
use crate::placement_runs::roi_at;
use anyhow::Result;

/// The scene (MiB), larger than the model's 1 MiB cache, so every pass
/// misses on every line.
const SCENE_MIB: usize = 8;
/// Workers: one per CPU of numa2, two per node.
const WORKERS: usize = 4;
/// Passes per phase: phase 1 must outlast the policy, which needs two
/// remote-miss events per scene page (the first migrates and watches it,
/// the second, from the other node, replicates it), a pass or two each;
/// on a fast host a pass takes only one or two 100 ms intervals, and the
/// boot-image merge rounds that run right after boot share those
/// intervals. 6 passes left the steady phase at 67-99% local there, 12 at
/// 86-99%; phase 2 is measured.
const PASSES: usize = 24;
/// Pages the parent rewrites before the final read.
const PATCH: usize = 16;
/// The steady phase's misses must be at least this % local: well above
/// what first-touch and migration reach on a read-shared scene (50-56%,
/// `bench placement`'s scene rows), so a replication that does not work
/// fails. Issue 12 asks for 90%: 16 runs on a quiet 2-core host after the
/// reader window and the cheap merge rounds (2026-12-03) gave 88.2% once
/// and 97.8-99.8% otherwise (median 99.5%), so the bound leaves room for
/// a busier CI host; the measured value is printed.
const MIN_STEADY_LOCAL: f64 = 85.0;
/// Kernel-image pages that must end up replicated: the kernel text that
/// every vCPU runs (runs replicated 600-1600 of its 8000 pages, 100-1090
/// before pages merged back into the shared image could be replicated;
/// most of the image is code this workload never runs, data, or init
/// text).
const MIN_KERNEL_REPLICATED: u64 = 20;

/// The scene's word `i`, as sharedscan computes it.
fn word(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The sums of the scene before and after sharedscan's patch.
fn expected_sums() -> (u64, u64) {
    let words = (SCENE_MIB << 20) / 8;
    let before = (0..words).fold(0u64, |s, i| s.wrapping_add(word(i)));
    let pages = words / 512;
    let after = (0..PATCH.min(pages))
        .map(|k| k * (pages / PATCH.min(pages)) * 512)
        .fold(before, |s, i| s.wrapping_sub(word(i)).wrapping_add(!word(i)));
    (before, after)
}

pub(crate) use crate::util::stat;

/// `replicate-shared`: numa2 under the ccNUMA plugin with placement
/// `replicate`; one VM with 4 vCPUs runs sharedscan (8 MiB scene, a
/// worker pinned to each vCPU). Required: the monitor made replicas (and
/// they hold copies on both nodes while the scene is read), among them at
/// least [`MIN_KERNEL_REPLICATED`] pages of the kernel image; the steady
/// phase's misses are at least [`MIN_STEADY_LOCAL`] % local; the parent's
/// patch collapsed replicated pages; every worker's checksum of the
/// patched scene equals the host's; the VM's frames all come back.
pub fn replicate_shared(env: &mut crate::boot::Env) -> Result<()> {
    let initrd = initrd_with_memloop(env)?;
    let text = format!(
        "placement = \"replicate\"\n[[vm]]\nname = \"r\"\nvcpus = {WORKERS}\nmemory = \"256M\"\ninitrd = \"{}\"\n\
         exec = \"sharedscan {SCENE_MIB} {WORKERS} {PASSES} {PATCH}\"\n",
        initrd.display()
    );
    let (mut s, sim) = spawn(env, "numa2", "test-replicate-shared", &text, Some(""))?;
    let lines = follow(&mut s, super::GUEST_TIMEOUT, None, |_, _| Ok(()))?;
    let out: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix("[r] ")).map(|l| l.trim().into()).collect();
    let (before, after) = expected_sums();
    let sums = field(&out, "sharedscan: before ").map_err(|e| fail(&s, e.to_string()))?;
    if sums != format!("{before} after {after}") {
        return Err(fail(&s, format!("sharedscan: before {sums}; the host computes {before} after {after}")));
    }
    for w in 0..WORKERS {
        let sum = field(&out, &format!("sharedscan: worker {w}: checksum ")).map_err(|e| fail(&s, e.to_string()))?;
        if sum != after.to_string() {
            return Err(fail(&s, format!("worker {w} read checksum {sum} of the patched scene, the host {after}")));
        }
    }
    let Some(repl) = lines.iter().find(|l| l.contains("stats: vm r: replication:")) else {
        return Err(fail(&s, "no `replication:` statistics for vm r".into()));
    };
    let (made, collapses) = (stat(repl, "replicated").unwrap_or(0), stat(repl, "collapses").unwrap_or(0));
    // A quarter of the scene's pages at least: the scene is 2048 pages.
    if made < (SCENE_MIB as u64) << 6 {
        return Err(fail(&s, format!("only {made} replicas made: {repl}")));
    }
    let kernel = stat(repl, "kernel image").unwrap_or(0);
    if kernel < MIN_KERNEL_REPLICATED {
        return Err(fail(&s, format!("only {kernel} kernel-image pages replicated: {repl}")));
    }
    if collapses == 0 {
        return Err(fail(&s, format!("the patch collapsed no replicated page: {repl}")));
    }
    if !lines.iter().any(|l| l.contains("all frames returned")) {
        return Err(fail(&s, "no `all frames returned` after the VM ended".into()));
    }
    let report = sim.ok_or_else(|| fail(&s, "the run has no numa-sim plugin".into()))?.read_report()?;
    let (_, warm) = roi_at(&report, 0)?;
    let (ms, steady) = roi_at(&report, 1)?;
    if steady < MIN_STEADY_LOCAL {
        return Err(fail(&s, format!("steady phase {steady:.1}% local misses (warm-up {warm:.1}%): {repl}")));
    }
    println!("  replicate-shared: {made} replicas ({kernel} kernel-image pages), {collapses} collapses; local misses {warm:.1}% warm-up, {steady:.1}% steady ({ms:.0} ms simulated)");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_statistics() {
        let l = "disco: stats: vm r: replication: replicated 2048, replicas alive 12 per node [0, 12], collapses 16, watched 9";
        assert_eq!(super::stat(l, "replicated"), Some(2048));
        assert_eq!(super::stat(l, "collapses"), Some(16));
        assert_eq!(super::stat(l, "missing"), None);
        let l = "stats: vm a: replication: replicated 0, ...; boot image pages shared 7000, copied on write 1000";
        assert_eq!(super::stat(l, "boot image pages shared"), Some(7000));
        assert_eq!(super::stat(l, "copied on write"), Some(1000));
    }

    #[test]
    fn the_patch_changes_the_sum() {
        let (before, after) = super::expected_sums();
        assert_ne!(before, after);
    }
}
