//! Integration test of issue 13 (7b): virtio-net between VMs through the
//! monitor's switch. VMs `a` and `b` send each other pseudo-random data
//! over TCP with busybox `nc` at the same time, and each side's md5 of
//! what it received equals the sender's. VM `c` reaches both with its own
//! MAC, then takes `a`'s MAC: its frames reach nobody (neither learns the
//! address c used meanwhile) and the monitor counts and logs them as
//! spoofed; with its own MAC back it reaches both again.

use super::smp::{spawn, with_log};
use super::{field, GUEST_TIMEOUT};
use crate::boot::Env;
use crate::exec;
use crate::manifest::mac_text;
use anyhow::Result;

/// 64 KiB blocks each of `a` and `b` sends.
const BLOCKS: u32 = 48;

/// The data exchange of `me` (listening on `port`) with `peer` (on
/// `peer_port`): send its own data, receive the peer's, both at once; then
/// wait for `c`'s end-of-test message, so `c` always has someone to reach.
/// A listening `nc` reads its stdin from a FIFO opened read-write, which
/// never ends: busybox `nc` half-closes on end of stdin and quits at the
/// socket's end, which only the sender causes.
fn exchange(port: u16, peer: &str, peer_port: u16) -> String {
    format!(
        "dd if=/dev/urandom of=/tmp/out bs=64k count={BLOCKS} 2>/dev/null
echo sent=$(md5sum < /tmp/out | cut -d' ' -f1)
mkfifo /tmp/hold
timeout 150 nc -l -p {port} <>/tmp/hold > /tmp/in &
rx=$!
timeout 170 nc -l -p 5009 <>/tmp/hold > /tmp/done &
done_rx=$!
i=0
until nc {peer} {peer_port} < /tmp/out; do i=$((i+1)); [ $i -ge 90 ] && break; sleep 1; done
echo send-tries=$i
wait $rx
echo got=$(md5sum < /tmp/in | cut -d' ' -f1)
wait $done_rx
echo c-says=$(cat /tmp/done)
echo neigh98=$(ip neigh show 10.0.0.98)
echo neigh99=$(ip neigh show 10.0.0.99)"
    )
}

/// `c`'s pings: with its own MAC (retried until the others are up), with
/// `forged` from the extra address 10.0.0.99, and with its own MAC again
/// from 10.0.0.98; then it tells `a` and `b` it is done. A ping's ARP
/// request names its source address, and a receiver that gets it learns
/// that address (`ip neigh`): a witness that does not depend on replies
/// (which, to the forged MAC, would go to `a` anyway).
fn spoofer(forged: &str) -> String {
    format!(
        "reach() {{ ping -c 2 -W 2 -I $2 $1 >/dev/null 2>&1 && echo answered || echo lost; }}
i=0
until ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1 && ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1; do
  i=$((i+1)); [ $i -ge 90 ] && break; sleep 1
done
own=$(cat /sys/class/net/eth0/address)
ip link set dev eth0 down; ip link set dev eth0 address {forged}; ip link set dev eth0 up
ip addr add 10.0.0.99/24 dev eth0
echo forged-mac=$(cat /sys/class/net/eth0/address)
echo forged-a=$(reach 10.0.0.1 10.0.0.99)
echo forged-b=$(reach 10.0.0.2 10.0.0.99)
ip addr del 10.0.0.99/24 dev eth0
ip link set dev eth0 down; ip link set dev eth0 address $own; ip link set dev eth0 up
ip addr add 10.0.0.98/24 dev eth0
echo own-a=$(reach 10.0.0.1 10.0.0.98)
echo own-b=$(reach 10.0.0.2 10.0.0.98)
for peer in 10.0.0.1 10.0.0.2; do
  j=0; until echo done | nc $peer 5009; do j=$((j+1)); [ $j -ge 20 ] && break; sleep 1; done
done"
    )
}

pub fn inter_vm(env: &mut Env) -> Result<()> {
    let forged = mac_text(&crate::manifest::default_mac(0));
    let own_c = mac_text(&crate::manifest::default_mac(2));
    let vm = |name: &str, ip: &str, exec: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"192M\"\nexec = '''\n{exec}\n'''\n\n\
             [[vm.net]]\nip = \"{ip}/24\"\n\n"
        )
    };
    let text = format!(
        "{}{}{}",
        vm("a", "10.0.0.1", &exchange(5000, "10.0.0.2", 5001)),
        vm("b", "10.0.0.2", &exchange(5001, "10.0.0.1", 5000)),
        vm("c", "10.0.0.3", &spoofer(&forged)),
    );
    let (s, names) = spawn(env, "net-inter-vm", &text, false)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = exec::run_multi(s, &names, GUEST_TIMEOUT.min(std::time::Duration::from_secs(240)))?;
    out.check()?;
    let mut errs = Vec::new();
    let get = |vm: &str, key: &str| field(&out.vm(vm).output, key).unwrap_or("(missing)").to_string();
    for (me, peer) in [("a", "b"), ("b", "a")] {
        let (sent, got) = (get(peer, "sent="), get(me, "got="));
        if sent.len() != 32 || sent != got {
            errs.push(format!("vm {me} received md5 {got}, vm {peer} sent md5 {sent}"));
        }
        if get(me, "c-says=") != "done" {
            errs.push(format!("vm {me} did not hear from c at the end"));
        }
        // c's own MAC reached it; the forged one did not.
        if !get(me, "neigh98=").contains(&own_c) {
            errs.push(format!("vm {me}: 10.0.0.98 (c, own MAC) is `{}`, expected lladdr {own_c}", get(me, "neigh98=")));
        }
        if !get(me, "neigh99=").is_empty() {
            errs.push(format!("vm {me} learned 10.0.0.99 from c's forged frames: `{}`", get(me, "neigh99=")));
        }
    }
    let want = [
        ("forged-mac=", forged.as_str()),
        ("forged-a=", "lost"),
        ("forged-b=", "lost"),
        ("own-a=", "answered"),
        ("own-b=", "answered"),
    ];
    for (key, value) in want {
        if get("c", key) != value {
            errs.push(format!("vm c: `{key}` is `{}`, expected `{value}`", get("c", key)));
        }
    }
    // The monitor's statistics at each VM's end: only c spoofed.
    let spoofed = |vm: &str| -> Option<u64> {
        let prefix = format!("stats: vm {vm}: net ");
        let line = out.lines.iter().rev().find(|l| l.contains(&prefix))?;
        line.split("spoofed ").nth(1)?.split(',').next()?.trim().parse().ok()
    };
    match (spoofed("a"), spoofed("b"), spoofed("c")) {
        (Some(0), Some(0), Some(n)) if n > 0 => {}
        other => errs.push(format!("spoofed counts (a, b, c) from the monitor's stats lines: {other:?}")),
    }
    let warned = format!("vm c: net: dropped a frame from source MAC {forged}");
    if !out.lines.iter().any(|l| l.contains(&warned)) {
        errs.push(format!("no monitor line `{warned} ...`"));
    }
    with_log(&out, errs)
}
