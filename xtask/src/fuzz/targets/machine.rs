//! Machine files (`xtask/src/machine.rs`), from the repository's
//! `qemu-configs/*.toml`. Errors must name file, line and field (see
//! [`super::text`]); a machine that parses must be one QEMU can run: 1 to
//! 128 nodes, some node with CPUs, at most 512 CPUs, every node with an
//! even number of MiB >= 64, symmetric distances with 10 on the diagonal
//! and 11..=255 elsewhere, and QEMU arguments for it.

use super::{text, Target};

pub const TARGET: Target = Target {
    name: "machine",
    about: "machine files (qemu-configs/*.toml)",
    max_len: 4096,
    dict: &[
        b"nodes = ",
        b"cpus-per-node = ",
        b"memory-per-node-mib = ",
        b"distances = [[10, 20], [20, 10]]\n",
        b"\n[[node]]\ncpus = 2\nmemory-mib = 1024\n",
        b"cpus = ",
        b"memory-mib = ",
        b"extra-args = [\"-d\"]\n",
        b"description = \"",
        b"\n",
        b"\"",
        b"0",
        b"18446744073709551616",
        b"[",
        b"]",
    ],
    seeds: || text::files("qemu-configs"),
    run,
};

fn run(data: &[u8]) -> u64 {
    let Ok(s) = std::str::from_utf8(data) else { return 0 };
    match crate::machine::parse("fuzz", "fuzz.toml", s) {
        Err(e) => text::check_error("fuzz.toml", s, &e, &["no nodes"]) << 1,
        Ok(m) => {
            let n = m.distances.len();
            assert!((1..=128).contains(&n), "{n} nodes");
            assert!(m.cpus() >= 1 && m.cpus() <= 512, "{} CPUs", m.cpus());
            for a in 0..n {
                assert_eq!(m.distances[a].len(), n, "distance row {a}");
                assert_eq!(m.distances[a][a], 10, "local distance {a}");
                for b in 0..n {
                    assert_eq!(m.distances[a][b], m.distances[b][a], "distances {a}-{b}");
                    assert!(a == b || (11..=255).contains(&m.distances[a][b]), "distance {a}-{b}");
                }
                let mib = (m.node_ram(a).end - m.node_ram(a).start) >> 20;
                assert!(mib >= 64 && mib % 2 == 0, "node {a}: {mib} MiB");
            }
            assert!(!m.qemu_args().is_empty());
            64
        }
    }
}
