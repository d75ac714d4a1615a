//! Reads the NUMA facts out of the host device tree, unjudged.
//!
//! Only syntax lives here: which nodes are cpus and memory, how many cells
//! their `reg` uses, which `numa-node-id` they carry, and the raw distance
//! triples. Whether the facts make a sane machine is decided in
//! `topology`. The blob is checked by `dtb_check` first because `fdt`
//! panics on malformed trees; after that, only `fdt` methods that cannot
//! panic on a well-formed tree are used (no `Fdt::cpus`, `memory`, `reg`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::{MemRange, TopologyError, MAX_NODES};

/// MPIDR bits that identify a CPU (Aff3..Aff0); the rest (U, MT, RES1) vary
/// with how the register is read, not with which CPU reads it.
pub(crate) const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

/// A `/cpus/cpu@*` node.
pub(crate) struct RawCpu {
    /// MPIDR affinity value from `reg`.
    pub mpidr: u64,
    pub node: usize,
}

/// One `(address, size)` pair of a memory node's `reg`.
pub(crate) struct RawMemory {
    pub range: MemRange,
    pub node: usize,
}

/// Everything the topology is built from.
pub(crate) struct Facts {
    pub cpus: Vec<RawCpu>,
    pub memory: Vec<RawMemory>,
    /// `<from to distance>` triples, `None` without a distance map.
    pub distances: Option<Vec<[u32; 3]>>,
}

/// Reads the facts; node ids are already known to be below `MAX_NODES`.
pub(crate) fn read(dtb: &[u8]) -> Result<Facts, TopologyError> {
    crate::dtb_check::check(dtb).map_err(TopologyError::Malformed)?;
    let fdt = Fdt::new(dtb).map_err(|_| TopologyError::Malformed("rejected by the fdt parser"))?;
    let root = fdt.find_node("/").ok_or(TopologyError::Malformed("root node is not named ''"))?;
    let cpus_node = fdt.find_node("/cpus").ok_or(TopologyError::NoCpusNode)?;
    Ok(Facts { cpus: cpus(cpus_node)?, memory: memory(root)?, distances: distances(root)? })
}

fn cpus(parent: FdtNode<'_, '_>) -> Result<Vec<RawCpu>, TopologyError> {
    let (addr_cells, _) = cells(parent, "/cpus")?;
    let mut out = Vec::new();
    for node in parent.children().filter(|n| is_cpu(*n) && enabled(*n)) {
        let path = format!("/cpus/{}", node.name);
        let reg = node.property("reg").ok_or_else(|| TopologyError::CpuWithoutReg { node: path.clone() })?;
        let mpidr = read_cells(reg.value, addr_cells)
            .filter(|m| m & !MPIDR_AFF_MASK == 0)
            .ok_or_else(|| TopologyError::BadCpuReg { node: path.clone() })?;
        out.push(RawCpu { mpidr, node: node_id(node, &path)? });
    }
    Ok(out)
}

fn memory(root: FdtNode<'_, '_>) -> Result<Vec<RawMemory>, TopologyError> {
    let (addr_cells, size_cells) = cells(root, "/")?;
    let mut out = Vec::new();
    for node in root.children().filter(|n| prop_str(*n, "device_type") == Some("memory")) {
        if !enabled(node) {
            continue;
        }
        let path = format!("/{}", node.name);
        let bad = || TopologyError::BadMemoryReg { node: path.clone() };
        let entry = (addr_cells + size_cells) * 4;
        let reg = node.property("reg").ok_or_else(bad)?.value;
        if size_cells == 0 || reg.is_empty() || reg.len() % entry != 0 {
            return Err(bad());
        }
        let id = node_id(node, &path)?;
        for pair in reg.chunks_exact(entry) {
            let (a, s) = pair.split_at(addr_cells * 4);
            let start = read_cells(a, addr_cells).ok_or_else(bad)?;
            let size = read_cells(s, size_cells).ok_or_else(bad)?;
            let end = start.checked_add(size).ok_or_else(bad)?;
            out.push(RawMemory { range: MemRange::new(start, end), node: id });
        }
    }
    Ok(out)
}

fn distances(root: FdtNode<'_, '_>) -> Result<Option<Vec<[u32; 3]>>, TopologyError> {
    let Some(map) = root.children().find(|n| compatible(*n, "numa-distance-map-v1")) else {
        return Ok(None);
    };
    let path = format!("/{}", map.name);
    let matrix = map.property("distance-matrix").ok_or(TopologyError::BadDistanceMatrix)?;
    if matrix.value.len() % 12 != 0 {
        return Err(TopologyError::BadDistanceMatrix);
    }
    let mut out = Vec::new();
    for triple in matrix.value.chunks_exact(12) {
        let cell = |i: usize| be32(&triple[i * 4..]);
        let entry = [cell(0), cell(1), cell(2)];
        for id in [entry[0], entry[1]] {
            check_node_id(id, &path)?;
        }
        out.push(entry);
    }
    Ok(Some(out))
}

/// `(#address-cells, #size-cells)` that `node` gives its children, with the
/// spec's defaults of 2 and 1 when absent.
fn cells(node: FdtNode<'_, '_>, path: &str) -> Result<(usize, usize), TopologyError> {
    let bad = || TopologyError::BadCells { node: String::from(path) };
    let get = |name, default| match node.property(name) {
        None => Ok(default),
        Some(p) if p.value.len() == 4 => Ok(be32(p.value) as usize),
        Some(_) => Err(bad()),
    };
    let (addr, size) = (get("#address-cells", 2)?, get("#size-cells", 1)?);
    if !(1..=2).contains(&addr) || size > 2 {
        return Err(bad());
    }
    Ok((addr, size))
}

/// The node's `numa-node-id`; a tree without them is one node, 0.
fn node_id(node: FdtNode<'_, '_>, path: &str) -> Result<usize, TopologyError> {
    match node.property("numa-node-id") {
        None => Ok(0),
        Some(p) if p.value.len() == 4 => check_node_id(be32(p.value), path),
        Some(_) => Err(TopologyError::BadNodeIdProperty { node: String::from(path) }),
    }
}

fn check_node_id(id: u32, path: &str) -> Result<usize, TopologyError> {
    match usize::try_from(id) {
        Ok(n) if n < MAX_NODES => Ok(n),
        _ => Err(TopologyError::NodeIdOutOfRange { node: String::from(path), id }),
    }
}

/// Cpu nodes as Linux finds them: named `cpu` or typed `cpu` (`cpu-map` is
/// neither).
fn is_cpu(node: FdtNode<'_, '_>) -> bool {
    node.name.split('@').next() == Some("cpu") || prop_str(node, "device_type") == Some("cpu")
}

fn enabled(node: FdtNode<'_, '_>) -> bool {
    matches!(prop_str(node, "status"), None | Some("okay") | Some("ok"))
}

fn compatible(node: FdtNode<'_, '_>, with: &str) -> bool {
    node.property("compatible").is_some_and(|p| p.value.split(|&b| b == 0).any(|c| c == with.as_bytes()))
}

fn prop_str<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    node.property(name).and_then(|p| p.as_str())
}

/// A 1- or 2-cell big-endian value from the front of `bytes`.
fn read_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    match cells {
        1 if bytes.len() >= 4 => Some(u64::from(be32(bytes))),
        2 if bytes.len() >= 8 => Some(u64::from(be32(bytes)) << 32 | u64::from(be32(&bytes[4..]))),
        _ => None,
    }
}

/// Callers have checked that 4 bytes are there.
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
