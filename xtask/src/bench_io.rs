//! `cargo xtask bench io`: inter-VM TCP throughput through the monitor's
//! switch, and a guest's 4 KiB disk I/O under the monitor against native
//! (`bench_io_disk`) (issue 13, item 8).
//!
//! Network: one boot of two VMs with `[[vm.net]]`: `b` sends the same file of
//! pseudo-random data to `a` over TCP with busybox `nc`, `--runs` times,
//! and times each transfer itself (`/proc/uptime` before the connect and
//! after `nc` returned, which it does once `a` has received everything and
//! closed); `a` checks each transfer's size. As a reference without the
//! switch, `b` then sends the file to itself over loopback the same number
//! of times. JSON in `target/bench/io.json`.

use crate::bench::{median, wrap};
use crate::boot::{self, Env};
use crate::exec;
use crate::machine;
use crate::manifest;
use crate::qemu::{self, Session};
use crate::util::{rel, root};
use anyhow::{bail, Context, Result};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct IoArgs {
    #[arg(long, short, default_value = "numa2")]
    pub machine: String,
    /// Transfers of each kind (inter-VM, loopback).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// MiB per transfer.
    #[arg(long, default_value_t = 8)]
    pub mib: u32,
    /// Which part: `net`, `disk` or `all`.
    #[arg(long, default_value = "all", value_parser = ["net", "disk", "all"])]
    pub part: String,
    /// Disk: MiB written and read sequentially in 4 KiB requests.
    #[arg(long, default_value_t = 16)]
    pub disk_mib: u32,
    /// Disk: random 4 KiB writes, and as many reads.
    #[arg(long, default_value_t = 2048)]
    pub disk_ops: u32,
}

const MARK: &str = "io-bench:";

/// `a`: receives `runs` transfers on ports 6000.., prints each size.
fn receiver(runs: u32) -> String {
    format!(
        "mkfifo /tmp/hold
i=0
while [ $i -lt {runs} ]; do
  timeout 300 nc -l -p $((6000 + i)) <>/tmp/hold > /tmp/in
  echo got$i=$(wc -c < /tmp/in)
  i=$((i+1))
done"
    )
}

/// `b`: `runs` timed transfers to `a`, then `runs` over loopback.
fn sender(runs: u32, mib: u32) -> String {
    format!(
        "dd if=/dev/urandom of=/tmp/out bs=1M count={mib} 2>/dev/null
mkfifo /tmp/hold
# A refused connect (the listener not up yet) is retried; only the
# attempt that went through is timed.
timed() {{
  s=1; j=0
  while [ $s -ne 0 ] && [ $j -lt 120 ]; do
    read t0 x < /proc/uptime; nc $2 $3 < /tmp/out; s=$?; read t1 x < /proc/uptime
    [ $s -ne 0 ] && sleep 1; j=$((j+1))
  done
  echo \"{MARK} kind=$1 t0=$t0 t1=$t1 status=$s\"
}}
i=0
while [ $i -lt {runs} ]; do
  timed switch 10.0.0.1 $((6000 + i))
  i=$((i+1))
done
i=0
while [ $i -lt {runs} ]; do
  nc -l -p 7000 <>/tmp/hold > /dev/null &
  sleep 1
  timed loopback 127.0.0.1 7000
  wait
  i=$((i+1))
done"
    )
}

/// (kind, seconds) of each timed transfer.
fn parse(lines: &[String]) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for line in lines.iter().filter_map(|l| l.trim().strip_prefix(MARK)) {
        let field = |k: &str| -> Result<&str> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                .with_context(|| format!("no `{k}=` in `{MARK}{line}`"))
        };
        if field("status")? != "0" {
            bail!("a transfer failed: `{MARK}{line}`");
        }
        let (t0, t1): (f64, f64) = (field("t0")?.parse()?, field("t1")?.parse()?);
        if t1 <= t0 {
            bail!("a transfer took no time by /proc/uptime: `{MARK}{line}`");
        }
        out.push((field("kind")?.to_string(), t1 - t0));
    }
    Ok(out)
}

pub fn io_cmd(a: IoArgs) -> Result<u8> {
    if a.runs == 0 || a.mib == 0 || a.disk_mib == 0 || a.disk_ops == 0 {
        bail!("--runs, --mib, --disk-mib and --disk-ops must be at least 1");
    }
    let m = machine::load(&a.machine)?;
    let mut env = Env::prepare()?;
    let mut json = serde_json::json!({ "machine": m.name });
    let mut methods = Vec::new();
    if a.part != "disk" {
        let (net, method) = net(&mut env, &m, &a)?;
        json["net"] = net;
        methods.push(method);
    }
    if a.part != "net" {
        let d = crate::bench_io_disk::DiskArgs { mib: a.disk_mib, ops: a.disk_ops, runs: a.runs };
        let (disk, method) = crate::bench_io_disk::run(&mut env, &m, &d)?;
        json["disk"] = disk;
        methods.push(method);
    }
    for method in &methods {
        println!("{}", wrap(method, 100));
    }
    json["method"] = methods.join(" ").into();
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("io.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", rel(&path)))?;
    println!("json: {}", rel(&path));
    Ok(0)
}

/// The network part: its JSON and method.
fn net(env: &mut Env, m: &crate::machine::Machine, a: &IoArgs) -> Result<(serde_json::Value, String)> {
    let text = format!(
        "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"{mem}M\"\nexec = '''\n{}\n'''\n[[vm.net]]\nip = \"10.0.0.1/24\"\n\n\
         [[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"{mem}M\"\nexec = '''\n{}\n'''\n[[vm.net]]\nip = \"10.0.0.2/24\"\n",
        receiver(a.runs),
        sender(a.runs, a.mib),
        mem = 192 + 2 * a.mib,
    );
    let man = manifest::parse("<bench io manifest>", &text, m, &root())?;
    let cmd = boot::manifest_command(env, m, &man, "bench-io", false)?;
    // Boot, plus every transfer at 100 KiB/s.
    let timeout = Duration::from_secs(120 + u64::from(a.runs * a.mib) * 2 * 10);
    let out = exec::run_multi(Session::spawn(cmd, "bench-io", false)?, &["a", "b"], timeout)?;
    out.check()?;
    let bytes = u64::from(a.mib) << 20;
    for i in 0..a.runs {
        let got = crate::tests::field(&out.vm("a").output, &format!("got{i}="))?;
        if got != bytes.to_string() {
            bail!("transfer {i}: vm a received {got} bytes, b sent {bytes}\nlog: {}", out.log);
        }
    }
    let times = parse(&out.vm("b").output)?;
    let series = |kind: &str| -> Vec<f64> { times.iter().filter(|(k, _)| k == kind).map(|(_, t)| *t).collect() };
    let (switch, lo) = (series("switch"), series("loopback"));
    if switch.len() != a.runs as usize || lo.len() != a.runs as usize {
        bail!("expected {} timed transfers of each kind, got {} and {}", a.runs, switch.len(), lo.len());
    }
    let rate = |t: f64| f64::from(a.mib) / t;
    let stats_line = out.lines.iter().rev().find(|l| l.contains("stats: vm b: net ")).cloned().unwrap_or_default();
    println!("inter-VM TCP on {}: {} MiB per transfer, {} transfers of each kind", m.name, a.mib, a.runs);
    for (name, s) in [("a <- b through the switch", &switch), ("b -> b over loopback", &lo)] {
        let all: Vec<String> = s.iter().map(|t| format!("{:.1}", rate(*t))).collect();
        println!("  {name:<26} median {:>7.2} MiB/s  (runs: {} MiB/s)", rate(median(s)), all.join(" "));
    }
    println!("  monitor: {}", stats_line.trim());
    let method = format!(
        "method: network: one boot of two VMs (1 vCPU, {} MiB each, [[vm.net]], 10.0.0.1 and .2) under the monitor on {} \
         ({} CPUs; {} with TCG; host: {} CPUs). VM b writes {} MiB of /dev/urandom to its tmpfs, then \
         sends it {} times to VM a with busybox nc over TCP (MTU 1500, no offloads: every frame copied by the \
         monitor from b's transmit buffers into a's receive buffers), each time reading /proc/uptime (10 ms \
         resolution) before the connect and after nc returned, which it does once a received everything and \
         closed; a checks each transfer's byte count. Then b sends the same file to itself over loopback as \
         often (the guest's TCP stack and nc without virtio-net or the switch). Medians of MiB/s. Both VMs \
         share the machine's CPUs with nothing else; the rates are TCG's, not hardware's.",
        192 + 2 * a.mib,
        m.name,
        m.cpus(),
        qemu::version(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.mib,
        a.runs,
    );
    let json = serde_json::json!({
        "mib_per_transfer": a.mib,
        "inter_vm_tcp": { "seconds": switch, "median_mib_s": rate(median(&switch)) },
        "loopback_tcp": { "seconds": lo, "median_mib_s": rate(median(&lo)) },
        "monitor_stats": stats_line.trim(),
    });
    Ok((json, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timed_transfers() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = parse(&l(&["x", "io-bench: kind=switch t0=1.50 t1=3.00 status=0"])).unwrap();
        assert_eq!(t, [("switch".to_string(), 1.5)]);
        assert!(parse(&l(&["io-bench: kind=switch t0=1 t1=3 status=1"])).is_err());
        assert!(parse(&l(&["io-bench: kind=switch t0=3 t1=3 status=0"])).is_err());
        assert!(parse(&l(&["io-bench: kind=switch t0=1 status=0"])).is_err());
    }
}
