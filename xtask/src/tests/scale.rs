//! Scale (issue 16): many small guests at once, every console line and
//! marker attributed to the right one.

use super::indent;
use crate::boot::{self, Env};
use crate::exec::{self, TAIL_LINES};
use crate::qemu::Session;
use crate::util::root;
use crate::{machine, manifest};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// Guests of the CI run (the same shape works for 128 and 256).
const GUESTS: usize = 64;
/// Each guest's memory: the kernel and initrd need 54 MiB (see
/// `boot::min_memory_mib`), so this leaves the guest some room.
const GUEST_MIB: u64 = 64;
/// 64 guests boot one after another on two host cores: minutes, not seconds.
const TIMEOUT: Duration = Duration::from_secs(1200);

/// The manifest of `n` guests `g0`.. on `numa2-many`: each prints a line
/// only it can print (its name and a digest of it) and its own status.
fn manifest_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[vm]]\nname = \"g{i}\"\nvcpus = 1\nmemory = \"{GUEST_MIB}M\"\nexec = '''\necho \"own=g{i}-$(echo g{i} | md5sum | cut -c1-12)\"\n'''\n\n"
            )
        })
        .collect()
}

/// (1) `GUESTS` VMs of 64 MiB with `exec`: every one ends with status 0 and
/// prints exactly its own `own=` line, which no other VM's output holds;
/// and no sharing census runs, as the manifest does not ask for one (at
/// 64 VMs it took minutes and stalled every guest).
pub fn many_vms(env: &mut Env) -> Result<()> {
    let m = machine::load("numa2-many")?;
    let text = manifest_text(GUESTS);
    let man = manifest::parse("<many-vms manifest>", &text, &m, &root())?;
    let tag = "test-many-vms";
    let t0 = Instant::now();
    let cmd = boot::manifest_command(env, &m, &man, tag, false)?;
    let names: Vec<&str> = man.vms.iter().map(|v| v.name.as_str()).collect();
    let out = exec::run_multi(Session::spawn(cmd, tag, false)?, &names, TIMEOUT)?;
    let mut errs = Vec::new();
    for (i, vm) in out.vms.iter().enumerate() {
        if !vm.ok() {
            errs.push(format!("vm {}: {}", vm.name, vm.describe()));
        }
        let own: Vec<&String> = vm.output.iter().filter(|l| l.starts_with("own=")).collect();
        let want = format!("own=g{i}-");
        if own.len() != 1 || !own[0].starts_with(&want) {
            errs.push(format!("vm {}: `own=` lines {own:?}, want exactly one starting `{want}`", vm.name));
        }
    }
    if let Some(l) = out.lines.iter().find(|l| l.contains("census: ")) {
        errs.push(format!("a census ran unasked: {l}"));
    }
    println!("  many-vms: {GUESTS} x {GUEST_MIB} MiB on {}: {:.0} s", m.name, t0.elapsed().as_secs_f64());
    if !errs.is_empty() {
        let shown: Vec<String> = errs.iter().take(10).cloned().collect();
        bail!(
            "{} of {GUESTS} VMs wrong:\n{}log: {}\nlast {TAIL_LINES} lines:\n{}",
            errs.len(),
            indent(&shown.join("\n")),
            out.log,
            out.tail
        );
    }
    Ok(())
}
