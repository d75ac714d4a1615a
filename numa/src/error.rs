//! Why a host device tree could not be turned into a [`Topology`].
//!
//! Each variant names the device-tree node or value at fault, so a boot that
//! stops on a bad tree says what to fix in the QEMU command line.
//!
//! [`Topology`]: crate::Topology

use alloc::string::String;
use core::fmt;

use crate::MemRange;

/// A device tree the topology cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// The blob is not a well-formed flattened device tree.
    Malformed(&'static str),
    /// There is no `/cpus` node.
    NoCpusNode,
    /// `/cpus` has no enabled `cpu` node.
    NoCpus,
    /// `#address-cells` or `#size-cells` of this node is unusable.
    BadCells {
        /// Path of the node carrying the cell counts.
        node: String,
    },
    /// A cpu node has no `reg`, so its MPIDR is unknown.
    CpuWithoutReg {
        /// Path of the cpu node.
        node: String,
    },
    /// A cpu node's `reg` is shorter than `#address-cells`, or sets bits
    /// outside the MPIDR affinity fields.
    BadCpuReg {
        /// Path of the cpu node.
        node: String,
    },
    /// Two cpu nodes claim the same MPIDR.
    DuplicateMpidr {
        /// The MPIDR affinity value claimed twice.
        mpidr: u64,
    },
    /// No enabled memory node holds a non-empty range.
    NoMemory,
    /// A memory node's `reg` is not whole (address, size) pairs, or a range
    /// wraps past the end of the address space.
    BadMemoryReg {
        /// Path of the memory node.
        node: String,
    },
    /// Two memory ranges overlap, so an address would have two homes.
    OverlappingMemory {
        /// The lower range.
        a: MemRange,
        /// The range that overlaps it.
        b: MemRange,
    },
    /// A `numa-node-id` property is not a single cell.
    BadNodeIdProperty {
        /// Path of the node carrying it.
        node: String,
    },
    /// A node id is not below [`MAX_NODES`](crate::MAX_NODES).
    NodeIdOutOfRange {
        /// Path of the device-tree node naming the id.
        node: String,
        /// The id found.
        id: u32,
    },
    /// The distance map has no `distance-matrix`, or it is not whole
    /// `<from to distance>` triples.
    BadDistanceMatrix,
    /// A distance entry is impossible: a node's distance to itself other
    /// than 10, a remote distance of 10 or less, or one above 255.
    BadDistance {
        /// Source node.
        from: u32,
        /// Destination node.
        to: u32,
        /// The distance found.
        distance: u32,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed device tree: {why}"),
            Self::NoCpusNode => write!(f, "device tree has no /cpus node"),
            Self::NoCpus => write!(f, "/cpus has no enabled cpu node"),
            Self::BadCells { node } => {
                write!(f, "{node}: unusable #address-cells or #size-cells")
            }
            Self::CpuWithoutReg { node } => write!(f, "{node}: no reg (MPIDR)"),
            Self::BadCpuReg { node } => {
                write!(f, "{node}: reg is too short or not an MPIDR affinity value")
            }
            Self::DuplicateMpidr { mpidr } => write!(f, "two cpus have MPIDR {mpidr:#x}"),
            Self::NoMemory => write!(f, "no memory node with a non-empty range"),
            Self::BadMemoryReg { node } => {
                write!(f, "{node}: reg is not whole (address, size) pairs or wraps")
            }
            Self::OverlappingMemory { a, b } => write!(f, "memory ranges {a} and {b} overlap"),
            Self::BadNodeIdProperty { node } => write!(f, "{node}: numa-node-id is not one cell"),
            Self::NodeIdOutOfRange { node, id } => {
                write!(f, "{node}: node id {id} out of range (at most {})", crate::MAX_NODES - 1)
            }
            Self::BadDistanceMatrix => {
                write!(f, "distance map: distance-matrix missing or not <from to distance> triples")
            }
            Self::BadDistance { from, to, distance } => {
                write!(f, "distance map: bad distance {distance} from node {from} to node {to}")
            }
        }
    }
}
