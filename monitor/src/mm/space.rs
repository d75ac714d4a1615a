//! One VM's guest-physical address space: its stage-2 tables (walked with
//! the `stage2` crate), its pmap (guest page -> machine frame and state)
//! and the table frames, all recorded in the memmap. Every change of a
//! valid mapping here is break-before-make: invalid descriptor, TLB
//! invalidation by IPA on every CPU, then the new descriptor.

use super::{frames, replica::AfterMove};
use crate::arch::stage2::{copy_frame, read_entry, write_entry, Stage2, PAGE_SIZE};
use crate::arch::{cpu, marker};
use alloc::{collections::BTreeMap, sync::Arc, vec, vec::Vec};
use numa::{
    counters::MAX_COUNTED_NODES,
    memmap::{Frame, Use},
    pmap::{PageInfo, PageState, Pmap},
    tlb_sync::TlbSync,
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
    /// Replica frames made (`mm::replica`).
    pub replicated: u64,
    /// Writes that collapsed a replicated page.
    pub collapses: u64,
    /// Pages write-protected to learn whether they are written, and
    /// writes that ended such a watch.
    pub watched: u64,
    pub write_faults: u64,
    /// Shared (boot image) pages the guest wrote, each now its own copy.
    pub cow_breaks: u64,
    /// Private copies of boot-image pages merged back (`mm::merge`).
    pub merged: u64,
    /// Guest pages a disk read mapped to a cached block (`mm::block_cache`).
    pub disk_shared: u64,
    pub frozen: u64,
    pub sampling_faults: u64,
    /// Per requesting node: accesses (misses or sampled touches) to pages
    /// on the same node, and to pages on another node.
    pub local: Vec<u64>,
    pub remote: Vec<u64>,
}

/// One stage-2 root: the tables through which the CPUs of one node
/// translate the VM (like KVM's `kvm_s2_mmu`). All roots of a VM share its
/// VMID (why: `sched::vms::roots`). Its table frames come from its node.
struct Root {
    node: NodeId,
    stage2: Stage2,
    frame: Frame,
    tables: BTreeMap<u64, Frame>,
}

impl Root {
    fn memory(&mut self, vm: u16) -> TableFrames<'_> {
        table_memory(vm, &mut self.tables, self.node)
    }
}

pub struct VmSpace {
    /// The VM's memmap owner id.
    vm: u16,
    /// One root per node with CPUs, in the order of [`VmSpace::new`]'s
    /// `roots`; non-replicated pages are mapped alike in all of them.
    roots: Vec<Root>,
    pub pmap: Pmap,
    /// Software sampling: per sampled page that was touched, touches per node.
    pub touches: BTreeMap<u64, Touches>,
    /// Where the next sampling round starts (a guest page number).
    pub sample_cursor: u64,
    pub stats: SpaceStats,
    /// Replication state of pages being watched for writes, replicated or
    /// collapsed (`mm::replica`).
    pub(super) sharing: BTreeMap<u64, super::replica::Sharing>,
    /// Pages whose `sharing` record says written since the interval began:
    /// the next interval clears just these, not the whole map.
    pub(super) written: Vec<u64>,
    /// Guest pages of the kernel image (for the statistics: how much of
    /// it is replicated).
    pub kernel_image: core::ops::Range<u64>,
    /// Boot images mapped from `mm::boot_image`: (first guest page,
    /// pages, image index).
    pub(super) boot_images: Vec<(u64, usize, usize)>,
    nodes: usize,
    /// CPUs that must flush its TLB entries before running it.
    tlb: Arc<TlbSync>,
}

impl VmSpace {
    /// An empty space of `ram_size` bytes for memmap owner `vm`, with one
    /// stage-2 root per `(node, VMID)` of `roots` (the first is the
    /// primary: lookups that do not name a node read it).
    pub fn new(vm: u16, roots: &[(NodeId, u16)], ram_size: u64, nodes: usize) -> Option<Self> {
        let mut space = Self {
            vm,
            roots: Vec::with_capacity(roots.len()),
            pmap: Pmap::new(RAM_BASE / PAGE_SIZE, (ram_size / PAGE_SIZE) as usize),
            touches: BTreeMap::new(),
            sample_cursor: 0,
            stats: SpaceStats { local: vec![0; nodes], remote: vec![0; nodes], ..Default::default() },
            sharing: BTreeMap::new(),
            written: Vec::new(),
            kernel_image: 0..0,
            boot_images: Vec::new(),
            nodes,
            tlb: Arc::new(TlbSync::new()),
        };
        for &(node, vmid) in roots {
            let Some(frame) = frames::alloc(node, Use::Table { vm }) else {
                space.destroy(node);
                return None;
            };
            space.roots.push(Root { node, stage2: Stage2::new(frame.pa(), vmid), frame, tables: BTreeMap::new() });
        }
        (!space.roots.is_empty()).then_some(space)
    }

    /// VTTBR_EL2 per node with a root: what a CPU of that node runs the
    /// VM's vCPUs with.
    pub fn vttbrs(&self) -> Vec<(NodeId, u64)> {
        self.roots.iter().map(|r| (r.node, r.stage2.vttbr())).collect()
    }

    /// The level-3 descriptor of `ipa` in the primary root (None: no table
    /// there). Pages that are not replicated look the same in every root.
    pub fn lookup(&mut self, ipa: u64) -> Option<Pte> {
        let vm = self.vm;
        let root = &mut self.roots[0];
        let top = root.stage2.root();
        stage2::walk::lookup(&mut root.memory(vm), top, ipa)
    }

    /// The level-3 descriptor of `ipa` in the root the CPUs of `node` use.
    pub fn lookup_on(&mut self, ipa: u64, node: NodeId) -> Option<Pte> {
        let vm = self.vm;
        let root = self.roots.iter_mut().find(|r| r.node == node)?;
        let top = root.stage2.root();
        stage2::walk::lookup(&mut root.memory(vm), top, ipa)
    }

    /// Writes the descriptor of `ipa` in every root, creating tables on
    /// each root's node; the old one must not be valid (or the caller did
    /// break-before-make), or differ only in permissions. The caller
    /// publishes (`Stage2::publish`) once for all its writes.
    pub(super) fn set(&mut self, ipa: u64, pte: Pte) -> Option<()> {
        for i in 0..self.roots.len() {
            self.set_in(i, ipa, pte)?;
        }
        Some(())
    }

    /// Writes the descriptor of `ipa` in root `i` only (a replica's).
    pub(super) fn set_in(&mut self, i: usize, ipa: u64, pte: Pte) -> Option<()> {
        let vm = self.vm;
        let root = &mut self.roots[i];
        let top = root.stage2.root();
        stage2::walk::set_leaf(&mut root.memory(vm), top, ipa, pte).ok()?;
        Some(())
    }

    /// Index of the root of `node`'s CPUs.
    pub(super) fn root_of(&self, node: NodeId) -> Option<usize> {
        self.roots.iter().position(|r| r.node == node)
    }

    /// Nodes with a root, by root index.
    pub(super) fn root_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.roots.iter().map(|r| r.node)
    }

    /// The invalidation half of break-before-make for `ipas`: on this CPU,
    /// and on every other by a broadcast only if another CPU runs the VM
    /// now; the rest flush before they next run it (`numa::tlb_sync`). The
    /// roots share the VM's VMID (`sched::vms::roots`), so one invalidation
    /// by it reaches the TLB entries of all of them.
    pub(super) fn invalidate(&self, ipas: &[u64]) {
        if ipas.is_empty() {
            return;
        }
        if self.tlb.changed(cpu::index()) {
            self.roots[0].stage2.invalidate(ipas);
        } else {
            self.roots[0].stage2.invalidate_here(ipas);
        }
    }

    /// Which CPUs must flush the VM's TLB entries before running it; the
    /// VM's dispatch shares it.
    pub fn tlb(&self) -> Arc<TlbSync> {
        self.tlb.clone()
    }

    /// Invalidates `ipa` on this CPU only, after its descriptor gained
    /// permissions, as KVM does (`__kvm_tlb_flush_vmid_ipa_nsh`): more
    /// permissions need no break-before-make, and another CPU still
    /// holding the stricter entry faults on it and drops it then
    /// (`mm::fault`'s retry). A broadcast would stop every CPU under TCG.
    pub(super) fn invalidate_local(&self, ipa: u64) {
        self.roots[0].stage2.invalidate_here(&[ipa]);
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
        let owner = Use::Guest { vm: self.vm, gpfn };
        // Replicas are the first memory to go when memory runs short.
        let frame = frames::alloc(node, owner)
            .or_else(|| (self.reclaim_replicas(node) > 0).then(|| frames::alloc(node, owner)).flatten())
            .or_else(|| (super::block_cache::drop_unmapped(node) > 0).then(|| frames::alloc(node, owner)).flatten())?;
        let pa = frame.pa();
        if let Err(frame) = self.pmap.map(gpfn, frame) {
            frames::free(frame, node);
            return None;
        }
        if self.set(page, Pte::page(pa, Perm::RWX)).is_none() {
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
        let _ = self.set(page, sampled.restored());
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
            // Replicated pages differ per root: sampling leaves them be.
            let mapped = || self.pmap.iter_mapped().filter(|(_, i)| i.state == PageState::Private).map(|(g, _)| g);
            let mut picked: Vec<u64> = mapped().filter(|&g| g >= cursor).take(count).collect();
            if picked.len() < count {
                picked.extend(mapped().filter(|&g| g < cursor).take(count - picked.len()));
            }
            picked
        };
        self.sample_cursor = gpfns.last().map_or(0, |g| g + 1);
        let mut ipas = Vec::with_capacity(gpfns.len());
        let vm = self.vm;
        for (i, root) in self.roots.iter_mut().enumerate() {
            let top = root.stage2.root();
            let mut memory = root.memory(vm);
            for &gpfn in &gpfns {
                let ipa = gpfn * PAGE_SIZE;
                let _ = walk(&mut memory, top, ipa, ipa + PAGE_SIZE, Flags::LEAF, &mut |e| {
                    if e.level == stage2::LEAF_LEVEL && e.old.is_valid() {
                        if i == 0 {
                            ipas.push(e.ipa);
                        }
                        Action::Set(e.old.sampled())
                    } else {
                        Action::Keep
                    }
                });
            }
        }
        self.invalidate(&ipas);
    }

    /// Moves each `(gpfn, node)` page to a new frame on that node, as one
    /// batch: every old mapping is broken, one TLB invalidation covers
    /// them all, then each page is copied, remapped and its old frame
    /// freed, or kept as a replica ([`AfterMove`]). Pages whose target node
    /// is full, or that are pinned, stay. Returns how many moved.
    pub fn migrate(&mut self, moves: &[(u64, NodeId, AfterMove)], here: NodeId) -> usize {
        let _cost = marker::Charged::begin();
        let mut batch: Vec<(u64, Frame, Pte, AfterMove)> = Vec::with_capacity(moves.len());
        for &(gpfn, node, after) in moves {
            let movable = |i: &PageInfo| i.pins == 0 && i.node != node && i.state == PageState::Private;
            let Some(info) = self.pmap.get(gpfn).filter(movable) else { continue };
            let Some(pte) = self.lookup(gpfn * PAGE_SIZE).filter(|p| p.addr() == info.pa) else { continue };
            let Some(frame) = frames::alloc_on(node, Use::Guest { vm: self.vm, gpfn }) else { continue };
            // Break: the tables exist (the descriptor was found).
            if pte.is_valid() {
                let _ = self.set(gpfn * PAGE_SIZE, Pte::EMPTY);
            }
            batch.push((gpfn, frame, pte, after));
        }
        let ipas: Vec<u64> = batch.iter().filter(|b| b.2.is_valid()).map(|b| b.0 * PAGE_SIZE).collect();
        self.invalidate(&ipas);
        let mut moved = 0;
        for (gpfn, frame, pte, after) in batch {
            let (old_pa, new_pa) = (pte.addr(), frame.pa());
            copy_frame(new_pa, old_pa);
            let mapping = pte.with_addr(new_pa);
            match self.pmap.replace(gpfn, frame) {
                Ok(old) => {
                    moved += 1;
                    self.after_move(gpfn, mapping, old, after, here);
                }
                Err(frame) => {
                    frames::free(frame, here);
                    let _ = self.set(gpfn * PAGE_SIZE, pte);
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

    /// Frames the VM holds per node: its own guest pages, replicas and
    /// page tables (not the boot-image frames it shares).
    pub fn frames_per_node(&self) -> Vec<usize> {
        // Shared frames (boot images) are the image cache's, not the VM's.
        let mut frames = vec![0; self.nodes];
        for (_, info) in self.pmap.iter_mapped().filter(|(_, i)| i.state != PageState::CowShared) {
            if let Some(count) = frames.get_mut(info.node) {
                *count += 1;
            }
        }
        let tables = self.roots.iter().flat_map(|r| r.tables.values().chain([&r.frame]));
        for frame in tables.chain(self.pmap.replica_frames()) {
            if let Some(count) = frames.get_mut(frame.node()) {
                *count += 1;
            }
        }
        frames
    }

    /// Replica frames alive per node.
    pub fn replicas_per_node(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes];
        for frame in self.pmap.replica_frames() {
            if let Some(c) = counts.get_mut(frame.node()) {
                *c += 1;
            }
        }
        counts
    }

    /// Pages of `gpfns` with at least one replica.
    pub fn replicated_in(&self, gpfns: core::ops::Range<u64>) -> usize {
        gpfns.filter(|&g| self.pmap.get(g).is_some_and(|i| i.replicas != 0)).count()
    }

    /// Returns every frame to its node (only once no CPU runs the VM) and
    /// checks with the memmap that the VM owns nothing any more.
    pub fn destroy(mut self, here: NodeId) {
        let vm = self.vm;
        for mut root in core::mem::take(&mut self.roots) {
            let top = root.stage2.root();
            stage2::walk::destroy(&mut root.memory(vm), top, &mut |_, _| {});
            root.stage2.flush_tlb();
            frames::free(root.frame, here);
        }
        for frame in self.pmap.drain() {
            frames::free(frame, here);
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

const _: () = assert!(crate::arch::MAX_CPUS <= numa::tlb_sync::MAX_CPUS, "TlbSync's masks hold every CPU");

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
