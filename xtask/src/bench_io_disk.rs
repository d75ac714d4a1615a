//! `cargo xtask bench io`, disk part (issue 13, item 8): 4 KiB direct I/O
//! of one guest on its virtio disk under the monitor against the same
//! guest booted natively with QEMU's own virtio-blk on the same bytes of
//! the same disk file.
//!
//! The guest program is `diskbench` (`bench/numa-sim/memloop/src/bin/`):
//! sequential write (then fsync), sequential read, random write (then
//! fsync) and random read of 4 KiB blocks with O_DIRECT and one request in
//! flight, each phase timed by the guest's CLOCK_MONOTONIC, every block
//! read checked against what was written.

use crate::bench::median;
use crate::bench_placement::disk_initrd_with_memloop;
use crate::boot::{self, Env};
use crate::exec;
use crate::machine::Machine;
use crate::manifest;
use crate::qemu::Session;
use crate::util::root;
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// The phases diskbench runs, in order.
pub const PHASES: [&str; 4] = ["seq-write", "seq-read", "rand-write", "rand-read"];
/// The disk file image the benchmark writes (created when missing).
const IMAGE: &str = "bench-io";

/// (phase, ops, nanoseconds) of one diskbench run, in [`PHASES`] order;
/// Err if a phase is missing or had errors.
pub fn parse(lines: &[String]) -> Result<Vec<(String, u64, u64)>> {
    let mut out = Vec::new();
    for phase in PHASES {
        let prefix = format!("diskbench: phase={phase} ");
        let line = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix))
            .with_context(|| format!("no `{prefix}...` line"))?;
        let field = |k: &str| -> Result<u64> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                .with_context(|| format!("no `{k}=` in `{prefix}{line}`"))?
                .parse()
                .with_context(|| format!("`{k}` in `{prefix}{line}`"))
        };
        if field("errors")? != 0 {
            bail!("diskbench {phase}: `{prefix}{line}` (failed requests or wrong data)");
        }
        let (ops, ns) = (field("ops")?, field("ns")?);
        if ops == 0 || ns == 0 {
            bail!("diskbench {phase}: no requests or no time: `{prefix}{line}`");
        }
        out.push((phase.to_string(), ops, ns));
    }
    Ok(out)
}

/// One run's rates: MiB/s and thousands of requests per second.
fn rates(runs: &[Vec<(String, u64, u64)>], phase: usize) -> (f64, f64) {
    let per_s: Vec<f64> = runs.iter().map(|r| r[phase].1 as f64 / (r[phase].2 as f64 / 1e9)).collect();
    let iops = median(&per_s);
    (iops * 4096.0 / f64::from(1 << 20), iops / 1000.0)
}

pub struct DiskArgs {
    pub mib: u32,
    pub ops: u32,
    pub runs: u32,
}

/// Runs the disk part; prints its table and returns its JSON and method.
pub fn run(env: &mut Env, m: &Machine, a: &DiskArgs) -> Result<(serde_json::Value, String)> {
    let initrd = disk_initrd_with_memloop(env)?;
    let text = format!(
        "[[vm]]\nname = \"d\"\nvcpus = 1\nmemory = \"256M\"\ninitrd = \"{}\"\nexec = \"diskbench {} {}\"\n\
         [[vm.disk]]\nimage = \"{IMAGE}\"\nmode = \"persistent\"\nsize = \"{}M\"\n",
        initrd.display(),
        a.mib,
        a.ops,
        a.mib + 4
    );
    let man = manifest::parse("<bench io disk manifest>", &text, m, &root())?;
    // Boot, plus every request at 200 per second.
    let timeout = Duration::from_secs(180 + u64::from(2 * (a.mib * 256 + a.ops)) / 200);
    let (mut monitor, mut native) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        let tag = "bench-io-disk";
        let cmd = boot::manifest_command(env, m, &man, tag, false)?;
        let out = exec::run_multi(Session::spawn(cmd, tag, false)?, &["d"], timeout)?;
        out.check()?;
        monitor.push(parse(&out.vm("d").output).with_context(|| format!("monitor run {i}; log {}", out.log))?);
        let tag = "bench-io-disk-native";
        let s = Session::spawn(boot::native_manifest_command(env, m, &man, tag)?, tag, false)?;
        let out = exec::run(s, boot::VM_NAME, timeout)?;
        native.push(parse(&out.output).with_context(|| format!("native run {i}"))?);
    }
    println!(
        "guest disk, 4 KiB O_DIRECT requests, one in flight ({} MiB sequential, {} random; {} runs, medians):",
        a.mib, a.ops, a.runs
    );
    println!("  {:<11} {:>14} {:>14} {:>10}", "phase", "monitor", "native", "ratio");
    let mut phases = serde_json::Map::new();
    for (p, name) in PHASES.iter().enumerate() {
        let ((mon_mib, mon_k), (nat_mib, nat_k)) = (rates(&monitor, p), rates(&native, p));
        println!(
            "  {name:<11} {mon_mib:>7.2} MiB/s {nat_mib:>7.2} MiB/s {:>9.2}x   ({mon_k:.2}k vs {nat_k:.2}k req/s)",
            mon_mib / nat_mib
        );
        let ns = |runs: &[Vec<(String, u64, u64)>]| runs.iter().map(|r| r[p].2).collect::<Vec<_>>();
        phases.insert(
            name.to_string(),
            serde_json::json!({
                "monitor": { "mib_s": mon_mib, "kreq_s": mon_k, "ns": ns(&monitor) },
                "native": { "mib_s": nat_mib, "kreq_s": nat_k, "ns": ns(&native) },
                "ratio": mon_mib / nat_mib,
            }),
        );
    }
    let method = format!(
        "disk: {} pairs of boots of one VM (1 vCPU, 256 MiB) with a persistent disk (image `{IMAGE}` of the default \
         disk file): under the monitor (its virtio-blk, requests run synchronously on the notifying vCPU against \
         the physical virtio disk QEMU gives the monitor), and natively (the same kernel and initramfs, QEMU's own \
         virtio-blk-device over the image's bytes of the same file, raw offset/size, cache=writeback). The guest's \
         diskbench opens /dev/vda with O_DIRECT and times, with CLOCK_MONOTONIC, {} MiB of sequential 4 KiB writes \
         (then fsync, a flush), the same read back, {} random 4 KiB writes (then fsync) and {} random reads, one \
         request in flight; every block read is checked. Medians over the runs; TCG's rates, not hardware's.",
        a.runs, a.mib, a.ops, a.ops
    );
    let json = serde_json::json!({ "mib": a.mib, "random_ops": a.ops, "runs": a.runs, "phases": phases });
    Ok((json, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(errors: u32) -> Vec<String> {
        PHASES
            .iter()
            .map(|p| format!("diskbench: phase={p} ops=256 bytes=1048576 ns=500000000 errors={errors}"))
            .collect()
    }

    #[test]
    fn parses_the_four_phases() {
        let r = parse(&lines(0)).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[2], ("rand-write".to_string(), 256, 500_000_000));
        // 256 requests in 0.5 s: 512 per second, 2 MiB/s.
        let (mib, k) = rates(&[r], 0);
        assert!((mib - 2.0).abs() < 1e-9 && (k - 0.512).abs() < 1e-9);
        assert!(parse(&lines(1)).is_err(), "errors fail the run");
        assert!(parse(&lines(0)[..3]).is_err(), "a missing phase fails the run");
    }
}
