//! Integration tests of dynamic page placement (issue 11): a VM's memory
//! follows its vCPUs when the VM moves to another node (`Ctrl-] m`),
//! driven by software sampling or by the ccNUMA plugin's miss counters,
//! and the guest's data stays intact.

use super::{field, host_md5, GUEST_TIMEOUT};
use crate::boot::Env;
use crate::follow::{fail, follow, spawn};
use crate::machine;
use anyhow::Result;
use std::time::Duration;

/// The guest writes `seq 1 N` into tmpfs (first touch on its home node 1),
/// says so, and after the move reads the file again and again.
const SEQ_TO: u64 = 2_000_000;

fn workload() -> String {
    format!(
        "mkdir -p /tmp\nseq 1 {SEQ_TO} > /tmp/data\necho TOUCHED\nsleep 2\ni=0\nwhile [ $i -lt 15 ]; do md5sum /tmp/data > /tmp/sum; i=$((i+1)); done\necho \"md5=$(cut -d' ' -f1 /tmp/sum)\"\necho \"bytes=$(wc -c < /tmp/data)\""
    )
}

/// Counters for [`migrate_after_move`]: software sampling, or the plugin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Counters {
    Sampling,
    Plugin,
}

/// VM `m` (1 vCPU, home node 1) fills a file, is moved to node 0 with
/// `Ctrl-] m 0 0`, then only reads it there. The placement loop must find
/// the file's pages and migrate them: at the end the VM has at least 90% of
/// the file's pages on node 0, and the md5 is right. (b) with software
/// sampling; (a) under `--numa-sim`, with the plugin's miss counters (the
/// monitor must say it uses them).
pub fn migrate_after_move(env: &mut Env, counters: Counters) -> Result<()> {
    let tag = match counters {
        Counters::Sampling => "migrate-after-move",
        Counters::Plugin => "migrate-numa-sim",
    };
    let text = format!(
        "placement = \"migrate\"\nplacement_params = \"batch=1024\"\n\n[[vm]]\nname = \"m\"\nvcpus = 1\nmemory = \"256M\"\nhome_node = 1\nexec = '''\n{}\n'''\n",
        workload()
    );
    let (mut s, _sim) =
        spawn(env, "numa2", &format!("test-{tag}"), &text, (counters == Counters::Plugin).then_some(""))?;
    let mut moved = false;
    let lines = follow(&mut s, GUEST_TIMEOUT, None, |s, line| {
        if !moved && line.is_some_and(|l| l.starts_with("[m] TOUCHED")) {
            // Let the console line settle, then move VM 0 to node 0.
            std::thread::sleep(Duration::from_millis(200));
            s.send(b"\x1dm00")?;
            moved = true;
        }
        Ok(())
    })?;
    let guest: Vec<String> =
        lines.iter().filter_map(|l| l.strip_prefix("[m] ")).map(|l| l.trim().to_string()).collect();
    let expected = host_md5(&seq_bytes(SEQ_TO))?;
    let md5 = field(&guest, "md5=").map_err(|e| fail(&s, format!("{e}")))?;
    if md5 != expected {
        return Err(fail(&s, format!("md5 of the file is {md5}, the host computes {expected}")));
    }
    let source = match counters {
        Counters::Sampling => "counters from software sampling",
        Counters::Plugin => "counters from the ccNUMA plugin",
    };
    if !lines.iter().any(|l| l.contains(source)) {
        return Err(fail(&s, format!("the monitor did not say `placement: migrate, {source}`")));
    }
    if !lines.iter().any(|l| l.contains("vm m moves to node 0")) {
        return Err(fail(&s, "the monitor never confirmed the move (Ctrl-] m 0 0)".into()));
    }
    let bytes: u64 = field(&guest, "bytes=")?.parse()?;
    let pages = bytes.div_ceil(4096);
    let frames =
        last_frames(&lines, "m").ok_or_else(|| fail(&s, "no `stats: vm m: ... frames per node` line".into()))?;
    let placement = lines.iter().rev().find(|l| l.contains("stats: vm m: placement:")).cloned().unwrap_or_default();
    println!("  {tag}: file {pages} pages; frames per node at the end {frames:?}; {placement}");
    if (frames[0] as u64) * 10 < pages * 9 {
        return Err(fail(
            &s,
            format!(
                "node 0 holds {} frames, less than 90% of the file's {pages} pages: the memory did not follow",
                frames[0]
            ),
        ));
    }
    Ok(())
}

/// Ranges of numbers each worker process of [`migrate_under_load`] writes.
const LOAD: [(u64, u64); 3] = [(1, 120_000), (120_001, 260_000), (260_001, 380_000)];
/// Rounds each worker writes and checks its file.
const ROUNDS: u32 = 12;
/// How often the test moves the VM to the other node.
const MOVE_EVERY: Duration = Duration::from_secs(3);

/// (c) Pages migrate continuously under load: VM `l` (2 vCPUs, 3 worker
/// processes) rewrites and checksums a file per worker round after round,
/// while the test moves the VM between nodes 0 and 1 every few seconds, so
/// the placement loop migrates pages being written by all vCPUs. Every
/// round's checksum must match the host's, pages must have moved, and when
/// the VM has ended every node must have all its frames back.
pub fn migrate_under_load(env: &mut Env) -> Result<()> {
    let mut script = String::from("mkdir -p /tmp\n");
    for (i, (lo, hi)) in LOAD.iter().enumerate() {
        script += &format!(
            "(r=0; while [ $r -lt {ROUNDS} ]; do seq {lo} {hi} > /tmp/d{i}; md5sum /tmp/d{i} >> /tmp/s{i}; r=$((r+1)); done) &\n"
        );
    }
    script += "wait\n";
    for i in 0..LOAD.len() {
        script += &format!("echo \"w{i}=$(cut -d' ' -f1 /tmp/s{i} | sort | uniq -c | tr -s ' ' | tr '\\n' ';')\"\n");
    }
    let text = format!(
        "placement = \"migrate\"\n\n[[vm]]\nname = \"l\"\nvcpus = 2\nmemory = \"256M\"\nhome_node = 1\nexec = '''\n{script}'''\n"
    );
    let (mut s, _) = spawn(env, "numa2", "test-migrate-under-load", &text, None)?;
    let mut moves = 0u32;
    let lines = follow(&mut s, GUEST_TIMEOUT, Some(MOVE_EVERY), |s, line| {
        if line.is_none() {
            moves += 1;
            s.send(if moves % 2 == 1 { b"\x1dm00" } else { b"\x1dm01" })?;
        }
        Ok(())
    })?;
    let guest: Vec<String> =
        lines.iter().filter_map(|l| l.strip_prefix("[l] ")).map(|l| l.trim().to_string()).collect();
    let mut errs = Vec::new();
    for (i, &(lo, hi)) in LOAD.iter().enumerate() {
        let want = host_md5((lo..=hi).map(|n| format!("{n}\n")).collect::<String>().as_bytes())?;
        // `uniq -c` of the rounds' sums: one line, all rounds the host's sum.
        let got = field(&guest, &format!("w{i}=")).unwrap_or("?");
        if got != format!("{ROUNDS} {want};") && got != format!(" {ROUNDS} {want};") {
            errs.push(format!("worker {i} (seq {lo} {hi}): rounds' md5 counts `{got}`, want {ROUNDS} x {want}"));
        }
    }
    let confirmed = lines.iter().filter(|l| l.contains("vm l moves to node")).count();
    if confirmed < 2 {
        errs.push(format!("the monitor confirmed {confirmed} moves, the test needs at least 2 while the VM works"));
    }
    let placement = lines.iter().rev().find(|l| l.contains("stats: vm l: placement:")).cloned().unwrap_or_default();
    let migrated: u64 = placement
        .split("migrated ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    if migrated < 100 {
        errs.push(format!("only {migrated} pages migrated while the VM moved {confirmed} times: `{placement}`"));
    }
    let m = machine::load("numa2")?;
    for n in 0..m.nodes {
        let want = format!("node {n}: all frames returned");
        if !lines.iter().any(|l| l.contains("disco:") && l.contains(&want)) {
            errs.push(format!("no `{want}` line from the monitor after the VM ended"));
        }
    }
    println!("  migrate-under-load: {confirmed} moves; {placement}");
    if !errs.is_empty() {
        return Err(fail(&s, format!("{}\nguest output:\n{}", errs.join("\n"), guest.join("\n"))));
    }
    Ok(())
}

/// `seq 1 n` output, as the guest writes it.
pub(super) fn seq_bytes(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(i.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The last `frames per node [a, b, ..]` the monitor printed for `vm`.
fn last_frames(lines: &[String], vm: &str) -> Option<Vec<usize>> {
    let line = lines.iter().rev().find(|l| l.contains(&format!("stats: vm {vm}: exits")))?;
    let list = line.split("frames per node [").nth(1)?.split(']').next()?;
    list.split(',').map(|n| n.trim().parse().ok()).collect()
}
