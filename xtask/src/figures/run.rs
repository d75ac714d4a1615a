//! `cargo xtask bench fig-run`: one job of a figure (`jobs.rs`), one QEMU
//! boot under the ccNUMA plugin, and its output directory:
//!
//! - `console.txt`: the console lines as xtask joined them (under the
//!   monitor guest lines carry `[VM] `, monitor lines start `disco:` or
//!   `stats:`; natively the guest's console as it is);
//! - `numasim.json`: the plugin's report (regions of interest, per CPU);
//! - `run.json`: the job line and the wall time.
//!
//! Nothing is judged here: `collect.rs` reads the directory, so a run made
//! elsewhere (GNU parallel, Slurm) is read the same way.

use super::jobs::Spec;
use crate::boot::{self, Env};
use crate::follow::{follow, spawn};
use crate::numasim::Sim;
use crate::qemu::Session;
use crate::util::{rel, root};
use crate::{machine, manifest};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A small workload under the plugin, boot included, on 2 busy cores.
const TIMEOUT: Duration = Duration::from_secs(2400);

/// The name of VM `i` of a run with `n` VMs.
pub fn vm_name(n: u32, i: u32) -> String {
    if n == 1 {
        "w".into()
    } else {
        format!("w{i}")
    }
}

/// The guest's command: the workload script (natively NUMA balancing set
/// first and the pages Linux migrated printed after). The Debian root has
/// no `mount` (not Essential), so debugfs and with it the scan periods
/// that `bench placement` shortens stay out of reach: Linux's defaults
/// apply (scan delay 1 s, period 1-60 s).
fn command(s: &Spec, vm: u32) -> String {
    let env = s.env.replace("{i}", &vm.to_string()).replace("{n}", &s.vms.to_string());
    let env = if env.is_empty() { env } else { env + " " };
    let work = format!("{env}sh /opt/disco/workloads/{}.sh {}", s.workload, s.size);
    if !s.native && s.hold > 0 {
        // The workload, then alive and idle (fig6: all VMs at once): VM 0
        // for `hold` s, the others twice as long, so that VM 0 ends first
        // and no other ends in the moment before the census lists the VMs.
        let hold = if vm == 0 { s.hold } else { 2 * s.hold };
        return format!("{work}\nst=$?\necho {HOLD} status=$st\nsleep {hold}\nexit $st");
    }
    if !s.native {
        return work;
    }
    format!(
        "echo {} > /proc/sys/kernel/numa_balancing\n{work} || exit 1\ngrep -E '^numa_pages_migrated ' /proc/vmstat",
        s.numa_balancing
    )
}

/// What a VM prints after its workload when the run holds it (`--hold`).
pub const HOLD: &str = "DISCO-HOLD";

/// The run's manifest: `vms` VMs, each on the Debian root image.
fn manifest_text(s: &Spec) -> String {
    let mut t = format!("machine = \"{}\"\nplacement = \"{}\"\n", s.machine, s.placement);
    if !s.placement_params.is_empty() {
        t += &format!("placement_params = \"{}\"\n", s.placement_params);
    }
    if s.census {
        t += "census = true\n";
    }
    let share = if s.share.is_empty() { String::new() } else { format!("share_group = \"{}\"\n", s.share) };
    for i in 0..s.vms {
        t += &format!(
            "\n[[vm]]\nname = \"{}\"\nvcpus = {}\nmemory = \"{}M\"\n{share}exec = '''\n{}\n'''\n\n\
             [[vm.disk]]\nimage = \"{}\"\nmode = \"{}\"\nmount = \"/\"\n",
            vm_name(s.vms, i),
            s.vcpus,
            s.memory,
            command(s, i),
            crate::rootfs::IMAGE,
            s.disk
        );
    }
    t
}

/// Runs one job and writes its output directory.
pub fn run(env: &mut Env, s: &Spec) -> Result<()> {
    if !["engineering", "raytrace", "database", "pmake"].contains(&s.workload.as_str()) {
        bail!("unknown workload {:?} (engineering, raytrace, database, pmake)", s.workload);
    }
    if s.native && s.vms != 1 {
        bail!("a native run boots one kernel (--vms 1)");
    }
    if s.native && s.numa_sim == NO_SIM {
        bail!("a native run is measured under the plugin (not --numa-sim {NO_SIM})");
    }
    if !["base", "cow"].contains(&s.disk.as_str()) {
        bail!("--disk is base or cow, not {:?}", s.disk);
    }
    // Relative to the repository root, wherever the job runs from.
    let out = root().join(&s.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tag = format!("{}-{}", s.fig, s.id);
    let text = manifest_text(s);
    let t = Instant::now();
    let (lines, report) = if s.native { native(env, s, &tag, &text)? } else { monitor(env, s, &tag, &text)? };
    let wall_s = t.elapsed().as_secs_f64();
    write_out(&out, s, &lines, &report, wall_s)?;
    eprintln!("fig-run: {} done in {wall_s:.0} s: {}", s.id, rel(&out));
    Ok(())
}

/// `--numa-sim off`: the run without the plugin (and without `numasim.json`).
pub const NO_SIM: &str = "off";

fn monitor(env: &mut Env, s: &Spec, tag: &str, text: &str) -> Result<(Vec<String>, Option<PathBuf>)> {
    let params = Some(s.numa_sim.as_str()).filter(|p| *p != NO_SIM);
    let (mut session, sim) = spawn(env, &s.machine, tag, text, params)?;
    let lines = follow(&mut session, TIMEOUT, None, |_, _| Ok(()))?;
    Ok((lines, sim.as_ref().map(keep_report).transpose()?))
}

fn native(env: &mut Env, s: &Spec, tag: &str, text: &str) -> Result<(Vec<String>, Option<PathBuf>)> {
    let m = machine::load(&s.machine)?;
    let man = manifest::parse(&format!("<{tag} manifest>"), text, &m, &root())?;
    let sim = Sim::new(&m, &s.numa_sim, tag)?;
    let cmd = sim.wrap(&boot::native_manifest_command(env, &m, &man, tag)?, true, None)?;
    let mut session = Session::spawn(cmd, tag, false)?;
    let lines = follow(&mut session, TIMEOUT, None, |_, _| Ok(()))?;
    Ok((lines, Some(keep_report(&sim)?)))
}

/// The report's path, once QEMU has written it (the [`Sim`] is dropped
/// after this, which removes only the shared RAM files).
fn keep_report(sim: &Sim) -> Result<PathBuf> {
    sim.read_report()?;
    Ok(sim.report.clone())
}

fn write_out(dir: &Path, s: &Spec, lines: &[String], report: &Option<PathBuf>, wall_s: f64) -> Result<()> {
    let mut console = lines.join("\n");
    console.push('\n');
    std::fs::write(dir.join("console.txt"), console)?;
    if let Some(report) = report {
        std::fs::copy(report, dir.join("numasim.json")).with_context(|| format!("copying {}", rel(report)))?;
    }
    let run = serde_json::json!({ "job": s.to_line()?, "wall_s": wall_s });
    std::fs::write(dir.join("run.json"), serde_json::to_string_pretty(&run)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::jobs::tests::spec;

    #[test]
    fn manifest_has_one_vm_per_spec_vm_and_parses() {
        let mut s = spec("a");
        (s.vms, s.memory) = (3, 256);
        let text = manifest_text(&s);
        let m = machine::load("numa2").unwrap();
        let man = manifest::parse("t.toml", &text, &m, &root()).unwrap();
        assert_eq!(man.vms.len(), 3);
        assert_eq!(man.vms[2].name, "w2");
        assert_eq!(man.placement.mode.as_deref(), Some("migrate"));
        assert_eq!(man.placement.params.as_deref(), Some("interval=2000"));
        assert!(!text.contains("census") && !text.contains("share_group") && text.contains("mode = \"base\""));
        (s.share, s.census, s.disk, s.hold) = ("fig6".into(), true, "cow".into(), 60);
        let text = manifest_text(&s);
        let man = manifest::parse("t.toml", &text, &m, &root()).unwrap();
        assert!(man.census && man.vms.iter().all(|v| v.share_group.as_deref() == Some("fig6")));
        assert!(
            text.contains("mode = \"cow\"")
                && command(&s, 0).contains("echo DISCO-HOLD status=$st\nsleep 60")
                && command(&s, 1).contains("sleep 120")
        );
        s.env = "PART={i}/{n} NPROC=1".into();
        assert!(command(&s, 2).starts_with("PART=2/3 NPROC=1 sh /opt/disco/workloads/engineering.sh small\n"));
        s.native = true;
        assert!(command(&s, 0).contains("numa_balancing") && command(&s, 0).contains("engineering.sh small"));
    }
}
