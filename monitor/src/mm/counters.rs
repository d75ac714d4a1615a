//! FLASH-style per-page miss counters (../shared/DESIGN.md, "The ccNUMA instrument"):
//! when QEMU runs with the cost-model plugin, it keeps per (page, node) miss
//! counts in a region at the end of RAM (layout: numa::counters). The
//! monitor keeps that region out of its allocators and reads it like the
//! FLASH hardware counters Disco's placement policy used.

use crate::arch::mem;
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};
use numa::{
    counters::{off, CounterLayout, Header, HeaderError, PageCounts, HEADER_SIZE},
    MemRange, Topology,
};
use spin::Once;

static LAYOUT: Once<CounterLayout> = Once::new();
/// `queue_dropped` when the queue was last drained.
static DROPPED_SEEN: AtomicU64 = AtomicU64::new(0);

/// Looks for the plugin's counter region; returns the range to reserve.
/// Runs before the allocators exist (the region must never be handed out).
pub fn detect(topology: &Topology) -> Option<MemRange> {
    let ranges = topology.nodes().iter().flat_map(|n| n.memory.iter());
    let start = ranges.clone().map(|r| r.start).min()?;
    let end = ranges.map(|r| r.end).max()?;
    let layout = CounterLayout::for_machine(start, end, topology.node_count() as u32)?;
    // SAFETY: the header lies in RAM (for_machine keeps it inside [start,
    // end)); nothing else uses it yet.
    let header = Header::decode(unsafe { mem::slice(layout.region_base, Header::ENCODED_LEN) })?;
    match layout.check(&header) {
        Ok(()) => log::info!(
            "per-page miss counters found at {:#x} ({} MiB): kept out of the allocators",
            layout.region_base,
            layout.region_size >> 20
        ),
        Err(HeaderError::NoMagic) => return None,
        Err(error) => {
            log::warn!("miss-counter region at {:#x} does not match ({error:?}); reserved anyway", layout.region_base)
        }
    }
    LAYOUT.call_once(|| layout);
    Some(MemRange { start: layout.region_base, end: layout.region_end() })
}

/// Physical address of the plugin's counter region, if it is there.
pub fn region_base() -> Option<u64> {
    LAYOUT.get().map(|l| l.region_base)
}

/// Is the plugin's counter region there?
pub fn present() -> bool {
    LAYOUT.get().is_some()
}

/// The hottest pages with their per-node miss counts, as lines for the
/// console (the caller prints them: `mm` does not call up into `io`).
pub fn report(top: usize) -> String {
    let Some(layout) = LAYOUT.get() else {
        return "no per-page miss counters (run with `cargo xtask run --numa-sim`)".into();
    };
    let mut hottest = [PageCounts::default(); 16];
    let top = top.min(hottest.len());
    let filled =
        layout.hottest(|i| mem::read_u32_shared(layout.region_base + HEADER_SIZE + 4 * i), &mut hottest[..top]);
    let mut text = String::from("hottest pages by misses (per requesting node):");
    for page in &hottest[..filled] {
        let counts = &page.counts[..layout.node_count as usize];
        text.push_str(&format!("\n  page {:#012x}  total {:>10}  per node {:?}", page.pfn << 12, page.total, counts));
    }
    text
}

/// Misses per requesting node on machine page `pfn` since it was last
/// cleared, into `out` (one per node); false without the plugin or for a
/// page it does not count.
pub fn page_counts(pfn: u64, out: &mut [u32]) -> bool {
    let Some(layout) = LAYOUT.get() else { return false };
    for (node, count) in out.iter_mut().enumerate().take(layout.node_count as usize) {
        match layout.counter_phys(pfn, node as u32) {
            Some(pa) => *count = mem::read_u32_shared(pa),
            None => return false,
        }
    }
    true
}

/// Clears the counters of page `pfn` (the reset protocol allows a reader
/// to store 0 into any counter; a racing increment is kept or lost whole).
pub fn clear_page(pfn: u64) {
    let Some(layout) = LAYOUT.get() else { return };
    for node in 0..layout.node_count {
        if let Some(pa) = layout.counter_phys(pfn, node) {
            mem::write_u32_shared(pa, 0);
        }
    }
}

/// Asks the plugin to queue pages whose remote misses reach `trigger` (the
/// FLASH threshold interrupt, polled: `numa::counters`, "Hot-page queue").
pub fn set_trigger(trigger: u32) {
    let Some(layout) = LAYOUT.get() else { return };
    mem::write_u32_shared(layout.region_base + off::TRIGGER as u64, trigger);
}

/// Takes every machine page the plugin queued as hot since the last call
/// into `out`. Returns false if the queue overflowed meanwhile: then some
/// hot pages are missing and the caller reads all counters instead.
pub fn take_hot(out: &mut Vec<u64>) -> bool {
    let Some(layout) = LAYOUT.get() else { return true };
    let field = |o: usize| layout.region_base + o as u64;
    let head = mem::read_u64_shared(field(off::QUEUE_HEAD));
    let mut tail = mem::read_u64_shared(field(off::QUEUE_TAIL));
    while tail < head {
        let entry = layout.region_base + layout.queue_entry_offset(tail);
        let value = mem::read_u64_shared(entry);
        if value == 0 {
            break; // claimed, not yet written: the next call takes it
        }
        out.push(value - 1);
        mem::write_u64_shared(entry, 0);
        tail += 1;
    }
    mem::write_u64_shared(field(off::QUEUE_TAIL), tail);
    let dropped = mem::read_u64_shared(field(off::QUEUE_DROPPED));
    DROPPED_SEEN.swap(dropped, Ordering::Relaxed) == dropped
}

/// Resets every counter (the whole-array generation of the reset
/// protocol; the plugin serves it within a few thousand misses).
pub fn reset_all() {
    let Some(layout) = LAYOUT.get() else { return };
    let request = layout.region_base + off::RESET_REQUEST as u64;
    mem::write_u32_shared(request, mem::read_u32_shared(request).wrapping_add(1));
}
