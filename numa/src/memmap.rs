//! Every machine frame's owner and reference count (Disco's memmap).
//!
//! Placement, replication and sharing all need to go from a machine frame
//! back to what uses it: the placement loop reads per-frame miss counters
//! and must find the (VM, guest page) behind each hot frame; a shared block
//! cache frame must know how many mappings still hold it. So every managed
//! frame has one packed `u64` entry, kept in memory of its own node (the
//! caller carves the storage out of the node, as Disco kept its memmap
//! node-local).
//!
//! Concurrency: each node has ONE lock, and it guards only that node's
//! [`FrameAllocator`] bitmap. Entries are atomics: owner lookups, sharing,
//! relabelling and reference drops never lock. When the last reference to a
//! frame of another node is dropped, the frame goes into that node's
//! [`FreeRing`]; the owner drains the ring whenever it takes its lock. No
//! operation ever takes two node locks or a machine-wide lock.
//!
//! A [`Frame`] is the proof of one reference: not `Copy`, not `Clone`, and
//! the only way to drop it is [`MemMap::free`], so a double free cannot be
//! written. Bad input (an address the memmap does not manage, an owner that
//! does not fit the packing) is refused with `log::error!`, never a panic.

use alloc::vec::Vec;

use crate::ring::{FreeRing, NodeStats};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::frame::owned_spans;
use crate::{FrameAllocator, MemRange, NodeId, FRAME_SIZE};

/// What a frame is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Use {
    /// Guest memory: the master copy of guest page `gpfn` of VM `vm`.
    Guest {
        /// VM id, below [`MAX_VM`].
        vm: u16,
        /// Guest page frame number, below [`MAX_INDEX`].
        gpfn: u64,
    },
    /// A read-only replica of guest page `gpfn` of VM `vm` (on this node).
    Replica {
        /// VM id, below [`MAX_VM`].
        vm: u16,
        /// Guest page frame number, below [`MAX_INDEX`].
        gpfn: u64,
    },
    /// Block `block` (in frames) of disk `disk` in the global block cache.
    Cache {
        /// Disk id, below [`MAX_VM`].
        disk: u16,
        /// Block number, below [`MAX_INDEX`].
        block: u64,
    },
    /// Block `block` (in frames) of VM `vm`'s copy-on-write disk overlay:
    /// the VM's own version of a base-image block it wrote
    /// (`cow_disk::overlay`).
    Overlay {
        /// VM id, below [`MAX_VM`].
        vm: u16,
        /// Block number, below [`MAX_INDEX`].
        block: u64,
    },
    /// A stage-2 page table of VM `vm`.
    Table {
        /// VM id, below [`MAX_VM`].
        vm: u16,
    },
    /// The monitor's own memory.
    Monitor,
}

// Entry packing, one u64 per frame:
//   bits 63..61  kind: 0 free, 1 Guest, 2 Replica, 3 Cache, 4 Table, 5 Monitor, 6 Overlay
//   bits 60..48  reference count (13 bits; saturates and sticks, see below)
//   bits 47..36  vm or disk id (12 bits)
//   bits 35..0   gpfn or block (36 bits: 256 GiB of guest, 256 TiB of disk)
// A zero word is a free frame, so zeroed storage is a valid empty memmap.
const KIND_SHIFT: u32 = 61;
const REF_SHIFT: u32 = 48;
const ID_SHIFT: u32 = 36;
const REF_MASK: u64 = (1 << (KIND_SHIFT - REF_SHIFT)) - 1;
const ID_MASK: u64 = (1 << (REF_SHIFT - ID_SHIFT)) - 1;
const INDEX_MASK: u64 = (1 << ID_SHIFT) - 1;

/// VM and disk ids must be below this (12 bits of the entry).
pub const MAX_VM: u16 = 1 << (REF_SHIFT - ID_SHIFT);
/// Guest page numbers and block numbers must be below this (36 bits).
pub const MAX_INDEX: u64 = 1 << ID_SHIFT;
/// A reference count that reached this sticks there: the frame is never
/// freed (leaked rather than freed under a live mapping). Shares beyond
/// 8190 of one frame are a monitor bug or an attack, not a workload.
pub const MAX_REFS: u32 = REF_MASK as u32;

/// The owner in the entry's layout (refcount bits zero), or None when it
/// does not fit.
fn encode(owner: Use) -> Option<u64> {
    let (kind, id, index) = match owner {
        Use::Guest { vm, gpfn } => (1, vm, gpfn),
        Use::Replica { vm, gpfn } => (2, vm, gpfn),
        Use::Cache { disk, block } => (3, disk, block),
        Use::Table { vm } => (4, vm, 0),
        Use::Monitor => (5, 0, 0),
        Use::Overlay { vm, block } => (6, vm, block),
    };
    (id < MAX_VM && index < MAX_INDEX).then_some(kind << KIND_SHIFT | (id as u64) << ID_SHIFT | index)
}

/// Owner and reference count of an entry; None for a free (or corrupt) one.
fn decode(word: u64) -> Option<(Use, u32)> {
    let (id, index) = (((word >> ID_SHIFT) & ID_MASK) as u16, word & INDEX_MASK);
    let owner = match word >> KIND_SHIFT {
        1 => Use::Guest { vm: id, gpfn: index },
        2 => Use::Replica { vm: id, gpfn: index },
        3 => Use::Cache { disk: id, block: index },
        4 => Use::Table { vm: id },
        5 => Use::Monitor,
        6 => Use::Overlay { vm: id, block: index },
        _ => return None,
    };
    Some((owner, refs(word)))
}

fn refs(word: u64) -> u32 {
    ((word >> REF_SHIFT) & REF_MASK) as u32
}

/// One reference to a frame handed out by the memmap. Not `Copy` or
/// `Clone`: the only way to give it back is [`MemMap::free`], so a double
/// free cannot be written. Dropping one instead leaks the frame.
#[must_use = "a dropped Frame is a leaked frame: give it back with MemMap::free"]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pa: u64,
    node: NodeId,
}

impl Frame {
    /// Machine address of the frame.
    pub fn pa(&self) -> u64 {
        self.pa
    }

    /// Node the frame is on.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Rebuilds the token a compact holder (the pmap) stored as numbers.
    /// Crate-only, so outside code cannot mint references.
    pub(crate) fn from_parts(pa: u64, node: NodeId) -> Self {
        Self { pa, node }
    }
}

/// A run of managed frames and where its entries start in the storage.
#[derive(Debug, Clone, Copy)]
struct Span {
    first_pfn: u64,
    end_pfn: u64,
    first_entry: usize,
}

fn span_index(spans: &[Span], pfn: u64) -> Option<usize> {
    let i = spans.partition_point(|s| s.first_pfn <= pfn).checked_sub(1)?;
    (pfn < spans[i].end_pfn).then_some(i)
}

/// One node's memory: its allocator behind the node's one lock, the
/// per-frame entries (atomics, no lock), its remote-free ring and its stats.
pub struct NodeMemory {
    id: NodeId,
    spans: Vec<Span>,
    entries: &'static [AtomicU64],
    allocator: Mutex<FrameAllocator>,
    total: usize,
    ring: FreeRing,
    stats: NodeStats,
}

impl NodeMemory {
    /// Words (u64) of per-frame storage [`NodeMemory::new`] needs for these
    /// ranges: one per frame it will manage.
    pub fn storage_words(ranges: &[MemRange], reserved: &[MemRange]) -> usize {
        owned_spans(ranges, reserved).iter().map(|(s, e)| (e - s) as usize).sum()
    }

    /// Storage for a node from the heap (tests, or a monitor that keeps
    /// the memmap in its heap).
    pub fn heap_storage(words: usize) -> &'static [AtomicU64] {
        alloc::boxed::Box::leak((0..words).map(|_| AtomicU64::new(0)).collect())
    }

    /// Node `id` over `ranges` less `reserved` (which must include the
    /// carve-out holding `storage` if that is node memory). `storage`, at
    /// least [`NodeMemory::storage_words`] long, is cleared here. A shorter
    /// one is logged and only the frames it covers are managed.
    pub fn new(id: NodeId, ranges: &[MemRange], reserved: &[MemRange], storage: &'static [AtomicU64]) -> Self {
        let mut spans = Vec::new();
        let mut used = 0;
        for (start, end) in owned_spans(ranges, reserved) {
            let frames = ((end - start) as usize).min(storage.len() - used);
            if frames == 0 {
                log::error!("memmap: node {id}: storage of {} words is too small", storage.len());
                break;
            }
            spans.push(Span { first_pfn: start, end_pfn: start + frames as u64, first_entry: used });
            used += frames;
        }
        let owned: Vec<MemRange> =
            spans.iter().map(|s| MemRange::new(s.first_pfn * FRAME_SIZE, s.end_pfn * FRAME_SIZE)).collect();
        let allocator = FrameAllocator::new(&owned, &[]);
        for e in &storage[..used] {
            e.store(0, Ordering::Relaxed);
        }
        Self {
            id,
            spans,
            entries: &storage[..used],
            total: allocator.total_frames(),
            allocator: Mutex::new(allocator),
            ring: FreeRing::new(),
            stats: NodeStats::new(),
        }
    }

    fn entry(&self, pa: u64) -> Option<&AtomicU64> {
        let pfn = pa / FRAME_SIZE;
        let span = &self.spans[span_index(&self.spans, pfn)?];
        self.entries.get(span.first_entry + (pfn - span.first_pfn) as usize)
    }

    /// Returns drained ring frames to the (locked) allocator.
    fn drain_into(&self, allocator: &mut FrameAllocator) {
        let n = self.ring.drain(|pa| {
            if let Err(e) = allocator.free(pa) {
                log::error!("memmap: node {}: ring held a bad frame: {e}", self.id);
            }
        });
        self.stats.frees.add(n as u64);
    }

    /// One frame from this node labelled `word` (refcount 1).
    fn alloc_here(&self, word: u64) -> Option<Frame> {
        let mut allocator = self.allocator.lock();
        self.drain_into(&mut allocator);
        loop {
            let pa = allocator.alloc()?;
            let Some(entry) = self.entry(pa) else {
                log::error!("memmap: node {}: allocator gave unmanaged frame {pa:#x}", self.id);
                continue;
            };
            // The allocator and the entries must agree that the frame is
            // free; a frame that disagrees stays allocated (leaked), never
            // handed out twice.
            match entry.compare_exchange(0, word | 1 << REF_SHIFT, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    self.stats.allocs.add(1);
                    return Some(Frame { pa, node: self.id });
                }
                Err(found) => log::error!("memmap: node {}: free frame {pa:#x} has entry {found:#x}", self.id),
            }
        }
    }

    fn free_locked(&self, pa: u64) {
        let mut allocator = self.allocator.lock();
        self.drain_into(&mut allocator);
        match allocator.free(pa) {
            Ok(()) => self.stats.frees.add(1),
            Err(e) => log::error!("memmap: node {}: {e}", self.id),
        }
    }

    fn free_frames(&self) -> usize {
        let mut allocator = self.allocator.lock();
        self.drain_into(&mut allocator);
        allocator.free_frames()
    }
}

/// The memmap of the whole machine: one [`NodeMemory`] per node.
pub struct MemMap {
    nodes: Vec<NodeMemory>,
    /// `(first_pfn, end_pfn, node)` of every span of every node, sorted:
    /// address -> node without a lock.
    table: Vec<(u64, u64, NodeId)>,
    /// `order[p]`: every node, nearest to `p` first (ties by id), `p` first.
    order: Vec<Vec<NodeId>>,
    /// Returned for an out-of-range node id instead of panicking.
    no_stats: NodeStats,
}

impl MemMap {
    /// The memmap of `nodes`; node `i` of the vector is node id `i` (a
    /// mismatching id is logged and renumbered). `distance(a, b)` is the
    /// SLIT distance, which orders the fallback of [`MemMap::alloc`].
    pub fn new(mut nodes: Vec<NodeMemory>, distance: impl Fn(NodeId, NodeId) -> u8) -> Self {
        let mut table = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            if node.id != i {
                log::error!("memmap: node id {} given at position {i}; using {i}", node.id);
                node.id = i;
            }
            table.extend(node.spans.iter().map(|s| (s.first_pfn, s.end_pfn, i)));
        }
        table.sort_unstable();
        if table.windows(2).any(|w| w[0].1 > w[1].0) {
            log::error!("memmap: nodes overlap; lookups of the overlap pick one");
        }
        let n = nodes.len();
        let order = (0..n)
            .map(|p| {
                let mut o: Vec<NodeId> = (0..n).collect();
                o.sort_by_key(|&m| (m != p, distance(p, m), m));
                o
            })
            .collect();
        Self { nodes, table, order, no_stats: NodeStats::new() }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node of the managed frame holding `pa` (binary search, no lock).
    /// None: not a frame this memmap manages (reserved, or not memory).
    pub fn node_of(&self, pa: u64) -> Option<NodeId> {
        let pfn = pa / FRAME_SIZE;
        let i = self.table.partition_point(|t| t.0 <= pfn).checked_sub(1)?;
        let (_, end, node) = self.table[i];
        (pfn < end).then_some(node)
    }

    fn entry(&self, pa: u64) -> Option<(&NodeMemory, &AtomicU64)> {
        let node = &self.nodes[self.node_of(pa)?];
        Some((node, node.entry(pa)?))
    }

    /// A frame from `preferred` or, failing that, the nearest node with a
    /// free frame; `owner` recorded, refcount 1. Not zeroed (the monitor
    /// zeroes through its own mapping). None: no frame anywhere, or an
    /// owner that does not fit (id >= [`MAX_VM`], index >= [`MAX_INDEX`]).
    pub fn alloc(&self, preferred: NodeId, owner: Use) -> Option<Frame> {
        let Some(order) = self.order.get(preferred) else {
            log::error!("memmap: alloc preferring unknown node {preferred}");
            return None;
        };
        let word = self.word(owner)?;
        let frame = order.iter().find_map(|&n| self.nodes[n].alloc_here(word));
        match &frame {
            Some(f) if f.node != preferred => self.nodes[preferred].stats.fallbacks.add(1),
            Some(_) => {}
            None => self.nodes[preferred].stats.failed.add(1),
        }
        frame
    }

    /// A frame from `node` only (a migration target: a full node means no
    /// migration, not a remote copy).
    pub fn alloc_on(&self, node: NodeId, owner: Use) -> Option<Frame> {
        let (word, mem) = (self.word(owner)?, self.nodes.get(node)?);
        let frame = mem.alloc_here(word);
        if frame.is_none() {
            mem.stats.failed.add(1);
        }
        frame
    }

    fn word(&self, owner: Use) -> Option<u64> {
        let word = encode(owner);
        if word.is_none() {
            log::error!("memmap: owner {owner:?} does not fit an entry");
        }
        word
    }

    /// Another reference to the same frame (refcount + 1), for sharing (a
    /// COW page, a block cache frame mapped into a guest). At [`MAX_REFS`]
    /// the count sticks: the frame is never freed.
    pub fn share(&self, frame: &Frame) -> Frame {
        let copy = Frame { pa: frame.pa, node: frame.node };
        let Some((_, entry)) = self.entry(frame.pa) else {
            log::error!("memmap: share of unmanaged frame {:#x}", frame.pa);
            return copy;
        };
        let bumped = entry.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            (decode(w).is_some() && refs(w) < MAX_REFS).then(|| w + (1 << REF_SHIFT))
        });
        if let Err(w) = bumped {
            log::error!("memmap: share of frame {:#x} with entry {w:#x} (free or saturated)", frame.pa);
        }
        copy
    }

    /// Drops one reference. At zero the frame goes back to its node: by
    /// its lock when `caller_node` is that node, else through the node's
    /// [`FreeRing`] (its lock only when the ring is full). True when the
    /// frame itself was freed.
    pub fn free(&self, frame: Frame, caller_node: NodeId) -> bool {
        let Some((node, entry)) = self.entry(frame.pa) else {
            log::error!("memmap: free of unmanaged frame {:#x}", frame.pa);
            return false;
        };
        // AcqRel, as in Arc: every use of the frame through any reference
        // happens before the frame is reused.
        let dropped = entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| match (decode(w), refs(w)) {
            (Some(_), 1) => Some(0),
            (Some(_), r) if r > 1 && r < MAX_REFS => Some(w - (1 << REF_SHIFT)),
            _ => None,
        });
        match dropped {
            Ok(w) if refs(w) == 1 => {}
            Ok(_) => return false,
            Err(w) if refs(w) == MAX_REFS => return false,
            Err(w) => {
                log::error!("memmap: free of frame {:#x} with entry {w:#x}", frame.pa);
                return false;
            }
        }
        if caller_node != node.id {
            match node.ring.push(frame.pa) {
                Ok(()) => {
                    node.stats.remote_frees.add(1);
                    return true;
                }
                Err(_) => node.stats.ring_full.add(1),
            }
        }
        node.free_locked(frame.pa);
        true
    }

    /// Owner and reference count of the frame holding `pa`, without a lock.
    /// None when the frame is free or not managed.
    pub fn owner(&self, pa: u64) -> Option<(Use, u32)> {
        decode(self.entry(pa)?.1.load(Ordering::Acquire))
    }

    /// Relabels a frame (e.g. Guest -> Replica), keeping its references.
    /// False, changing nothing, for an owner that does not fit or a frame
    /// the memmap does not hold.
    pub fn set_owner(&self, frame: &Frame, owner: Use) -> bool {
        let (Some(word), Some((_, entry))) = (self.word(owner), self.entry(frame.pa)) else {
            return false;
        };
        let relabelled = entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| {
            decode(w).map(|_| w & (REF_MASK << REF_SHIFT) | word)
        });
        if relabelled.is_err() {
            log::error!("memmap: set_owner of free frame {:#x}", frame.pa);
        }
        relabelled.is_ok()
    }

    /// Free frames of `node`, exact once no remote free is in flight (the
    /// ring is drained first). 0 for an unknown node.
    pub fn free_frames(&self, node: NodeId) -> usize {
        self.nodes.get(node).map_or(0, NodeMemory::free_frames)
    }

    /// Frames `node` manages, free or not.
    pub fn total_frames(&self, node: NodeId) -> usize {
        self.nodes.get(node).map_or(0, |n| n.total)
    }

    /// Guest, Replica, Table and Overlay frames of `vm` on `node` (teardown
    /// checks, statistics). Scans the node's entries without a lock.
    pub fn owned_by_vm(&self, node: NodeId, vm: u16) -> usize {
        let Some(mem) = self.nodes.get(node) else { return 0 };
        let mine = |w: u64| match decode(w) {
            Some((
                Use::Guest { vm: v, .. } | Use::Replica { vm: v, .. } | Use::Table { vm: v } | Use::Overlay { vm: v, .. },
                _,
            )) => v == vm,
            _ => false,
        };
        mem.entries.iter().filter(|e| mine(e.load(Ordering::Relaxed))).count()
    }

    /// Frames of `node` in use (any owner), by scanning its entries.
    pub fn used_frames(&self, node: NodeId) -> usize {
        self.nodes.get(node).map_or(0, |m| m.entries.iter().filter(|e| e.load(Ordering::Relaxed) != 0).count())
    }

    /// `node`'s counters, read without locks; its ring is drained first so
    /// `frees` is current. An unknown node gets an all-zero block.
    pub fn stats(&self, node: NodeId) -> &NodeStats {
        match self.nodes.get(node) {
            Some(mem) => {
                mem.free_frames();
                &mem.stats
            }
            None => &self.no_stats,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_refuses_what_does_not_fit() {
        for owner in [
            Use::Guest { vm: MAX_VM - 1, gpfn: MAX_INDEX - 1 },
            Use::Replica { vm: 0, gpfn: 7 },
            Use::Cache { disk: 3, block: 1 << 35 },
            Use::Table { vm: 9 },
            Use::Monitor,
            Use::Overlay { vm: 4, block: MAX_INDEX - 1 },
        ] {
            let w = encode(owner).unwrap() | 5 << REF_SHIFT;
            assert_eq!(decode(w), Some((owner, 5)));
        }
        assert_eq!(encode(Use::Guest { vm: MAX_VM, gpfn: 0 }), None);
        assert_eq!(encode(Use::Cache { disk: 0, block: MAX_INDEX }), None);
        assert_eq!(decode(0), None);
        assert_eq!(decode(7 << KIND_SHIFT), None);
    }

    #[test]
    fn storage_words_match_the_allocator() {
        let r = |s, e| MemRange::new(s, e);
        let ranges = [r(0x1800, 0x20_0000), r(0x10_0000, 0x30_0000), r(0x100_0000, 0x100_5fff)];
        let reserved = [r(0x2_0000, 0x2_0001), r(0x20_0000, 0x21_0000)];
        let words = NodeMemory::storage_words(&ranges, &reserved);
        assert_eq!(words, FrameAllocator::new(&ranges, &reserved).total_frames());
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p numa --release --lib loom_tests`:
/// a remote free into a node racing its owner's allocations.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use alloc::vec;
    use loom::sync::Arc;
    use loom::thread;

    fn two_nodes() -> Arc<MemMap> {
        let mems = [(0x1000u64, 0x3000u64), (0x10_000, 0x11_000)]
            .into_iter()
            .enumerate()
            .map(|(id, (s, e))| {
                let ranges = [MemRange::new(s, e)];
                NodeMemory::new(id, &ranges, &[], NodeMemory::heap_storage(NodeMemory::storage_words(&ranges, &[])))
            })
            .collect();
        Arc::new(MemMap::new(mems, |a, b| if a == b { 10 } else { 20 }))
    }

    /// Two holders of one shared frame drop their references at once, one
    /// from another node: exactly one of them frees the frame, and it is
    /// back in node 0's allocator exactly once.
    #[test]
    fn racing_last_references_free_once() {
        loom::model(|| {
            let map = two_nodes();
            let a = map.alloc_on(0, Use::Cache { disk: 1, block: 9 }).unwrap();
            let b = map.share(&a);
            let remote = {
                let map = map.clone();
                thread::spawn(move || map.free(a, 1))
            };
            let here = map.free(b, 0);
            let there = remote.join().unwrap();
            assert!(here ^ there, "exactly one drop frees the frame");
            assert_eq!(map.owner(0x1000), None);
            assert_eq!(map.free_frames(0), 2);
        });
    }

    /// Node 0 has two frames, both in use; node 1 frees one of them
    /// (through node 0's ring) while node 0 allocates. The allocation gets
    /// the freed frame or nothing, never a frame twice; afterwards the
    /// counts are exact.
    #[test]
    fn remote_free_races_owner_alloc() {
        loom::model(|| {
            let map = two_nodes();
            let a = map.alloc_on(0, Use::Guest { vm: 1, gpfn: 0 }).unwrap();
            let b = map.alloc_on(0, Use::Guest { vm: 1, gpfn: 1 }).unwrap();
            let remote = {
                let map = map.clone();
                thread::spawn(move || map.free(a, 1))
            };
            let got = map.alloc_on(0, Use::Guest { vm: 2, gpfn: 5 });
            assert!(remote.join().unwrap());
            if let Some(f) = &got {
                assert_eq!(f.pa(), 0x1000, "only the freed frame can come back");
                assert_eq!(map.owner(0x1000), Some((Use::Guest { vm: 2, gpfn: 5 }, 1)));
            }
            let in_use = vec![Some(b), got].into_iter().flatten().count();
            assert_eq!(map.free_frames(0) + in_use, 2);
            assert_eq!(map.used_frames(0), in_use);
        });
    }
}
