//! One campaign run: the manifest (the attacker first, so it is VM 0 for
//! the console's `Ctrl-] r 0`), the watchdog, and what the console said.
//!
//! - `attacker` (2 vCPUs: a spin on one is caught by the RCU stall or the
//!   soft-lockup detector on the other, set to panic): `restart = "always"`, `max_restarts`
//!   = the plan's boots, so that boot `boots + 1`, which only tells the
//!   victims it is done, is the last. Its initrd carries the tools and the
//!   plan (`build.rs`).
//! - `compute` and `memory`: compute known results (the md5 of `seq 1
//!   20000`; a tmpfs file of `seq 1 300000` written and read back) round
//!   after round until the attacker's "done" arrives over the switch, and
//!   report `VICTIM NAME rounds=N errors=E`.

use super::plan::Kind;
use crate::exec::{MultiOutcome, Observer};
use crate::qemu::Session;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The attacker's console silent this long: it hangs (its interrupts
/// masked or its GIC disabled), and the campaign resets it, as an
/// operator would.
pub const WATCHDOG: Duration = Duration::from_secs(90);
/// Accesses per `wild`/`mmio` injection, calls or writes per module one.
const ACCESSES: u32 = 256;
const CALLS: u32 = 64;
const DONE_PORT: u16 = 5009;
pub const SEQ_N: u32 = 20_000;
/// The attacker's device registers (within [`crate::boot::GUEST_DEVICE_WINDOWS`]),
/// as the module's `win=LO,HI,...`: GICD, the redistributors of its 2
/// vCPUs, the PL011's registers (DR and RSR, FR, ILPR to DMACR); the script
/// adds its virtio-mmio slot. The `wild` kind covers the rest (the unused
/// slots and redistributors, the PL011's reserved offsets: external aborts).
const ATTACKER_WINDOWS: &str =
    "0x8000000,0x800ffff,0x80a0000,0x80dffff,0x9000000,0x9000007,0x9000018,0x900001b,0x9000020,0x900004b";
pub const FILL_N: u32 = 300_000;

fn victim(name: &str, ip: &str, mib: u32, body: &str) -> String {
    format!(
        "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"{mib}M\"\nexec = '''
mkdir -p /v && mount -t tmpfs -o size=32M v /v
mkfifo /tmp/hold
nc -l -p {DONE_PORT} <>/tmp/hold > /tmp/done &
rounds=0; errors=0
until [ -s /tmp/done ]; do
{body}
rounds=$((rounds + 1))
done
echo \"VICTIM {name} rounds=$rounds errors=$errors\"
'''\n\n[[vm.net]]\nip = \"{ip}/24\"\n\n"
    )
}

/// The attacker's script: boot `b` injects line `b` of `/faults/plan`,
/// which is boot `b + offset` of the whole campaign's plan (its seeds).
fn attacker(boots: usize, offset: usize, seed: u64) -> String {
    let windows = ATTACKER_WINDOWS;
    format!(
        "boot=$(grep -o 'disco.boot=[0-9]*' /proc/cmdline | cut -d= -f2)
echo 1 > /proc/sys/kernel/panic_on_rcu_stall
echo 1 > /proc/sys/kernel/softlockup_panic
echo 3 > /sys/module/rcupdate/parameters/rcu_cpu_stall_timeout
echo 0 > /proc/sys/kernel/panic_on_oops
vbase=$(grep -m1 virtio_mmio /proc/iomem | tr -d ' ' | cut -d- -f1)
win={windows}
[ -n \"$vbase\" ] && win=$win,0x$vbase,$((0x$vbase + 0x1ff))
echo \"FAULTS-READY boot=$boot\"
if [ \"$boot\" -gt {boots} ]; then
  for ip in 10.0.0.1 10.0.0.2; do
    j=0; until echo done | nc $ip {DONE_PORT}; do j=$((j+1)); [ $j -ge 90 ] && break; sleep 1; done
  done
  echo FAULTS-DONE
  exit 0
fi
n=0
for kind in $(sed -n \"${{boot}}p\" /faults/plan); do
  n=$((n + 1)); seed=$(( {seed} * 1000003 + (boot + {offset}) * 16 + n ))
  echo \"FAULT boot=$boot n=$n kind=$kind seed=$seed\"
  case $kind in
  panic) echo c > /proc/sysrq-trigger ;;
  reset) reboot -f ;;
  poweroff) poweroff -f ;;
  oops) insmod /faults/disco_inject.ko kind=oops; reboot -f ;;
  cpu-off)
    for c in /sys/devices/system/cpu/cpu[1-9]*/online; do echo 0 > $c; done
    insmod /faults/disco_inject.ko kind=cpu_off ;;
  spin) insmod /faults/disco_inject.ko kind=spin ;;
  wild) /faults/fault-user wild $seed {ACCESSES} ;;
  *)
    insmod /faults/disco_inject.ko kind=$kind seed=$seed count={CALLS} virtio=0x${{vbase:-0}} win=$win 2>/tmp/err
    [ $? -gt 128 ] && {{ echo \"FAULT-OOPSED boot=$boot n=$n\"; reboot -f; }}
    grep -v 'temporarily unavailable' /tmp/err ;;
  esac
done
echo \"FAULTS-SURVIVED boot=$boot\"
reboot -f"
    )
}

/// The run's manifest text.
pub fn manifest_text(
    boots: usize,
    offset: usize,
    seed: u64,
    initrd: &std::path::Path,
    seq_md5: &str,
    fill_md5: &str,
) -> String {
    let mut text = format!(
        "[[vm]]\nname = \"attacker\"\nvcpus = 2\nmemory = \"256M\"\ninitrd = \"{}\"\nrestart = \"always\"\n\
         max_restarts = {boots}\nexec = '''\n{}\n'''\n\n[[vm.net]]\nip = \"10.0.0.9/24\"\n\n",
        initrd.display(),
        attacker(boots, offset, seed)
    );
    let compute = format!("[ \"$(seq 1 {SEQ_N} | md5sum | cut -d' ' -f1)\" = {seq_md5} ] || errors=$((errors + 1))");
    let memory = format!(
        "seq 1 {FILL_N} > /v/fill
[ \"$(md5sum < /v/fill | cut -d' ' -f1)\" = {fill_md5} ] || errors=$((errors + 1))
rm /v/fill"
    );
    text += &victim("compute", "10.0.0.1", 128, &compute);
    text += &victim("memory", "10.0.0.2", 192, &memory);
    text
}

pub const VMS: [&str; 3] = ["attacker", "compute", "memory"];

/// Follows the attacker: injections, its ends and next boots, and the
/// watchdog.
pub struct Watch {
    pub injected: BTreeMap<Kind, u32>,
    /// From the monitor's line that the attacker ended (or was reset) to
    /// its next `FAULTS-READY`.
    pub recoveries: Vec<Duration>,
    pub watchdog_resets: u32,
    pub survived: u32,
    pub oopsed: u32,
    /// How the attacker's boots ended, by the boot's last injection
    /// (`None`: the script's own reset after a boot that survived, or the
    /// last boot's power-off).
    pub ends: BTreeMap<(Option<Kind>, String), u32>,
    pub done: bool,
    last: Instant,
    ended_at: Option<Instant>,
    /// The current boot's last injection.
    kind: Option<Kind>,
    /// A watchdog reset was typed and has not yet shown.
    reset_typed: bool,
}

/// How a boot ended, from the monitor's line about it.
fn end_of(rest: &str) -> Option<String> {
    if rest.starts_with("reset") {
        return Some("reset".into());
    }
    if rest.starts_with("ended: powered off") {
        return Some("powered off".into());
    }
    let reason = rest.strip_prefix("ended: crashed: ")?;
    Some(match reason.split_once("not syncing: ") {
        Some((_, why)) => format!("kernel panic ({})", why.trim()),
        None => format!("crashed ({})", reason.split(" (").next().unwrap_or(reason)),
    })
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            injected: BTreeMap::new(),
            recoveries: Vec::new(),
            watchdog_resets: 0,
            survived: 0,
            oopsed: 0,
            ends: BTreeMap::new(),
            done: false,
            last: Instant::now(),
            ended_at: None,
            kind: None,
            reset_typed: false,
        }
    }

    /// One console line, at `now`.
    pub fn feed(&mut self, line: &str, now: Instant) {
        if let Some(rest) = monitor_line(line, "vm attacker ") {
            self.last = now;
            if let Some(mut end) = end_of(rest) {
                if end == "reset" && std::mem::take(&mut self.reset_typed) {
                    end = "watchdog reset".into();
                }
                *self.ends.entry((self.kind.take(), end)).or_default() += 1;
                self.ended_at.get_or_insert(now);
            }
            return;
        }
        let Some(text) = line.strip_prefix("[attacker] ").or_else(|| line.strip_prefix("[attacker]+ ")) else {
            return;
        };
        // Kernel messages are no progress: a hung guest repeats its
        // soft-lockup warning forever.
        if !text.starts_with("[ ") {
            self.last = now;
        }
        if text.starts_with("FAULTS-READY") {
            if let Some(t) = self.ended_at.take() {
                self.recoveries.push(now - t);
            }
        } else if let Some(kind) = text.strip_prefix("FAULT boot=").and_then(|r| r.split(" kind=").nth(1)) {
            if let Some(k) = kind.split(' ').next().and_then(Kind::from_name) {
                *self.injected.entry(k).or_default() += 1;
                self.kind = Some(k);
            }
        } else if text.starts_with("FAULTS-SURVIVED") {
            self.survived += 1;
            self.kind = None;
        } else if text.starts_with("FAULT-OOPSED") {
            self.oopsed += 1;
        } else if text.starts_with("FAULTS-DONE") {
            self.done = true;
        }
    }

    pub fn total(&self) -> u32 {
        self.injected.values().sum()
    }

    /// How the boots whose last injection was `kind` ended.
    pub fn ends_of(&self, kind: Option<Kind>) -> Vec<(String, u32)> {
        self.ends.iter().filter(|((k, _), _)| *k == kind).map(|((_, e), n)| (e.clone(), *n)).collect()
    }
}

/// How a boot that ends with `kind` must end: what the covering plan of
/// `cargo xtask test` checks.
pub fn expected_ends(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Panic => &["kernel panic (sysrq triggered crash)"],
        Kind::Oops | Kind::Reset => &["reset"],
        Kind::PowerOff => &["powered off"],
        Kind::CpuOff => &["crashed (every vCPU called PSCI CPU_OFF)"],
        Kind::Spin => &["kernel panic (RCU Stall)", "kernel panic (softlockup: hung tasks)", "watchdog reset"],
        _ => &[],
    }
}

/// The text after `disco: [time cpuN] ` of a monitor line starting `what`.
fn monitor_line<'a>(line: &'a str, what: &str) -> Option<&'a str> {
    let rest = &line[line.find("disco: [")?..];
    let rest = &rest[rest.find("] ")? + 2..];
    rest.strip_prefix("error: ").unwrap_or(rest).strip_prefix(what)
}

impl Observer for Watch {
    fn line(&mut self, line: &str, s: &mut Session) {
        self.feed(line, Instant::now());
        // A hung guest may still print (its soft-lockup warnings).
        self.quiet(s);
    }

    fn quiet(&mut self, s: &mut Session) {
        if !self.done && self.last.elapsed() > WATCHDOG {
            // Ctrl-] r 0: the monitor resets VM 0, the attacker.
            if s.send(b"\x1dr0").is_ok() {
                self.watchdog_resets += 1;
                self.reset_typed = true;
            }
            self.last = Instant::now();
        }
    }
}

/// `VICTIM NAME rounds=N errors=E` of a victim, as (rounds, errors).
pub fn victim_result(out: &MultiOutcome, name: &str) -> Option<(u64, u64)> {
    let line = out.vm(name).output.iter().find(|l| l.starts_with("VICTIM "))?;
    Some((crate::util::stat(line, "rounds=")?, crate::util::stat(line, "errors=")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_counts_injections_ends_and_recoveries() {
        let mut w = Watch::new();
        let t = Instant::now();
        let s = Duration::from_secs(1);
        for (i, l) in [
            "[attacker] FAULTS-READY boot=1",
            "[attacker] FAULT boot=1 n=1 kind=hvc seed=5",
            "[compute] FAULT boot=1 n=1 kind=panic seed=5",
            "[attacker] FAULT boot=1 n=2 kind=panic seed=6",
            "disco: [   10.000 cpu1] error: vm attacker ended: crashed: guest kernel panic: not syncing: Kernel panic",
            "disco: [   10.100 cpu1] vm attacker restarting (restart = always, boot 2)",
            "[attacker] FAULTS-READY boot=2",
            "[attacker] FAULT boot=2 n=1 kind=reset seed=9",
            "disco: [   20.000 cpu0] vm attacker reset: booting it again",
            "[attacker] FAULTS-READY boot=3",
            "[attacker] FAULTS-DONE",
        ]
        .iter()
        .enumerate()
        {
            w.feed(l, t + s * i as u32);
        }
        assert_eq!(w.total(), 3);
        assert_eq!(w.injected[&Kind::Panic], 1);
        assert_eq!(w.recoveries, vec![2 * s, s]);
        assert_eq!(w.ends_of(Some(Kind::Reset)), vec![("reset".to_string(), 1)]);
        assert_eq!(w.ends_of(Some(Kind::Panic)), vec![("kernel panic (Kernel panic)".to_string(), 1)]);
        assert!(w.done);
    }

    #[test]
    fn the_manifest_parses_and_the_attacker_is_vm_0() {
        let initrd = std::env::temp_dir().join(format!("faults-test-{}.cpio", std::process::id()));
        std::fs::write(&initrd, b"070701").unwrap();
        let text = manifest_text(7, 0, 1, &initrd, "x", "y");
        let m =
            crate::manifest::parse("f.toml", &text, &crate::machine::load("numa2").unwrap(), std::path::Path::new("/"))
                .unwrap();
        let _ = std::fs::remove_file(&initrd);
        assert_eq!(m.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), VMS);
        assert_eq!(m.vms[0].max_restarts, Some(7));
        assert!(text.contains("-gt 7 ]"));
    }
}
