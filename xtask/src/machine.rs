//! Machine topologies: `qemu-configs/<name>.toml` -> QEMU arguments.
//!
//! One small file per topology keeps experiments reproducible and lets the
//! tests compare what the monitor discovers with what was asked for. Every
//! field is checked here, with errors naming file, line and field, so a typo
//! fails before QEMU's less helpful messages.
//!
//! Equal nodes are described by three numbers:
//!
//! ```toml
//! description = "2 nodes x 2 CPUs, 1 GiB each"
//! nodes = 2
//! cpus-per-node = 2
//! memory-per-node-mib = 1024
//! distances = [[10, 20], [20, 10]]   # nodes x nodes, symmetric, local 10, remote 11..=255
//! extra-args = []                    # optional, appended to QEMU's command line
//! ```
//!
//! Unequal nodes get one `[[node]]` table each instead (after every
//! top-level key: TOML puts keys below a table header into that table).
//! `cpus = 0` is a memory-only node (a CXL-like far-memory tier); some node
//! must have CPUs. The two forms cannot be mixed.
//!
//! ```toml
//! distances = [[10, 20, 30], [20, 10, 30], [30, 30, 10]]
//! [[node]]
//! cpus = 2
//! memory-mib = 1024
//! [[node]]
//! cpus = 2
//! memory-mib = 1024
//! [[node]]
//! cpus = 0          # memory only
//! memory-mib = 1024
//! ```
//!
//! CPUs are numbered node by node (node 0's first), and RAM is laid out from
//! [`RAM_BASE`] in node order, as QEMU's `virt` board does.

use crate::util::{rel, root};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::fmt;
use std::ops::{Deref, Range};
use std::path::PathBuf;
use toml::Spanned;

/// QEMU's `virt` board takes at most 512 CPUs with GICv3.
const MAX_CPUS: usize = 512;
/// QEMU's own limit on NUMA nodes.
const MAX_NODES: usize = 128;
/// Where QEMU's `virt` board puts RAM (node 0 first, nodes in order).
pub const RAM_BASE: u64 = 0x4000_0000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    description: Option<String>,
    nodes: Option<Spanned<usize>>,
    cpus_per_node: Option<Spanned<usize>>,
    memory_per_node_mib: Option<Spanned<u64>>,
    #[serde(default)]
    node: Vec<Spanned<RawNode>>,
    distances: Spanned<Vec<Spanned<Vec<Spanned<u32>>>>>,
    #[serde(default)]
    extra_args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNode {
    cpus: Spanned<usize>,
    memory_mib: Spanned<u64>,
}

/// CPUs of each node, indexable like a slice; shown as `2` when every node
/// has 2, else as `3+1+0`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerNode(pub Vec<usize>);

impl Deref for PerNode {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for PerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_first() {
            Some((first, rest)) if rest.iter().all(|c| c == first) => write!(f, "{first}"),
            _ => {
                let parts: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
                write!(f, "{}", parts.join("+"))
            }
        }
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub description: String,
    pub nodes: usize,
    /// CPUs of each node (0: memory only); `nodes` entries.
    pub cpus_per_node: PerNode,
    /// MiB of RAM of each node; `nodes` entries, none zero.
    pub memory_mib: Vec<u64>,
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

const UNIFORM_KEYS: &str = "`nodes`, `cpus-per-node` and `memory-per-node-mib`";

/// Parses and validates; `file` only appears in messages.
pub fn parse(name: &str, file: &str, text: &str) -> Result<Machine> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let msg = e.message();
        // A top-level key written below a [[node]] header lands in that table.
        let misplaced = ["`description`", "`distances`", "`extra-args`", "`nodes`", "`cpus-per-node`"]
            .iter()
            .any(|k| msg.contains(&format!("unknown field {k}")));
        let hint = if misplaced { "\n(top-level keys must come before the first [[node]] table)" } else { "" };
        anyhow!("{}{hint}", crate::toml_error::describe(file, text, &e))
    })?;
    let line_of = |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let err =
        |span: Range<usize>, field: &str, msg: String| anyhow!("{file}:{}: field `{field}`: {msg}", line_of(span));
    let mib_ok = |mib: u64| mib >= 64 && mib.is_multiple_of(2);
    let mib_rule = "must be an even number of MiB, at least 64 (2 MiB blocks)";

    let uniform = [
        raw.nodes.as_ref().map(|s| ("nodes", s.span())),
        raw.cpus_per_node.as_ref().map(|s| ("cpus-per-node", s.span())),
        raw.memory_per_node_mib.as_ref().map(|s| ("memory-per-node-mib", s.span())),
    ];
    let (cpus, memory_mib): (Vec<usize>, Vec<u64>) = if let Some(first) = raw.node.first() {
        if let Some((key, span)) = uniform.iter().flatten().next() {
            let msg = format!(
                "cannot be combined with [[node]] tables (line {}): give either {UNIFORM_KEYS}, or one [[node]] per node",
                line_of(first.span())
            );
            return Err(err(span.clone(), key, msg));
        }
        if raw.node.len() > MAX_NODES {
            let msg = format!("{} [[node]] tables, at most {MAX_NODES}", raw.node.len());
            return Err(err(raw.node[MAX_NODES].span(), "node", msg));
        }
        let mut cpus = Vec::new();
        let mut mem = Vec::new();
        for (i, n) in raw.node.iter().enumerate() {
            let n = n.get_ref();
            let mib = *n.memory_mib.get_ref();
            if !mib_ok(mib) {
                return Err(err(n.memory_mib.span(), "memory-mib", format!("node {i}: {mib} {mib_rule}")));
            }
            cpus.push(*n.cpus.get_ref());
            mem.push(mib);
        }
        let total: usize = cpus.iter().sum();
        if total == 0 {
            let msg = "no node has CPUs: at least one needs `cpus` >= 1 (`cpus = 0` is a memory-only node)";
            return Err(err(raw.node[0].get_ref().cpus.span(), "cpus", msg.into()));
        }
        if total > MAX_CPUS {
            // Name the node where the running sum passes the limit.
            let mut sum = 0;
            let at = cpus.iter().position(|c| {
                sum += c;
                sum > MAX_CPUS
            });
            let at = at.unwrap_or(cpus.len() - 1);
            let msg = format!("{total} CPUs in all, at most {MAX_CPUS} (passed at node {at})");
            return Err(err(raw.node[at].get_ref().cpus.span(), "cpus", msg));
        }
        (cpus, mem)
    } else {
        let (Some(nodes), Some(cpn), Some(mib)) = (&raw.nodes, &raw.cpus_per_node, &raw.memory_per_node_mib) else {
            let missing: Vec<&str> = ["nodes", "cpus-per-node", "memory-per-node-mib"]
                .iter()
                .zip(&uniform)
                .filter(|(_, u)| u.is_none())
                .map(|(k, _)| *k)
                .collect();
            return Err(match uniform.iter().flatten().next() {
                Some((key, span)) => err(
                    span.clone(),
                    key,
                    format!("the uniform form also needs `{}` ({UNIFORM_KEYS} go together)", missing.join("`, `")),
                ),
                None => anyhow!(
                    "{file}: no nodes: give {UNIFORM_KEYS} (equal nodes), or one [[node]] table (`cpus`, `memory-mib`) per node"
                ),
            });
        };
        let n = *nodes.get_ref();
        if !(1..=MAX_NODES).contains(&n) {
            return Err(err(nodes.span(), "nodes", format!("{n} is not in 1..={MAX_NODES}")));
        }
        let c = *cpn.get_ref();
        if c == 0 || n * c > MAX_CPUS {
            return Err(err(
                cpn.span(),
                "cpus-per-node",
                format!(
                    "{c} x {n} nodes must be between 1 and {MAX_CPUS} CPUs in all (memory-only nodes need [[node]] tables)"
                ),
            ));
        }
        let m = *mib.get_ref();
        if !mib_ok(m) {
            return Err(err(mib.span(), "memory-per-node-mib", format!("{m} {mib_rule}")));
        }
        (vec![c; n], vec![m; n])
    };
    let nodes = cpus.len();

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
    for src in 0..nodes {
        for dst in 0..src {
            let (there, back) = (distances[dst][src], distances[src][dst]);
            if there != back {
                let span = rows[src].get_ref()[dst].span();
                let msg = format!("[{src}][{dst}] = {back} but [{dst}][{src}] = {there}: distances must be symmetric");
                return Err(err(span, "distances", msg));
            }
        }
    }
    Ok(Machine {
        name: name.to_string(),
        description: raw.description.unwrap_or_default(),
        nodes,
        cpus_per_node: PerNode(cpus),
        memory_mib,
        distances,
        extra_args: raw.extra_args,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Machine {
    pub fn cpus(&self) -> usize {
        self.cpus_per_node.iter().sum()
    }

    pub fn total_mib(&self) -> u64 {
        self.memory_mib.iter().sum()
    }

    /// The last node that has CPUs other than node 0 (where experiments
    /// put "the other node"'s work), if any.
    pub fn far_cpu_node(&self) -> Option<usize> {
        (1..self.nodes).rev().find(|&n| self.cpus_per_node[n] > 0)
    }

    /// CPU indexes of a node: consecutive, node 0's first; empty for a
    /// memory-only node.
    pub fn node_cpus(&self, node: usize) -> Range<usize> {
        let start = self.cpus_per_node[..node].iter().sum();
        start..start + self.cpus_per_node[node]
    }

    /// Physical address range of a node's RAM (nodes in order from [`RAM_BASE`]).
    pub fn node_ram(&self, node: usize) -> Range<u64> {
        let start = RAM_BASE + (self.memory_mib[..node].iter().sum::<u64>() << 20);
        start..start + (self.memory_mib[node] << 20)
    }

    /// `(sockets, cores)` for `-smp`: as many cores per socket as every
    /// node with CPUs has a whole number of sockets of, so no socket spans
    /// two nodes (QEMU sockets all have the same core count). Equal nodes
    /// get one socket each.
    pub fn sockets_cores(&self) -> (usize, usize) {
        let cores = self.cpus_per_node.iter().fold(0, |g, &c| gcd(g, c));
        (self.cpus() / cores, cores)
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
        let (sockets, cores) = self.sockets_cores();
        a.push("-smp".into());
        a.push(format!("{},sockets={sockets},cores={cores},threads=1", self.cpus()));
        for n in 0..self.nodes {
            let c = self.node_cpus(n);
            // A memory-only node has RAM and no `cpus=`.
            let cpus = match c.len() {
                0 => String::new(),
                1 => format!(",cpus={}", c.start),
                _ => format!(",cpus={}-{}", c.start, c.end - 1),
            };
            a.push("-object".into());
            a.push(format!("memory-backend-ram,id=m{n},size={}M", self.memory_mib[n]));
            a.push("-numa".into());
            a.push(format!("node,nodeid={n}{cpus},memdev=m{n}"));
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
    /// 2 nodes x 2 CPUs + a memory-only node, three distance classes.
    const FAR: &str = "distances = [[10, 20, 30], [20, 10, 30], [30, 30, 10]]
[[node]]
cpus = 2
memory-mib = 1024
[[node]]
cpus = 2
memory-mib = 1024
[[node]]
cpus = 0
memory-mib = 512
";
    const UNEVEN: &str = "distances = [[10, 20], [20, 10]]
[[node]]
cpus = 3
memory-mib = 1536
[[node]]
cpus = 1
memory-mib = 512
";

    fn err(text: &str) -> String {
        parse("t", "t.toml", text).unwrap_err().to_string()
    }

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
        assert_eq!(m.node_ram(1), 0x8000_0000..0xc000_0000);
        assert_eq!(m.cpus_per_node.to_string(), "2");
        assert!(!m.cpus_per_node.contains(&0));
    }

    #[test]
    fn per_node_tables_equal_to_the_uniform_form() {
        let tables = "distances = [[10, 20], [20, 10]]\n[[node]]\ncpus = 2\nmemory-mib = 1024\n[[node]]\ncpus = 2\nmemory-mib = 1024\n";
        assert_eq!(parse("t", "t.toml", tables).unwrap(), parse("t", "t.toml", NUMA2).unwrap());
    }

    #[test]
    fn memory_only_node() {
        let m = parse("t", "t.toml", FAR).unwrap();
        assert_eq!((m.nodes, m.cpus(), m.total_mib()), (3, 4, 2560));
        assert_eq!(m.node_cpus(2), 4..4);
        assert_eq!(m.node_ram(2), 0xc000_0000..0xe000_0000);
        assert_eq!(*m.cpus_per_node, [2, 2, 0]);
        assert_eq!(m.cpus_per_node.to_string(), "2+2+0");
        let a = m.qemu_args().join(" ");
        assert!(a.contains("-m 2560M -smp 4,sockets=2,cores=2,threads=1 "), "{a}");
        assert!(a.contains("-object memory-backend-ram,id=m2,size=512M -numa node,nodeid=2,memdev=m2 "), "{a}");
        assert!(a.contains("-numa dist,src=2,dst=1,val=30"), "{a}");
    }

    #[test]
    fn unequal_cpu_counts() {
        let m = parse("t", "t.toml", UNEVEN).unwrap();
        assert_eq!((m.node_cpus(0), m.node_cpus(1)), (0..3, 3..4));
        let a = m.qemu_args().join(" ");
        // 3 + 1 CPUs: one-core sockets, so no socket is split between nodes.
        assert!(a.contains("-m 2048M -smp 4,sockets=4,cores=1,threads=1 "), "{a}");
        assert!(a.contains("-numa node,nodeid=0,cpus=0-2,memdev=m0 "), "{a}");
        assert!(a.contains("-numa node,nodeid=1,cpus=3,memdev=m1 "), "{a}");
        let six_two = UNEVEN.replace("cpus = 3", "cpus = 6").replace("cpus = 1", "cpus = 2");
        assert_eq!(parse("t", "t.toml", &six_two).unwrap().sockets_cores(), (4, 2));
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = NUMA2.replace("[20, 10]]", "[20, 9]]");
        assert!(err(&bad).starts_with("t.toml:4: field `distances`: [1][1] = 9"), "{}", err(&bad));
        let e = err(&NUMA2.replace("1024", "1023"));
        assert!(e.starts_with("t.toml:3: field `memory-per-node-mib`"), "{e}");
        let e = err(&format!("{NUMA2}colour = 1\n"));
        assert!(e.starts_with("t.toml:5: unknown field `colour`"), "{e}");
        let e = err(&NUMA2.replace("nodes = 2", "nodes = \"two\""));
        assert!(e.starts_with("t.toml:1: field `nodes`: invalid type: string"), "{e}");
        let e = err(&NUMA2.replace("nodes = 2", "nodes = 3"));
        assert!(e.contains("field `distances`: 2 rows for 3 nodes"), "{e}");
        let e = err(&NUMA2.replace("cpus-per-node = 2", "cpus-per-node = 0"));
        assert!(e.starts_with("t.toml:2: field `cpus-per-node`: 0 x 2 nodes") && e.contains("[[node]]"), "{e}");
    }

    #[test]
    fn per_node_errors() {
        // Both forms.
        let e = err(&format!("nodes = 3\n{FAR}"));
        assert!(e.starts_with("t.toml:1: field `nodes`: cannot be combined with [[node]] tables (line 3)"), "{e}");
        let e = err(&FAR.replace("distances", "memory-per-node-mib = 64\ndistances"));
        assert!(e.starts_with("t.toml:1: field `memory-per-node-mib`: cannot be combined"), "{e}");
        // Neither form, or half the uniform one.
        let e = err("distances = [[10]]\n");
        assert!(e.starts_with("t.toml: no nodes: give `nodes`"), "{e}");
        let e = err("nodes = 1\ncpus-per-node = 1\ndistances = [[10]]\n");
        assert!(e.starts_with("t.toml:1: field `nodes`: the uniform form also needs `memory-per-node-mib`"), "{e}");
        // Per-node values.
        let e = err(&FAR.replace("memory-mib = 512", "memory-mib = 0"));
        assert!(e.starts_with("t.toml:10: field `memory-mib`: node 2: 0 must be an even number"), "{e}");
        let e = err(&FAR.replace("cpus = 2", "cpus = 0"));
        assert!(e.starts_with("t.toml:3: field `cpus`: no node has CPUs"), "{e}");
        let e = err(&FAR.replace("cpus = 0", "cpus = 509"));
        assert!(e.starts_with("t.toml:9: field `cpus`: 513 CPUs in all, at most 512 (passed at node 2)"), "{e}");
        let e = err(&FAR.replacen("memory-mib = 1024", "memory-mib = 1024\nmemory = 1", 1));
        assert!(e.contains("unknown field `memory`"), "{e}");
        let e = err(&FAR.replace("cpus = 0\n", ""));
        assert!(e.contains("missing field `cpus`"), "{e}");
        // Distances: size, locals, symmetry, and a key lost in a table.
        let e = err(&FAR.replace(", [30, 30, 10]]", "]"));
        assert!(e.starts_with("t.toml:1: field `distances`: 2 rows for 3 nodes"), "{e}");
        let e = err(&FAR.replace("[20, 10, 30]", "[20, 10]"));
        assert!(e.starts_with("t.toml:1: field `distances`: row 1 has 2 entries for 3 nodes"), "{e}");
        let e = err(&FAR.replace("[30, 30, 10]", "[30, 30, 20]"));
        assert!(e.contains("field `distances`: [2][2] = 20: the local distance must be 10"), "{e}");
        let e = err(&FAR.replace("[30, 30, 10]", "[30, 40, 10]"));
        assert!(
            e.starts_with("t.toml:1: field `distances`: [2][1] = 40 but [1][2] = 30: distances must be symmetric"),
            "{e}"
        );
        let e = err(&FAR.replace("[20, 10, 30]", "[20, 10, 300]"));
        assert!(e.contains("[1][2] = 300: remote distances must be in 11..=255"), "{e}");
        let moved = format!("{}{}\n", &FAR[FAR.find('\n').unwrap() + 1..], &FAR[..FAR.find('\n').unwrap()]);
        let e = err(&moved);
        assert!(e.contains("unknown field `distances`") && e.contains("before the first [[node]]"), "{e}");
    }

    #[test]
    fn shipped_configs_load() {
        let all = check_all().unwrap();
        assert!(all.iter().any(|m| m.name == "numa2"));
        assert!(all.iter().any(|m| m.name == "numa4"));
        assert!(all.iter().any(|m| m.cpus_per_node.contains(&0)), "a machine with a memory-only node");
        for m in &all {
            assert_eq!((m.cpus_per_node.len(), m.memory_mib.len()), (m.nodes, m.nodes), "{}", m.name);
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
