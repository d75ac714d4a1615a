//! Integration tests of issue 15 (5): each workload of `bench/workloads/`
//! runs once, at its small size, under the monitor in a Debian guest whose
//! root is the `debian` base image (`cargo xtask disks`), and its checksum
//! is checked against one computed another way:
//!
//! - `workload-engineering`: the simulation's output lines, recomputed here
//!   from the design's rules ([`memsim_lines`]);
//! - `workload-database`: the query results, computed here from the same
//!   row formulas ([`database_results`]);
//!
//! (The references live in `crate::workload_results`, which the figures
//! use too.)
//! - `workload-raytrace`: the image's md5 from the same render on Linux
//!   without the monitor (same QEMU machine, same binaries: POV-Ray on the
//!   x86 host would round differently, so "native" is the guest kernel
//!   booted directly);
//! - `workload-pmake`: the gnuchess it built answers a mate-in-one position
//!   with the mating move.
//!
//! Each also checks that the timed region's markers came, begin before end.

use super::smp::{spawn, with_log};
use super::{host_md5, indent};
use crate::workload_results::{database_results, memsim_lines, result_fields};
use crate::boot::{self, Env};
use crate::exec::{self, MultiOutcome};
use crate::qemu::Session;
use crate::util::root;
use crate::{machine, manifest};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// One small workload, boot and image set-up included, on 2 busy cores.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// One VM (2 vCPUs, 1 GiB) whose root is the Debian image, running `cmd`.
fn manifest_text(cmd: &str) -> String {
    format!(
        "[[vm]]\nname = \"w\"\nvcpus = 2\nmemory = \"1G\"\nexec = '''\n{cmd}\n'''\n\n\
         [[vm.disk]]\nimage = \"{}\"\nmode = \"base\"\nmount = \"/\"\n",
        crate::rootfs::IMAGE
    )
}

/// Runs `bench/workloads/NAME.sh small` under the monitor; returns the
/// RESULT fields and the VM's output.
fn run_workload(env: &mut Env, name: &str) -> Result<(BTreeMap<String, String>, MultiOutcome)> {
    let text = manifest_text(&format!("sh /opt/disco/workloads/{name}.sh small"));
    let (s, _) = spawn(env, &format!("workload-{name}"), &text, false)?;
    let out = exec::run_multi(s, &["w"], WORKLOAD_TIMEOUT)?;
    out.check()?;
    let lines = &out.vm("w").output;
    let mut errs = Vec::new();
    if let Err(e) = markers_in_order(lines, name) {
        errs.push(e);
    }
    let result = match result_fields(lines) {
        Some(r) => r,
        None => {
            errs.push("no RESULT line".into());
            BTreeMap::new()
        }
    };
    with_log(&out, errs)?;
    Ok((result, out))
}

/// `DISCO-ROI-BEGIN name` then `DISCO-ROI-END name`, once each.
fn markers_in_order(lines: &[String], name: &str) -> std::result::Result<(), String> {
    let at = |m: &str| {
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split_whitespace().take(2).eq([m, name]))
            .map(|(i, _)| i)
            .collect();
        hits
    };
    match (at("DISCO-ROI-BEGIN").as_slice(), at("DISCO-ROI-END").as_slice()) {
        ([b], [e]) if b < e => Ok(()),
        (b, e) => {
            Err(format!("region markers of {name}: begin at lines {b:?}, end at {e:?} (want one each, in order)"))
        }
    }
}

fn check_checksum(out: &MultiOutcome, r: &BTreeMap<String, String>, want: &str, how: &str) -> Result<()> {
    let got = r.get("checksum").map(String::as_str).unwrap_or("");
    let mut errs = Vec::new();
    if got != want {
        errs.push(format!("checksum {got:?}, expected {want} ({how})"));
    }
    with_log(out, errs)
}

pub fn engineering(env: &mut Env) -> Result<()> {
    let (r, out) = run_workload(env, "engineering")?;
    let cycles: u32 = r.get("cycles").and_then(|c| c.parse().ok()).unwrap_or(0);
    if cycles == 0 {
        bail!("engineering: RESULT has no cycles=N: {r:?}");
    }
    let want = host_md5(memsim_lines(cycles).as_bytes())?;
    check_checksum(&out, &r, &want, "bench/workloads/engineering/memsim.v recomputed on the host")
}

pub fn database(env: &mut Env) -> Result<()> {
    let (r, out) = run_workload(env, "database")?;
    let n: i64 = r.get("lineitems").and_then(|c| c.parse().ok()).unwrap_or(0);
    if n < 60 {
        bail!("database: RESULT has no lineitems=N: {r:?}");
    }
    let want = host_md5(database_results(n).as_bytes())?;
    check_checksum(&out, &r, &want, "the query set computed on the host from the same row formulas")
}

pub fn pmake(env: &mut Env) -> Result<()> {
    let (r, out) = run_workload(env, "pmake")?;
    // Black mates with the queen from d8 to h4 (xboard: coordinates).
    let answer = r.get("answer").map(String::as_str).unwrap_or("");
    let mut errs = Vec::new();
    if !(answer.contains("d8h4") || answer.contains("Qh4")) {
        errs.push(format!("the built gnuchess answered {answer:?} to a mate in one, not the mate d8h4 (Qh4#)"));
    }
    if r.get("files").and_then(|f| f.parse::<u32>().ok()).unwrap_or(0) == 0 {
        errs.push("pmake compiled no object file".into());
    }
    with_log(&out, errs)
}

pub fn raytrace(env: &mut Env) -> Result<()> {
    let (r, out) = run_workload(env, "raytrace")?;
    // The same render on the guest kernel booted directly.
    let text = manifest_text("sh /opt/disco/workloads/raytrace.sh small");
    let m = machine::load("numa2")?;
    let man = manifest::parse("<workload-raytrace native manifest>", &text, &m, &root())?;
    let tag = "test-workload-raytrace-native";
    let s = Session::spawn(boot::native_manifest_command(env, &m, &man, tag)?, tag, false)?;
    let native = exec::run(s, boot::VM_NAME, WORKLOAD_TIMEOUT)?;
    let Some(n) = result_fields(&native.output) else {
        bail!("the native run printed no RESULT line:\n{}", indent(&native.output.join("\n")));
    };
    let want = n.get("checksum").cloned().unwrap_or_default();
    check_checksum(&out, &r, &want, "the same render natively, without the monitor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_and_markers() {
        let lines: Vec<String> =
            ["x", "DISCO-ROI-BEGIN db uptime=1.0", "DISCO-ROI-END db uptime=2.0", "RESULT workload=db checksum=ab"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(result_fields(&lines).unwrap()["checksum"], "ab");
        assert!(markers_in_order(&lines, "db").is_ok());
        let reversed: Vec<String> = [&lines[2], &lines[1]].iter().map(|s| s.to_string()).collect();
        assert!(markers_in_order(&reversed, "db").is_err());
        assert!(markers_in_order(&lines, "other").is_err());
    }
}
