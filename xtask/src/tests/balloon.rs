//! Integration test of issue 13 (item 5, test 7c): virtio-balloon with
//! free page reporting. A guest allocates and frees 200 MiB of anonymous
//! memory; the stock Debian `virtio_balloon` reports the free blocks, and
//! the monitor unmaps them and gives their frames back. The guest then
//! writes and reads data again through fresh frames.

use super::smp::{spawn, with_log};
use super::{field, GUEST_TIMEOUT};
use crate::boot::Env;
use crate::exec;
use crate::util::stat;
use anyhow::Result;

/// MiB the guest allocates (one `dd` buffer) and frees.
const FILL_MIB: u64 = 200;
/// Frames (4 KiB) the monitor must have been given back: 150 MiB (Linux
/// reports free blocks of 2 and 4 MiB, in batches of 32, 2 s after they
/// formed, a share of each free list per pass).
const MIN_GIVEN_BACK: u64 = 150 << 8;
/// Seconds the guest waits after freeing the fill.
const WAIT_S: u32 = 15;

/// `balloon-report`: VM `b` (384 MiB, `balloon = true`) has the balloon
/// driver bound, allocates, touches and frees [`FILL_MIB`] MiB (`dd`'s
/// buffer), waits for the reports, then writes 32 MiB of random data and
/// reads it back with the md5 it was written with. Required: the driver
/// bound; the monitor's statistics show free page reports and at least
/// [`MIN_GIVEN_BACK`] frames given back, and the VM ends holding fewer
/// frames than the fill alone took; the md5s agree; every node reports
/// `all frames returned`.
pub fn free_page_reporting(env: &mut Env) -> Result<()> {
    let script = format!(
        "echo driver=$(ls /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null | grep -c '^virtio')
echo filled=$(dd if=/dev/zero of=/dev/null bs={FILL_MIB}M count=1 2>&1 | grep -c '^1+0 records out')
sleep {WAIT_S}
dd if=/dev/urandom bs=1M count=32 2>/dev/null | tee /tmp/again | md5sum | cut -d' ' -f1 > /tmp/sum
echo sums=$(cat /tmp/sum),$(md5sum < /tmp/again | cut -d' ' -f1)"
    );
    let text =
        format!("[[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"384M\"\nballoon = true\nexec = '''\n{script}\n'''\n");
    let (s, names) = spawn(env, "balloon-report", &text, false)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = exec::run_multi(s, &names, GUEST_TIMEOUT)?;
    out.check()?;
    let mut errs = Vec::new();
    let lines = &out.vm("b").output;
    let get = |key: &str| field(lines, key).ok();
    if get("driver=") != Some("1") {
        errs.push(format!("the guest's virtio_balloon driver is not bound: driver={:?}", get("driver=")));
    }
    if get("filled=") != Some("1") {
        errs.push(format!("dd with a {FILL_MIB} MiB buffer failed: filled={:?}", get("filled=")));
    }
    match get("sums=").and_then(|s| s.split_once(',')) {
        Some((a, b)) if a.len() == 32 && a == b => {}
        other => errs.push(format!("md5 written, md5 read back: {other:?}")),
    }
    let line = out.lines.iter().find(|l| l.contains("stats: vm b: balloon:")).cloned().unwrap_or_default();
    let (reports, back) =
        (stat(&line, "free page reports").unwrap_or(0), stat(&line, "frames given back").unwrap_or(0));
    if reports == 0 || back < MIN_GIVEN_BACK {
        errs.push(format!("{reports} reports, {back} frames given back (want >= {MIN_GIVEN_BACK}): `{line}`"));
    }
    let exits = out.lines.iter().find(|l| l.contains("stats: vm b: exits")).cloned().unwrap_or_default();
    let held: u64 = exits
        .split("frames per node [")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(|r| r.split(',').filter_map(|n| n.trim().parse::<u64>().ok()).sum())
        .unwrap_or(u64::MAX);
    if held >= FILL_MIB << 8 {
        errs.push(format!("vm b ends holding {held} frames, more than its {FILL_MIB} MiB fill: `{exits}`"));
    }
    if !out.lines.iter().any(|l| l.contains("all frames returned")) {
        errs.push("no `all frames returned` after the VM ended".into());
    }
    if errs.is_empty() {
        println!(
            "  balloon-report: {reports} free page reports, {back} frames ({} MiB) given back; {held} frames held at the end",
            back >> 8
        );
    }
    with_log(&out, errs)
}

/// Types `Ctrl-] b 0 5` when the guest asks for inflation and `Ctrl-] b 0 0`
/// when it asks for deflation.
struct Operator {
    typed: u8,
}

impl exec::Observer for Operator {
    fn line(&mut self, line: &str, s: &mut crate::qemu::Session) {
        let keys: &[u8] = match (self.typed, line) {
            (0, l) if l.contains("BALLOON-INFLATE-NOW") => b"\x1db05",
            (1, l) if l.contains("BALLOON-DEFLATE-NOW") => b"\x1db00",
            _ => return,
        };
        if s.send(keys).is_ok() {
            self.typed += 1;
        }
    }
}

/// kB the guest's MemTotal must lose with half of its 256 MiB in the
/// balloon (128 MiB = 131072 kB), and may stay short of its start after
/// deflation.
const MIN_INFLATED_KB: u64 = 100_000;
const MAX_SHORT_KB: u64 = 8_000;

/// `balloon-target`: VM `b` (256 MiB, `balloon = true`); xtask types
/// `Ctrl-] b 0 5` (target: half its memory), then `Ctrl-] b 0 0`. The
/// guest's `virtio_balloon` inflates (MemTotal drops by at least
/// [`MIN_INFLATED_KB`]) and deflates (MemTotal back within
/// [`MAX_SHORT_KB`]); the monitor's statistics count the inflated and
/// deflated pages, and the driver's `actual` is 0 again at the end; every
/// node reports `all frames returned`.
pub fn target(env: &mut Env) -> Result<()> {
    let script = "memtotal() { grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2; }
t0=$(memtotal)
echo memtotal0=$t0
echo BALLOON-INFLATE-NOW
i=0; t=$t0
while [ $i -lt 90 ] && [ $t -gt $((t0 - 120000)) ]; do sleep 1; t=$(memtotal); i=$((i+1)); done
echo memtotal1=$t
echo BALLOON-DEFLATE-NOW
i=0
while [ $i -lt 90 ] && [ $t -lt $((t0 - 4000)) ]; do sleep 1; t=$(memtotal); i=$((i+1)); done
echo memtotal2=$t";
    let text =
        format!("[[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"256M\"\nballoon = true\nexec = '''\n{script}\n'''\n");
    let (s, names) = spawn(env, "balloon-target", &text, true)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = exec::run_multi_with(s, &names, GUEST_TIMEOUT, &mut Operator { typed: 0 })?;
    out.check()?;
    let mut errs = Vec::new();
    let lines = &out.vm("b").output;
    let kb = |key: &str| field(lines, key).ok().and_then(|v| v.parse::<u64>().ok());
    match (kb("memtotal0="), kb("memtotal1="), kb("memtotal2=")) {
        (Some(t0), Some(t1), Some(t2)) if t1 + MIN_INFLATED_KB <= t0 && t2 + MAX_SHORT_KB >= t0 => {}
        other => errs.push(format!(
            "MemTotal kB (start, inflated, deflated) {other:?}: want a drop of >= {MIN_INFLATED_KB} and back within {MAX_SHORT_KB}"
        )),
    }
    let line = out.lines.iter().find(|l| l.contains("stats: vm b: balloon:")).cloned().unwrap_or_default();
    let (inflated, deflated) = (stat(&line, "inflated").unwrap_or(0), stat(&line, "deflated").unwrap_or(0));
    if inflated < MIN_INFLATED_KB / 4 || deflated < MIN_INFLATED_KB / 4 || stat(&line, "actual") != Some(0) {
        errs.push(format!("balloon statistics: inflated {inflated}, deflated {deflated}: `{line}`"));
    }
    if !out.lines.iter().any(|l| l.contains("vm b: balloon target 32768 pages (128 MiB)")) {
        errs.push("no `disco: vm b: balloon target 32768 pages (128 MiB)` after Ctrl-] b 0 5".into());
    }
    if !out.lines.iter().any(|l| l.contains("all frames returned")) {
        errs.push("no `all frames returned` after the VM ended".into());
    }
    if errs.is_empty() {
        println!("  balloon-target: {inflated} pages inflated, {deflated} deflated");
    }
    with_log(&out, errs)
}
