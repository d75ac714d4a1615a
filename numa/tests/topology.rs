//! `Topology::from_fdt` on QEMU-shaped trees, odd but legal trees, and
//! broken ones.

mod common;

use common::{cpu, full_matrix, mem, Machine, GIB};
use numa::{Hardware, MemRange, Topology, TopologyError, MAX_NODES};

/// QEMU 10 `virt` (virtualization=on, gic-version=3), 2 nodes x 2 CPUs,
/// 1 GiB each, distance 20: `-machine dumpdtb` compacted by `dtc -O dtb`.
const QEMU_2NODE: &[u8] = include_bytes!("data/qemu-virt-2node.dtb");

/// QEMU 10 `virt` for `qemu-configs/numa-far.toml`: 2 nodes x 2 CPUs
/// (`-smp 4,sockets=2,cores=2`) + node 2 with 1 GiB and no CPUs (`-numa
/// node,nodeid=2,memdev=m2`), distances 20 and 30; `-machine dumpdtb`,
/// compacted (totalsize cut to the end of the strings block).
const QEMU_FAR: &[u8] = include_bytes!("data/qemu-virt-far.dtb");
/// QEMU 10 `virt` for `qemu-configs/numa-uneven.toml`: node 0 CPUs 0-2 and
/// 1536 MiB, node 1 CPU 3 and 512 MiB (`-smp 4,sockets=4,cores=1`).
const QEMU_UNEVEN: &[u8] = include_bytes!("data/qemu-virt-uneven.dtb");
const MIB: u64 = 1 << 20;

/// QEMU `virt` with one entry per node: `(cpus, bytes)`. CPUs are numbered
/// node by node (MPIDR Aff0 = index, as QEMU gives up to 16 CPUs), RAM laid
/// out from 0x4000_0000 in node order, memory nodes written highest first;
/// `dist(a, b)` gives the full matrix.
fn qemu_nodes(nodes: &[(u32, u64)], dist: impl Fn(u32, u32) -> u32) -> Machine {
    let mut m = Machine::qemu(1, 1, GIB);
    m.cpus.clear();
    m.mem.clear();
    let mut base = 0x4000_0000;
    for (id, &(cpus, bytes)) in nodes.iter().enumerate() {
        for _ in 0..cpus {
            m.cpus.push(cpu(m.cpus.len() as u64, Some(id as u32)));
        }
        m.mem.insert(0, mem(base, bytes, Some(id as u32)));
        base += bytes;
    }
    m.distance = Some(full_matrix(nodes.len() as u32, dist));
    m
}

/// numa-far's distances: local 10, the other socket 20, far memory 30.
fn far(a: u32, b: u32) -> u32 {
    match (a, b) {
        _ if a == b => 10,
        (2, _) | (_, 2) => 30,
        _ => 20,
    }
}

fn parse(m: &Machine) -> Result<Topology, TopologyError> {
    Topology::from_fdt(&m.dtb())
}

fn distances(t: &Topology) -> Vec<Vec<u8>> {
    let n = t.node_count();
    (0..n).map(|a| (0..n).map(|b| t.distance(a, b)).collect()).collect()
}

#[test]
fn real_qemu_tree() {
    let t = Topology::from_fdt(QEMU_2NODE).unwrap();
    assert_eq!(t.node_count(), 2);
    assert_eq!(t.nodes()[0].memory, [MemRange::new(0x4000_0000, 0x8000_0000)]);
    assert_eq!(t.nodes()[1].memory, [MemRange::new(0x8000_0000, 0xc000_0000)]);
    assert_eq!(t.nodes()[0].cpus, [0, 1]);
    assert_eq!(t.nodes()[1].cpus, [2, 3]);
    let mpidrs: Vec<u64> = t.cpus().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);
    assert_eq!(distances(&t), [[10, 20], [20, 10]]);
    assert_eq!(t.node_memory_bytes(0), GIB);
    assert_eq!(t.node_memory_bytes(1), GIB);
}

#[test]
fn generated_two_node_tree_matches_the_real_one() {
    assert_eq!(parse(&Machine::qemu(2, 2, GIB)).unwrap(), Topology::from_fdt(QEMU_2NODE).unwrap());
}

#[test]
fn four_nodes_two_hop_classes() {
    // A ring: neighbours 20, opposite corners 30.
    let mut m = Machine::qemu(4, 2, GIB);
    m.distance = Some(full_matrix(4, |a, b| match (a + 4 - b) % 4 {
        0 => 10,
        2 => 30,
        _ => 20,
    }));
    let t = parse(&m).unwrap();
    assert_eq!(t.node_count(), 4);
    assert_eq!(distances(&t), [[10, 20, 30, 20], [20, 10, 20, 30], [30, 20, 10, 20], [20, 30, 20, 10]]);
    for n in 0..4 {
        assert_eq!(t.nodes()[n].id, n);
        assert_eq!(t.nodes()[n].cpus, [2 * n, 2 * n + 1]);
        let base = 0x4000_0000 + n as u64 * GIB;
        assert_eq!(t.nodes()[n].memory, [MemRange::new(base, base + GIB)]);
        assert_eq!(t.node_of_addr(base), Some(n));
        assert_eq!(t.node_of_addr(base + GIB - 1), Some(n));
    }
    assert_eq!(t.node_of_addr(0x3fff_ffff), None);
    assert_eq!(t.node_of_addr(0x4000_0000 + 4 * GIB), None);
}

#[test]
fn real_qemu_tree_with_a_memory_only_node() {
    let t = Topology::from_fdt(QEMU_FAR).unwrap();
    assert_eq!(t.node_count(), 3);
    assert_eq!(t.nodes()[0].cpus, [0, 1]);
    assert_eq!(t.nodes()[1].cpus, [2, 3]);
    assert!(t.nodes()[2].cpus.is_empty());
    assert_eq!(t.nodes()[2].memory, [MemRange::new(0xc000_0000, 0x1_0000_0000)]);
    assert_eq!(t.node_memory_bytes(2), GIB);
    assert_eq!(t.node_of_addr(0xc000_0000), Some(2));
    assert_eq!(t.node_of_addr(0xffff_ffff), Some(2));
    assert_eq!(t.cpus().len(), 4);
    assert!(t.cpus().iter().all(|c| c.node != 2));
    assert_eq!(distances(&t), [[10, 20, 30], [20, 10, 30], [30, 30, 10]]);
    assert_eq!(parse(&qemu_nodes(&[(2, GIB), (2, GIB), (0, GIB)], far)).unwrap(), t);
}

#[test]
fn real_qemu_tree_with_unequal_nodes() {
    let t = Topology::from_fdt(QEMU_UNEVEN).unwrap();
    assert_eq!(t.node_count(), 2);
    assert_eq!(t.nodes()[0].cpus, [0, 1, 2]);
    assert_eq!(t.nodes()[1].cpus, [3]);
    assert_eq!(t.nodes()[0].memory, [MemRange::new(0x4000_0000, 0xa000_0000)]);
    assert_eq!(t.nodes()[1].memory, [MemRange::new(0xa000_0000, 0xc000_0000)]);
    assert_eq!((t.node_memory_bytes(0), t.node_memory_bytes(1)), (1536 * MIB, 512 * MIB));
    assert_eq!(t.node_of_cpu_mpidr(3), Some(1));
    assert_eq!(distances(&t), [[10, 20], [20, 10]]);
    let g = parse(&qemu_nodes(&[(3, 1536 * MIB), (1, 512 * MIB)], |a, b| if a == b { 10 } else { 20 })).unwrap();
    assert_eq!(g, t);
}

#[test]
fn memory_only_node_as_numactl_prints_it() {
    let t = Topology::from_fdt(QEMU_FAR).unwrap();
    let free = [990 * MIB, 1023 * MIB, GIB];
    assert_eq!(
        Hardware { topo: &t, free_bytes: &free }.to_string(),
        "available: 3 nodes (0-2)\n\
         node 0 cpus: 0 1\n\
         node 0 size: 1024 MB\n\
         node 0 free: 990 MB\n\
         node 1 cpus: 2 3\n\
         node 1 size: 1024 MB\n\
         node 1 free: 1023 MB\n\
         node 2 cpus:\n\
         node 2 size: 1024 MB\n\
         node 2 free: 1024 MB\n\
         node distances:\n\
         node   0   1   2 \n\
         \x20 0:  10  20  30 \n\
         \x20 1:  20  10  30 \n\
         \x20 2:  30  30  10 \n"
    );
}

#[test]
fn memory_only_nodes_anywhere_and_four_distance_classes() {
    // Memory-only nodes 1 and 3 between CPU nodes of 2, 3 and 1 CPUs, with
    // unequal sizes; symmetric distances in six classes (10 12 16 22 28 40).
    let nodes = [(2, GIB), (0, 256 * MIB), (3, 512 * MIB), (0, 2 * GIB), (1, 64 * MIB)];
    let dist = |a: u32, b: u32| if a == b { 10 } else { [12, 16, 22, 40, 28][(a + b) as usize % 5] };
    let mut m = qemu_nodes(&nodes, dist);
    let t = parse(&m).unwrap();
    assert_eq!(t.node_count(), 5);
    let cpus: Vec<&[usize]> = t.nodes().iter().map(|n| n.cpus.as_slice()).collect();
    assert_eq!(cpus, [&[0, 1][..], &[], &[2, 3, 4], &[], &[5]]);
    let mut base = 0x4000_0000;
    for (id, &(_, bytes)) in nodes.iter().enumerate() {
        assert_eq!(t.nodes()[id].memory, [MemRange::new(base, base + bytes)], "node {id}");
        assert_eq!(t.node_of_addr(base + bytes - 1), Some(id));
        base += bytes;
    }
    let mut classes: Vec<u8> = distances(&t).concat();
    classes.sort_unstable();
    classes.dedup();
    assert!(classes.len() >= 4, "{classes:?}");
    for a in 0..5 {
        for b in 0..5 {
            assert_eq!(u32::from(t.distance(a, b)), dist(a as u32, b as u32));
        }
    }
    let out = Hardware { topo: &t, free_bytes: &[] }.to_string();
    assert!(out.contains("node 1 cpus:\nnode 1 size: 256 MB\nnode 1 free: <not available>\n"), "{out}");
    assert!(out.contains("node 3 cpus:\nnode 3 size: 2048 MB\n"), "{out}");
    assert!(out.contains("node 4 cpus: 5\nnode 4 size: 64 MB\n"), "{out}");

    // A memory-only node 0: the first CPU is on node 1, RAM still starts at node 0.
    m = qemu_nodes(&[(0, GIB), (2, GIB)], |a, b| if a == b { 10 } else { 30 });
    let t = parse(&m).unwrap();
    assert!(t.nodes()[0].cpus.is_empty());
    assert_eq!(t.cpus()[0].node, 1);
    assert_eq!(t.node_of_addr(0x4000_0000), Some(0));
}

#[test]
fn upper_triangle_is_mirrored_and_explicit_entries_win() {
    let mut m = Machine::qemu(3, 1, GIB);
    // Only a < b given, plus an explicit 2 -> 0 that differs from 0 -> 2.
    m.distance = Some(vec![0, 1, 15, 0, 2, 25, 1, 2, 35, 2, 0, 40]);
    let t = parse(&m).unwrap();
    assert_eq!(distances(&t), [[10, 15, 25], [15, 10, 35], [40, 35, 10]]);

    // Explicit b -> a wins even when written before the a -> b entry.
    m.distance = Some(vec![1, 0, 50, 0, 1, 30]);
    let t = parse(&m).unwrap();
    assert_eq!(distances(&t)[0], [10, 30, 20]);
    assert_eq!(distances(&t)[1], [50, 10, 20]);
}

#[test]
fn missing_distance_map_defaults_to_10_and_20() {
    let mut m = Machine::qemu(3, 1, GIB);
    m.distance = None;
    let t = parse(&m).unwrap();
    assert_eq!(distances(&t), [[10, 20, 20], [20, 10, 20], [20, 20, 10]]);
}

#[test]
fn tree_without_numa_ids_is_one_node() {
    let mut m = Machine::qemu(2, 2, GIB);
    m.distance = None;
    m.cpus.iter_mut().for_each(|c| c.node = None);
    m.mem.iter_mut().for_each(|c| c.node = None);
    let t = parse(&m).unwrap();
    assert_eq!(t.node_count(), 1);
    assert_eq!(t.nodes()[0].cpus, [0, 1, 2, 3]);
    assert_eq!(t.nodes()[0].memory.len(), 2);
    assert_eq!(t.node_memory_bytes(0), 2 * GIB);
    assert_eq!(distances(&t), [[10]]);
}

#[test]
fn cpus_are_indexed_by_mpidr_not_tree_order() {
    let mut m = Machine::qemu(2, 1, GIB);
    m.cpus = vec![cpu(0x101, Some(1)), cpu(0x1, Some(0)), cpu(0x100, Some(1)), cpu(0x0, Some(0))];
    let t = parse(&m).unwrap();
    let order: Vec<(usize, u64, usize)> = t.cpus().iter().map(|c| (c.index, c.mpidr, c.node)).collect();
    assert_eq!(order, [(0, 0x0, 0), (1, 0x1, 0), (2, 0x100, 1), (3, 0x101, 1)]);
    assert_eq!(t.nodes()[1].cpus, [2, 3]);
}

#[test]
fn mpidr_lookups_ignore_non_affinity_bits() {
    let mut m = Machine::qemu(2, 1, GIB);
    m.cpu_cells = 2;
    let aff3 = 0x01_0000_0000u64;
    m.cpus = vec![cpu(0, Some(0)), cpu(0, Some(1))];
    m.cpus[1].reg = Some(vec![(aff3 >> 32) as u32, 0x0001_0203]);
    m.cpus[0].reg = Some(vec![0, 0x0000_0001]);
    let t = parse(&m).unwrap();
    let raw = (1 << 31) | (1 << 30) | (1 << 24); // RES1, U, MT as MPIDR_EL1 reads
    assert_eq!(t.node_of_cpu_mpidr(1 | raw), Some(0));
    assert_eq!(t.node_of_cpu_mpidr(aff3 | 0x0001_0203 | raw), Some(1));
    assert_eq!(t.cpu_by_mpidr(aff3 | 0x0001_0203).unwrap().index, 1);
    assert_eq!(t.cpu_by_mpidr(0x0001_0203), None);
    assert_eq!(t.node_of_cpu_mpidr(7), None);
}

#[test]
fn memoryless_and_cpuless_nodes_are_allowed() {
    let mut m = Machine::qemu(3, 1, GIB);
    m.mem.retain(|r| r.node != Some(vec![1])); // node 1: CPUs only
    m.cpus.retain(|c| c.node != Some(vec![2])); // node 2: memory only
    let t = parse(&m).unwrap();
    assert_eq!(t.node_count(), 3);
    assert!(t.nodes()[1].memory.is_empty());
    assert_eq!(t.nodes()[1].cpus, [1]);
    assert!(t.nodes()[2].cpus.is_empty());
    assert_eq!(t.node_memory_bytes(1), 0);
    assert_eq!(t.node_memory_bytes(2), GIB);
    assert_eq!(t.node_memory_bytes(99), 0);
}

#[test]
fn gaps_in_node_ids_are_empty_nodes_and_stray_distances_are_ignored() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.cpus.push(cpu(1, Some(2)));
    // Node 5 owns nothing: its entries are dropped, not an error.
    m.distance = Some(vec![0, 2, 30, 0, 5, 40]);
    let t = parse(&m).unwrap();
    assert_eq!(t.node_count(), 3);
    assert!(t.nodes()[1].cpus.is_empty() && t.nodes()[1].memory.is_empty());
    assert_eq!(distances(&t), [[10, 20, 30], [20, 10, 20], [30, 20, 10]]);
}

#[test]
fn several_ranges_per_node_and_disabled_nodes() {
    let mut m = Machine::qemu(2, 1, GIB);
    m.mem.push(mem(0x1_0000_0000, GIB, Some(0)));
    let mut off = mem(0x2_0000_0000, GIB, Some(1));
    off.status = Some("disabled");
    m.mem.push(off);
    let mut off = cpu(9, Some(1));
    off.status = Some("disabled");
    m.cpus.push(off);
    m.mem.push(mem(0x3_0000_0000, 0, Some(1))); // empty: ignored
    let t = parse(&m).unwrap();
    assert_eq!(
        t.nodes()[0].memory,
        [MemRange::new(0x4000_0000, 0x8000_0000), MemRange::new(0x1_0000_0000, 0x1_4000_0000)]
    );
    assert_eq!(t.node_memory_bytes(0), 2 * GIB);
    assert_eq!(t.node_of_addr(0x1_0000_0000), Some(0));
    assert_eq!(t.node_of_addr(0x2_0000_0000), None);
    assert_eq!(t.cpus().len(), 2);
}

#[test]
fn one_memory_node_with_several_pairs() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.mem[0].reg = vec![0, 0x4000_0000, 0, 0x1000_0000, 0, 0x8000_0000, 0, 0x1000_0000];
    let t = parse(&m).unwrap();
    assert_eq!(t.nodes()[0].memory.len(), 2);
    assert_eq!(t.node_memory_bytes(0), 0x2000_0000);
}

#[test]
fn one_cell_root_addresses() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.root_cells = (1, 1);
    m.mem[0].reg = vec![0x4000_0000, 0x1000_0000];
    let t = parse(&m).unwrap();
    assert_eq!(t.nodes()[0].memory, [MemRange::new(0x4000_0000, 0x5000_0000)]);
}

// ---- errors ----

fn err(m: &Machine) -> TopologyError {
    parse(m).unwrap_err()
}

#[test]
fn no_memory() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.mem.clear();
    assert_eq!(err(&m), TopologyError::NoMemory);
    let mut m = Machine::qemu(1, 1, GIB);
    m.mem[0] = mem(0x4000_0000, 0, Some(0));
    assert_eq!(err(&m), TopologyError::NoMemory);
}

#[test]
fn no_cpus() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.cpus.clear();
    assert_eq!(err(&m), TopologyError::NoCpus);
    m.has_cpus_node = false;
    assert_eq!(err(&m), TopologyError::NoCpusNode);
}

#[test]
fn cpu_without_or_with_bad_reg() {
    let mut m = Machine::qemu(1, 2, GIB);
    m.cpus[1].reg = None;
    let e = err(&m);
    assert_eq!(e, TopologyError::CpuWithoutReg { node: "/cpus/cpu@1".into() });
    assert_eq!(e.to_string(), "/cpus/cpu@1: no reg (MPIDR)");

    m.cpus[1].reg = Some(vec![]);
    assert_eq!(err(&m), TopologyError::BadCpuReg { node: "/cpus/cpu@1".into() });
    m.cpus[1].reg = Some(vec![0x8000_0001]); // RES1 bit: not an affinity value
    assert_eq!(err(&m), TopologyError::BadCpuReg { node: "/cpus/cpu@1".into() });
}

#[test]
fn duplicate_mpidr() {
    let mut m = Machine::qemu(1, 2, GIB);
    m.cpus[1].reg = Some(vec![0]);
    assert_eq!(err(&m), TopologyError::DuplicateMpidr { mpidr: 0 });
}

#[test]
fn node_id_out_of_range() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.cpus[0].node = Some(vec![MAX_NODES as u32]);
    let e = err(&m);
    assert_eq!(e, TopologyError::NodeIdOutOfRange { node: "/cpus/cpu@0".into(), id: 64 });
    assert!(e.to_string().contains("node id 64 out of range"));

    let mut m = Machine::qemu(1, 1, GIB);
    m.mem[0].node = Some(vec![u32::MAX]);
    assert_eq!(err(&m), TopologyError::NodeIdOutOfRange { node: "/memory@40000000".into(), id: u32::MAX });

    let mut m = Machine::qemu(1, 1, GIB);
    m.distance = Some(vec![0, 1000, 20]);
    assert_eq!(err(&m), TopologyError::NodeIdOutOfRange { node: "/distance-map".into(), id: 1000 });
}

#[test]
fn bad_node_id_property() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.mem[0].node = Some(vec![0, 0]);
    assert_eq!(err(&m), TopologyError::BadNodeIdProperty { node: "/memory@40000000".into() });
}

#[test]
fn bad_memory_reg() {
    let bad = TopologyError::BadMemoryReg { node: "/memory@40000000".into() };
    let mut m = Machine::qemu(1, 1, GIB);
    m.mem[0].reg.pop();
    assert_eq!(err(&m), bad);
    m.mem[0].reg = vec![];
    assert_eq!(err(&m), bad);
    m.mem[0].reg = vec![u32::MAX, 0, 0x1, 0]; // wraps past 2^64
    assert_eq!(err(&m), bad);
}

#[test]
fn bad_cells() {
    let mut m = Machine::qemu(1, 1, GIB);
    m.root_cells = (3, 2);
    assert_eq!(err(&m), TopologyError::BadCells { node: "/".into() });
    let mut m = Machine::qemu(1, 1, GIB);
    m.cpu_cells = 0;
    assert_eq!(err(&m), TopologyError::BadCells { node: "/cpus".into() });
}

#[test]
fn overlapping_memory() {
    let mut m = Machine::qemu(2, 1, GIB);
    m.mem.push(mem(0x7fff_f000, 0x2000, Some(0)));
    let e = err(&m);
    assert!(matches!(e, TopologyError::OverlappingMemory { .. }), "{e}");
    assert!(e.to_string().contains("overlap"));
}

#[test]
fn bad_distance_entries() {
    let mut m = Machine::qemu(2, 1, GIB);
    for (cells, bad) in [
        (vec![0, 0, 11], (0, 0, 11)),
        (vec![0, 1, 10], (0, 1, 10)),
        (vec![1, 0, 5], (1, 0, 5)),
        (vec![0, 1, 256], (0, 1, 256)),
    ] {
        m.distance = Some(cells);
        let (from, to, distance) = bad;
        assert_eq!(err(&m), TopologyError::BadDistance { from, to, distance });
    }
    m.distance = Some(vec![0, 1]);
    assert_eq!(err(&m), TopologyError::BadDistanceMatrix);
    assert!(err(&m).to_string().contains("distance-matrix"));
}

#[test]
fn malformed_blobs() {
    let good = Machine::qemu(2, 2, GIB).dtb();
    assert!(matches!(Topology::from_fdt(&[]), Err(TopologyError::Malformed(_))));
    assert!(matches!(Topology::from_fdt(&good[..100]), Err(TopologyError::Malformed(_))));
    let mut b = good.clone();
    b[3] ^= 1;
    assert_eq!(Topology::from_fdt(&b), Err(TopologyError::Malformed("bad FDT magic")));
    assert_eq!(Topology::from_fdt(&b).unwrap_err().to_string(), "malformed device tree: bad FDT magic");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Corrupted trees are refused or parsed, never a panic inside `fdt`.
        #[test]
        fn corrupted_trees_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut b = Machine::qemu(2, 2, GIB).dtb();
            for (at, byte) in edits {
                let i = at % b.len();
                b[i] = byte;
            }
            let _ = Topology::from_fdt(&b);
            let _ = Topology::from_fdt(&b[..cut % b.len()]);
        }

        /// Header fields are where `fdt` indexes blindly: hit them hard.
        #[test]
        fn corrupted_headers_never_panic(word in 1usize..10, value in any::<u32>()) {
            let mut b = Machine::qemu(2, 2, GIB).dtb();
            b[word * 4..word * 4 + 4].copy_from_slice(&value.to_be_bytes());
            let _ = Topology::from_fdt(&b);
        }
    }
}
