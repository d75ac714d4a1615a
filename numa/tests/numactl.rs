//! `Hardware` prints what `numactl --hardware` prints, byte for byte
//! (numactl's `"% 3d "` columns leave a trailing space on distance lines).

mod common;

use common::{full_matrix, Machine, GIB};
use numa::{Hardware, Topology};

const MB: u64 = 1 << 20;

#[test]
fn two_nodes_as_numactl_prints_them() {
    let topo = Topology::from_fdt(include_bytes!("data/qemu-virt-2node.dtb")).unwrap();
    let free = [990 * MB + 12345, 1023 * MB];
    let out = Hardware { topo: &topo, free_bytes: &free }.to_string();
    assert_eq!(
        out,
        "available: 2 nodes (0-1)\n\
         node 0 cpus: 0 1\n\
         node 0 size: 1024 MB\n\
         node 0 free: 990 MB\n\
         node 1 cpus: 2 3\n\
         node 1 size: 1024 MB\n\
         node 1 free: 1023 MB\n\
         node distances:\n\
         node   0   1 \n\
         \x20 0:  10  20 \n\
         \x20 1:  20  10 \n"
    );
    // The same text once numactl's trailing spaces are trimmed.
    let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(trimmed[8..], ["node   0   1", "  0:  10  20", "  1:  20  10"]);
}

#[test]
fn one_node_memoryless_node_and_missing_free_counts() {
    let mut m = Machine::qemu(2, 1, GIB / 2);
    m.mem.retain(|r| r.node != Some(vec![1]));
    let topo = Topology::from_fdt(&m.dtb()).unwrap();
    let out = Hardware { topo: &topo, free_bytes: &[100 * MB] }.to_string();
    assert_eq!(
        out,
        "available: 2 nodes (0-1)\n\
         node 0 cpus: 0\n\
         node 0 size: 512 MB\n\
         node 0 free: 100 MB\n\
         node 1 cpus: 1\n\
         node 1 size: 0 MB\n\
         node 1 free: <not available>\n\
         node distances:\n\
         node   0   1 \n\
         \x20 0:  10  20 \n\
         \x20 1:  20  10 \n"
    );

    let mut m = Machine::qemu(1, 2, GIB);
    m.distance = None;
    m.cpus.clear();
    m.cpus.push(common::cpu(0, Some(0)));
    let topo = Topology::from_fdt(&m.dtb()).unwrap();
    let out = Hardware { topo: &topo, free_bytes: &[GIB] }.to_string();
    assert!(out.starts_with("available: 1 nodes (0)\nnode 0 cpus: 0\n"), "{out}");
    assert!(out.ends_with("node distances:\nnode   0 \n  0:  10 \n"), "{out}");
}

#[test]
fn wide_tables_keep_numactl_columns() {
    // 12 nodes, distances up to 130: printf's "% 3d" puts its sign space
    // before 3-digit numbers too, so numactl's columns widen there.
    let mut m = Machine::qemu(12, 1, GIB);
    m.distance = Some(full_matrix(12, |a, b| if a == b { 10 } else { 10 * (a.abs_diff(b) + 1) + 10 }));
    let topo = Topology::from_fdt(&m.dtb()).unwrap();
    let out = Hardware { topo: &topo, free_bytes: &[] }.to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "available: 12 nodes (0-11)");
    let header = lines.iter().position(|l| *l == "node distances:").unwrap();
    assert_eq!(lines[header + 1], "node   0   1   2   3   4   5   6   7   8   9  10  11 ");
    assert_eq!(lines[header + 2], "  0:  10  30  40  50  60  70  80  90  100  110  120  130 ");
    assert_eq!(lines[header + 13], " 11:  130  120  110  100  90  80  70  60  50  40  30  10 ");
}
