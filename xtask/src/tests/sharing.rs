//! Integration test of shared boot images (issue 14, item 3): VMs that
//! boot the same kernel and initramfs map one copy of their pages,
//! copy-on-write, and only the pages a guest writes become its own.

use super::shared_pages::stat;
use super::{field, host_md5};
use crate::follow::{fail, follow, spawn};
use crate::tests::placement::seq_bytes;
use anyhow::Result;

/// Numbers `seq` prints for the md5 each VM computes.
const SEQ_TO: u64 = 100_000;
/// Kernel and initrd pages each VM must still share after boot and a
/// computation. The Debian kernel Image has about 8000 pages; each VM
/// loads its own copy, the kernel patches it at boot (ftrace, alternatives)
/// as every VM's does, and the monitor merges the stable pages
/// (`mm::merge`, once the guest runs user space): a run ends with about 2800 shared
/// (the rest is written again after merging: freed init memory and
/// initrd pages reused, data).
const MIN_SHARED: u64 = 2000;

/// Seconds each VM stays up after its md5: merging starts once the guest
/// runs user space; the VMs take turns, one a round of half a second,
/// each merging at most 2048 pages a turn.
const SETTLE_S: u32 = 15;

/// `boot-image-shared`: VMs `a` (node 0) and `b` (node 1) of the run's
/// trust group, `c` in group `x` and `d` with `share_group = "none"`, 2
/// vCPUs each, boot the default kernel and initramfs, compute an md5 and
/// stay up [`SETTLE_S`] s.
/// Required: every md5 equals the host's; kernel and initrd are
/// registered once per group (two groups), and `d` maps none of them; each VM's statistics show at least
/// [`MIN_SHARED`] boot-image pages shared (merged back from their own
/// copies); every node
/// reports `all frames
/// returned` after the run, the shared frames included.
pub fn boot_image_shared(env: &mut crate::boot::Env) -> Result<()> {
    let vm = |name: &str, node: u32| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 2\nmemory = \"128M\"\nhome_node = {node}\n\
             exec = '''\necho \"md5=$(seq 1 {SEQ_TO} | md5sum | cut -d' ' -f1)\"\nsleep {SETTLE_S}\n'''\n"
        )
    };
    // c has a trust group of its own, d shares with nobody.
    let text = format!(
        "{}\n{}\n{}share_group = \"x\"\n\n{}share_group = \"none\"\n",
        vm("a", 0) + "share_group = \"run\"\n",
        vm("b", 1) + "share_group = \"run\"\n",
        vm("c", 0),
        vm("d", 1)
    );
    let (mut s, _) = spawn(env, "numa2", "test-boot-image-shared", &text, None)?;
    let lines = follow(&mut s, super::GUEST_TIMEOUT, None, |_, _| Ok(()))?;
    let want = host_md5(&seq_bytes(SEQ_TO))?;
    let mut report = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let prefix = format!("[{name}] ");
        let out: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix(&prefix)).map(|l| l.trim().into()).collect();
        let md5 = field(&out, "md5=").map_err(|e| fail(&s, format!("vm {name}: {e}")))?;
        if md5 != want {
            return Err(fail(&s, format!("vm {name}: md5 {md5}, the host computes {want}")));
        }
        let key = format!("stats: vm {name}: replication:");
        let Some(line) = lines.iter().find(|l| l.contains(&key)) else {
            return Err(fail(&s, format!("no `{key}` statistics")));
        };
        let shared = stat(line, "boot image pages shared").unwrap_or(0);
        let copied = stat(line, "copied on write").unwrap_or(0);
        let merged = stat(line, "merged back").unwrap_or(0);
        if name == "d" {
            if shared + copied + merged != 0 {
                return Err(fail(&s, format!("vm d (share_group \"none\") shares boot-image pages: {line}")));
            }
            continue;
        }
        if shared < MIN_SHARED || merged == 0 {
            return Err(fail(
                &s,
                format!("vm {name}: {shared} pages shared, {copied} copied, {merged} merged: {line}"),
            ));
        }
        report.push(format!("{name}: {shared} shared, {copied} copied, {merged} merged back"));
    }
    // Kernel and initrd registered once for the run's group (a, b), once for x (c).
    let loads: Vec<&String> = lines.iter().filter(|l| l.contains("registered for share group")).collect();
    let group = |g: &str| loads.iter().filter(|l| l.contains(g)).count();
    if loads.len() != 4 || group("\"run\"") != 2 || group("\"x\"") != 2 {
        return Err(fail(&s, format!("boot images loaded: {loads:?}; want kernel and initrd once per group")));
    }
    if lines.iter().filter(|l| l.contains("all frames returned")).count() < 2 {
        return Err(fail(&s, "not every node reports `all frames returned`".into()));
    }
    println!("  boot-image-shared: {}", report.join("; "));
    Ok(())
}
