//! The monitor's instruction fetches, told apart from the guests' by
//! physical address.
//!
//! Why by address: plugin API 4 does not tell a translation block's
//! exception level, and reading PSTATE per executed block would need a
//! register callback on every block. Virtual addresses are ambiguous (a
//! guest kernel with its MMU off runs at the monitor's addresses). Physical
//! addresses are exact, and QEMU translates a block per physical page, so a
//! fetch of monitor code is a fetch from the ranges where the monitor's code
//! lies: the loaded image and its per-node copies. The monitor publishes
//! those ranges at boot in the counter region's header page
//! (`numa::code_table`); this module reads that table once it appears and
//! then counts, per CPU, the instruction-fetch misses that hit it, local or
//! remote to the CPU's node. Only misses are classified (a hit costs
//! nothing in the model), so the lookup stays off the hot path.

use crate::region::Region;
use numa::code_table::{self, CodeRange};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Monitor-code fetch misses of one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetches {
    pub node: u32,
    pub local: u64,
    pub remote: u64,
}

/// Per-CPU counters and the monitor's code table.
pub struct MonitorCode {
    table: OnceLock<Vec<CodeRange>>,
    /// Per vCPU: (local, remote).
    counts: Vec<[AtomicU64; 2]>,
}

impl MonitorCode {
    pub fn new(cpus: usize) -> Self {
        Self { table: OnceLock::new(), counts: (0..cpus).map(|_| Default::default()).collect() }
    }

    /// The table, read from the region until the monitor has published it.
    fn table(&self, region: &Region) -> Option<&[CodeRange]> {
        if let Some(t) = self.table.get() {
            return Some(t);
        }
        let t = code_table::read(|o| region.header_u64(o))?;
        Some(self.table.get_or_init(|| t))
    }

    /// An instruction-fetch miss of `vcpu` at `pa`, `local` to its node or
    /// not: counted when `pa` is monitor code.
    #[inline]
    pub fn on_miss(&self, region: &Region, vcpu: usize, pa: u64, local: bool) {
        let Some(table) = self.table(region) else { return };
        if !table.iter().any(|r| pa >= r.start && pa < r.end) {
            return;
        }
        if let Some(c) = self.counts.get(vcpu) {
            let c = &c[usize::from(!local)];
            c.store(c.load(Relaxed) + 1, Relaxed);
        }
    }

    /// Whether `pa` is monitor code (false until the table is published).
    #[inline]
    pub fn contains(&self, region: &Region, pa: u64) -> bool {
        self.table(region).is_some_and(|t| t.iter().any(|r| pa >= r.start && pa < r.end))
    }

    /// Ranges in the table (0: the monitor published none).
    pub fn ranges(&self) -> usize {
        self.table.get().map_or(0, Vec::len)
    }

    /// Per-CPU counts, CPUs on `nodes[i]`.
    pub fn fetches(&self, nodes: impl Iterator<Item = u32>) -> Vec<Fetches> {
        nodes
            .zip(&self.counts)
            .map(|(node, c)| Fetches { node, local: c[0].load(Relaxed), remote: c[1].load(Relaxed) })
            .collect()
    }
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// The report's `monitor_ifetch` object: totals and per CPU.
pub fn json(ranges: usize, f: &[Fetches]) -> String {
    let (l, r) = f.iter().fold((0, 0), |(l, r), c| (l + c.local, r + c.remote));
    let mut s =
        format!("{{\"ranges\":{ranges},\"local\":{l},\"remote\":{r},\"local_pct\":{:.3},\"cpus\":[", pct(l, l + r));
    for (i, c) in f.iter().enumerate() {
        let _ = write!(
            s,
            "{}{{\"cpu\":{i},\"node\":{},\"local\":{},\"remote\":{},\"local_pct\":{:.3}}}",
            if i > 0 { "," } else { "" },
            c.node,
            c.local,
            c.remote,
            pct(c.local, c.local + c.remote)
        );
    }
    s.push_str("]}");
    s
}

/// The summary's lines.
pub fn summary(ranges: usize, f: &[Fetches]) -> String {
    if ranges == 0 {
        return " monitor code: no code table published (no monitor, or it did not find the counter region)\n".into();
    }
    let mut s = format!(" monitor code ({ranges} ranges): instruction-fetch misses\n");
    for (i, c) in f.iter().enumerate() {
        let _ = writeln!(
            s,
            "  cpu {i} (node {}): local {:>10}  remote {:>10}  local {:6.2}%",
            c.node,
            c.local,
            c.remote,
            pct(c.local, c.local + c.remote)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_summary() {
        let f = [Fetches { node: 0, local: 99, remote: 1 }, Fetches { node: 1, local: 0, remote: 0 }];
        let j = json(3, &f);
        assert!(j.starts_with("{\"ranges\":3,\"local\":99,\"remote\":1,\"local_pct\":99.000,"), "{j}");
        assert!(j.contains("{\"cpu\":1,\"node\":1,\"local\":0,\"remote\":0,\"local_pct\":0.000}"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert!(summary(3, &f).contains("cpu 0 (node 0): local         99  remote          1  local  99.00%"));
        assert!(summary(0, &f).contains("no code table"));
    }
}
