//! VM manifests (`xtask/src/manifest.rs` and `manifest/`), from the
//! repository's `qemu-configs/vms/*.toml`, checked against machines numa2
//! and numa-far. Errors must name file, line and field (see
//! [`super::text`]); a manifest that parses must keep its rules: at least
//! one VM, unique valid names, 1..=64 vCPUs, memory a multiple of 2 MiB
//! and at least 16 MiB, all of it within the machine's memory minus the
//! monitor's reserve, a home node with CPUs, at most 4 disks and 1 network
//! device per VM, unique unicast MACs and unique IPs.

use super::{text, Target};
use crate::machine::Machine;
use crate::manifest::{MAX_DISKS, MAX_VCPUS, MONITOR_RESERVE_MIB};
use std::path::Path;

pub const TARGET: Target = Target {
    name: "manifest",
    about: "VM manifests (qemu-configs/vms/*.toml)",
    max_len: 4096,
    dict: &[
        b"\n[[vm]]\nname = \"x\"\nvcpus = 1\nmemory = \"64M\"\n",
        b"\n[[vm.disk]]\nimage = \"d\"\nmode = \"persistent\"\n",
        b"\n[[vm.net]]\n",
        b"name = ",
        b"vcpus = ",
        b"memory = ",
        b"\"512M\"",
        b"\"1G\"",
        b"home_node = ",
        b"mac = \"02:00:00:00:00:01\"\n",
        b"ip = \"10.0.0.1/24\"\n",
        b"mode = \"base\"\n",
        b"readonly = true\n",
        b"size = \"64M\"\n",
        b"mount = \"/\"\n",
        b"placement = \"replicate\"\n",
        b"placement_params = \"trigger=64\"\n",
        b"restart = \"on-crash\"\n",
        b"share_group = \"g\"\n",
        b"disk_file = \"x\"\n",
        b"\n",
        b"\"",
        b"0",
        b"99999999999999999999",
    ],
    seeds: || text::files("qemu-configs/vms"),
    run,
};

thread_local! {
    static MACHINES: [Machine; 2] = ["numa2", "numa-far"].map(|m| {
        let path = crate::machine::dir().join(format!("{m}.toml"));
        let text = std::fs::read_to_string(path).expect("machine file");
        crate::machine::parse(m, "m.toml", &text).expect("machine")
    });
}

fn run(data: &[u8]) -> u64 {
    let Ok(s) = std::str::from_utf8(data) else { return 0 };
    let which = data.len() % 2;
    MACHINES.with(|m| check(s, &m[which]))
}

fn check(s: &str, machine: &Machine) -> u64 {
    match crate::manifest::parse("fuzz.toml", s, machine, Path::new("/fuzz")) {
        Err(e) => text::check_error("fuzz.toml", s, &e, &["no [[vm]] tables"]) << 1,
        Ok(m) => {
            assert!(!m.vms.is_empty(), "no VMs");
            let avail = machine.total_mib() - MONITOR_RESERVE_MIB;
            let total: u64 = m.vms.iter().map(|v| v.memory_mib).sum();
            assert!(total <= avail, "{total} MiB of VMs on {avail} MiB");
            for (i, v) in m.vms.iter().enumerate() {
                let n = &v.name;
                assert!(
                    (1..=16).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
                    "name `{n}`"
                );
                assert!(m.vms[..i].iter().all(|o| o.name != *n), "duplicate `{n}`");
                assert!((1..=MAX_VCPUS).contains(&v.vcpus), "{n}: {} vCPUs", v.vcpus);
                assert!(v.memory_mib >= 16 && v.memory_mib % 2 == 0, "{n}: {} MiB", v.memory_mib);
                if let Some(h) = v.home_node {
                    let h = h as usize;
                    assert!(h < machine.nodes && machine.cpus_per_node[h] > 0, "{n}: home node {h}");
                }
                assert!(v.disks.len() <= MAX_DISKS, "{n}: {} disks", v.disks.len());
                if let Some(net) = &v.net {
                    assert_eq!(net.mac[0] & 1, 0, "{n}: group MAC");
                    for o in m.vms[..i].iter().filter_map(|o| o.net.as_ref()) {
                        assert_ne!(o.mac, net.mac, "{n}: MAC shared");
                        assert!(
                            net.ip.is_none() || o.ip.as_deref().map(ip_of) != net.ip.as_deref().map(ip_of),
                            "{n}: IP shared"
                        );
                    }
                }
            }
            64 << m.vms.len().min(8)
        }
    }
}

/// The address of `a.b.c.d/len`.
fn ip_of(s: &str) -> &str {
    s.split('/').next().unwrap_or(s)
}
