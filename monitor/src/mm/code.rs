//! The monitor's own code replicated on every node. Disco copied its 72 KB
//! of code to every node so that no CPU ever fetched a monitor instruction
//! from remote memory; the monitor runs on every exit of every guest, so its
//! code is among the hottest read-only data of the machine.
//!
//! What is replicated: `[__code_start, __code_end)` of the link layout
//! (`monitor/link.ld`): the Image header, text and read-only data, in whole
//! pages. Data, bss, stacks and heap stay one shared copy. The node whose
//! memory holds the loaded image uses the image itself; every other node
//! with CPUs gets a copy in its own frames (taken from its memmap as
//! `Use::Monitor`, so they show as the monitor's and are never handed out)
//! and its own EL2 root (`arch::el2_node`) that maps the copy at the same
//! virtual addresses. The image's node gets a root of its own too, mapping
//! the image's code pages read-only, so no CPU can write code and make the
//! copies differ. A memory-only node has no CPU to fetch from it and gets
//! nothing. A node whose free memory is too small for the copy keeps the
//! shared image (logged).
//!
//! Frames rather than a carve-out before the memmap: the copy's frames are
//! then accounted like every other monitor frame (`Use::Monitor`), each
//! node keeps all its memory under one allocator, and the copy needs no
//! contiguous run (it is mapped page by page).

use crate::arch::{self, el2_node, mem, mmu};
use crate::mm::{counters, frames};
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};
use numa::{
    code_table::{self, CodeRange},
    memmap::{Frame, Use},
    MemRange, NodeId, Topology,
};
use spin::Once;

extern "C" {
    static __code_start: u8;
    static __code_end: u8;
}

/// A copy (code and tables) may take at most this fraction (1/n) of a
/// node's free memory; a smaller node keeps the shared image.
const MAX_SHARE_OF_FREE: usize = 8;
/// Entries per translation table (4 KiB granule).
const TABLE_ENTRIES: usize = 512;

/// Each CPU's EL2 root; 0: the boot root.
static CPU_ROOT: [AtomicU64; arch::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::MAX_CPUS];
/// The copies' and their tables' frames, held for the whole run.
static HELD: Once<Vec<Frame>> = Once::new();

/// The replicated range: text and read-only data, page aligned.
pub fn code_range() -> MemRange {
    MemRange { start: &raw const __code_start as u64, end: &raw const __code_end as u64 }
}

/// The EL2 root CPU `cpu` translates through.
pub fn root_for(cpu: usize) -> u64 {
    match CPU_ROOT.get(cpu).map(|r| r.load(Ordering::Acquire)) {
        Some(root) if root != 0 => root,
        _ => mmu::boot_root(),
    }
}

/// Makes the calling CPU translate through its node's root. Every CPU
/// calls it once: the boot CPU at the end of [`replicate`], a secondary
/// right after turning its MMU on with the boot root. (Not before: with
/// the MMU off its loads are Device accesses that may miss what the boot
/// CPU left in its cache; with caches on they are coherent.)
pub fn enter_node_root(cpu: usize) {
    let root = root_for(cpu);
    if root != mmu::boot_root() {
        mmu::switch_to(root);
    }
}

/// Copies the code to every node with CPUs that does not hold the image,
/// builds every such node's root (and the image node's) and publishes where the code is for the ccNUMA
/// plugin. Runs on the boot CPU after `frames::init`, before the
/// secondaries start (so no CPU can have fetched from a copy yet).
pub fn replicate(topology: &Topology) {
    let code = code_range();
    let pages = ((code.end - code.start) / el2_node::PAGE) as usize;
    let home = topology.node_of_addr(code.start);
    let here = topology.cpu_by_mpidr(arch::cpu::mpidr()).map_or(0, |c| c.node);
    let mut held = Vec::new();
    let mut ranges = Vec::new();
    let mut on = Vec::new();
    if let Some(h) = home {
        ranges.push(CodeRange { start: code.start, end: code.end, node: h as u64 });
    }
    for node in topology.nodes().iter().filter(|n| !n.cpus.is_empty()) {
        let in_place = Some(node.id) == home;
        match node_root(node.id, code.start, pages, in_place, here) {
            Ok((root, copies, frames)) => {
                for &cpu in node.cpus.iter().filter(|&&c| c < arch::MAX_CPUS) {
                    CPU_ROOT[cpu].store(root, Ordering::Release);
                }
                if !in_place {
                    ranges.extend(code_table::runs(&copies, el2_node::PAGE, node.id as u64));
                }
                held.extend(frames);
                on.push(node.id);
            }
            Err(why) if in_place => {
                log::warn!("node {}: no root of its own ({why}); its CPUs map the image writable", node.id);
                on.push(node.id);
            }
            Err(why) => {
                log::warn!("node {}: monitor code not replicated ({why}); its CPUs use the shared image", node.id)
            }
        }
    }
    log::info!("monitor code replicated on nodes {on:?} ({} KiB each)", (code.end - code.start) >> 10);
    publish(&ranges);
    HELD.call_once(|| held);
    enter_node_root(arch::cpu::index());
}

/// One node's root: its physical address, the frame behind each code page,
/// and every frame taken (code and tables). `in_place`: the node holds the
/// image, whose pages the root maps (read-only, like every copy) instead
/// of copies. On failure every frame goes back.
fn node_root(
    node: NodeId,
    src: u64,
    pages: usize,
    in_place: bool,
    here: NodeId,
) -> Result<(u64, Vec<u64>, Vec<Frame>), String> {
    // One level-1 table, a level-2 table per GiB and a level-3 table per
    // 2 MiB the code touches (an unaligned range touches one more of each).
    let tables = 1 + (pages.div_ceil(TABLE_ENTRIES * TABLE_ENTRIES) + 1) + (pages.div_ceil(TABLE_ENTRIES) + 1);
    let free = frames::memmap().free_frames(node);
    if (if in_place { 0 } else { pages } + tables) * MAX_SHARE_OF_FREE > free {
        return Err(format!("{} KiB free", (free as u64 * el2_node::PAGE) >> 10));
    }
    let mut taken: Vec<Frame> = Vec::with_capacity(pages + tables);
    let mut copies = Vec::with_capacity(pages);
    let give_back = |taken: Vec<Frame>, why: &str| {
        taken.into_iter().for_each(|f| frames::free(f, here));
        Err(String::from(why))
    };
    for i in 0..pages {
        let src_page = src + i as u64 * el2_node::PAGE;
        if in_place {
            copies.push(src_page);
            continue;
        }
        let Some(frame) = frames::alloc_on(node, Use::Monitor) else {
            return give_back(taken, "out of frames");
        };
        // SAFETY: a frame just allocated for the monitor; the source is the
        // monitor's own read-only code, identity mapped.
        unsafe { mem::copy_frame(frame.pa(), src_page) };
        mem::sync_instructions(frame.pa(), el2_node::PAGE);
        copies.push(frame.pa());
        taken.push(frame);
    }
    let mut table_frames = Vec::new();
    let root = el2_node::build(src, &copies, || {
        let frame = frames::alloc_on(node, Use::Monitor)?;
        mem::zero_frame(frame.pa());
        let pa = frame.pa();
        table_frames.push(frame);
        Some(pa)
    });
    taken.extend(table_frames);
    match root {
        Some(root) => Ok((root, copies, taken)),
        None => give_back(taken, "no frame for its tables"),
    }
}

/// Writes the code table into the plugin's counter region, if it is there.
fn publish(ranges: &[CodeRange]) {
    let Some(base) = counters::region_base() else { return };
    let written = code_table::publish(ranges, |offset, word| mem::write_u64_shared(base + offset as u64, word));
    if written < ranges.len() {
        log::warn!("monitor code table: {} of {} ranges published", written, ranges.len());
    }
}
