//! `cargo xtask test`: host unit tests, then QEMU integration tests.
//!
//! Each test is bounded by a timeout and logs to `.cache/logs/`; a failure
//! prints its reason and the log's tail, and the run ends with one summary
//! line `N passed, N failed` (exit status 1 on any failure). The same tests
//! run on the native kernel with `--native`: that checks the harness itself
//! while the monitor cannot boot guests yet. The default run includes one
//! native boot as a canary, so an environment fault is not blamed on the
//! monitor.

use crate::boot::{Boot, Env, VmShape, VM_NAME};
use crate::exec::{self, Watcher, TAIL_LINES};
use crate::machine;
use crate::qemu::{code, Event, Session};
use crate::topology::{self, Parser};
use crate::util::{rel, root};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(180);
pub(crate) const GUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// MemTotal, and the RAM the kernel found (dmesg `Memory: avail/totalK`),
/// may differ from the VM's memory by this fraction (issue 2). MemTotal
/// excludes the kernel image and early reservations (~37 MiB for Debian's
/// kernel), so the guest-boot VM has 1 GiB, where that is 3.6%.
const MEM_TOLERANCE: f64 = 0.05;
const MEMTOTAL_TOLERANCE: f64 = 0.05;
/// Guest memory of the guest-boot test, in MiB.
const GUEST_BOOT_MIB: u64 = 1024;
/// An address that is neither guest RAM nor a guest device: see DESIGN.md.
const WILD_ADDRESS: &str = "0x0a800000";

mod balloon;
mod cow_disk;
mod disk;
mod isolation;
mod net;
mod placement;
mod replication;
mod scale;
pub(crate) mod shared_pages;
mod sharing;
mod smp;

pub(crate) mod workloads;

type TestFn = fn(&mut Env, bool) -> Result<()>;

/// Tests run only when `--only` names them: `workload-pmake` takes about
/// 7 minutes; `many-vms` (64 VMs) takes over 20 minutes on `main` since
/// session 4 (it took 7 before; see issue 16's note) and would hold CI up.
const OPT_IN: &[&str] = &["workload-pmake"];

/// Seconds each fuzz target runs in `cargo xtask test` (9 targets).
const FUZZ_SECONDS: u64 = 4;

struct Test {
    name: String,
    native: bool,
    run: TestFn,
}

pub fn main(native: bool, only: Option<&str>) -> Result<u8> {
    let mut results: Vec<(String, Result<()>)> = Vec::new();
    let wanted = |n: &str| only.is_none_or(|o| o.split(',').any(|p| n.contains(p)));
    let mut env = match Env::prepare() {
        Ok(e) => e,
        Err(e) => {
            println!("test setup ... FAILED\n{e:#}\n0 passed, 1 failed");
            return Ok(1);
        }
    };
    if wanted("host-unit") {
        results.push(timed("host-unit", host_unit));
    }
    if wanted("fuzz") {
        results.push(timed("fuzz", || crate::fuzz::short(FUZZ_SECONDS)));
    }
    // A test of OPT_IN runs only when `--only` selects it.
    let tests: Vec<Test> = integration(native)
        .into_iter()
        .filter(|t| wanted(&t.name) && (only.is_some() || !OPT_IN.contains(&t.name.as_str())))
        .collect();
    // Build once, up front: a build failure is one clear result, not one per test.
    let mut monitor_ok = true;
    if tests.iter().any(|t| !t.native) {
        let r = timed("monitor-build", || env.monitor().map(|_| ()));
        monitor_ok = r.1.is_ok();
        results.push(r);
    }
    for t in tests {
        let r = if !t.native && !monitor_ok {
            println!("test {} ... FAILED (not run: the monitor did not build)", t.name);
            (t.name.clone(), Err(anyhow!("not run: the monitor did not build")))
        } else {
            timed(&t.name, || (t.run)(&mut env, t.native))
        };
        results.push(r);
    }
    let failed: Vec<&str> = results.iter().filter(|r| r.1.is_err()).map(|r| r.0.as_str()).collect();
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
    }
    println!("{} passed, {} failed", results.len() - failed.len(), failed.len());
    Ok(u8::from(!failed.is_empty()))
}

fn integration(native: bool) -> Vec<Test> {
    let t = |name: &str, native: bool, run: TestFn| Test {
        name: if native { format!("{name}-native") } else { name.to_string() },
        native,
        run,
    };
    let mut v = Vec::new();
    if !native {
        // Canary: the guest and harness work without the monitor.
        v.push(t("guest-boot", true, guest_boot));
    }
    v.push(t("topology-numa2", native, |e, n| topology_test(e, n, "numa2")));
    v.push(t("topology-numa4", native, |e, n| topology_test(e, n, "numa4")));
    // Unequal nodes: 3 + 1 CPUs with unequal memory; a memory-only node at distance 30.
    v.push(t("topology-numa-uneven", native, |e, n| topology_test(e, n, "numa-uneven")));
    v.push(t("topology-numa-far", native, |e, n| topology_test(e, n, "numa-far")));
    v.push(t("guest-boot", native, guest_boot));
    v.push(t("wild-access", native, wild_access));
    v.push(t("numa-sim", true, crate::numasim_bench::validate_test));
    // Host only: no suffix, runs in both modes.
    v.push(Test { name: "manifest-errors".into(), native: true, run: |e, _| smp::manifest_errors(e) });
    if !native {
        v.push(t("smp-overcommit", false, |e, _| smp::smp_overcommit(e)));
        v.push(t("frames-returned", false, |e, _| smp::frames_returned(e)));
        v.push(t("eight-vcpus", false, |e, _| smp::eight_vcpus(e)));
        v.push(t("crash-containment", false, |e, _| smp::crash_containment(e)));
        v.push(t("guest-reset", false, |e, _| smp::guest_reset(e)));
        v.push(t("cpu-hotplug", false, |e, _| smp::cpu_hotplug(e)));
        v.push(t("idle-guests", false, |e, _| smp::idle_guests(e)));
        v.push(t("console-attribution", false, |e, _| smp::console_attribution(e)));
        v.push(t("many-vms", false, |e, _| scale::many_vms(e)));
        v.push(t("migrate-after-move", false, |e, _| placement::migrate_after_move(e, placement::Counters::Sampling)));
        v.push(t("migrate-under-load", false, |e, _| placement::migrate_under_load(e)));
        v.push(t("migrate-numa-sim", false, |e, _| placement::migrate_after_move(e, placement::Counters::Plugin)));
        v.push(t("persistent-disk", false, |e, _| disk::persistent_disk(e)));
        v.push(t("disk-malformed-queue", false, |e, _| disk::malformed_queue(e)));
        v.push(t("net-inter-vm", false, |e, _| net::inter_vm(e)));
        v.push(t("balloon-report", false, |e, _| balloon::free_page_reporting(e)));
        v.push(t("balloon-target", false, |e, _| balloon::target(e)));
        v.push(t("monitor-code-local", false, |e, _| replication::monitor_code_local(e)));
        v.push(t("replicate-shared", false, |e, _| shared_pages::replicate_shared(e)));
        v.push(t("boot-image-shared", false, |e, _| sharing::boot_image_shared(e)));
        v.push(t("cow-root", false, |e, _| cow_disk::cow_root(e)));
        v.push(t("block-cache-shared", false, |e, _| cow_disk::block_cache_shared(e)));
        v.push(t("cow-persistent-restart", false, |e, _| cow_disk::cow_persistent_restart(e)));
        v.push(t("isolation-sweep", false, |e, _| isolation::isolation_sweep(e)));
        v.push(t("soak", false, |e, _| crate::soak::run(e, &crate::soak::SoakArgs::ci()).map(|_| ())));
        v.push(t("faults", false, |e, _| {
            let (r, _) = crate::faults::run(e, &crate::faults::FaultsArgs::ci())?;
            r.lines.iter().for_each(|l| eprintln!("    {l}"));
            match r.problems.is_empty() {
                true => Ok(()),
                false => anyhow::bail!("{}", r.problems.join("\n")),
            }
        }));
        v.push(t("workload-engineering", false, |e, _| workloads::engineering(e)));
        v.push(t("workload-database", false, |e, _| workloads::database(e)));
        v.push(t("workload-raytrace", false, |e, _| workloads::raytrace(e)));
        v.push(t("workload-pmake", false, |e, _| workloads::pmake(e)));
    }
    v
}

/// Runs one test, then prints `test NAME ... ok (N s)` or the failure (at
/// the end, so progress lines on stderr do not split it).
fn timed(name: &str, f: impl FnOnce() -> Result<()>) -> (String, Result<()>) {
    let t0 = Instant::now();
    let r = f();
    let secs = t0.elapsed().as_secs_f64();
    match &r {
        Ok(()) => println!("test {name} ... ok ({secs:.1} s)"),
        Err(e) => println!("test {name} ... FAILED ({secs:.1} s)\n{}", indent(&format!("{e:#}"))),
    }
    let _ = std::io::stdout().flush();
    (name.to_string(), r)
}

pub(crate) fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// `cargo test` over every crate that builds for the host.
fn host_unit() -> Result<()> {
    let (log, log_path) = crate::util::new_log("host-unit")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The workspace's tests, then the loom models of the scheduler's
    // wake-up protocol (numa::park) in a target directory of their own, so
    // `--cfg loom` does not rebuild the normal one.
    let runs: [(&[&str], Option<&str>); 2] = [
        (&["test", "--workspace", "--exclude", "monitor"], None),
        (&["test", "-p", "numa", "--release", "--lib", "loom_tests"], Some("--cfg loom")),
    ];
    for (args, rustflags) in runs {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(root()).args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log.try_clone()?);
        if let Some(flags) = rustflags {
            cmd.env("RUSTFLAGS", flags).env("CARGO_TARGET_DIR", root().join("target/loom"));
        }
        let status = cmd.status().context("cannot run cargo test")?;
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n  | ");
            bail!(
                "cargo {} failed ({status})\nlog: {}\nlast {TAIL_LINES} lines:\n  | {tail}",
                args.join(" "),
                rel(&log_path)
            );
        }
    }
    Ok(())
}

fn boot(machine: &str, native: bool, exec: &str, tag: &str) -> Result<Boot> {
    Ok(Boot {
        machine: machine::load(machine)?,
        native,
        native_like_vm: true,
        exec: Some(exec.to_string()),
        vm: VmShape::default(),
        tag: format!("test-{tag}{}", if native { "-native" } else { "" }),
        placement: Default::default(),
    })
}

/// (a) The monitor's topology report equals the QEMU configuration. The
/// monitor prints it before any guest runs, so QEMU is stopped as soon as
/// the report is complete. Natively the guest tool prints it.
fn topology_test(env: &mut Env, native: bool, name: &str) -> Result<()> {
    // Under the monitor the report must come from the monitor, not the guest.
    let exec = if native { "disco-numactl" } else { "true" };
    let mut b = boot(name, native, exec, &format!("topology-{name}"))?;
    b.native_like_vm = false; // the whole machine, not the VM's share
    let mut s = Session::spawn(b.command(env, false)?, &b.tag, false)?;
    let deadline = s.started + TOPOLOGY_TIMEOUT;
    let mut parser = Parser::default();
    let mut watch = Watcher::new(VM_NAME);
    let failure = loop {
        match s.next(deadline) {
            Event::Line(l) => {
                parser.feed(&l);
                watch.feed(&l);
                if parser.done() {
                    break None;
                }
                if let Some(f) = watch.fatal.take() {
                    break Some(f);
                }
            }
            Event::Exit(st) => {
                break Some(format!("QEMU exited (status {}) before a complete topology report", code(st)))
            }
            Event::Timeout => {
                break Some(format!("no complete topology report within {}s", TOPOLOGY_TIMEOUT.as_secs()))
            }
        }
    };
    s.kill();
    let result = match failure {
        Some(f) => Err(anyhow!(f)),
        None => topology::check(&parser.report, &b.machine),
    };
    result.map_err(|e| anyhow!("{e}\nlog: {}\nlast {TAIL_LINES} lines:\n{}", rel(&s.log_path), s.tail(TAIL_LINES)))
}

/// Boots with `--exec SCRIPT` and returns the command's output lines.
fn exec_lines(env: &mut Env, b: &Boot) -> Result<Vec<String>> {
    let s = Session::spawn(b.command(env, false)?, &b.tag, false)?;
    Ok(exec::run(s, VM_NAME, GUEST_TIMEOUT)?.output)
}

/// The value after `key` on the first output line starting with it.
pub(crate) fn field<'a>(lines: &'a [String], key: &str) -> Result<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .ok_or_else(|| anyhow!("no `{key}` line in the guest output:\n{}", indent(&lines.join("\n"))))
}

/// (b) A Debian guest boots, sees its memory, and computes correctly.
fn guest_boot(env: &mut Env, native: bool) -> Result<()> {
    let n = 200_000;
    let script = format!(
        "echo \"uname=$(uname -r)\"\ngrep MemTotal /proc/meminfo\ndmesg | grep -m1 'Memory:'\nseq 1 {n} > /tmp/seq && echo \"md5=$(md5sum < /tmp/seq)\""
    );
    let mut b = boot("numa2", native, &script, "guest-boot")?;
    b.vm.memory_mib = GUEST_BOOT_MIB;
    let out = exec_lines(env, &b)?;
    let mut errs = Vec::new();
    let release = field(&out, "uname=")?;
    if release != env.guest.release {
        errs.push(format!("uname -r is `{release}`, the Debian kernel is `{}`", env.guest.release));
    }
    let want = b.vm.memory_mib * 1024;
    let kb: u64 =
        field(&out, "MemTotal:")?.trim_end_matches("kB").trim().parse().context("MemTotal is not a number")?;
    let seen = dmesg_total_kb(&out)?;
    for (what, got, tol) in
        [("MemTotal", kb, MEMTOTAL_TOLERANCE), ("RAM found at boot (dmesg Memory:)", seen, MEM_TOLERANCE)]
    {
        let off = (got as f64 - want as f64).abs() / want as f64;
        if off > tol || got > want {
            errs.push(format!(
                "{what} {got} kB is {:.1}% off the VM's {want} kB (tolerance {:.0}%)",
                off * 100.0,
                tol * 100.0
            ));
        }
    }
    let guest_md5 = field(&out, "md5=")?.split_whitespace().next().unwrap_or_default().to_string();
    let data: String = (1..=n).map(|i| format!("{i}\n")).collect();
    let host_md5 = host_md5(data.as_bytes())?;
    if guest_md5 != host_md5 {
        errs.push(format!("md5 of `seq 1 {n}`: guest {guest_md5}, host {host_md5}"));
    }
    if !errs.is_empty() {
        bail!("{}\nguest output:\n{}", errs.join("\n"), indent(&out.join("\n")));
    }
    Ok(())
}

/// `Y` of the kernel's `Memory: XK/YK available (...)` boot line.
fn dmesg_total_kb(lines: &[String]) -> Result<u64> {
    let l = lines.iter().find(|l| l.contains("Memory: ")).ok_or_else(|| anyhow!("no `Memory:` line from dmesg"))?;
    let after = l.split("Memory: ").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .and_then(|t| t.split('/').nth(1))
        .and_then(|t| t.trim_end_matches('K').parse().ok())
        .ok_or_else(|| anyhow!("cannot read the total from `{l}`"))
}

pub(crate) use crate::util::host_md5;

/// (c) A load from an address with nothing behind it kills only the process
/// (SIGBUS: shell status 135); the guest carries on.
fn wild_access(env: &mut Env, native: bool) -> Result<()> {
    let script = format!("devmem {WILD_ADDRESS} 32\necho \"devmem-status=$?\"\necho wild-access-survived");
    let b = boot("numa2", native, &script, "wild-access")?;
    let out = exec_lines(env, &b)?;
    let status = field(&out, "devmem-status=")?;
    if status != "135" {
        bail!(
            "devmem {WILD_ADDRESS} ended with status {status}, expected 135 (SIGBUS)\nguest output:\n{}",
            indent(&out.join("\n"))
        );
    }
    if !out.iter().any(|l| l == "wild-access-survived") {
        bail!("the command after the wild access did not run\nguest output:\n{}", indent(&out.join("\n")));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    #[test]
    fn dmesg_memory_line() {
        let l = vec!["[    0.000000] Memory: 486268K/524288K available (12096K kernel code, 3100K rwdata)".to_string()];
        assert_eq!(super::dmesg_total_kb(&l).unwrap(), 524288);
        assert!(super::dmesg_total_kb(&["x".to_string()]).is_err());
    }

    #[test]
    fn test_lists() {
        let names: Vec<String> = super::integration(false).into_iter().map(|t| t.name).collect();
        for want in [
            "guest-boot-native",
            "topology-numa2",
            "topology-numa4",
            "topology-numa-uneven",
            "topology-numa-far",
            "guest-boot",
            "wild-access",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert_eq!(names[0], "guest-boot-native", "the native canary runs first");
        assert!(super::integration(true)
            .iter()
            .all(|t| t.native && t.name.ends_with("-native") || t.name == "numa-sim" || t.name == "manifest-errors"));
        for want in [
            "manifest-errors",
            "smp-overcommit",
            "frames-returned",
            "eight-vcpus",
            "crash-containment",
            "guest-reset",
            "idle-guests",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
    }
}
