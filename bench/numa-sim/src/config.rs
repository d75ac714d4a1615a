//! Plugin arguments: the machine (nodes, CPUs, distances) and the model.
//!
//! QEMU passes `-plugin libnuma_sim.so,key=value,...`; values never contain
//! commas. xtask derives the machine keys from `qemu-configs/*.toml`, so
//! nothing about the machine is hard-coded here.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `ram_base` | physical address where node 0's RAM starts | `0x40000000` |
//! | `mem` | RAM size of each node, in node order, `/`-separated (`1G/1G`) | required |
//! | `cpus` | CPUs of each node, in order (`2/2`: vCPUs 0-1 on node 0, 2-3 on node 1) | required |
//! | `dist` | distance matrix rows, `/`-separated, entries `:`-separated (`10:20/20:10`) | 10 local, 20 remote |
//! | `cache` | per-CPU cache size (`1M`) | 1 MiB |
//! | `assoc` | associativity | 8 |
//! | `line` | line size in bytes | 64 |
//! | `local_ns` | miss latency at distance 10 | 300 |
//! | `remote_ns` | miss latency at distance 20 (other distances scale linearly) | 900 |
//! | `insn_ns` | base cost of one instruction (may be fractional) | 1 |
//! | `shm` | the shared file backing node `shm_node`'s RAM (counter channel) | none: private |
//! | `shm_node` | which node's RAM `shm` backs | last node |
//! | `out` | JSON report path | none |
//! | `top` | top pages in the report | 20 |
//! | `filter` | skip the model for an access to the same line as the CPU's last one | on |
//! | `ram_prefix` | every node's RAM is the file `{ram_prefix}.m{node}` (needed for `ifetch`) | none |
//! | `ifetch` | model instruction fetches (one lookup per line of each executed TB) | on if `ram_prefix` |

/// Parsed plugin configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub ram_base: u64,
    pub node_mem: Vec<u64>,
    pub node_cpus: Vec<u32>,
    pub dist: Vec<Vec<u32>>,
    pub cache_size: u64,
    pub assoc: u32,
    pub line: u32,
    pub local_ps: u64,
    pub remote_ps: u64,
    pub insn_ps: u64,
    pub shm: Option<String>,
    pub shm_node: usize,
    pub out: Option<String>,
    pub top: usize,
    pub filter: bool,
    pub ram_prefix: Option<String>,
    pub ifetch: bool,
}

/// Parse a size: decimal or 0x-hex, optional K/M/G suffix (powers of 2).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = if let Some(h) = num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        num.parse::<u64>()
    };
    v.map_err(|e| format!("bad size {s:?}: {e}"))?.checked_mul(mult).ok_or_else(|| format!("size {s:?} overflows"))
}

/// Nanoseconds (possibly fractional) to picoseconds.
fn parse_ns(s: &str) -> Result<u64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("bad time {s:?}: {e}"))?;
    if !(0.0..1e9).contains(&v) {
        return Err(format!("time {s:?} out of range"));
    }
    Ok((v * 1000.0).round() as u64)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err(format!("bad boolean {s:?}")),
    }
}

impl Config {
    /// Parse `key=value` arguments.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut c = Config {
            ram_base: 0x4000_0000,
            node_mem: Vec::new(),
            node_cpus: Vec::new(),
            dist: Vec::new(),
            cache_size: 1 << 20,
            assoc: 8,
            line: 64,
            local_ps: 300_000,
            remote_ps: 900_000,
            insn_ps: 1000,
            shm: None,
            shm_node: usize::MAX,
            out: None,
            top: 20,
            filter: true,
            ram_prefix: None,
            ifetch: true,
        };
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| format!("argument {a:?} is not key=value"))?;
            match k {
                "ram_base" => c.ram_base = parse_size(v)?,
                "mem" => c.node_mem = v.split('/').map(parse_size).collect::<Result<_, _>>()?,
                "cpus" => {
                    c.node_cpus = v
                        .split('/')
                        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("bad cpus {x:?}: {e}")))
                        .collect::<Result<_, _>>()?
                }
                "dist" => {
                    c.dist = v
                        .split('/')
                        .map(|row| {
                            row.split(':')
                                .map(|x| x.trim().parse::<u32>().map_err(|e| format!("bad distance {x:?}: {e}")))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .collect::<Result<_, _>>()?
                }
                "cache" => c.cache_size = parse_size(v)?,
                "assoc" => c.assoc = parse_size(v)? as u32,
                "line" => c.line = parse_size(v)? as u32,
                "local_ns" => c.local_ps = parse_ns(v)?,
                "remote_ns" => c.remote_ps = parse_ns(v)?,
                "insn_ns" => c.insn_ps = parse_ns(v)?,
                "shm" => c.shm = Some(v.to_string()),
                "shm_node" => c.shm_node = v.parse().map_err(|e| format!("bad shm_node: {e}"))?,
                "out" => c.out = Some(v.to_string()),
                "top" => c.top = v.parse().map_err(|e| format!("bad top: {e}"))?,
                "filter" => c.filter = parse_bool(v)?,
                "ram_prefix" => c.ram_prefix = Some(v.to_string()),
                "ifetch" => c.ifetch = parse_bool(v)?,
                _ => return Err(format!("unknown argument {k:?}")),
            }
        }
        c.finish()
    }

    fn finish(mut self) -> Result<Self, String> {
        let n = self.node_mem.len();
        if n == 0 || n > crate::MAX_NODES {
            return Err(format!("mem= must list 1..={} node sizes", crate::MAX_NODES));
        }
        if self.node_cpus.len() != n {
            return Err(format!("cpus= lists {} nodes, mem= lists {n}", self.node_cpus.len()));
        }
        if self.dist.is_empty() {
            self.dist = (0..n).map(|i| (0..n).map(|j| if i == j { 10 } else { 20 }).collect()).collect();
        }
        if self.dist.len() != n || self.dist.iter().any(|r| r.len() != n) {
            return Err(format!("dist= must be a {n}x{n} matrix"));
        }
        if self.node_mem.iter().any(|&m| m == 0 || !m.is_multiple_of(4096)) || !self.ram_base.is_multiple_of(4096) {
            return Err("node memory must be non-zero multiples of 4 KiB".into());
        }
        if !self.line.is_power_of_two() || self.line < 8 || self.assoc == 0 {
            return Err("line must be a power of two >= 8, assoc >= 1".into());
        }
        let sets = self.cache_size / (self.line as u64 * self.assoc as u64);
        if sets == 0 || !sets.is_power_of_two() || sets * self.line as u64 * self.assoc as u64 != self.cache_size {
            return Err("cache / (line * assoc) must be a power of two".into());
        }
        if self.ram_prefix.is_none() {
            self.ifetch = false;
        }
        if self.shm_node == usize::MAX {
            self.shm_node = n - 1;
        }
        if self.shm_node >= n {
            return Err(format!("shm_node {} is not a node", self.shm_node));
        }
        Ok(self)
    }

    pub fn nodes(&self) -> usize {
        self.node_mem.len()
    }

    /// Start address of node `i`'s RAM (nodes are laid out in order).
    pub fn node_base(&self, i: usize) -> u64 {
        self.ram_base + self.node_mem[..i].iter().sum::<u64>()
    }

    pub fn ram_end(&self) -> u64 {
        self.node_base(self.nodes())
    }

    /// Node of each vCPU (CPUs are assigned to nodes in order).
    pub fn cpu_nodes(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for (n, &c) in self.node_cpus.iter().enumerate() {
            v.extend(std::iter::repeat_n(n as u32, c as usize));
        }
        v
    }

    /// Miss latency in ps from a CPU on `from` to memory on `to`:
    /// `local + (d - 10) / 10 * (remote - local)`.
    pub fn latency_ps(&self, from: usize, to: usize) -> u64 {
        let d = self.dist[from][to] as i64;
        let l = self.local_ps as i64;
        let r = self.remote_ps as i64;
        (l + (d - 10) * (r - l) / 10).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numa2() {
        let c = Config::parse(["mem=1G/1G", "cpus=2/2", "dist=10:20/20:10"]).unwrap();
        assert_eq!(c.node_base(1), 0x8000_0000);
        assert_eq!(c.ram_end(), 0xc000_0000);
        assert_eq!(c.cpu_nodes(), vec![0, 0, 1, 1]);
        assert_eq!(c.latency_ps(0, 0), 300_000);
        assert_eq!(c.latency_ps(0, 1), 900_000);
        assert_eq!(c.shm_node, 1);
    }

    #[test]
    fn scaled_distances_and_options() {
        let c = Config::parse([
            "mem=512M/512M/0x20000000",
            "cpus=1/1/2",
            "dist=10:20:30/20:10:15/30:15:10",
            "local_ns=100",
            "remote_ns=200",
            "insn_ns=0.5",
            "cache=2M",
            "assoc=4",
            "line=128",
            "top=5",
            "filter=off",
        ])
        .unwrap();
        assert_eq!(c.latency_ps(0, 2), 300_000);
        assert_eq!(c.latency_ps(1, 2), 150_000);
        assert_eq!(c.insn_ps, 500);
        assert_eq!(c.node_mem[2], 512 << 20);
        assert!(!c.filter);
    }

    #[test]
    fn errors() {
        assert!(Config::parse(["cpus=2"]).is_err());
        assert!(Config::parse(["mem=1G", "cpus=1/1"]).is_err());
        assert!(Config::parse(["mem=1G", "cpus=1", "cache=3M"]).is_err());
        assert!(Config::parse(["mem=1G", "cpus=1", "bogus=1"]).is_err());
        assert!(Config::parse(["mem=1G/1G", "cpus=1/1", "dist=10:20"]).is_err());
    }
}
