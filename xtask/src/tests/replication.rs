//! Integration test of the monitor's code replication (issue 12, item 4):
//! every node with CPUs runs the monitor from its own copy of the code, so
//! the monitor's instruction fetches stay node local.

use super::field;
use crate::follow::{fail, follow, spawn};
use anyhow::{anyhow, Result};

/// Each CPU's monitor-code fetch misses must be at least this % local.
const MIN_LOCAL_PCT: f64 = 99.0;
/// A CPU must take at least this many monitor-code fetch misses for its
/// share to mean anything (a run takes thousands per CPU: every guest exit
/// runs the monitor, and the guest evicts its code from the cache).
const MIN_MISSES: f64 = 200.0;
/// The workload: two processes per VM, so both vCPUs run and exit.
const SEQ_TO: u64 = 150_000;

fn work() -> String {
    format!("seq 1 {SEQ_TO} | md5sum > /tmp/a & seq 1 {SEQ_TO} | md5sum > /tmp/b & wait\necho \"md5=$(cut -d' ' -f1 /tmp/a)\"")
}

/// `monitor-code-local`: numa2 under the ccNUMA plugin, VM `a` (2 vCPUs)
/// on node 0 and VM `b` (2 vCPUs) on node 1, each running a short
/// workload. The monitor must say it replicated its code on nodes 0 and 1,
/// publish a code range on each node (read back from the counter region),
/// and the plugin must attribute monitor-code fetch misses to every CPU,
/// at least [`MIN_LOCAL_PCT`] % of them local on each.
pub fn monitor_code_local(env: &mut crate::boot::Env) -> Result<()> {
    let vm = |name: &str, node: u32| {
        format!("[[vm]]\nname = \"{name}\"\nvcpus = 2\nmemory = \"256M\"\nhome_node = {node}\nexec = '''\nmkdir -p /tmp\n{}\n'''\n", work())
    };
    let text = format!("{}\n{}", vm("a", 0), vm("b", 1));
    let (mut s, sim) = spawn(env, "numa2", "test-monitor-code-local", &text, Some(""))?;
    let lines = follow(&mut s, super::GUEST_TIMEOUT, None, |_, _| Ok(()))?;
    let sim = sim.ok_or_else(|| anyhow!("the run has no numa-sim plugin"))?;
    let expected = super::host_md5(&super::placement::seq_bytes(SEQ_TO))?;
    for name in ["a", "b"] {
        let prefix = format!("[{name}] ");
        let out: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix(&prefix)).map(|l| l.trim().into()).collect();
        let md5 = field(&out, "md5=").map_err(|e| fail(&s, format!("vm {name}: {e}")))?;
        if md5 != expected {
            return Err(fail(&s, format!("vm {name}: md5 {md5}, the host computes {expected}")));
        }
    }
    let Some(said) = lines.iter().find(|l| l.contains("monitor code replicated on nodes")) else {
        return Err(fail(&s, "no `monitor code replicated on nodes` line".into()));
    };
    if !said.contains("nodes [0, 1]") {
        return Err(fail(&s, format!("code not replicated on both nodes: {said}")));
    }
    let machine = crate::machine::load("numa2")?;
    let table = sim.read_code_table()?;
    for node in 0..2u64 {
        let ram = machine.node_ram(node as usize);
        if !table.iter().any(|r| r.node == node && r.start >= ram.start && r.end <= ram.end) {
            return Err(fail(&s, format!("the code table has no range in node {node}'s memory: {table:?}")));
        }
    }
    let report = sim.read_report()?;
    let ranges = report.path("monitor_ifetch.ranges")?;
    if ranges as usize != table.len() {
        return Err(fail(&s, format!("the plugin read {ranges} code ranges, the monitor published {}", table.len())));
    }
    let mut shares = Vec::new();
    let mut counts = Vec::new();
    for (i, cpu) in
        report.get("monitor_ifetch").and_then(|m| m.get("cpus")).map(|c| c.items()).unwrap_or(&[]).iter().enumerate()
    {
        let n = |k: &str| cpu.path(k);
        let (local, remote) = (n("local")?, n("remote")?);
        counts.push((local as u64, remote as u64));
        let pct = 100.0 * local / (local + remote).max(1.0);
        shares.push(format!("cpu {i} (node {}): {pct:.2}% of {}", n("node")?, local + remote));
        if local + remote < MIN_MISSES {
            return Err(fail(&s, format!("cpu {i}: only {} monitor-code fetch misses attributed", local + remote)));
        }
        if pct < MIN_LOCAL_PCT {
            return Err(fail(
                &s,
                format!("cpu {i}: monitor-code fetch misses {pct:.2}% local ({local} local, {remote} remote)"),
            ));
        }
    }
    let log = std::fs::read_to_string(&s.log_path)?;
    let summary = summary_counts(&log);
    if summary != counts {
        return Err(fail(&s, format!("the plugin's summary says {summary:?}, its JSON {counts:?}")));
    }
    if shares.len() < 4 {
        return Err(fail(&s, format!("the report has monitor fetches for {} CPUs, numa2 has 4", shares.len())));
    }
    println!("  monitor-code-local: {}", shares.join("; "));
    Ok(())
}

/// Per CPU (local, remote) from the plugin's summary lines under
/// ` monitor code (N ranges): instruction-fetch misses`:
/// `  cpu I (node N): local L  remote R  local P%`.
fn summary_counts(log: &str) -> Vec<(u64, u64)> {
    let mut lines = log.lines().skip_while(|l| !l.starts_with(" monitor code (")).skip(1);
    let mut out = Vec::new();
    while let Some(rest) = lines.next().and_then(|l| l.strip_prefix("  cpu ")) {
        let words: Vec<&str> = rest.split_whitespace().collect();
        let at = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)?.parse().ok());
        match (at("local"), at("remote")) {
            (Some(l), Some(r)) => out.push((l, r)),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_summary() {
        let log = "x\n monitor code (2 ranges): instruction-fetch misses\n  cpu 0 (node 0): local       5860  remote          0  local 100.00%\n  cpu 1 (node 1): local 3625  remote 4  local  99.89%\n top 20 pages\n";
        assert_eq!(super::summary_counts(log), [(5860, 0), (3625, 4)]);
    }
}
