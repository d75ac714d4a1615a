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
