//! Reading a `numactl --hardware`-shaped report off a console, and checking
//! it against the machine QEMU was given.
//!
//! The monitor prints this report at boot (and the guest tool
//! `disco-numactl` prints it natively). Console lines may carry any log
//! prefix (`[INFO] `, `[vm0] `, timestamps), so each line is matched on its
//! tail: the text from the last keyword on.

use crate::machine::Machine;
use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    pub id: usize,
    /// None until the `node N cpus:` line; empty for a memory-only node.
    pub cpus: Option<Vec<usize>>,
    pub size_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub count: usize,
    pub nodes: Vec<Node>,
    pub distances: Vec<Vec<u32>>,
}

/// Parses reports incrementally; [`Parser::done`] once all distance rows are in.
#[derive(Debug, Default)]
pub struct Parser {
    started: bool,
    in_distances: bool,
    pub report: Report,
}

fn numbers(s: &str) -> Option<Vec<u64>> {
    s.split_whitespace().map(|w| w.parse().ok()).collect()
}

impl Parser {
    pub fn feed(&mut self, line: &str) {
        if let Some(at) = line.find("available: ") {
            // A new report restarts parsing (e.g. printed again later).
            *self = Parser { started: true, ..Default::default() };
            let n = line[at + 11..].split_whitespace().next().and_then(|w| w.parse().ok());
            self.report.count = n.unwrap_or(0);
            return;
        }
        if !self.started || self.done() {
            return;
        }
        if line.contains("node distances:") {
            self.in_distances = true;
            return;
        }
        if self.in_distances {
            // Header "node   0   1" is skipped; rows are "<i>: d d d".
            if line.trim_end().ends_with(|c: char| c.is_ascii_digit()) && !line.contains("node ") {
                // Only full rows: an interleaved log line ending "x: 3" is not one.
                if let Some(row) = row_tail(line).filter(|r| r.len() == self.report.count) {
                    self.report.distances.push(row);
                }
            }
            return;
        }
        if let Some(at) = line.rfind("node ") {
            let rest = &line[at + 5..];
            let Some((id, rest)) = rest.split_once(' ') else {
                return;
            };
            let Ok(id) = id.parse::<usize>() else { return };
            let node = match self.report.nodes.iter().position(|n| n.id == id) {
                Some(i) => &mut self.report.nodes[i],
                None => {
                    self.report.nodes.push(Node { id, ..Default::default() });
                    self.report.nodes.last_mut().expect("just pushed")
                }
            };
            if let Some(c) = rest.strip_prefix("cpus:") {
                // numactl prints a memory-only node as `node 2 cpus:` (nothing after).
                node.cpus = numbers(c).map(|v| v.into_iter().map(|x| x as usize).collect());
            } else if let Some(s) = rest.strip_prefix("size:") {
                node.size_mb = s.split_whitespace().next().and_then(|w| w.parse().ok());
            }
        }
    }

    pub fn done(&self) -> bool {
        self.started && self.report.count > 0 && self.report.distances.len() == self.report.count
    }
}

/// The distances of a row line `...prefix...  1:  20  10`: the numbers after
/// the last `<n>:` token that only numbers follow.
fn row_tail(line: &str) -> Option<Vec<u32>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().rposition(|w| w.strip_suffix(':').is_some_and(|n| n.parse::<u32>().is_ok()))?;
    let v = numbers(&words[i + 1..].join(" "))?;
    (!v.is_empty()).then(|| v.into_iter().map(|x| x as u32).collect())
}

/// Compares a report with the machine; lists every difference.
pub fn check(r: &Report, m: &Machine) -> Result<()> {
    let mut errs = Vec::new();
    if r.count != m.nodes || r.nodes.len() != m.nodes {
        errs.push(format!("{} nodes reported ({} listed), {} configured", r.count, r.nodes.len(), m.nodes));
    }
    for n in &r.nodes {
        if n.id >= m.nodes {
            errs.push(format!("node {} does not exist in the configuration", n.id));
            continue;
        }
        let want: Vec<usize> = m.node_cpus(n.id).collect();
        match &n.cpus {
            None => errs.push(format!("node {}: no `node {} cpus:` line", n.id, n.id)),
            Some(cpus) => {
                let mut got = cpus.clone();
                got.sort_unstable();
                if got != want {
                    errs.push(format!("node {} cpus {cpus:?}, configured {want:?}", n.id));
                }
            }
        }
        let mib = m.memory_mib[n.id];
        if n.size_mb != Some(mib) {
            errs.push(format!("node {} size {:?} MB, configured {mib} MB", n.id, n.size_mb));
        }
    }
    if r.distances != m.distances {
        errs.push(format!("distances {:?}, configured {:?}", r.distances, m.distances));
    }
    if !errs.is_empty() {
        bail!("topology differs from {}:\n  {}", m.name, errs.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMA2: &str = "[INFO] available: 2 nodes (0-1)
[INFO] node 0 cpus: 0 1
[INFO] node 0 size: 1024 MB
[INFO] node 0 free: 990 MB
[INFO] node 1 cpus: 2 3
[INFO] node 1 size: 1024 MB
[INFO] node 1 free: 1023 MB
[INFO] node distances:
[INFO] node   0   1
[INFO]   0:  10  20
[INFO]   1:  20  10
[INFO] later line 3: 4";

    fn machine() -> Machine {
        crate::machine::parse(
            "numa2",
            "t",
            "nodes = 2\ncpus-per-node = 2\nmemory-per-node-mib = 1024\ndistances = [[10, 20], [20, 10]]\n",
        )
        .unwrap()
    }

    fn parse(text: &str) -> Parser {
        let mut p = Parser::default();
        text.lines().for_each(|l| p.feed(l));
        p
    }

    #[test]
    fn parses_prefixed_report() {
        let p = parse(NUMA2);
        assert!(p.done());
        assert_eq!(p.report.nodes[1], Node { id: 1, cpus: Some(vec![2, 3]), size_mb: Some(1024) });
        assert_eq!(p.report.distances, vec![vec![10, 20], vec![20, 10]]);
        check(&p.report, &machine()).unwrap();
    }

    #[test]
    fn plain_and_timestamped_lines() {
        let plain: String = NUMA2.lines().map(|l| format!("[   12.5] {}\n", l.trim_start_matches("[INFO] "))).collect();
        let p = parse(&plain);
        assert!(p.done());
        check(&p.report, &machine()).unwrap();
    }

    #[test]
    fn reports_differences() {
        let p = parse(&NUMA2.replace("node 1 size: 1024", "node 1 size: 512").replace("1:  20  10", "1:  30  10"));
        let e = check(&p.report, &machine()).unwrap_err().to_string();
        assert!(e.contains("node 1 size Some(512)"), "{e}");
        assert!(e.contains("distances"), "{e}");
        let p = parse(&NUMA2.replace("available: 2", "available: 1"));
        assert!(check(&p.report, &machine()).is_err());
    }

    /// The monitor's own log format (numa::Hardware through its logger).
    #[test]
    fn monitor_log_format() {
        let text = "disco: [    0.010 cpu0] available: 2 nodes (0-1)
disco: [    0.010 cpu0] node 0 cpus: 0 1
disco: [    0.010 cpu0] node 0 size: 1024 MB
disco: [    0.010 cpu0] node 0 free: 1000 MB
disco: [    0.010 cpu0] node 1 cpus: 2 3
disco: [    0.010 cpu0] node 1 size: 1024 MB
disco: [    0.010 cpu0] node 1 free: 1023 MB
disco: [    0.011 cpu1] cpu 1: online
disco: [    0.010 cpu0] node distances:
disco: [    0.010 cpu0] node   0   1 
disco: [    0.010 cpu0]   0:  10  20 
disco: [    0.010 cpu0]   1:  20  10 ";
        let p = parse(text);
        assert!(p.done());
        check(&p.report, &machine()).unwrap();
    }

    /// numa-far as the monitor prints it: node 2 has memory and no CPUs.
    const FAR: &str = "disco: [    0.010 cpu0] available: 3 nodes (0-2)
disco: [    0.010 cpu0] node 0 cpus: 0 1
disco: [    0.010 cpu0] node 0 size: 1024 MB
disco: [    0.010 cpu0] node 0 free: 990 MB
disco: [    0.010 cpu0] node 1 cpus: 2 3
disco: [    0.010 cpu0] node 1 size: 1024 MB
disco: [    0.010 cpu0] node 1 free: 1023 MB
disco: [    0.010 cpu0] node 2 cpus:
disco: [    0.010 cpu0] node 2 size: 1024 MB
disco: [    0.010 cpu0] node 2 free: 1024 MB
disco: [    0.010 cpu0] node distances:
disco: [    0.010 cpu0] node   0   1   2 
disco: [    0.010 cpu0]   0:  10  20  30 
disco: [    0.010 cpu0]   1:  20  10  30 
disco: [    0.010 cpu0]   2:  30  30  10 ";

    #[test]
    fn memory_only_node() {
        let m = crate::machine::load("numa-far").unwrap();
        let p = parse(FAR);
        assert!(p.done());
        assert_eq!(p.report.nodes[2], Node { id: 2, cpus: Some(vec![]), size_mb: Some(1024) });
        check(&p.report, &m).unwrap();
        // Trailing spaces after `cpus:` are the same empty list.
        check(&parse(&FAR.replace("node 2 cpus:", "node 2 cpus:  ")).report, &m).unwrap();
        // A CPU reported on the memory-only node, or its cpus line missing.
        let e = check(
            &parse(&FAR.replace("node 1 cpus: 2 3", "node 1 cpus: 2").replace("node 2 cpus:", "node 2 cpus: 3")).report,
            &m,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("node 1 cpus [2], configured [2, 3]") && e.contains("node 2 cpus [3], configured []"),
            "{e}"
        );
        let no_line: String = FAR.lines().filter(|l| !l.ends_with("node 2 cpus:")).map(|l| format!("{l}\n")).collect();
        let e = check(&parse(&no_line).report, &m).unwrap_err().to_string();
        assert!(e.contains("node 2: no `node 2 cpus:` line"), "{e}");
        // The same report does not match a machine with CPUs on every node.
        assert!(check(&p.report, &crate::machine::load("numa2").unwrap()).is_err());
    }

    #[test]
    fn unequal_nodes() {
        let m = crate::machine::load("numa-uneven").unwrap();
        let text = "available: 2 nodes (0-1)\nnode 0 cpus: 0 1 2\nnode 0 size: 1536 MB\nnode 1 cpus: 3\n\
                    node 1 size: 512 MB\nnode distances:\nnode   0   1\n  0:  10  20\n  1:  20  10\n";
        let p = parse(text);
        assert!(p.done());
        check(&p.report, &m).unwrap();
        let e = check(&parse(&text.replace("1536", "1024")).report, &m).unwrap_err().to_string();
        assert!(e.contains("node 0 size Some(1024) MB, configured 1536 MB"), "{e}");
    }

    #[test]
    fn incomplete_is_not_done() {
        let p = parse(&NUMA2.lines().take(10).collect::<Vec<_>>().join("\n"));
        assert!(!p.done());
    }
}
