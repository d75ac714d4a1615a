//! One VM's guest-physical address space: its stage-2 tables (walked with
//! the `stage2` crate), its pmap (guest page -> machine frame and state)
//! and the table frames, all recorded in the memmap. Every change of a
//! valid mapping here is break-before-make: invalid descriptor, TLB
//! invalidation by IPA on every CPU, then the new descriptor.

use super::frames;
use crate::arch::marker;
use crate::arch::stage2::{copy_frame, read_entry, write_entry, Stage2, PAGE_SIZE};
use alloc::{collections::BTreeMap, vec, vec::Vec};
use numa::{
    counters::MAX_COUNTED_NODES,
    memmap::{Frame, Use},
    pmap::{PageInfo, Pmap},
    NodeId,
};
use stage2::{walk, Action, Flags, Perm, Pte};

/// Guest RAM starts here (the QEMU `virt` layout).
pub const RAM_BASE: u64 = 0x4000_0000;

/// Sampled touches of one page, per node (nodes past the plugin's limit
/// are not counted, as the plugin does not count them either).
pub type Touches = [u32; MAX_COUNTED_NODES];

/// What the space counts for the VM's statistics.
#[derive(Default, Clone)]
pub struct SpaceStats {
    pub migrated: u64,
    pub frozen: u64,
    pub sampling_faults: u64,
    /// Per requesting node: accesses (misses or sampled touches) to pages
    /// on the same node, and to pages on another node.
    pub local: Vec<u64>,
    pub remote: Vec<u64>,
}

pub struct VmSpace {
    /// The VM's memmap owner id (its VMID).
    vm: u16,
    stage2: Stage2,
    root: Option<Frame>,
    tables: BTreeMap<u64, Frame>,
    pub pmap: Pmap,
    /// Software sampling: per sampled page that was touched, touches per node.
    pub touches: BTreeMap<u64, Touches>,
    /// Where the next sampling round starts (a guest page number).
    pub sample_cursor: u64,
    pub stats: SpaceStats,
    nodes: usize,
}

impl VmSpace {
    /// An empty space of `ram_size` bytes for VMID `vmid`, its root table
    /// on `home`.
    pub fn new(vmid: u16, home: NodeId, ram_size: u64, nodes: usize) -> Option<Self> {
        let root = frames::alloc(home, Use::Table { vm: vmid })?;
        Some(Self {
            vm: vmid,
            stage2: Stage2::new(root.pa(), vmid),
            root: Some(root),
            tables: BTreeMap::new(),
            pmap: Pmap::new(RAM_BASE / PAGE_SIZE, (ram_size / PAGE_SIZE) as usize),
            touches: BTreeMap::new(),
            sample_cursor: 0,
            stats: SpaceStats { local: vec![0; nodes], remote: vec![0; nodes], ..Default::default() },
            nodes,
        })
    }

    pub fn vttbr(&self) -> u64 {
        self.stage2.vttbr()
    }

    /// The level-3 descriptor of `ipa` (None: no table there).
    pub fn lookup(&mut self, ipa: u64) -> Option<Pte> {
        let (tables, root) = (&mut self.tables, self.stage2.root());
        stage2::walk::lookup(&mut table_memory(self.vm, tables, 0), root, ipa)
    }

    /// Writes the descriptor of `ipa`, creating tables on `node`; the old
    /// one must not be valid (or the caller did break-before-make). The
    /// caller publishes (`Stage2::publish`) once for all its writes.
    fn set(&mut self, ipa: u64, pte: Pte, node: NodeId) -> Option<()> {
        let (tables, root) = (&mut self.tables, self.stage2.root());
        stage2::walk::set_leaf(&mut table_memory(self.vm, tables, node), root, ipa, pte).ok()?;
        Some(())
    }

    /// Backs the guest page at `ipa` with a zeroed frame from `node` (or
    /// the nearest node with one): Disco's first-touch placement. Returns
    /// the frame's machine address, or None when memory ran out.
    pub fn touch(&mut self, ipa: u64, node: NodeId) -> Option<u64> {
        let page = ipa & !(PAGE_SIZE - 1);
        let gpfn = page / PAGE_SIZE;
        if let Some(info) = self.pmap.get(gpfn) {
            return Some(info.pa);
        }
        let frame = frames::alloc(node, Use::Guest { vm: self.vm, gpfn })?;
        let pa = frame.pa();
        if let Err(frame) = self.pmap.map(gpfn, frame) {
            frames::free(frame, node);
            return None;
        }
        if self.set(page, Pte::page(pa, Perm::RWX), node).is_none() {
            if let Some(frame) = self.pmap.unmap(gpfn) {
                frames::free(frame, node);
            }
            return None;
        }
        Stage2::publish();
        Some(pa)
    }

    /// A fault on `ipa`, whose descriptor `sampled` is one that sampling
    /// unmapped: counts the touch by `node` and maps the page again.
    pub fn restore_sampled(&mut self, ipa: u64, sampled: Pte, node: NodeId) {
        let page = ipa & !(PAGE_SIZE - 1);
        // Its tables exist (the descriptor was found): this cannot fail.
        let _ = self.set(page, sampled.restored(), node);
        Stage2::publish();
        if let Some(count) = self.touches.entry(page / PAGE_SIZE).or_default().get_mut(node) {
            *count += 1;
        }
        self.stats.sampling_faults += 1;
    }

    /// Unmaps up to `count` mapped pages, from the sampling cursor on, so
    /// that the next touch of each tells which node uses it (as Linux's
    /// NUMA hinting faults do). One TLB invalidation for the batch.
    pub fn sample(&mut self, count: usize) {
        let gpfns: Vec<u64> = {
            let cursor = self.sample_cursor;
            let mapped = || self.pmap.iter_mapped().map(|(g, _)| g);
            let mut picked: Vec<u64> = mapped().filter(|&g| g >= cursor).take(count).collect();
            if picked.len() < count {
                picked.extend(mapped().filter(|&g| g < cursor).take(count - picked.len()));
            }
            picked
        };
        self.sample_cursor = gpfns.last().map_or(0, |g| g + 1);
        let mut ipas = Vec::with_capacity(gpfns.len());
        let (tables, root) = (&mut self.tables, self.stage2.root());
        let mut memory = table_memory(self.vm, tables, 0);
        for gpfn in gpfns {
            let ipa = gpfn * PAGE_SIZE;
            let _ = walk(&mut memory, root, ipa, ipa + PAGE_SIZE, Flags::LEAF, &mut |e| {
                if e.level == stage2::LEAF_LEVEL && e.old.is_valid() {
                    ipas.push(e.ipa);
                    Action::Set(e.old.sampled())
                } else {
                    Action::Keep
                }
            });
        }
        self.stage2.invalidate(&ipas);
    }

    /// Moves each `(gpfn, node)` page to a new frame on that node, as one
    /// batch: every old mapping is broken, one TLB invalidation covers
    /// them all, then each page is copied, remapped and its old frame
    /// freed. Pages whose target node is full, or that are pinned, stay.
    /// Returns how many moved.
    pub fn migrate(&mut self, moves: &[(u64, NodeId)], here: NodeId) -> usize {
        let _cost = marker::Charged::begin();
        let mut batch: Vec<(u64, Frame, Pte)> = Vec::with_capacity(moves.len());
        for &(gpfn, node) in moves {
            let Some(info) = self.pmap.get(gpfn).filter(|i| i.pins == 0 && i.node != node) else { continue };
            let Some(pte) = self.lookup(gpfn * PAGE_SIZE).filter(|p| p.addr() == info.pa) else { continue };
            let Some(frame) = frames::alloc_on(node, Use::Guest { vm: self.vm, gpfn }) else { continue };
            // Break: the tables exist (the descriptor was found).
            if pte.is_valid() {
                let _ = self.set(gpfn * PAGE_SIZE, Pte::EMPTY, here);
            }
            batch.push((gpfn, frame, pte));
        }
        let ipas: Vec<u64> = batch.iter().filter(|(_, _, pte)| pte.is_valid()).map(|(g, _, _)| g * PAGE_SIZE).collect();
        self.stage2.invalidate(&ipas);
        let mut moved = 0;
        for (gpfn, frame, pte) in batch {
            let (old_pa, new_pa) = (pte.addr(), frame.pa());
            copy_frame(new_pa, old_pa);
            let mapping = Pte(pte.0 & !stage2::pte::ADDR_MASK | new_pa);
            match self.pmap.replace(gpfn, frame) {
                Ok(old) => {
                    frames::free(old, here);
                    moved += 1;
                    let _ = self.set(gpfn * PAGE_SIZE, mapping, here);
                }
                Err(frame) => {
                    frames::free(frame, here);
                    let _ = self.set(gpfn * PAGE_SIZE, pte, here);
                }
            }
        }
        Stage2::publish();
        self.stats.migrated += moved as u64;
        moved
    }

    /// The VM id its frames carry in the memmap.
    pub fn vm(&self) -> u16 {
        self.vm
    }

    /// The pmap's view of a guest page.
    pub fn page(&self, gpfn: u64) -> Option<PageInfo> {
        self.pmap.get(gpfn)
    }

    /// Frames the VM holds per node: guest pages and page tables.
    pub fn frames_per_node(&self) -> Vec<usize> {
        let mut frames = self.pmap.mapped_per_node(self.nodes);
        for frame in self.tables.values().chain(self.root.as_ref()) {
            if let Some(count) = frames.get_mut(frame.node()) {
                *count += 1;
            }
        }
        frames
    }

    /// Returns every frame to its node (only once no CPU runs the VM) and
    /// checks with the memmap that the VM owns nothing any more.
    pub fn destroy(mut self, here: NodeId) {
        let (tables, root) = (&mut self.tables, self.stage2.root());
        stage2::walk::destroy(&mut table_memory(self.vm, tables, here), root, &mut |_, _| {});
        self.stage2.flush_tlb();
        for frame in self.pmap.drain() {
            frames::free(frame, here);
        }
        if let Some(root) = self.root.take() {
            frames::free(root, here);
        }
        let map = frames::memmap();
        for node in 0..map.node_count() {
            let left = map.owned_by_vm(node, self.vm);
            if left != 0 {
                log::error!("VMID {}: {left} frames on node {node} still owned after teardown", self.vm);
            }
        }
    }
}

/// The walker's view of table memory: new tables come from `node` (the
/// nearest with memory) and are recorded in `tables`; freed ones leave it.
fn table_memory<'a>(vm: u16, tables: &'a mut BTreeMap<u64, Frame>, node: NodeId) -> TableFrames<'a> {
    TableFrames { vm, tables, node }
}

struct TableFrames<'a> {
    vm: u16,
    tables: &'a mut BTreeMap<u64, Frame>,
    node: NodeId,
}

impl stage2::TableMemory for TableFrames<'_> {
    fn read(&self, table: u64, index: usize) -> u64 {
        read_entry(table, index)
    }
    fn write(&mut self, table: u64, index: usize, value: u64) {
        write_entry(table, index, value)
    }
    fn alloc_table(&mut self) -> Option<u64> {
        let frame = frames::alloc(self.node, Use::Table { vm: self.vm })?;
        let pa = frame.pa();
        self.tables.insert(pa, frame);
        Some(pa)
    }
    /// The root is not in `tables`: its owner frees it after the walk.
    fn free_table(&mut self, table: u64) {
        if let Some(frame) = self.tables.remove(&table) {
            frames::free(frame, self.node);
        }
    }
}
