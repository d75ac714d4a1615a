//! The isolation sweep (issue 16, item 6): a guest reads, through
//! /dev/mem, every 2 MiB of the guest-physical space the monitor does not
//! give it, up to the IPA limit and sparsely beyond, while another VM
//! holds a marker in its memory. Every read must end in an external abort
//! (SIGBUS in the guest), none may see the marker, and the monitor must
//! log a handful of lines for it, not one per probe.

use super::shared_pages::stat;
use super::smp::{spawn, with_log};
use crate::boot::Env;
use crate::exec;
use anyhow::Result;
use std::time::Duration;

/// The monitor's stage-2 input size (`VTCR_EL2.T0SZ` = 25).
const IPA_BITS: u32 = 39;
/// The emulated devices' windows, which the sweep skips.
const DEVICES: &str = crate::boot::GUEST_DEVICE_WINDOWS;
/// Memory the victim fills with the marker, and each VM's size.
const FILL_MIB: u64 = 96;
const VM_MIB: u64 = 256;
/// The victim checks its marker until the attacker's datagram reaches
/// this UDP port (over the run's switch), or at most this long.
const DONE_PORT: u16 = 7000;
const FILL_SECONDS: u64 = 800;
/// Compiling, sweeping ~270k addresses and the victim's wait, on 2 cores.
const TIMEOUT: Duration = Duration::from_secs(900);

/// Probes the sweep must at least make: every 2 MiB below the IPA limit
/// but the VM's RAM and the device windows.
fn min_probes() -> u64 {
    (1u64 << IPA_BITS) / (2 << 20) - VM_MIB / 2 - 16
}

/// `isolation-sweep`: VMs `attacker` and `victim` (1 vCPU, copy-on-write
/// Debian roots, a network between them). The victim fills [`FILL_MIB`]
/// MiB with a marker word and re-checks it until the attacker, having run
/// `ipa-probe sweep` (bench/workloads/ipa-probe.c), sends it a datagram. Required: at least
/// [`min_probes`] probes, every one aborted (none read, none unmappable),
/// no marker seen; the monitor counted exactly as many external aborts
/// for the attacker and logged at most 24 of them; the victim's marker
/// stayed intact and it was still checking when the sweep ended; both
/// ended with status 0 and every node got its frames back.
pub fn isolation_sweep(env: &mut Env) -> Result<()> {
    crate::rootfs::ensure()?;
    let build = "cc -O2 -o /tmp/ipa-probe /opt/disco/workloads/ipa-probe.c || exit 1";
    let vm = |name: &str, ip: &str, cmd: String| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"{VM_MIB}M\"\nshare_group = \"none\"\nexec = '''\n{build}\n{cmd}\n'''\n\n\
             [[vm.disk]]\nimage = \"{}\"\nmode = \"cow\"\nmount = \"/\"\n\n[[vm.net]]\nip = \"{ip}/24\"\n\n",
            crate::rootfs::IMAGE
        )
    };
    // bash's /dev/udp sends the "done" datagram (the root has no netcat).
    let done = format!("bash -c 'echo done > /dev/udp/10.0.0.1/{DONE_PORT}'");
    let text = vm("victim", "10.0.0.1", format!("/tmp/ipa-probe fill {FILL_MIB} {DONE_PORT} {FILL_SECONDS}"))
        + &vm("attacker", "10.0.0.2", format!("/tmp/ipa-probe sweep {IPA_BITS} {DEVICES}\n{done}"));
    let names = ["victim", "attacker"];
    let (s, _) = spawn(env, "isolation-sweep", &text, false)?;
    let out = exec::run_multi(s, &names, TIMEOUT)?;
    out.check()?;
    let mut errs = Vec::new();
    let probe = out.vm("attacker").output.iter().find(|l| l.starts_with("PROBE ")).cloned().unwrap_or_default();
    let get = |key: &str| stat(&probe, key).unwrap_or(u64::MAX);
    let (probed, aborted) = (get("probed="), get("aborted="));
    if probe.is_empty() {
        errs.push("the attacker printed no `PROBE ...` summary".into());
    } else {
        if probed < min_probes() {
            errs.push(format!("{probed} addresses probed, at least {} expected", min_probes()));
        }
        for (key, want) in [("aborted=", probed), ("read=", 0), ("marker=", 0), ("unmappable=", 0)] {
            if get(key) != want {
                errs.push(format!("attacker: `{key}` {}, expected {want} ({probe})", get(key)));
            }
        }
    }
    let injected = out
        .lines
        .iter()
        .find(|l| l.contains("stats: vm attacker: injected external aborts"))
        .and_then(|l| stat(l, "external aborts"));
    if injected != Some(aborted) {
        errs.push(format!("the monitor counted {injected:?} external aborts for the attacker, the guest {aborted}"));
    }
    let logged = out.lines.iter().filter(|l| l.contains("attacker: read of guest-physical")).count();
    if logged > 24 {
        errs.push(format!("{logged} lines logged for the attacker's aborts: the log must be rate-limited"));
    }
    let fill = out.vm("victim").output.iter().find(|l| l.starts_with("FILL ")).cloned().unwrap_or_default();
    if !fill.contains("intact=yes") || !fill.contains("stopped=datagram") {
        errs.push(format!("victim: `{fill}`, expected its marker intact until the attacker's datagram"));
    }
    // The victim was still running (checking its marker) when the sweep ended.
    let at = |needle: &str| out.lines.iter().position(|l| l.contains(needle));
    match (at("[attacker] PROBE "), at("[victim] FILL ")) {
        (Some(p), Some(f)) if p < f => {}
        (p, f) => errs.push(format!("the victim ended before the sweep did (lines {p:?}, {f:?})")),
    }
    if out.lines.iter().filter(|l| l.contains("all frames returned")).count() < 2 {
        errs.push("not every node reports `all frames returned`".into());
    }
    with_log(&out, errs)
}
