//! The end-of-run report: a JSON file and a human summary, from plain data.

use crate::vm_time::VmTimes;
use std::fmt::Write;

/// Totals of one CPU at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuStats {
    pub node: u32,
    pub insns: u64,
    /// Accesses that reached the cache model (after the same-line filter).
    pub accesses: u64,
    /// Misses by home node of the line.
    pub misses: Vec<u64>,
    /// Total miss latency, ps.
    pub stall_ps: u64,
    /// Of the misses, those of instruction fetches.
    pub imisses: u64,
    /// Instructions and miss latency (ps) by exception level (`el.rs`):
    /// EL0, EL1, EL2. Blocks without a known physical address (no
    /// `ifetch`) are in none of them.
    pub el_insns: [u64; crate::el::LEVELS],
    pub el_stall_ps: [u64; crate::el::LEVELS],
}

impl CpuStats {
    pub fn local(&self) -> u64 {
        self.misses.get(self.node as usize).copied().unwrap_or(0)
    }
    pub fn total_misses(&self) -> u64 {
        self.misses.iter().sum()
    }
    pub fn sim_ps(&self, insn_ps: u64) -> u64 {
        self.insns * insn_ps + self.stall_ps
    }
    /// Simulated time by exception level, ns.
    pub fn el_sim_ns(&self, insn_ps: u64) -> [u64; crate::el::LEVELS] {
        std::array::from_fn(|i| (self.el_insns[i] * insn_ps + self.el_stall_ps[i]) / 1000)
    }
    /// `self - before`, field by field.
    pub fn since(&self, before: &CpuStats) -> CpuStats {
        CpuStats {
            node: self.node,
            insns: self.insns - before.insns,
            accesses: self.accesses - before.accesses,
            misses: self.misses.iter().zip(&before.misses).map(|(a, b)| a - b).collect(),
            stall_ps: self.stall_ps - before.stall_ps,
            imisses: self.imisses - before.imisses,
            el_insns: std::array::from_fn(|i| self.el_insns[i] - before.el_insns[i]),
            el_stall_ps: std::array::from_fn(|i| self.el_stall_ps[i] - before.el_stall_ps[i]),
        }
    }
}

/// Work between charge markers, summed over intervals and CPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Charged {
    pub intervals: u64,
    pub insns: u64,
    pub misses: u64,
    pub sim_ps: u64,
}

impl Charged {
    /// Adds one finished interval (a CPU's stats delta).
    pub fn add_interval(&mut self, d: &CpuStats, insn_ps: u64) {
        self.add(&Charged { intervals: 1, insns: d.insns, misses: d.total_misses(), sim_ps: d.sim_ps(insn_ps) });
    }

    pub fn add(&mut self, o: &Charged) {
        self.intervals += o.intervals;
        self.insns += o.insns;
        self.misses += o.misses;
        self.sim_ps += o.sim_ps;
    }
}

/// A page with its per-(requesting-)node miss counts.
#[derive(Clone, Debug, PartialEq)]
pub struct HotPage {
    pub pfn: u64,
    pub home: usize,
    pub counts: Vec<u32>,
}

/// A measured interval between two guest markers.
#[derive(Clone, Debug, PartialEq)]
pub struct Roi {
    pub begin_vcpu: u32,
    pub end_vcpu: u32,
    pub cpus: Vec<CpuStats>,
    /// The VM (VMID) whose CPU opened and closed it, and that VM's own
    /// times in between (`vm_time.rs`); None outside VMs (natively).
    pub vm: Option<(u16, VmTimes)>,
}

/// `{"vmid":..,"run_ns":..,"wait_ns":..,"elapsed_ns":..,"switches":..}`.
fn json_vm(s: &mut String, id: u16, t: &VmTimes) {
    let _ = write!(
        s,
        "{{\"vmid\":{id},\"run_ns\":{},\"wait_ns\":{},\"elapsed_ns\":{},\"switches\":{}}}",
        t.run_ps / 1000,
        t.wait_ps / 1000,
        t.elapsed_ps() / 1000,
        t.switches
    );
}

/// Per requesting node: (local misses, remote misses).
pub fn node_split(cpus: &[CpuStats], nodes: usize) -> Vec<(u64, u64)> {
    let mut v = vec![(0, 0); nodes];
    for c in cpus {
        let l = c.local();
        v[c.node as usize].0 += l;
        v[c.node as usize].1 += c.total_misses() - l;
    }
    v
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

fn json_cpus(s: &mut String, cpus: &[CpuStats], insn_ps: u64) {
    s.push('[');
    for (i, c) in cpus.iter().enumerate() {
        let total = c.total_misses();
        let _ = write!(
            s,
            "{}{{\"cpu\":{i},\"node\":{},\"insns\":{},\"accesses\":{},\"misses\":{:?},\"local_misses\":{},\"remote_misses\":{},\"local_pct\":{:.3},\"ifetch_misses\":{},\"stall_ns\":{},\"sim_ns\":{},\"el_insns\":{:?},\"el_sim_ns\":{:?}}}",
            if i > 0 { "," } else { "" },
            c.node, c.insns, c.accesses, c.misses, c.local(), total - c.local(),
            pct(c.local(), total), c.imisses, c.stall_ps / 1000, c.sim_ps(insn_ps) / 1000,
            c.el_insns, c.el_sim_ns(insn_ps)
        );
    }
    s.push(']');
}

fn json_nodes(s: &mut String, cpus: &[CpuStats], nodes: usize) {
    s.push('[');
    for (n, (l, r)) in node_split(cpus, nodes).into_iter().enumerate() {
        let _ = write!(
            s,
            "{}{{\"node\":{n},\"local_misses\":{l},\"remote_misses\":{r},\"local_pct\":{:.3}}}",
            if n > 0 { "," } else { "" },
            pct(l, l + r)
        );
    }
    s.push(']');
}

/// Everything the report needs.
pub struct Report<'a> {
    pub config_json: String,
    pub nodes: usize,
    pub insn_ps: u64,
    pub cpus: &'a [CpuStats],
    pub rois: &'a [Roi],
    /// Every VM the plugin saw loaded (VMID, times over the whole run).
    pub vms: &'a [(u16, VmTimes)],
    pub charged: Charged,
    pub top: &'a [HotPage],
    pub region_base: u64,
    pub region_size: u64,
    pub shared_file: Option<&'a str>,
    /// Ranges of the monitor's code table and its fetch misses per CPU.
    pub monitor_ranges: usize,
    pub monitor_ifetch: &'a [crate::monitor_code::Fetches],
}

impl Report<'_> {
    pub fn json(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "{{\"config\":{},\"nodes\":", self.config_json);
        json_nodes(&mut s, self.cpus, self.nodes);
        s.push_str(",\"cpus\":");
        json_cpus(&mut s, self.cpus, self.insn_ps);
        s.push_str(",\"roi\":[");
        for (i, r) in self.rois.iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"begin_vcpu\":{},\"end_vcpu\":{},\"nodes\":",
                if i > 0 { "," } else { "" },
                r.begin_vcpu,
                r.end_vcpu
            );
            json_nodes(&mut s, &r.cpus, self.nodes);
            s.push_str(",\"cpus\":");
            json_cpus(&mut s, &r.cpus, self.insn_ps);
            s.push_str(",\"vm\":");
            match &r.vm {
                Some((id, t)) => json_vm(&mut s, *id, t),
                None => s.push_str("null"),
            }
            s.push('}');
        }
        s.push_str("],\"vms\":[");
        for (i, (id, t)) in self.vms.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_vm(&mut s, *id, t);
        }
        let c = &self.charged;
        let _ = write!(
            s,
            "],\"charged\":{{\"intervals\":{},\"insns\":{},\"misses\":{},\"sim_ns\":{}}}",
            c.intervals,
            c.insns,
            c.misses,
            c.sim_ps / 1000
        );
        s.push_str(",\"top_pages\":[");
        for (i, p) in self.top.iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"pfn\":{},\"addr\":\"{:#x}\",\"home\":{},\"counts\":{:?}}}",
                if i > 0 { "," } else { "" },
                p.pfn,
                p.pfn << 12,
                p.home,
                p.counts
            );
        }
        s.push_str("],\"monitor_ifetch\":");
        s.push_str(&crate::monitor_code::json(self.monitor_ranges, self.monitor_ifetch));
        let _ = writeln!(
            s,
            ",\"counters\":{{\"region_base\":\"{:#x}\",\"region_size\":{},\"shared_file\":{}}}}}",
            self.region_base,
            self.region_size,
            match self.shared_file {
                Some(f) => format!("{f:?}"),
                None => "null".into(),
            }
        );
        s
    }

    pub fn summary(&self) -> String {
        let mut s = String::from("numa-sim: ccNUMA cost model summary\n");
        let nodes = |s: &mut String, cpus: &[CpuStats]| {
            for (n, (l, r)) in node_split(cpus, self.nodes).into_iter().enumerate() {
                let _ = writeln!(s, "  node {n}: local misses {l:>12}  remote {r:>12}  local {:6.2}%", pct(l, l + r));
            }
            for (i, c) in cpus.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  cpu {i} (node {}): insns {:>13}  misses {:>11}  sim time {:>10.3} ms",
                    c.node,
                    c.insns,
                    c.total_misses(),
                    c.sim_ps(self.insn_ps) as f64 / 1e9
                );
            }
        };
        nodes(&mut s, self.cpus);
        for (i, r) in self.rois.iter().enumerate() {
            let _ = writeln!(s, " region of interest {i} (vcpu {} -> {}):", r.begin_vcpu, r.end_vcpu);
            nodes(&mut s, &r.cpus);
            if let Some((id, t)) = &r.vm {
                let _ = writeln!(
                    s,
                    "  vm (VMID {id}): run {:.3} ms, waited {:.3} ms, elapsed {:.3} ms, {} switches to it",
                    t.run_ps as f64 / 1e9,
                    t.wait_ps as f64 / 1e9,
                    t.elapsed_ps() as f64 / 1e9,
                    t.switches
                );
            }
        }
        if self.charged.intervals > 0 {
            let c = &self.charged;
            let _ = writeln!(
                s,
                " charged work: {} intervals, insns {}, misses {}, sim time {:.3} ms",
                c.intervals,
                c.insns,
                c.misses,
                c.sim_ps as f64 / 1e9
            );
        }
        s.push_str(&crate::monitor_code::summary(self.monitor_ranges, self.monitor_ifetch));
        let _ = writeln!(s, " top {} pages (miss counts per requesting node):", self.top.len());
        for p in self.top {
            let _ = writeln!(s, "  {:#014x} home {} counts {:?}", p.pfn << 12, p.home, p.counts);
        }
        s
    }
}

/// The `n` pages with the most misses (summed over nodes), hottest first.
/// `counters` is the region's array: `page * nodes + node`.
pub fn top_pages(
    counters: impl Iterator<Item = u32>,
    nodes: usize,
    first_pfn: u64,
    n: usize,
    home: impl Fn(u64) -> usize,
) -> Vec<HotPage> {
    let mut best: Vec<(u64, u64, Vec<u32>)> = Vec::new(); // sorted by sum, descending
    let mut cur = vec![0u32; nodes];
    for (i, c) in counters.enumerate() {
        cur[i % nodes] = c;
        if i % nodes != nodes - 1 {
            continue;
        }
        let sum: u64 = cur.iter().map(|&x| x as u64).sum();
        if sum > 0 && (best.len() < n || sum > best[best.len() - 1].0) {
            let pos = best.partition_point(|b| b.0 >= sum);
            best.insert(pos, (sum, (i / nodes) as u64, cur.clone()));
            best.truncate(n);
        }
    }
    best.into_iter()
        .map(|(_, page, counts)| HotPage { pfn: first_pfn + page, home: home(first_pfn + page), counts })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU's totals with no instruction-fetch misses and no level split.
    fn stats(node: u32, insns: u64, accesses: u64, misses: Vec<u64>, stall_ps: u64) -> CpuStats {
        CpuStats { node, insns, accesses, misses, stall_ps, ..Default::default() }
    }

    #[test]
    fn split_and_delta() {
        let a = stats(0, 10, 5, vec![1, 9], 100);
        let b = stats(1, 10, 5, vec![2, 2], 100);
        assert_eq!(node_split(&[a.clone(), b], 2), vec![(1, 9), (2, 2)]);
        let z = stats(0, 0, 0, vec![0, 0], 0);
        assert_eq!(a.since(&z), a);
        assert_eq!(a.sim_ps(1000), 10_100);
    }

    #[test]
    fn top() {
        // 4 pages x 2 nodes.
        let c = [0u32, 0, 5, 1, 0, 9, 3, 3];
        let t = top_pages(c.into_iter(), 2, 0x40000, 2, |p| (p & 1) as usize);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], HotPage { pfn: 0x40002, home: 0, counts: vec![0, 9] });
        assert_eq!(t[1], HotPage { pfn: 0x40001, home: 1, counts: vec![5, 1] });
    }

    #[test]
    fn json_is_well_formed_enough() {
        let cpus = [CpuStats {
            node: 0,
            insns: 1,
            accesses: 1,
            misses: vec![1, 0],
            stall_ps: 300_000,
            imisses: 0,
            el_insns: [0, 1, 0],
            el_stall_ps: [0, 300_000, 0],
        }];
        let r = Report {
            config_json: "{}".into(),
            nodes: 2,
            insn_ps: 1000,
            cpus: &cpus,
            rois: &[Roi {
                begin_vcpu: 0,
                end_vcpu: 0,
                cpus: cpus.to_vec(),
                vm: Some((2, VmTimes { run_ps: 5_000_000, wait_ps: 1_000_000, switches: 3 })),
            }],
            vms: &[(1, VmTimes::default())],
            charged: Charged { intervals: 2, insns: 10, misses: 3, sim_ps: 4_000_000 },
            top: &[],
            region_base: 0xbfa00000,
            region_size: 6 << 20,
            shared_file: Some("/dev/shm/x"),
            monitor_ranges: 0,
            monitor_ifetch: &[],
        };
        let j = r.json();
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert!(j.contains("\"sim_ns\":301"));
        assert!(j.contains("\"el_insns\":[0, 1, 0],\"el_sim_ns\":[0, 301, 0]"), "{j}");
        assert!(j.contains("\"charged\":{\"intervals\":2,\"insns\":10,\"misses\":3,\"sim_ns\":4000}"), "{j}");
        assert!(r.summary().contains("local 100.00%"));
        assert!(
            j.contains("\"vm\":{\"vmid\":2,\"run_ns\":5000,\"wait_ns\":1000,\"elapsed_ns\":6000,\"switches\":3}}]"),
            "{j}"
        );
        assert!(j.contains("\"vms\":[{\"vmid\":1,\"run_ns\":0,"), "{j}");
        assert!(r.summary().contains("vm (VMID 2): run 0.005 ms, waited 0.001 ms, elapsed 0.006 ms, 3 switches"));
    }
}
