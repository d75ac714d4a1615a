//! The machine as the monitor sees it: nodes, CPUs, memory and distances.
//!
//! Built once at boot from the host device tree and read-only afterwards,
//! so every per-node structure in the monitor can be indexed by [`NodeId`].
//! Node ids are dense (`0..node_count()`): a node named by nothing but a
//! gap in the numbering is simply empty.

use alloc::vec;
use alloc::vec::Vec;

use crate::fdt_parse::{self, Facts, MPIDR_AFF_MASK};
use crate::{MemRange, TopologyError};

/// Index of a NUMA node, as in the device tree's `numa-node-id`.
pub type NodeId = usize;

/// Largest supported node count; bounds the distance table a tree can ask for.
pub const MAX_NODES: usize = 64;
/// Distance of a node to itself (ACPI SLIT / device-tree convention).
pub const LOCAL_DISTANCE: u8 = 10;
/// Distance between two nodes when the tree does not say.
pub const REMOTE_DISTANCE: u8 = 20;


/// One NUMA node. A node may have CPUs and no memory, or memory and no CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// This node's id; equal to its index in [`Topology::nodes`].
    pub id: NodeId,
    /// Logical indexes of its CPUs, ascending.
    pub cpus: Vec<usize>,
    /// Its memory, sorted by address, non-overlapping.
    pub memory: Vec<MemRange>,
}

/// One physical CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Logical index: position among all CPUs sorted by MPIDR.
    pub index: usize,
    /// MPIDR affinity value (Aff3..Aff0 only), as in the cpu node's `reg`.
    pub mpidr: u64,
    /// The node the CPU belongs to.
    pub node: NodeId,
}

/// Nodes, CPUs and the node distance matrix of the host machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<Node>,
    cpus: Vec<Cpu>,
    /// Row-major `node_count() * node_count()` matrix.
    distance: Vec<u8>,
}

impl Topology {
    /// Builds the topology from a flattened device tree.
    ///
    /// Memory nodes (`device_type = "memory"`) and `/cpus/cpu@*` nodes carry
    /// `numa-node-id`; a tree without any is one node 0 holding everything.
    /// Distances come from the `numa-distance-map-v1` node; pairs it does
    /// not name (or a tree without one) get [`LOCAL_DISTANCE`] and
    /// [`REMOTE_DISTANCE`]. As in Linux, an entry `<a b d>` with `a < b`
    /// also sets `b -> a` unless the map names `b -> a` itself, and entries
    /// for nodes that own neither CPUs nor memory are ignored. Nodes with
    /// `status` other than "okay" are skipped.
    pub fn from_fdt(dtb: &[u8]) -> Result<Topology, TopologyError> {
        let topo = Self::build(fdt_parse::read(dtb)?)?;
        log::debug!("numa: {} nodes, {} cpus", topo.node_count(), topo.cpus.len());
        Ok(topo)
    }

    fn build(facts: Facts) -> Result<Topology, TopologyError> {
        let Facts { cpus: mut raw_cpus, memory: mut raw_mem, distances } = facts;
        if raw_cpus.is_empty() {
            return Err(TopologyError::NoCpus);
        }
        raw_mem.retain(|m| !m.range.is_empty());
        if raw_mem.is_empty() {
            return Err(TopologyError::NoMemory);
        }
        let count = raw_cpus.iter().map(|c| c.node).chain(raw_mem.iter().map(|m| m.node)).max();
        let count = count.map_or(1, |max| max + 1);
        let mut nodes: Vec<Node> = (0..count).map(|id| Node { id, cpus: Vec::new(), memory: Vec::new() }).collect();

        raw_cpus.sort_unstable_by_key(|c| c.mpidr);
        if let Some(w) = raw_cpus.windows(2).find(|w| w[0].mpidr == w[1].mpidr) {
            return Err(TopologyError::DuplicateMpidr { mpidr: w[0].mpidr });
        }
        let cpus: Vec<Cpu> =
            raw_cpus.iter().enumerate().map(|(index, c)| Cpu { index, mpidr: c.mpidr, node: c.node }).collect();
        for cpu in &cpus {
            nodes[cpu.node].cpus.push(cpu.index);
        }

        raw_mem.sort_unstable_by_key(|m| m.range);
        if let Some(w) = raw_mem.windows(2).find(|w| w[0].range.overlaps(&w[1].range)) {
            return Err(TopologyError::OverlappingMemory { a: w[0].range, b: w[1].range });
        }
        for m in &raw_mem {
            nodes[m.node].memory.push(m.range);
        }

        let distance = distance_matrix(count, distances.as_deref().unwrap_or(&[]))?;
        Ok(Topology { nodes, cpus, distance })
    }

    /// All nodes, indexed by [`NodeId`].
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All CPUs, indexed by logical CPU index (sorted by MPIDR).
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// Number of nodes; node ids are `0..node_count()`.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Relative distance from node `a` to node `b` (10 = local).
    ///
    /// # Panics
    /// If either id is not below [`node_count`](Self::node_count).
    pub fn distance(&self, a: NodeId, b: NodeId) -> u8 {
        let n = self.node_count();
        assert!(a < n && b < n, "node id out of range");
        self.distance[a * n + b]
    }

    /// The CPU whose MPIDR is `mpidr`. Accepts a raw `MPIDR_EL1` read: bits
    /// outside the affinity fields are ignored.
    pub fn cpu_by_mpidr(&self, mpidr: u64) -> Option<&Cpu> {
        let aff = mpidr & MPIDR_AFF_MASK;
        self.cpus.binary_search_by_key(&aff, |c| c.mpidr).ok().map(|i| &self.cpus[i])
    }

    /// The node of the CPU whose MPIDR is `mpidr` (raw `MPIDR_EL1` accepted).
    pub fn node_of_cpu_mpidr(&self, mpidr: u64) -> Option<NodeId> {
        self.cpu_by_mpidr(mpidr).map(|c| c.node)
    }

    /// The node whose memory holds physical address `pa`, if any.
    pub fn node_of_addr(&self, pa: u64) -> Option<NodeId> {
        self.nodes.iter().find(|n| n.memory.iter().any(|r| r.contains(pa))).map(|n| n.id)
    }

    /// Bytes of memory on `node` (0 for an unknown node).
    pub fn node_memory_bytes(&self, node: NodeId) -> u64 {
        self.nodes.get(node).map_or(0, |n| n.memory.iter().map(MemRange::len).sum())
    }
}

/// The `count * count` matrix: defaults, then mirrored `a < b` entries, then
/// every entry as written, so an explicit `b -> a` beats a mirrored one.
fn distance_matrix(count: usize, entries: &[[u32; 3]]) -> Result<Vec<u8>, TopologyError> {
    let mut m = vec![REMOTE_DISTANCE; count * count];
    for i in 0..count {
        m[i * count + i] = LOCAL_DISTANCE;
    }
    let mut known = Vec::with_capacity(entries.len());
    for &[from, to, d] in entries {
        let local = u32::from(LOCAL_DISTANCE);
        let ok = if from == to { d == local } else { d > local && d <= 255 };
        if !ok {
            return Err(TopologyError::BadDistance { from, to, distance: d });
        }
        // Ids are below MAX_NODES (checked while parsing), so these fit.
        let (a, b) = (from as usize, to as usize);
        if a >= count || b >= count {
            log::warn!("numa: distance {from}->{to} names a node with no cpu or memory; ignored");
            continue;
        }
        known.push((a, b, d as u8));
    }
    for &(a, b, d) in known.iter().filter(|e| e.0 < e.1) {
        m[b * count + a] = d;
    }
    for &(a, b, d) in &known {
        m[a * count + b] = d;
    }
    Ok(m)
}
