//! Device trees for tests, written with `vm-fdt` in the shape QEMU's `virt`
//! machine produces, with every field open to corruption.
#![allow(dead_code)]

use vm_fdt::FdtWriter;

pub const GIB: u64 = 1 << 30;

/// A `/cpus/cpu@*` node; cells are written as given.
pub struct CpuSpec {
    pub name: String,
    pub reg: Option<Vec<u32>>,
    pub node: Option<Vec<u32>>,
    pub status: Option<&'static str>,
}

/// A root-level `memory@*` node; cells are written as given.
pub struct MemSpec {
    pub name: String,
    pub reg: Vec<u32>,
    pub node: Option<Vec<u32>>,
    pub status: Option<&'static str>,
}

/// A whole machine. `Machine::qemu` gives a well-formed one to start from.
pub struct Machine {
    /// Root `#address-cells`, `#size-cells`.
    pub root_cells: (u32, u32),
    /// `/cpus` `#address-cells`.
    pub cpu_cells: u32,
    pub cpus: Vec<CpuSpec>,
    pub mem: Vec<MemSpec>,
    /// Raw `distance-matrix` cells; `None` leaves out `/distance-map`.
    pub distance: Option<Vec<u32>>,
    /// Whether `/cpus` exists at all.
    pub has_cpus_node: bool,
}

pub fn cpu(mpidr: u64, node: Option<u32>) -> CpuSpec {
    CpuSpec { name: format!("cpu@{mpidr:x}"), reg: Some(vec![mpidr as u32]), node: node.map(|n| vec![n]), status: None }
}

pub fn mem(start: u64, size: u64, node: Option<u32>) -> MemSpec {
    MemSpec {
        name: format!("memory@{start:x}"),
        reg: vec![(start >> 32) as u32, start as u32, (size >> 32) as u32, size as u32],
        node: node.map(|n| vec![n]),
        status: None,
    }
}

/// Distance-matrix cells for every ordered pair, from `f(a, b)`.
pub fn full_matrix(nodes: u32, f: impl Fn(u32, u32) -> u32) -> Vec<u32> {
    let mut cells = Vec::new();
    for a in 0..nodes {
        for b in 0..nodes {
            cells.extend([a, b, f(a, b)]);
        }
    }
    cells
}

impl Machine {
    /// QEMU `virt` with `nodes` sockets of `cpus_per_node` CPUs (MPIDR Aff0
    /// numbering as QEMU does for `-smp N,sockets=nodes`), `mem_per_node`
    /// bytes per node from 0x4000_0000, and a full 10/20 distance matrix.
    pub fn qemu(nodes: u32, cpus_per_node: u32, mem_per_node: u64) -> Self {
        let cpus = (0..nodes * cpus_per_node).map(|i| cpu(u64::from(i), Some(i / cpus_per_node))).collect();
        // QEMU writes memory nodes highest address first.
        let mem =
            (0..nodes).rev().map(|n| mem(0x4000_0000 + u64::from(n) * mem_per_node, mem_per_node, Some(n))).collect();
        Machine {
            root_cells: (2, 2),
            cpu_cells: 1,
            cpus,
            mem,
            distance: Some(full_matrix(nodes, |a, b| if a == b { 10 } else { 20 })),
            has_cpus_node: true,
        }
    }

    pub fn dtb(&self) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        w.property_u32("#address-cells", self.root_cells.0).unwrap();
        w.property_u32("#size-cells", self.root_cells.1).unwrap();
        for m in &self.mem {
            let n = w.begin_node(&m.name).unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u32("reg", &m.reg).unwrap();
            if let Some(id) = &m.node {
                w.property_array_u32("numa-node-id", id).unwrap();
            }
            if let Some(s) = m.status {
                w.property_string("status", s).unwrap();
            }
            w.end_node(n).unwrap();
        }
        // A flash bank, as QEMU has: has reg but is not memory.
        let flash = w.begin_node("flash@0").unwrap();
        w.property_array_u32("reg", &[0, 0, 0, 0x400_0000]).unwrap();
        w.end_node(flash).unwrap();
        if self.has_cpus_node {
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", self.cpu_cells).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            let map = w.begin_node("cpu-map").unwrap();
            w.end_node(map).unwrap();
            for c in &self.cpus {
                let n = w.begin_node(&c.name).unwrap();
                w.property_string("device_type", "cpu").unwrap();
                w.property_string("compatible", "arm,cortex-a57").unwrap();
                if let Some(reg) = &c.reg {
                    w.property_array_u32("reg", reg).unwrap();
                }
                if let Some(id) = &c.node {
                    w.property_array_u32("numa-node-id", id).unwrap();
                }
                if let Some(s) = c.status {
                    w.property_string("status", s).unwrap();
                }
                w.end_node(n).unwrap();
            }
            w.end_node(cpus).unwrap();
        }
        if let Some(cells) = &self.distance {
            let map = w.begin_node("distance-map").unwrap();
            w.property_string("compatible", "numa-distance-map-v1").unwrap();
            w.property_array_u32("distance-matrix", cells).unwrap();
            w.end_node(map).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }
}
