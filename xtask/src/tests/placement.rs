//! Integration tests of dynamic page placement (issue 11): a VM's memory
//! follows its vCPUs when the VM moves to another node (`Ctrl-] m`),
//! driven by software sampling, and the guest's data stays intact.

use super::smp::{drain, spawn};
use super::{field, host_md5, GUEST_TIMEOUT};
use crate::boot::Env;
use crate::exec::TAIL_LINES;
use crate::qemu::{Event, Session};
use anyhow::{anyhow, Result};
use std::time::Duration;

/// The guest writes `seq 1 N` into tmpfs (first touch on its home node 1),
/// says so, and after the move reads the file again and again.
const SEQ_TO: u64 = 2_000_000;

fn workload() -> String {
    format!(
        "mkdir -p /tmp\nseq 1 {SEQ_TO} > /tmp/data\necho TOUCHED\nsleep 2\ni=0\nwhile [ $i -lt 15 ]; do md5sum /tmp/data > /tmp/sum; i=$((i+1)); done\necho \"md5=$(cut -d' ' -f1 /tmp/sum)\"\necho \"bytes=$(wc -c < /tmp/data)\""
    )
}

/// (b) Without the plugin: VM `m` (1 vCPU, home node 1) fills a file, is
/// moved to node 0 with `Ctrl-] m 0 0`, then only reads it there. Software
/// sampling must find the file's pages and migrate them: at the end the VM
/// has at least 90% of the file's pages on node 0, and the md5 is right.
pub fn migrate_after_move(env: &mut Env) -> Result<()> {
    let text = format!(
        "placement = \"migrate\"\nplacement_params = \"batch=1024\"\n\n[[vm]]\nname = \"m\"\nvcpus = 1\nmemory = \"256M\"\nhome_node = 1\nexec = '''\n{}\n'''\n",
        workload()
    );
    let (mut s, _) = spawn(env, "migrate-after-move", &text, true)?;
    let fail = |s: &Session, why: String| {
        anyhow!("{why}\nlog: {}\nlast {TAIL_LINES} lines:\n{}", crate::util::rel(&s.log_path), s.tail(TAIL_LINES))
    };
    let deadline = s.started + GUEST_TIMEOUT;
    let mut lines = Vec::new();
    let mut moved = false;
    loop {
        match s.next(deadline) {
            Event::Line(l) => {
                if !moved && l.starts_with("[m] TOUCHED") {
                    // Let the console line settle, then move VM 0 to node 0.
                    lines.extend(drain(&mut s, Duration::from_millis(200)));
                    s.send(b"\x1dm00")?;
                    moved = true;
                }
                if l.contains("MONITOR PANIC") || l.contains("ended: crashed") {
                    return Err(fail(&s, format!("the guest or the monitor failed: {l}")));
                }
                let done = l.contains("all VMs ended");
                lines.push(l);
                if done {
                    break;
                }
            }
            Event::Exit(_) => break,
            Event::Timeout => return Err(fail(&s, "the VM did not finish in time".into())),
        }
    }
    lines.extend(drain(&mut s, Duration::from_millis(500)));
    s.kill();
    let guest: Vec<String> =
        lines.iter().filter_map(|l| l.strip_prefix("[m] ")).map(|l| l.trim().to_string()).collect();
    let expected = host_md5(&seq_bytes(SEQ_TO))?;
    let md5 = field(&guest, "md5=").map_err(|e| fail(&s, format!("{e}")))?;
    if md5 != expected {
        return Err(fail(&s, format!("md5 of the file is {md5}, the host computes {expected}")));
    }
    if !lines.iter().any(|l| l.contains("vm m moves to node 0")) {
        return Err(fail(&s, "the monitor never confirmed the move (Ctrl-] m 0 0)".into()));
    }
    let bytes: u64 = field(&guest, "bytes=")?.parse()?;
    let pages = bytes.div_ceil(4096);
    let frames = last_frames(&lines, "m").ok_or_else(|| fail(&s, "no `stats: vm m: ... frames per node` line".into()))?;
    let placement = lines.iter().rev().find(|l| l.contains("stats: vm m: placement:")).cloned().unwrap_or_default();
    println!("  migrate-after-move: file {pages} pages; frames per node at the end {frames:?}; {placement}");
    if (frames[0] as u64) * 10 < pages * 9 {
        return Err(fail(
            &s,
            format!("node 0 holds {} frames, less than 90% of the file's {pages} pages: the memory did not follow", frames[0]),
        ));
    }
    Ok(())
}

/// `seq 1 n` output, as the guest writes it.
fn seq_bytes(n: u64) -> Vec<u8> {
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

