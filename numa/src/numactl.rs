//! `numactl --hardware` output, so the monitor's view of the machine can be
//! compared line for line with what a guest (or a native Linux) prints.

use core::fmt;

use crate::Topology;

/// Displays a topology exactly as `numactl --hardware` does, including
/// numactl's `"% 3d "` columns and their trailing space.
///
/// `free_bytes[n]` is node `n`'s free memory; a node without an entry
/// prints numactl's `<not available>`. A node without CPUs (memory only)
/// prints `node N cpus:` with nothing after it, as numactl does.
#[derive(Debug, Clone, Copy)]
pub struct Hardware<'a> {
    /// The machine to describe.
    pub topo: &'a Topology,
    /// Free bytes per node, indexed by node id.
    pub free_bytes: &'a [u64],
}

impl fmt::Display for Hardware<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topo = self.topo;
        let n = topo.node_count();
        // Node ids are dense, so numactl's range list is always "0" or "0-N".
        write!(f, "available: {n} nodes (0")?;
        if n > 1 {
            write!(f, "-{}", n - 1)?;
        }
        writeln!(f, ")")?;
        for node in topo.nodes() {
            let id = node.id;
            write!(f, "node {id} cpus:")?;
            for cpu in &node.cpus {
                write!(f, " {cpu}")?;
            }
            writeln!(f)?;
            writeln!(f, "node {id} size: {}", Mb(Some(topo.node_memory_bytes(id))))?;
            writeln!(f, "node {id} free: {}", Mb(self.free_bytes.get(id).copied()))?;
        }
        writeln!(f, "node distances:")?;
        write!(f, "node ")?;
        for b in 0..n {
            write!(f, "{} ", Col(b))?;
        }
        writeln!(f)?;
        for a in 0..n {
            write!(f, "{}: ", Col(a))?;
            for b in 0..n {
                write!(f, "{} ", Col(usize::from(topo.distance(a, b))))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// numactl's `fmt_mem`: whole MiB, rounded down.
struct Mb(Option<u64>);

impl fmt::Display for Mb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => write!(f, "{} MB", bytes >> 20),
            None => write!(f, "<not available>"),
        }
    }
}

/// printf's `"% 3d"` for a non-negative number: a sign space, then the
/// digits right-aligned so the whole is at least 3 wide.
struct Col(usize);

impl fmt::Display for Col {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " {:>2}", self.0)
    }
}
