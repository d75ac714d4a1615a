//! `cargo xtask`: the project's one entry point for setting up the host,
//! building the monitor and guest images, booting them in QEMU, testing and
//! benchmarking. Plain Rust instead of shell scripts so it is checked,
//! tested and the same on every machine.

extern crate alloc; // numa/src/code_table.rs (shared with the no_std side) uses alloc::vec::Vec

mod bench;
mod bench_io;
mod bench_io_disk;
mod bench_isolation;
mod bench_placement;
mod bench_scene;
mod bench_smp;
mod boot;
mod bundle;
mod console_lines;
mod debs;
mod disk;
mod disk_tools;
mod exec;
mod faults;
mod figures;
mod follow;
mod fuzz;
mod image;
mod initramfs;
mod isolation_report;
mod machine;
mod manifest;
mod numasim;
mod numasim_bench;
mod numasim_json;
mod placement_runs;
mod qemu;
mod rootfs;
mod setup;
mod soak;
mod tests;
mod toml_error;
mod topology;
mod util;
mod workload_results;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Set up, build, boot, test and benchmark the Disco-style monitor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install what is missing (Rust target, QEMU 10, guest kernel and busybox); fast when done.
    Setup,
    /// Build the monitor image and the guest initramfs without booting.
    Build,
    /// Boot the monitor (or, with --native, the guest kernel alone) on a QEMU NUMA machine.
    Run(RunArgs),
    /// Host unit tests, then QEMU integration tests; ends with "N passed, N failed".
    Test(TestArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// List the machine topologies in qemu-configs/.
    Machines,
    /// Physical disk files: a header with named images (base, persistent) and the images.
    Disk {
        #[command(subcommand)]
        cmd: disk::DiskCmd,
    },
    /// Fuzz the parsers of guest- and user-controlled input (every target, or --target NAME), S seconds each.
    Fuzz(fuzz::FuzzArgs),
    /// Eight guests of mixed load (compute, memory, disk, crash and restart) for M minutes; reports monitor faults, restarts and frames per node.
    Soak(soak::SoakArgs),
    /// Fault-injection campaign: an attacker VM injects N faults of twelve kinds (panics, resets, CPU_OFF, masked spins, wild accesses, device registers, garbage virtqueues, HVC/SMC, system registers), restarted after each, beside victims that check their results; reports containment, restarts, recovery time and frames.
    Faults(faults::FaultsArgs),
    /// Build the Debian arm64 root filesystem of the workloads (cached) and put it into the default disk file as base image `debian`.
    Disks,
}

#[derive(Args, Debug, Clone, PartialEq)]
struct RunArgs {
    /// Machine topology: a file stem in qemu-configs/ (or a path to a .toml); default: the manifest's `machine`, else numa2.
    #[arg(long, short)]
    machine: Option<String>,
    /// VM manifest (TOML [[vm]] tables); plain `run` boots qemu-configs/vms/default.toml.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["exec", "native", "vcpus", "memory"])]
    vms: Option<std::path::PathBuf>,
    /// Run CMD in the guest (sh), print its output, exit 0 iff it exits 0; no terminal input.
    #[arg(long, short, value_name = "CMD")]
    exec: Option<String>,
    /// With --exec: give up after SECS seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// Boot the same kernel and initramfs directly, without the monitor.
    #[arg(long)]
    native: bool,
    /// With --exec: do not copy the console to the terminal (it still goes to the log).
    #[arg(long, short)]
    quiet: bool,
    /// One VM with this many vCPUs instead of the manifest (default 1).
    #[arg(long)]
    vcpus: Option<u32>,
    /// One VM with this much memory in MiB instead of the manifest (default 512).
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Extra guest kernel arguments (every VM's).
    #[arg(long, default_value = "", value_name = "ARGS")]
    append: String,
    /// Load the ccNUMA cost-model plugin (bench/numa-sim); PARAMS: k=v,... of cache, assoc, line, local_ns, remote_ns, insn_ns, top, filter.
    #[arg(long, value_name = "PARAMS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    numa_sim: Option<String>,
    /// Page placement under the monitor: `first-touch` (pages stay where first touched) or `migrate` (the placement loop moves hot pages to the node that uses them) or `replicate` (migration, and read-shared hot pages copied to every node that reads them; needs `--numa-sim`'s miss counters); default: the manifest's `placement`, else `replicate` under `--numa-sim` (miss counters) and `first-touch` without.
    #[arg(long, value_name = "MODE")]
    placement: Option<String>,
    /// Placement policy parameters, e.g. `trigger=64,interval=100,freeze=8,batch=1024,dominance=80,max-moves=4` (replication: `sharing=16,max-collapses=2,window=8`).
    #[arg(long, value_name = "K=V,...")]
    placement_params: Option<String>,
}

#[derive(Args, Debug)]
struct TestArgs {
    /// Run the integration tests on the native kernel instead of the monitor (checks the harness).
    #[arg(long)]
    native: bool,
    /// Only run tests whose name contains this (or one of these, comma-separated).
    #[arg(long, value_name = "SUBSTR[,SUBSTR...]")]
    only: Option<String>,
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Time from QEMU start to DISCO-READY, native vs under the monitor.
    Boot {
        /// Boots of each kind (alternating).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, short, default_value = "numa2")]
        machine: String,
    },
    /// Linux NUMA balancing off vs on under numa-sim: simulated time and local-miss %.
    Autonuma(numasim_bench::AutonumaArgs),
    /// Page placement under numa-sim: first-touch vs migration (vs replication for the read-shared scene) vs all-local vs native AutoNUMA.
    Placement(placement_runs::PlacementArgs),
    /// The numa-sim plugin's slowdown of a native Linux boot.
    NumaSimCost(numasim_bench::CostArgs),
    /// N parallel CPU-bound processes in a guest with N vCPUs vs natively with N CPUs: time ratio per N.
    Smp(bench_smp::SmpArgs),
    /// Inter-VM TCP throughput through the monitor's switch (and the guest's loopback as a reference).
    Io(bench_io::IoArgs),
    /// Antisocial VMs (Xen's test): a CPU-bound and a memory-bound workload in a 1-vCPU VM alone and beside a fork bomb, a memory hog and a disk/UDP storm; its slowdown in simulated time (numa-sim, per VM) and wall time.
    Isolation(bench_isolation::IsolationArgs),
    /// Disco's Fig. 5: each workload natively and in one VM, simulated time normalized to native (default engineering, raytrace, database; pmake with --workloads).
    Fig5(figures::FigArgs),
    /// Disco's Fig. 6: 1, 2, 4 and 8 VMs from one copy-on-write root, with sharing and without: machine memory in use (the census), sharing captured of possible, workload time (default engineering small; pmake with --workloads, slow under TCG).
    #[command(alias = "footprint")]
    Fig6(figures::FigArgs),
    /// Disco's Fig. 7: pmake and database with 8 CPUs of work natively, in one VM of 8 vCPUs and in 8 VMs of 1 vCPU (machine numa4-big): simulated CPU time normalized to native.
    Fig7(figures::FigArgs),
    /// Disco's Fig. 8: engineering and raytrace with first-touch, migration, replication, the all-local bound and native Linux with NUMA balancing off/on.
    Fig8(figures::FigArgs),
    /// One run of a figure, as the lines of `bench figN --jobs FILE` give it (writes its --out directory).
    FigRun(figures::jobs::Spec),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<u8> {
    match cmd {
        Cmd::Setup => {
            setup::host()?;
            let g = debs::ensure()?;
            eprintln!("setup: ok (guest kernel {}, {})", g.release, util::rel(&g.kernel));
            Ok(0)
        }
        Cmd::Build => {
            let mut env = boot::Env::prepare()?;
            let img = env.monitor()?;
            println!("{}\n{}", util::rel(&img), util::rel(&env.base_initrd));
            Ok(0)
        }
        Cmd::Run(a) => run(a),
        Cmd::Test(a) => tests::main(a.native, a.only.as_deref()),
        Cmd::Bench { what: BenchCmd::Boot { runs, machine } } => bench::boot(&machine, runs).map(|_| 0),
        Cmd::Bench { what: BenchCmd::Autonuma(a) } => numasim_bench::autonuma_cmd(a),
        Cmd::Bench { what: BenchCmd::Placement(a) } => bench_placement::placement_cmd(a),
        Cmd::Bench { what: BenchCmd::NumaSimCost(a) } => numasim_bench::cost_cmd(a),
        Cmd::Bench { what: BenchCmd::Smp(a) } => bench_smp::smp_cmd(a),
        Cmd::Bench { what: BenchCmd::Io(a) } => bench_io::io_cmd(a),
        Cmd::Bench { what: BenchCmd::Isolation(a) } => bench_isolation::isolation_cmd(a),
        Cmd::Bench { what: BenchCmd::Fig5(a) } => figures::main(&figures::fig5::FIGURE, a),
        Cmd::Bench { what: BenchCmd::Fig6(a) } => figures::main(&figures::fig6::FIGURE, a),
        Cmd::Bench { what: BenchCmd::Fig7(a) } => figures::main(&figures::fig7::FIGURE, a),
        Cmd::Bench { what: BenchCmd::Fig8(a) } => figures::main(&figures::fig8::FIGURE, a),
        Cmd::Bench { what: BenchCmd::FigRun(s) } => figures::run::run(&mut boot::Env::prepare()?, &s).map(|_| 0),
        Cmd::Disk { cmd } => disk::main(cmd),
        Cmd::Disks => rootfs::main(),
        Cmd::Fuzz(a) => fuzz::main(a),
        Cmd::Soak(a) => soak::main(a),
        Cmd::Faults(a) => faults::main(a),
        Cmd::Machines => {
            for m in machine::check_all()? {
                println!("{:8} {}", m.name, m.description);
            }
            Ok(0)
        }
    }
}

fn to_boot(a: &RunArgs) -> Result<boot::Boot> {
    let d = boot::VmShape::default();
    Ok(boot::Boot {
        machine: machine::load(a.machine.as_deref().unwrap_or("numa2"))?,
        native: a.native,
        native_like_vm: false,
        exec: a.exec.clone(),
        vm: boot::VmShape {
            vcpus: a.vcpus.unwrap_or(d.vcpus),
            memory_mib: a.memory.unwrap_or(d.memory_mib),
            append: a.append.clone(),
        },
        tag: if a.native { "run-native".into() } else { "run".into() },
        placement: manifest::Placement { mode: a.placement.clone(), params: a.placement_params.clone() },
    })
}

/// Single-VM flags (`--exec`, `--native`, `--vcpus`, `--memory`) boot one VM; otherwise a manifest.
fn single_vm(a: &RunArgs) -> bool {
    a.vms.is_none() && (a.exec.is_some() || a.native || a.vcpus.is_some() || a.memory.is_some())
}

/// The manifest of a run and the machine it runs on (validated together).
fn to_manifest(a: &RunArgs) -> Result<(machine::Machine, manifest::Manifest)> {
    let path = a.vms.clone().unwrap_or_else(manifest::default_path);
    let (_, text) = manifest::read(&path)?;
    let mname = a.machine.clone().or_else(|| manifest::machine_of(&text)).unwrap_or_else(|| "numa2".into());
    let m = machine::load(&mname)?;
    let mut man = manifest::load(&path, &m)?;
    if a.placement.is_some() || a.placement_params.is_some() {
        manifest::Placement::check(a.placement.as_deref(), a.placement_params.as_deref())
            .map_err(|e| anyhow::anyhow!("--placement/--placement-params: {e}"))?;
    }
    if a.placement.is_some() {
        man.placement.mode = a.placement.clone();
    }
    if a.placement_params.is_some() {
        man.placement.params = a.placement_params.clone();
    }
    if !a.append.is_empty() {
        for vm in &mut man.vms {
            vm.cmdline = format!("{} {}", vm.cmdline, a.append).trim().to_string();
        }
    }
    Ok((m, man))
}

/// The VMs of a run in one line: each for a few, totals for many.
fn vm_summary(vms: &[manifest::VmSpec]) -> String {
    const LISTED: usize = 8;
    if vms.len() <= LISTED {
        let each: Vec<String> =
            vms.iter().map(|v| format!("{} ({} vCPU, {} MiB)", v.name, v.vcpus, v.memory_mib)).collect();
        return each.join(", ");
    }
    let (vcpus, mib) = vms.iter().fold((0, 0), |(c, m), v| (c + v.vcpus, m + v.memory_mib));
    format!("{} VMs ({} .. {}), {vcpus} vCPUs, {mib} MiB in all", vms.len(), vms[0].name, vms[vms.len() - 1].name)
}

/// `cargo xtask run` with a manifest: interactive unless a VM has `exec`.
fn run_manifest(a: RunArgs) -> Result<u8> {
    let (m, man) = to_manifest(&a)?;
    let exec = man.vms.iter().any(|v| v.exec.is_some());
    // SAFETY: isatty only inspects the descriptor.
    if !exec && unsafe { libc::isatty(0) } == 0 {
        anyhow::bail!("{}: no VM has `exec`, so `cargo xtask run` attaches the console to this terminal, but stdin is not one; give the VMs `exec` for unattended runs", man.file);
    }
    eprintln!("run: {} on {}: {}", man.file, m.name, vm_summary(&man.vms));
    let b = boot::Boot {
        machine: m.clone(),
        native: false,
        native_like_vm: false,
        exec: exec.then(String::new),
        vm: Default::default(),
        tag: "run".into(),
        placement: Default::default(),
    };
    let mut env = boot::Env::prepare()?;
    let cmd = boot::manifest_command(&mut env, &m, &man, &b.tag, !exec)?;
    let (cmd, _numa_sim) = numasim::for_run(&b, cmd, a.numa_sim.as_deref())?;
    if !exec {
        eprintln!("run: Ctrl-] then 0-9 gives input to VM n, Ctrl-] h lists the monitor's keys");
        let code = qemu::interactive(cmd)?;
        return Ok(code.clamp(0, 255) as u8);
    }
    let session = qemu::Session::spawn(cmd, &b.tag, !a.quiet)?;
    let names: Vec<&str> = man.vms.iter().map(|v| v.name.as_str()).collect();
    let out = exec::run_multi(session, &names, Duration::from_secs(a.timeout))?;
    for vm in &out.vms {
        println!(
            "== vm {}: {}{}",
            vm.name,
            vm.describe(),
            if vm.reboots > 0 { format!(" (after {} reboot(s))", vm.reboots) } else { String::new() }
        );
        for l in &vm.output {
            println!("{l}");
        }
    }
    if !out.ok() {
        eprintln!(
            "log: {}
last {} lines:\n{}",
            out.log,
            exec::TAIL_LINES,
            out.tail
        );
    }
    Ok(u8::from(!out.ok()))
}

fn run(a: RunArgs) -> Result<u8> {
    if !single_vm(&a) {
        return run_manifest(a);
    }
    // SAFETY: isatty only inspects the descriptor.
    if a.exec.is_none() && unsafe { libc::isatty(0) } == 0 {
        anyhow::bail!("`cargo xtask run` without --exec attaches the guest console to this terminal, but stdin is not one; use --exec CMD for unattended runs");
    }
    manifest::Placement::check(a.placement.as_deref(), a.placement_params.as_deref())
        .map_err(|e| anyhow::anyhow!("--placement/--placement-params: {e}"))?;
    let b = to_boot(&a)?;
    let mut env = boot::Env::prepare()?;
    let cmd = b.command(&mut env, a.exec.is_none())?;
    let (cmd, _numa_sim) = numasim::for_run(&b, cmd, a.numa_sim.as_deref())?;
    if a.exec.is_none() {
        let code = qemu::interactive(cmd)?;
        return Ok(code.clamp(0, 255) as u8);
    }
    let session = qemu::Session::spawn(cmd, &b.tag, !a.quiet)?;
    let out = exec::run(session, boot::VM_NAME, Duration::from_secs(a.timeout))?;
    for l in &out.output {
        println!("{l}");
    }
    Ok(0)
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn run_defaults() {
        let Cmd::Run(a) = parse(&["run"]).cmd else { panic!() };
        assert_eq!(
            (a.machine.as_deref(), a.exec.as_deref(), a.timeout, a.native, a.vcpus, a.memory),
            (None, None, 300, false, None, None)
        );
        assert!(!single_vm(&a));
        let (m, man) = to_manifest(&a).unwrap();
        assert_eq!((m.name.as_str(), man.vms.len()), ("numa2", 2));
        let Cmd::Run(a) = parse(&["run", "--vcpus", "2"]).cmd else { panic!() };
        assert!(single_vm(&a));
        assert!(Cli::try_parse_from(["xtask", "run", "--vms", "x.toml", "--exec", "true"]).is_err());
    }

    #[test]
    fn run_exec_options() {
        let Cmd::Run(a) =
            parse(&["run", "--machine", "numa4", "--exec", "uname -r; echo x", "--timeout", "60", "--native"]).cmd
        else {
            panic!()
        };
        assert_eq!(a.exec.as_deref(), Some("uname -r; echo x"));
        assert_eq!((a.machine.as_deref(), a.timeout, a.native), (Some("numa4"), 60, true));
        let b = to_boot(&a).unwrap();
        assert_eq!(b.machine.nodes, 4);
        assert_eq!(b.tag, "run-native");
        assert!(b.bootargs().starts_with(boot::BASE_BOOTARGS));
    }

    #[test]
    fn many_vms_are_summed_up() {
        let m = machine::load("numa2-many").unwrap();
        let text = |n: usize| -> String {
            (0..n).map(|i| format!("[[vm]]\nname = \"g{i}\"\nvcpus = 1\nmemory = \"64M\"\n\n")).collect()
        };
        let few = manifest::parse("m.toml", &text(2), &m, std::path::Path::new(".")).unwrap();
        assert_eq!(vm_summary(&few.vms), "g0 (1 vCPU, 64 MiB), g1 (1 vCPU, 64 MiB)");
        let many = manifest::parse("m.toml", &text(100), &m, std::path::Path::new(".")).unwrap();
        assert_eq!(vm_summary(&many.vms), "100 VMs (g0 .. g99), 100 vCPUs, 6400 MiB in all");
    }

    #[test]
    fn rejects_bad_input() {
        let bad = |args: &[&str]| Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).is_err();
        assert!(bad(&["run", "--timeout", "soon"]));
        assert!(bad(&["run", "--exec"]));
        assert!(bad(&["run", "--bogus"]));
        assert!(bad(&["bench", "boot", "--runs", "-1"]));
        let a = RunArgs {
            machine: Some("numa9".into()),
            ..match parse(&["run"]).cmd {
                Cmd::Run(a) => a,
                _ => panic!(),
            }
        };
        let e = to_boot(&a).unwrap_err().to_string();
        assert!(e.contains("unknown machine `numa9`") && e.contains("numa2, numa2-many, numa4"), "{e}");
    }

    #[test]
    fn bench_and_test_parse() {
        assert!(matches!(
            parse(&["bench", "boot", "--runs", "5"]).cmd,
            Cmd::Bench { what: BenchCmd::Boot { runs: 5, .. } }
        ));
        assert!(matches!(
            parse(&["test", "--native", "--only", "topology"]).cmd,
            Cmd::Test(TestArgs { native: true, .. })
        ));
    }

    #[test]
    fn bench_smp_parse() {
        let Cmd::Bench { what: BenchCmd::Smp(a) } = parse(&["bench", "smp"]).cmd else { panic!() };
        assert_eq!((a.machine.as_str(), a.runs, a.vcpus.as_slice()), ("numa2", 3, &[1, 2, 4][..]));
        let Cmd::Bench { what: BenchCmd::Smp(a) } =
            parse(&["bench", "smp", "--machine", "numa4", "--runs", "1", "--vcpus", "2,8"]).cmd
        else {
            panic!()
        };
        assert_eq!((a.machine.as_str(), a.runs, a.vcpus.as_slice()), ("numa4", 1, &[2, 8][..]));
        assert!(Cli::try_parse_from(["xtask", "bench", "smp", "--vcpus", "two"]).is_err());
    }
}
