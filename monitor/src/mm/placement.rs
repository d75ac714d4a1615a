//! The placement loop (Disco's dynamic page migration; Verghese et al.,
//! ASPLOS'96): every interval, per VM, read each page's accesses per node
//! from the counter source, let `numa::policy` decide, move the pages it
//! picks in one batch, and start the next interval.
//!
//! Counter sources, behind this one loop:
//! - the ccNUMA plugin's FLASH-style per-page miss counters
//!   (`mm::counters`), when QEMU runs with it: exact per-node misses. As
//!   FLASH interrupted Disco when a page's count passed the threshold, the
//!   plugin queues the pages whose remote misses reach the trigger, so an
//!   interval costs in proportion to the hot pages, not to the VM's size
//!   (if the queue overflowed, the interval reads every page's counters);
//!   the counters are reset after each interval;
//! - software sampling everywhere else: each interval a slice of the VM's
//!   pages is unmapped (`VmSpace::sample`), and the first touch of each
//!   tells which node uses it, as Linux's NUMA hinting faults do. A page
//!   then has at most one touch per interval, so the trigger is 1.
//!
//! Intervals run in every mode: they also merge VMs' stable copies of
//! boot-image pages back into shared frames (`mm::merge`, when it is the
//! VM's turn).
//!
//! One CPU at a time runs an interval (whichever claims it first; the
//! scheduler arms CPU 0's timer for it), for all VMs.

use super::{counters, frames, replica::AfterMove, space::Touches, VmSpace};
use crate::arch::stage2::PAGE_SIZE;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use numa::memmap::Use;
use numa::{
    counters::MAX_COUNTED_NODES,
    pmap::PageState,
    policy::{self, Action, Params, Share},
    NodeId,
};
use spin::{Mutex, Once};

/// Placement mode, machine-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pages stay where they were first touched (the baseline).
    FirstTouch,
    /// The placement loop migrates hot pages to the node that uses them.
    Migrate,
    /// Migration, and hot pages that several nodes read and nobody writes
    /// get a read-only copy on each reading node (`mm::replica`). Needs
    /// the plugin's per-node miss counts: sampling sees one toucher per
    /// page and interval, so it never finds a page shared.
    Replicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Plugin,
    Sampling,
}

struct Config {
    mode: Mode,
    source: Source,
    params: Params,
    /// Interval length in counter ticks.
    ticks: u64,
}

/// Pages unmapped per VM per interval for sampling: 8 MiB, a few thousand
/// faults per interval at most.
const SAMPLE_PAGES: usize = 2048;

static CONFIG: Once<Config> = Once::new();
/// When the next interval starts (counter ticks; u64::MAX: never).
static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
static INTERVAL: AtomicU32 = AtomicU32::new(0);

/// Sets the mode and policy for the run; `ticks_per_ms` converts the
/// interval. Prints which counter source the loop uses.
///
/// The default mode is `replicate` (Disco's default: migration and
/// replication) where per-page miss counters exist (the ccNUMA plugin):
/// there `cargo xtask bench placement` measured migration 2.7x faster
/// than first-touch on a workload whose data was left remote and no
/// slower on one that cannot gain, and replication on top of it 1.6x
/// faster than migration alone on a read-shared scene (9485 against 14934
/// ms simulated), 18% faster on fig8's raytrace and 4% slower on its
/// engineering (2026-12-03, single runs with about 25% run-to-run noise).
/// A VM with vCPUs on one node has one root and is never replicated, so
/// for it the mode is migration. Elsewhere it is `first-touch`: plain QEMU
/// has no NUMA cost for migration to save, only sampling faults and copies
/// to pay, so there `migrate` is opt-in.
pub fn init(mode: Option<Mode>, params: Params, ticks_per_ms: u64, now: u64) {
    let source = if counters::present() { Source::Plugin } else { Source::Sampling };
    let ticks = ticks_per_ms * params.interval_ms.max(1) as u64;
    let chosen = match (mode, source) {
        (Some(_), _) => "",
        (None, Source::Plugin) => " (the default with miss counters)",
        (None, Source::Sampling) => " (the default without miss counters)",
    };
    let mode = mode.unwrap_or(if source == Source::Plugin { Mode::Replicate } else { Mode::FirstTouch });
    match mode {
        Mode::FirstTouch => log::info!("placement: first-touch{chosen} (pages never move)"),
        Mode::Migrate | Mode::Replicate => {
            log::info!(
                "placement: {}{chosen}, counters from {}; {params}",
                if mode == Mode::Migrate { "migrate" } else { "replicate (migration + replication)" },
                match source {
                    Source::Plugin => "the ccNUMA plugin's per-page miss counters",
                    Source::Sampling => "software sampling (stage-2 hinting faults)",
                }
            );
            if source == Source::Plugin {
                counters::set_trigger(params.trigger);
            }
        }
    }
    // Intervals run in every mode: boot-image pages are merged in each.
    NEXT.store(now + ticks, Ordering::Release);
    CONFIG.call_once(|| Config { mode, source, params, ticks });
}

/// When the next interval is due, if the loop runs at all.
pub fn deadline() -> Option<u64> {
    Some(NEXT.load(Ordering::Acquire)).filter(|&d| d != u64::MAX)
}

/// Claims the interval due at `now`, if any: exactly one caller gets its
/// number, and the next deadline is set.
pub fn claim(now: u64) -> Option<u32> {
    let config = CONFIG.get()?;
    let due = NEXT.load(Ordering::Acquire);
    if now < due {
        return None;
    }
    NEXT.compare_exchange(due, now + config.ticks, Ordering::AcqRel, Ordering::Relaxed).ok()?;
    Some(INTERVAL.fetch_add(1, Ordering::Relaxed) + 1)
}

/// The plugin's hot pages of one interval, read once for all VMs.
pub enum Hot {
    /// Queued hot pages: (VM id, guest page, machine page), by VM.
    Queued(Vec<(u16, u64, u64)>),
    /// Read every mapped page's counters (the queue overflowed, or the
    /// source is sampling).
    Scan,
}

/// Every this many intervals the plugin's counters of every page are read,
/// so the statistics' local/remote shares sample all pages (the queue
/// holds remote hot pages only) and anything the queue missed is seen.
const SCAN_EVERY: u32 = 10;

/// Starts interval `interval`: takes the plugin's queued hot pages and
/// finds whose guest pages they are (the memmap records it per frame).
pub fn begin(interval: u32) -> Hot {
    if CONFIG.get().is_none_or(|c| c.source != Source::Plugin || c.mode == Mode::FirstTouch) {
        return Hot::Scan;
    }
    let mut pfns = Vec::new();
    if !counters::take_hot(&mut pfns) || interval.is_multiple_of(SCAN_EVERY) {
        return Hot::Scan;
    }
    let map = frames::memmap();
    let mut pages: Vec<(u16, u64, u64)> = pfns
        .into_iter()
        .filter_map(|pfn| match map.owner(pfn * PAGE_SIZE)? {
            (Use::Guest { vm, gpfn }, _) => Some((vm, gpfn, pfn)),
            _ => None,
        })
        .collect();
    pages.sort_unstable();
    pages.dedup();
    Hot::Queued(pages)
}

/// Ends an interval: the plugin's counters start again from zero.
pub fn end() {
    if CONFIG.get().is_some_and(|c| c.source == Source::Plugin && c.mode != Mode::FirstTouch) {
        counters::reset_all();
    }
}

/// One interval for one VM, run on a CPU of node `here`, after [`begin`],
/// with a boot-image merge round first when `merge` (`mm::merge::due`).
/// Returns the pages moved.
pub fn run(space: &Mutex<VmSpace>, hot: &Hot, interval: u32, here: NodeId, merge: bool) -> usize {
    let Some(config) = CONFIG.get() else { return 0 };
    if config.mode == Mode::FirstTouch && !merge {
        return 0;
    }
    let mut space = space.lock();
    if merge {
        space.merge_boot_pages(here);
    }
    // In every mode: merge watches end in writes too.
    space.forget_writes();
    if config.mode == Mode::FirstTouch {
        return 0;
    }
    let nodes = frames::memmap().node_count().min(MAX_COUNTED_NODES);
    let mut moves: Vec<(u64, NodeId, AfterMove)> = Vec::new();
    let mut freeze: Vec<u64> = Vec::new();
    let replicating = config.mode == Mode::Replicate;
    let (mut watch, mut copies): (Vec<u64>, Vec<(u64, u64)>) = (Vec::new(), Vec::new());
    // Queued pages are remote by construction: they would skew the shares.
    let account = matches!(hot, Hot::Scan);
    let mut consider = |space: &mut VmSpace, gpfn: u64, counts: &[u32], params: &Params| {
        let Some(info) = space.page(gpfn) else { return };
        for (node, &count) in counts.iter().enumerate().filter(|_| account) {
            let (local, remote) = (&mut space.stats.local, &mut space.stats.remote);
            let bucket = if node == info.node { local } else { remote };
            if let Some(total) = bucket.get_mut(node) {
                *total += count as u64;
            }
        }
        // How a move leaves the page: when replicating, watched; and when
        // its node read it lately too, with its old frame kept as that
        // node's replica.
        let mut after = AfterMove::Plain;
        if replicating {
            let history = space.history(gpfn, params, counts, interval);
            after = if history.recent & 1 << info.node.min(63) != 0 { AfterMove::KeepOld } else { AfterMove::Watched };
            match policy::decide_shared(params, counts, &info, &history, interval) {
                // Replicated only once a watch saw no write; a frame
                // shared copy-on-write is never written in place.
                Share::Replicate(nodes) if space.sharing(gpfn).watched || info.state == PageState::CowShared => {
                    return copies.push((gpfn, nodes))
                }
                // Not known to be clean yet: watched, and moved meanwhile
                // if one node dominates it now (the move watches it).
                Share::Replicate(_) if info.state == PageState::Private => {
                    if let Action::Migrate(node) = policy::decide(params, counts, info.node, &info, interval) {
                        if moves.len() < params.batch {
                            return moves.push((gpfn, node, after));
                        }
                    }
                    return watch.push(gpfn);
                }
                Share::Replicate(_) => return,
                Share::Freeze => return freeze.push(gpfn),
                Share::None => {}
            }
        }
        match policy::decide(params, counts, info.node, &info, interval) {
            // A page that moved before and now wants another node is read
            // by several nodes in turn (one interval sees one of them): if
            // nobody writes it, the new reader gets a replica instead.
            Action::Migrate(node)
                if replicating && info.moves > 0 && {
                    let s = space.sharing(gpfn);
                    !s.written && s.dirty < params.max_collapses
                } =>
            {
                match space.sharing(gpfn).watched {
                    true => copies.push((gpfn, 1 << node)),
                    false => watch.push(gpfn),
                }
            }
            Action::Migrate(node) if moves.len() < params.batch => moves.push((gpfn, node, after)),
            Action::Freeze => freeze.push(gpfn),
            _ => {}
        }
    };
    match (config.source, hot) {
        (Source::Plugin, Hot::Queued(pages)) => {
            let vm = space.vm();
            let start = pages.partition_point(|p| p.0 < vm);
            let mut counts = Touches::default();
            for &(_, gpfn, pfn) in pages[start..].iter().take_while(|p| p.0 == vm) {
                if space.page(gpfn).is_some_and(|i| i.pa / PAGE_SIZE == pfn)
                    && counters::page_counts(pfn, &mut counts[..nodes])
                {
                    consider(&mut space, gpfn, &counts[..nodes], &config.params);
                }
            }
        }
        (Source::Plugin, Hot::Scan) => {
            // Only pages with misses are kept (most are cold in any interval).
            let mut touched: Vec<(u64, Touches)> = Vec::new();
            for (gpfn, info) in space.pmap.iter_mapped() {
                let mut counts = Touches::default();
                let pfn = info.pa / PAGE_SIZE;
                if counters::page_counts(pfn, &mut counts[..nodes]) && counts.iter().any(|&c| c != 0) {
                    counters::clear_page(pfn);
                    touched.push((gpfn, counts));
                }
            }
            for (gpfn, counts) in touched {
                consider(&mut space, gpfn, &counts[..nodes], &config.params);
            }
        }
        (Source::Sampling, _) => {
            let params = Params { trigger: 1, ..config.params };
            for (gpfn, counts) in core::mem::take(&mut space.touches) {
                consider(&mut space, gpfn, &counts[..nodes], &params);
            }
        }
    }
    for gpfn in freeze {
        space.pmap.freeze(gpfn, interval + config.params.freeze_intervals);
        space.pmap.reset_moves(gpfn);
        space.reset_collapses(gpfn);
        space.stats.frozen += 1;
    }
    let moved = if moves.is_empty() { 0 } else { space.migrate(&moves, here) };
    copies.truncate(config.params.batch);
    if !copies.is_empty() {
        space.replicate(&copies, here);
    }
    if !watch.is_empty() {
        space.watch(&watch);
    }
    if config.source == Source::Sampling {
        space.sample(SAMPLE_PAGES);
    }
    moved
}
