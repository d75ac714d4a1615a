//! Machine topologies: `qemu-configs/<name>.toml` -> QEMU arguments.
//!
//! One small file per topology keeps experiments reproducible and lets the
//! tests compare what the monitor discovers with what was asked for. Every
//! field is checked here, with errors naming file, line and field, so a typo
//! fails before QEMU's less helpful messages.
//!
//! ```toml
//! description = "2 nodes x 2 CPUs, 1 GiB each"
//! nodes = 2
//! cpus-per-node = 2
//! memory-per-node-mib = 1024
//! distances = [[10, 20], [20, 10]]   # nodes x nodes, local 10, remote 11..=255
//! extra-args = []                    # optional, appended to QEMU's command line
//! ```

use crate::util::{rel, root};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// QEMU's `virt` board takes at most 512 CPUs with GICv3.
const MAX_CPUS: usize = 512;
/// QEMU's own limit on NUMA nodes.
const MAX_NODES: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    description: Option<String>,
    nodes: Spanned<usize>,
    cpus_per_node: Spanned<usize>,
    memory_per_node_mib: Spanned<u64>,
    distances: Spanned<Vec<Spanned<Vec<Spanned<u32>>>>>,
    #[serde(default)]
    extra_args: Vec<String>,
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub description: String,
    pub nodes: usize,
    pub cpus_per_node: usize,
    pub memory_per_node_mib: u64,
    /// `distances[src][dst]`, as given to `-numa dist`.
    pub distances: Vec<Vec<u32>>,
    pub extra_args: Vec<String>,
}

/// The directory holding the topology files.
pub fn dir() -> PathBuf {
    root().join("qemu-configs")
}

/// Names of all topologies (file stems), sorted.
pub fn available() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Loads a topology by name (`numa2`) or by path (`some/dir/x.toml`).
pub fn load(name: &str) -> Result<Machine> {
    let path = if name.ends_with(".toml") || name.contains('/') {
        PathBuf::from(name)
    } else {
        dir().join(format!("{name}.toml"))
    };
    if !path.is_file() {
        bail!("unknown machine `{name}`; available: {} (files in {})", available().join(", "), rel(&dir()));
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    parse(&stem, &rel(&path), &text)
}

/// Parses and validates; `file` only appears in messages.
pub fn parse(name: &str, file: &str, text: &str) -> Result<Machine> {
    let raw: Raw = toml::from_str(text).map_err(|e| anyhow!("{file}: {e}"))?;
    let err = |span: Range<usize>, field: &str, msg: String| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        anyhow!("{file}:{line}: field `{field}`: {msg}")
    };
    let nodes = *raw.nodes.get_ref();
    if !(1..=MAX_NODES).contains(&nodes) {
        return Err(err(raw.nodes.span(), "nodes", format!("{nodes} is not in 1..={MAX_NODES}")));
    }
    let cpn = *raw.cpus_per_node.get_ref();
    if cpn == 0 || nodes * cpn > MAX_CPUS {
        return Err(err(
            raw.cpus_per_node.span(),
            "cpus-per-node",
            format!("{cpn} x {nodes} nodes must be between 1 and {MAX_CPUS} CPUs in all"),
        ));
    }
    let mib = *raw.memory_per_node_mib.get_ref();
    if mib < 64 || !mib.is_multiple_of(2) {
        return Err(err(
            raw.memory_per_node_mib.span(),
            "memory-per-node-mib",
            format!("{mib} must be an even number of MiB, at least 64 (2 MiB blocks)"),
        ));
    }
    let rows = raw.distances.get_ref();
    if rows.len() != nodes {
        return Err(err(raw.distances.span(), "distances", format!("{} rows for {nodes} nodes", rows.len())));
    }
    let mut distances = Vec::new();
    for (src, row) in rows.iter().enumerate() {
        if row.get_ref().len() != nodes {
            let msg = format!("row {src} has {} entries for {nodes} nodes", row.get_ref().len());
            return Err(err(row.span(), "distances", msg));
        }
        let mut out = Vec::new();
        for (dst, d) in row.get_ref().iter().enumerate() {
            let v = *d.get_ref();
            let bad = if src == dst { v != 10 } else { !(11..=255).contains(&v) };
            if bad {
                let want =
                    if src == dst { "the local distance must be 10" } else { "remote distances must be in 11..=255" };
                return Err(err(d.span(), "distances", format!("[{src}][{dst}] = {v}: {want}")));
            }
            out.push(v);
        }
        distances.push(out);
    }
    Ok(Machine {
        name: name.to_string(),
        description: raw.description.unwrap_or_default(),
        nodes,
        cpus_per_node: cpn,
        memory_per_node_mib: mib,
        distances,
        extra_args: raw.extra_args,
    })
}

impl Machine {
    pub fn cpus(&self) -> usize {
        self.nodes * self.cpus_per_node
    }

    pub fn total_mib(&self) -> u64 {
        self.memory_per_node_mib * self.nodes as u64
    }

    /// CPU indexes of a node: each node is one socket of consecutive CPUs.
    pub fn node_cpus(&self, node: usize) -> Range<usize> {
        node * self.cpus_per_node..(node + 1) * self.cpus_per_node
    }

    /// The QEMU arguments for board, CPUs and memory topology (no payload).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-machine",
            "virt,virtualization=on,gic-version=3",
            "-cpu",
            "max",
            // A default PCI NIC would need option ROMs and nothing drives it.
            "-nic",
            "none",
            // A guest or monitor reset ends the run instead of looping.
            "-no-reboot",
        ]
        .map(String::from)
        .to_vec();
        a.push("-m".into());
        a.push(format!("{}M", self.total_mib()));
        a.push("-smp".into());
        a.push(format!("{},sockets={},cores={},threads=1", self.cpus(), self.nodes, self.cpus_per_node));
        for n in 0..self.nodes {
            let c = self.node_cpus(n);
            let cpus = if c.len() == 1 { c.start.to_string() } else { format!("{}-{}", c.start, c.end - 1) };
            a.push("-object".into());
            a.push(format!("memory-backend-ram,id=m{n},size={}M", self.memory_per_node_mib));
            a.push("-numa".into());
            a.push(format!("node,nodeid={n},cpus={cpus},memdev=m{n}"));
        }
        for (src, row) in self.distances.iter().enumerate() {
            for (dst, v) in row.iter().enumerate() {
                if src != dst {
                    a.push("-numa".into());
                    a.push(format!("dist,src={src},dst={dst},val={v}"));
                }
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// Checks every file in `qemu-configs/` (a host test keeps them loadable).
pub fn check_all() -> Result<Vec<Machine>> {
    available().iter().map(|n| load(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMA2: &str = "nodes = 2\ncpus-per-node = 2\nmemory-per-node-mib = 1024\ndistances = [[10, 20], [20, 10]]\n";

    #[test]
    fn numa2_args() {
        let m = parse("t", "t.toml", NUMA2).unwrap();
        let a = m.qemu_args().join(" ");
        assert!(a.contains("-m 2048M -smp 4,sockets=2,cores=2,threads=1"), "{a}");
        assert!(
            a.contains("-object memory-backend-ram,id=m1,size=1024M -numa node,nodeid=1,cpus=2-3,memdev=m1"),
            "{a}"
        );
        assert!(a.contains("-numa dist,src=0,dst=1,val=20 -numa dist,src=1,dst=0,val=20"), "{a}");
        assert_eq!(m.node_cpus(1), 2..4);
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = NUMA2.replace("[20, 10]]", "[20, 9]]");
        let e = parse("t", "t.toml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:4: field `distances`: [1][1] = 9"), "{e}");
        let e = parse("t", "t.toml", &NUMA2.replace("1024", "1023")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:3: field `memory-per-node-mib`"), "{e}");
        let e = parse("t", "t.toml", &format!("{NUMA2}colour = 1\n")).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("colour") && e.contains("line 5"), "{e}");
        let e = parse("t", "t.toml", &NUMA2.replace("nodes = 2", "nodes = 3")).unwrap_err().to_string();
        assert!(e.contains("field `distances`: 2 rows for 3 nodes"), "{e}");
    }

    #[test]
    fn shipped_configs_load() {
        let all = check_all().unwrap();
        assert!(all.iter().any(|m| m.name == "numa2"));
        assert!(all.iter().any(|m| m.name == "numa4"));
        for m in &all {
            for s in 0..m.nodes {
                for d in 0..m.nodes {
                    assert_eq!(m.distances[s][d], m.distances[d][s], "{}: symmetric", m.name);
                }
            }
        }
        let e = load("nope").unwrap_err().to_string();
        assert!(e.contains("numa2") && e.contains("numa4"), "{e}");
    }
}
