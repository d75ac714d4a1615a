//! The device-tree checker (`numa::check_dtb`) and what reads trees after
//! it: the host tree's NUMA facts (`numa::Topology::from_fdt`, over
//! `fdt_parse`) and the boot bundle's walk (`monitor/src/vm/manifest.rs`:
//! find_node, children, properties as strings and numbers). The checker's
//! promise is that `fdt` cannot panic on a tree it accepts, so every
//! accepted input is walked in full with the `fdt` calls the monitor uses.
//! A topology that parses must be consistent: each CPU's node exists and
//! lists it, local distances are 10 and others above 10.

use super::Target;
use crate::bundle::{Bundle, Vm};
use fdt::node::FdtNode;
use fdt::Fdt;
use numa::Topology;

pub const TARGET: Target = Target {
    name: "dtb",
    about: "DTB checker, host-tree NUMA parsing and the boot bundle walk",
    max_len: 20000,
    dict: &[
        b"\0\0\0\x01",
        b"\0\0\0\x02",
        b"\0\0\0\x03",
        b"\0\0\0\x09",
        b"\xd0\x0d\xfe\xed",
        b"numa-node-id\0",
        b"reg\0",
    ],
    seeds,
    run,
};

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        &include_bytes!("../../../../numa/tests/data/qemu-virt-2node.dtb")[..],
        &include_bytes!("../../../../numa/tests/data/qemu-virt-far.dtb")[..],
        &include_bytes!("../../../../numa/tests/data/qemu-virt-uneven.dtb")[..],
    ]
    .iter()
    .map(|d| d.to_vec())
    .collect();
    let vm = |name: &str, net: Option<[u8; 6]>| Vm {
        name: name.into(),
        vcpus: 2,
        memory_size: 64 << 20,
        kernel: "kernel".into(),
        initrd: Some("initrd".into()),
        initrd_extra: None,
        bootargs: "console=ttyAMA0".into(),
        restart: Some("on-crash".into()),
        max_restarts: Some(9),
        home_node: Some(1),
        share_group: Some("g".into()),
        disks: vec![crate::bundle::Disk { image: "data".into(), read_only: false, cow: false }],
        balloon: net.is_some(),
        net,
    };
    let bundle = Bundle {
        images: vec![("kernel".into(), vec![0x4d; 64]), ("initrd".into(), b"070701".to_vec())],
        vms: vec![vm("a", Some([2, 0, 0, 0, 0, 1])), vm("b", None)],
        placement: Default::default(),
        census: false,
    };
    v.push(bundle.to_dtb().expect("seed bundle"));
    v
}

fn run(data: &[u8]) -> u64 {
    if numa::check_dtb(data).is_err() {
        return 1;
    }
    let Ok(fdt) = Fdt::new(data) else { return 2 };
    let mut features = 4u64;
    if let Some(root) = fdt.find_node("/") {
        let mut nodes = 0;
        walk(&fdt, root, &mut String::new(), &mut nodes, 0);
        features |= 1 << (3 + nodes.min(40) / 8);
    }
    if let Some(vms) = fdt.find_node("/vms") {
        features |= 1 << 9;
        for vm in vms.children() {
            if let Some(k) = vm.property("kernel").and_then(|p| p.as_str()) {
                let _ = fdt.find_node(&format!("/images/{k}")).and_then(|n| n.property("data")).map(|p| p.value.len());
            }
        }
    }
    match Topology::from_fdt(data) {
        Ok(t) => {
            consistent(&t);
            features |= 1 << 10;
        }
        Err(e) => features |= 1 << (11 + (crate::fuzz::rng::fnv(format!("{e:?}").as_bytes()) % 40)),
    }
    features
}

/// Visits every node and property as the monitor's readers may.
fn walk(fdt: &Fdt, node: FdtNode, path: &mut String, nodes: &mut usize, depth: usize) {
    *nodes += 1;
    for p in node.properties() {
        let _ = (p.name, p.value.len(), p.as_str(), p.as_usize());
    }
    let _ = node.property("compatible").and_then(|p| p.as_str());
    let len = path.len();
    for child in node.children() {
        path.push('/');
        path.push_str(child.name);
        if depth < 3 {
            let _ = fdt.find_node(path);
        }
        walk(fdt, child, path, nodes, depth + 1);
        path.truncate(len);
    }
}

fn consistent(t: &Topology) {
    let n = t.node_count();
    for (i, cpu) in t.cpus().iter().enumerate() {
        assert!(cpu.node < n, "CPU {i} on node {} of {n}", cpu.node);
        assert!(t.nodes()[cpu.node].cpus.contains(&i), "node {} does not list CPU {i}", cpu.node);
        assert_eq!(t.node_of_cpu_mpidr(cpu.mpidr), Some(cpu.node), "CPU {i} by MPIDR");
    }
    for a in 0..n {
        assert_eq!(t.distance(a, a), 10, "local distance of node {a}");
        // Asymmetric matrices are allowed (as in Linux: an explicit b -> a
        // entry beats the mirrored a -> b).
        for b in (0..n).filter(|&b| b != a) {
            assert!(t.distance(a, b) > 10, "distance {a}-{b} is {}", t.distance(a, b));
        }
        for r in &t.nodes()[a].memory {
            assert_eq!(t.node_of_addr(r.start), Some(a), "memory {:#x} of node {a}", r.start);
        }
    }
}
