//! Replication's pmap and memmap transitions under arbitrary interleavings
//! of guest reads and writes, first touches, replication, collapse and
//! migration, and merging into frames shared copy-on-write (`mm::cow`),
//! as the monitor's `mm::space` / `mm::replica` drive them: a replica is a
//! copy made while nobody can write, a write collapses first (and gives a
//! shared page a private copy, its replicas dropped), a migration moves
//! private pages only. Frame contents are modelled (a
//! value per machine frame), so the test sees a copy diverge or a write
//! get lost, and the memmap's counts see a frame leak.

use std::collections::HashMap;

use numa::memmap::{MemMap, NodeMemory, Use};
use numa::pmap::{PageState, Pmap};
use numa::{MemRange, NodeId, FRAME_SIZE};
use proptest::prelude::*;

const NODES: usize = 3;
const PAGES: u64 = 6;
const VM: u16 = 1;

fn machine() -> MemMap {
    let nodes = (0..NODES)
        .map(|n: NodeId| {
            let base = 0x4000_0000 * (n as u64 + 1);
            let ranges = [MemRange::new(base, base + 32 * FRAME_SIZE)];
            NodeMemory::new(n, &ranges, &[], NodeMemory::heap_storage(NodeMemory::storage_words(&ranges, &[])))
        })
        .collect();
    MemMap::new(nodes, |a, b| if a == b { 10 } else { 20 })
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, NodeId),
    Write(u64, NodeId, u32),
    Replicate(u64, NodeId),
    Migrate(u64, NodeId),
    /// A move that keeps the old frame as the old node's replica
    /// (`AfterMove::KeepOld`).
    MigrateKeep(u64, NodeId),
    /// Merge the page into a shared frame of equal content (`mm::merge`).
    Share(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..PAGES;
    let node = 0..NODES;
    prop_oneof![
        (page.clone(), node.clone()).prop_map(|(g, n)| Op::Read(g, n)),
        (page.clone(), node.clone(), any::<u32>()).prop_map(|(g, n, v)| Op::Write(g, n, v)),
        (page.clone(), node.clone()).prop_map(|(g, n)| Op::Replicate(g, n)),
        (page.clone(), node.clone()).prop_map(|(g, n)| Op::Migrate(g, n)),
        (page.clone(), node).prop_map(|(g, n)| Op::MigrateKeep(g, n)),
        page.prop_map(Op::Share),
    ]
}

/// The VM: its pmap, the memmap, and what every frame holds.
struct World {
    map: MemMap,
    pmap: Pmap,
    memory: HashMap<u64, u32>,
    /// What the guest last wrote to each page.
    written: HashMap<u64, u32>,
    /// The shared frames' own references (the boot-image cache's).
    cache: Vec<numa::memmap::Frame>,
}

impl World {
    /// A first touch from `node`: a zeroed frame there.
    fn touch(&mut self, gpfn: u64, node: NodeId) {
        if self.pmap.get(gpfn).is_none() {
            let frame = self.map.alloc(node, Use::Guest { vm: VM, gpfn }).expect("memory");
            self.memory.insert(frame.pa(), 0);
            self.pmap.map(gpfn, frame).unwrap();
        }
    }

    fn read(&mut self, gpfn: u64, node: NodeId) -> u32 {
        self.touch(gpfn, node);
        // The copy the node's root maps: its replica, else the master.
        let pa = self.pmap.frame_on(gpfn, node).unwrap_or_else(|| self.pmap.get(gpfn).unwrap().pa);
        self.memory[&pa]
    }

    fn write(&mut self, gpfn: u64, node: NodeId, value: u32) {
        self.touch(gpfn, node);
        let state = self.pmap.get(gpfn).unwrap().state;
        if state != PageState::Private {
            for frame in self.pmap.collapse(gpfn) {
                self.memory.remove(&frame.pa());
                assert!(self.map.free(frame, node));
            }
        }
        if state == PageState::CowShared {
            // The copy-on-write break: a private copy replaces the shared
            // frame, which only loses this reference (the cache holds one).
            let shared = self.pmap.get(gpfn).unwrap().pa;
            let frame = self.map.alloc(node, Use::Guest { vm: VM, gpfn }).expect("memory");
            self.memory.insert(frame.pa(), self.memory[&shared]);
            let old = self.pmap.replace(gpfn, frame).expect("a shared page without replicas is replaceable");
            assert!(!self.map.free(old, node), "the cache's reference keeps the shared frame");
            assert!(self.pmap.set_state(gpfn, PageState::Private));
        }
        let info = self.pmap.get(gpfn).unwrap();
        assert_eq!(info.replicas, 0, "a write must find no replica left");
        self.memory.insert(info.pa, value);
        self.written.insert(gpfn, value);
    }

    fn replicate(&mut self, gpfn: u64, node: NodeId) {
        let Some(info) = self.pmap.get(gpfn) else { return };
        if info.node == node || info.replicas & 1 << node != 0 {
            return;
        }
        let frame = self.map.alloc_on(node, Use::Replica { vm: VM, gpfn }).expect("memory");
        let pa = frame.pa();
        self.memory.insert(pa, self.memory[&info.pa]);
        if let Err(frame) = self.pmap.add_replica(gpfn, frame) {
            panic!("add_replica refused a copy on node {} of {info:?}", frame.node());
        }
    }

    fn migrate(&mut self, gpfn: u64, node: NodeId) {
        let Some(info) = self.pmap.get(gpfn) else { return };
        // `VmSpace::migrate` moves private pages only: moving a shared
        // frame would move it for every sharer.
        if info.node == node || info.state == PageState::CowShared {
            return;
        }
        let frame = self.map.alloc_on(node, Use::Guest { vm: VM, gpfn }).expect("memory");
        let (new, value) = (frame.pa(), self.memory[&info.pa]);
        match self.pmap.replace(gpfn, frame) {
            Ok(old) => {
                assert_eq!(info.state, PageState::Private, "a replicated page migrated");
                self.memory.remove(&old.pa());
                self.memory.insert(new, value);
                assert!(self.map.free(old, node));
            }
            Err(frame) => {
                assert_eq!(info.state, PageState::ReadShared, "a private page refused to migrate");
                assert!(self.map.free(frame, node));
            }
        }
    }

    /// `VmSpace::after_move` with `KeepOld`: the private page moves and
    /// its old frame, which holds the same content, becomes a replica.
    fn migrate_keep(&mut self, gpfn: u64, node: NodeId) {
        let Some(info) = self.pmap.get(gpfn).filter(|i| i.state == PageState::Private && i.node != node) else {
            return;
        };
        let frame = self.map.alloc_on(node, Use::Guest { vm: VM, gpfn }).expect("memory");
        let (new, value) = (frame.pa(), self.memory[&info.pa]);
        let old = self.pmap.replace(gpfn, frame).expect("a private page is replaceable");
        self.memory.insert(new, value);
        assert!(self.map.set_owner(&old, Use::Replica { vm: VM, gpfn }));
        if let Err(old) = self.pmap.add_replica(gpfn, old) {
            panic!("the old frame on node {} was refused as a replica", old.node());
        }
    }

    /// `mm::merge`: a private, unreplicated page gives up its frame for a
    /// shared one of equal content, which the cache keeps a reference to.
    fn share(&mut self, gpfn: u64) {
        let Some(info) = self.pmap.get(gpfn).filter(|i| i.state == PageState::Private && i.replicas == 0) else {
            return;
        };
        let cached = self.map.alloc(info.node, Use::Cache { disk: 9, block: gpfn }).expect("memory");
        self.memory.insert(cached.pa(), self.memory[&info.pa]);
        let mapped = self.map.share(&cached);
        self.cache.push(cached);
        let own = self.pmap.replace(gpfn, mapped).expect("an unreplicated page is replaceable");
        self.memory.remove(&own.pa());
        assert!(self.map.free(own, info.node));
        assert!(self.pmap.set_state(gpfn, PageState::CowShared));
    }

    /// Frames the memmap says the VM owns equal the pmap's masters and
    /// replicas; no replica shares a node with its master or another.
    fn check(&self) {
        let owned: usize = (0..NODES).map(|n| self.map.owned_by_vm(n, VM)).sum();
        let masters = self.pmap.iter_mapped().filter(|(_, i)| i.state != PageState::CowShared).count();
        assert_eq!(owned, masters + self.pmap.replica_count(), "frames leaked or double-held");
        for (gpfn, info) in self.pmap.iter_mapped() {
            assert_eq!(info.replicas & 1 << info.node, 0, "page {gpfn}: a replica on the master's node");
            if info.state != PageState::CowShared {
                assert_eq!(info.state == PageState::ReadShared, info.replicas != 0, "page {gpfn}: {info:?}");
            }
            for n in (0..NODES).filter(|n| info.replicas & 1 << n != 0) {
                let pa = self.pmap.frame_on(gpfn, n).unwrap();
                assert_eq!(self.memory[&pa], self.memory[&info.pa], "page {gpfn}: node {n}'s copy diverged");
            }
        }
    }
}

proptest! {
    #[test]
    fn copies_never_diverge_and_frames_balance(ops in prop::collection::vec(op(), 1..80)) {
        let mut w = World { map: machine(), pmap: Pmap::new(0, PAGES as usize), memory: HashMap::new(), written: HashMap::new(), cache: Vec::new() };
        for op in ops {
            match op {
                Op::Read(g, n) => {
                    let v = w.read(g, n);
                    prop_assert_eq!(v, w.written.get(&g).copied().unwrap_or(0), "node {} read a stale value of page {}", n, g);
                }
                Op::Write(g, n, v) => w.write(g, n, v),
                Op::Replicate(g, n) => w.replicate(g, n),
                Op::Migrate(g, n) => w.migrate(g, n),
                Op::MigrateKeep(g, n) => w.migrate_keep(g, n),
                Op::Share(g) => w.share(g),
            }
            w.check();
        }
        let frames: Vec<_> = w.pmap.drain().collect();
        for frame in frames.into_iter().chain(core::mem::take(&mut w.cache)) {
            w.map.free(frame, 0);
        }
        for n in 0..NODES {
            prop_assert_eq!(w.map.owned_by_vm(n, VM), 0);
            prop_assert_eq!(w.map.free_frames(n), w.map.total_frames(n), "node {}: frames not all back", n);
        }
    }
}
