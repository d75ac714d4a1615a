//! `cargo xtask bench boot`: what the monitor costs a booting guest.
//!
//! Boots the same kernel and initramfs natively and under the monitor,
//! alternating so drift in host load hits both alike, and times QEMU start
//! to the guest's `DISCO-READY` line. The native kernel is limited to the
//! VM's CPUs and memory (`maxcpus=`, `mem=`) so both boot the same guest.

use crate::boot::{Boot, Env, VmShape, VM_NAME};
use crate::exec;
use crate::machine;
use crate::qemu::{self, Session};
use anyhow::{bail, Result};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);

/// Median of a non-empty list of seconds.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

pub fn boot(machine_name: &str, runs: usize) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let m = machine::load(machine_name)?;
    let mut env = Env::prepare()?;
    let vm = VmShape::default();
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut broken: [Option<String>; 2] = [None, None];
    for run in 1..=runs {
        for (k, native) in [(0, true), (1, false)] {
            if broken[k].is_some() {
                continue;
            }
            let kind = if native { "native" } else { "monitor" };
            let b = Boot {
                machine: m.clone(),
                native,
                native_like_vm: true,
                exec: Some("true".into()),
                vm: vm.clone(),
                tag: format!("bench-boot-{kind}"),
                placement: Default::default(),
            };
            let r = b
                .command(&mut env, false)
                .and_then(|c| Session::spawn(c, &b.tag, false))
                .and_then(|s| exec::run(s, VM_NAME, TIMEOUT));
            match r.map(|o| o.ready_after) {
                Ok(Some(t)) => {
                    eprintln!("bench: {kind} run {run}/{runs}: {:.2} s", t.as_secs_f64());
                    times[k].push(t.as_secs_f64());
                }
                Ok(None) => broken[k] = Some("DISCO-READY never seen".into()),
                Err(e) => {
                    eprintln!("bench: {kind} run {run} failed; skipping the remaining {kind} runs:\n{e:#}");
                    broken[k] = Some(format!("{e}").lines().next().unwrap_or_default().to_string());
                }
            }
        }
    }
    println!(
        "boot to DISCO-READY on {} ({} nodes x {} CPUs), guest {} vCPU / {} MiB",
        m.name, m.nodes, m.cpus_per_node, vm.vcpus, vm.memory_mib
    );
    let mut med = [None, None];
    for (k, kind) in ["native", "monitor"].iter().enumerate() {
        if times[k].is_empty() {
            println!("{kind:8} failed: {}", broken[k].as_deref().unwrap_or("no runs"));
            continue;
        }
        let md = median(&times[k]);
        med[k] = Some(md);
        let all: Vec<String> = times[k].iter().map(|t| format!("{t:.2}")).collect();
        println!("{kind:8} median {md:.2} s  (runs: {})", all.join(" "));
    }
    if let [Some(n), Some(v)] = med {
        println!("ratio    monitor/native {:.2}", v / n);
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let method = format!(
        "method: wall time from spawning QEMU to the guest console line DISCO-READY (printed by the \
         initramfs init once proc/sys/dev are mounted), for the same Debian kernel {} and initramfs \
         booted natively (kernel limited with maxcpus={} mem={}M) and as VM {VM_NAME} under the monitor; \
         {runs} runs of each, alternating native/monitor, median reported. QEMU: {} (TCG), machine {}; \
         host: {cpus} CPUs; the guest runs `true` and powers off after each timed boot.",
        env.guest.release,
        vm.vcpus,
        vm.memory_mib,
        qemu::version(),
        m.name
    );
    println!("{}", wrap(&method, 100));
    if broken.iter().any(Option::is_some) {
        bail!("some boots failed (see above)");
    }
    Ok(())
}

/// Greedy word wrap, so the method paragraph reads as one in a terminal.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for w in text.split_whitespace() {
        if line > 0 && line + 1 + w.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(w);
        line += w.len();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn wraps() {
        assert_eq!(super::wrap("aa bb cc", 5), "aa bb\ncc");
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
