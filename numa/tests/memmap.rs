//! The memmap: owners, reference counts, fallback order, remote frees
//! through the ring, refusals of bad input; and a model-checked random
//! workout of memmap + pmaps together (alloc, map, migrate, share, free
//! from any node, unmap, teardown).

use std::collections::{BTreeMap, BTreeSet};

use numa::memmap::{Frame, MemMap, NodeMemory, Use, MAX_INDEX, MAX_REFS, MAX_VM};
use numa::pmap::Pmap;
use numa::ring::RING_CAPACITY;
use numa::{MemRange, NodeId, FRAME_SIZE};
use proptest::prelude::*;

const F: u64 = FRAME_SIZE;

fn node(id: NodeId, ranges: &[MemRange], reserved: &[MemRange]) -> NodeMemory {
    let words = NodeMemory::storage_words(ranges, reserved);
    NodeMemory::new(id, ranges, reserved, NodeMemory::heap_storage(words))
}

fn base(n: NodeId) -> u64 {
    0x4000_0000 * (n as u64 + 1)
}

/// Node `n` has `frames[n]` frames at `base(n)`.
fn machine(frames: &[u64], distance: impl Fn(NodeId, NodeId) -> u8) -> MemMap {
    let nodes = frames.iter().enumerate().map(|(n, &k)| node(n, &[MemRange::new(base(n), base(n) + k * F)], &[])).collect();
    MemMap::new(nodes, distance)
}

fn flat(a: NodeId, b: NodeId) -> u8 {
    if a == b {
        10
    } else {
        20
    }
}

fn guest(vm: u16, gpfn: u64) -> Use {
    Use::Guest { vm, gpfn }
}

#[test]
fn the_memmap_can_be_shared_between_cpus() {
    fn shareable<T: Send + Sync>() {}
    shareable::<MemMap>();
    shareable::<Frame>();
}

#[test]
fn alloc_records_owner_and_falls_back_nearest_first() {
    // 0 -> 2 is nearer than 0 -> 1; 1 and 2 tie from 3, lower id first.
    let d = [[10, 30, 20, 40], [30, 10, 20, 20], [20, 20, 10, 20], [40, 20, 20, 10]];
    let map = machine(&[2, 1, 1, 2], |a, b| d[a][b]);
    assert_eq!(map.node_count(), 4);
    let mut got = Vec::new();
    for gpfn in 0..4 {
        let f = map.alloc(0, guest(3, gpfn)).unwrap();
        assert_eq!(map.owner(f.pa()), Some((guest(3, gpfn), 1)));
        got.push(f);
    }
    let nodes: Vec<NodeId> = got.iter().map(Frame::node).collect();
    assert_eq!(nodes, [0, 0, 2, 1]);
    assert_eq!(map.alloc(3, guest(3, 9)).unwrap().node(), 3);
    assert_eq!(map.alloc(3, guest(3, 9)).unwrap().node(), 3);
    assert_eq!(map.alloc(3, guest(3, 9)), None, "machine full");
    let s0 = map.stats(0).snapshot();
    assert_eq!((s0.allocs, s0.fallbacks), (2, 2));
    assert_eq!(map.stats(3).snapshot().failed, 1);
    assert_eq!(map.alloc(9, guest(3, 9)), None, "unknown preferred node");
}

#[test]
fn alloc_on_never_falls_back() {
    let map = machine(&[1, 4], flat);
    let f = map.alloc_on(0, Use::Monitor).unwrap();
    assert_eq!(f.node(), 0);
    assert_eq!(map.alloc_on(0, Use::Monitor), None, "a full node means no migration");
    assert_eq!(map.free_frames(1), 4);
    assert_eq!(map.alloc_on(7, Use::Monitor), None);
    assert_eq!(map.stats(0).snapshot().failed, 1);
}

#[test]
fn remote_free_goes_through_the_ring_and_counts_stay_exact() {
    let map = machine(&[3, 3], flat);
    let f = map.alloc(0, guest(1, 5)).unwrap();
    let pa = f.pa();
    assert!(map.free(f, 1), "last reference: frame freed");
    assert_eq!(map.owner(pa), None);
    assert_eq!(map.stats(0).snapshot().remote_frees, 1);
    assert_eq!(map.free_frames(0), 3, "free_frames drains the ring");
    assert_eq!(map.stats(0).snapshot().frees, 1);
    // The drained frame is allocatable again.
    let again: Vec<u64> = (0..3).map(|i| map.alloc_on(0, guest(1, i)).unwrap().pa()).collect();
    assert!(again.contains(&pa));
}

#[test]
fn a_full_ring_falls_back_to_the_owner_lock() {
    let n = RING_CAPACITY as u64 + 10;
    let map = machine(&[n, 1], flat);
    let frames: Vec<Frame> = (0..n).map(|i| map.alloc_on(0, guest(1, i)).unwrap()).collect();
    assert_eq!(map.free_frames(0), 0);
    for f in frames {
        assert!(map.free(f, 1));
    }
    let s = map.stats(0).snapshot();
    assert_eq!(s.ring_full, 1, "the lock path drains the ring, so it fills once");
    assert_eq!(s.remote_frees, n - 1);
    assert_eq!(map.free_frames(0), n as usize);
    assert_eq!(map.stats(0).snapshot().frees, n);
}

#[test]
fn shares_count_and_the_last_free_frees() {
    let map = machine(&[2], flat);
    let f = map.alloc(0, Use::Cache { disk: 2, block: 77 }).unwrap();
    let pa = f.pa();
    let a = map.share(&f);
    let b = map.share(&a);
    assert_eq!(a.pa(), pa);
    assert_eq!(map.owner(pa), Some((Use::Cache { disk: 2, block: 77 }, 3)));
    assert!(!map.free(f, 0));
    assert!(!map.free(b, 0));
    assert_eq!(map.owner(pa).unwrap().1, 1);
    assert_eq!(map.free_frames(0), 1);
    assert!(map.free(a, 0));
    assert_eq!(map.free_frames(0), 2);
}

#[test]
fn a_saturated_refcount_sticks() {
    let map = machine(&[1], flat);
    let f = map.alloc(0, Use::Monitor).unwrap();
    let mut shares: Vec<Frame> = (1..MAX_REFS).map(|_| map.share(&f)).collect();
    assert_eq!(map.owner(f.pa()).unwrap().1, MAX_REFS);
    shares.push(map.share(&f)); // refused: stays at MAX_REFS
    assert_eq!(map.owner(f.pa()).unwrap().1, MAX_REFS);
    for s in shares {
        assert!(!map.free(s, 0));
    }
    assert!(!map.free(f, 0));
    assert_eq!(map.owner(0x4000_0000), Some((Use::Monitor, MAX_REFS)), "leaked, never freed under a user");
    assert_eq!(map.free_frames(0), 0);
}

#[test]
fn set_owner_relabels_and_refuses_what_does_not_fit() {
    let map = machine(&[2], flat);
    let f = map.alloc(0, guest(4, 10)).unwrap();
    let g = map.share(&f);
    assert!(map.set_owner(&f, Use::Replica { vm: 4, gpfn: 10 }));
    assert_eq!(map.owner(f.pa()), Some((Use::Replica { vm: 4, gpfn: 10 }, 2)));
    assert!(!map.set_owner(&f, guest(MAX_VM, 0)));
    assert!(!map.set_owner(&f, guest(1, MAX_INDEX)));
    assert_eq!(map.owner(f.pa()), Some((Use::Replica { vm: 4, gpfn: 10 }, 2)));
    assert!(!map.free(g, 0));
    assert!(map.free(f, 0));
}

#[test]
fn owners_that_do_not_fit_take_no_frame() {
    let map = machine(&[1], flat);
    assert_eq!(map.alloc(0, guest(MAX_VM, 1)), None);
    assert_eq!(map.alloc(0, Use::Cache { disk: 1, block: MAX_INDEX }), None);
    assert_eq!(map.alloc_on(0, Use::Table { vm: u16::MAX }), None);
    assert_eq!(map.free_frames(0), 1);
    assert!(map.alloc(0, guest(MAX_VM - 1, MAX_INDEX - 1)).is_some());
}

#[test]
fn node_of_skips_reserved_and_unmanaged_frames() {
    let n0 = node(0, &[MemRange::new(0x4000_0000, 0x4001_0000)], &[MemRange::new(0x4000_2000, 0x4000_3001)]);
    let n1 = node(1, &[MemRange::new(0x8000_0000, 0x8000_4000), MemRange::new(0x9000_0000, 0x9000_1000)], &[]);
    let map = MemMap::new(vec![n0, n1], flat);
    assert_eq!(map.total_frames(0), 16 - 2);
    assert_eq!(map.total_frames(1), 5);
    assert_eq!(map.node_of(0x4000_0000), Some(0));
    assert_eq!(map.node_of(0x4000_1fff), Some(0));
    assert_eq!(map.node_of(0x4000_2000), None, "reserved");
    assert_eq!(map.node_of(0x4000_3fff), None, "reserved (touched by the range)");
    assert_eq!(map.node_of(0x4000_4000), Some(0));
    assert_eq!(map.node_of(0x4001_0000), None);
    assert_eq!(map.node_of(0x8000_3abc), Some(1));
    assert_eq!(map.node_of(0x9000_0000), Some(1));
    assert_eq!(map.node_of(0), None);
    assert_eq!(map.node_of(u64::MAX), None);
    assert_eq!(map.owner(0x4000_2000), None);
    // Nothing handed out is reserved.
    let got: Vec<u64> = std::iter::from_fn(|| map.alloc_on(0, Use::Monitor)).map(|f| f.pa()).collect();
    assert_eq!(got.len(), 14);
    assert!(got.iter().all(|&pa| !(0x4000_2000..0x4000_4000).contains(&pa)));
}

#[test]
fn short_storage_manages_only_what_it_covers() {
    let ranges = [MemRange::new(0x4000_0000, 0x4000_0000 + 8 * F)];
    assert_eq!(NodeMemory::storage_words(&ranges, &[]), 8);
    let mem = NodeMemory::new(0, &ranges, &[], NodeMemory::heap_storage(5));
    let map = MemMap::new(vec![mem], flat);
    assert_eq!(map.total_frames(0), 5);
    assert_eq!(map.node_of(0x4000_0000 + 5 * F), None);
}

#[test]
fn unmanaged_frames_and_unknown_nodes_are_refused_without_panic() {
    let map = machine(&[1], flat);
    let other = machine(&[1, 1], flat);
    let stranger = other.alloc(1, Use::Monitor).unwrap();
    assert!(!map.free(stranger, 0));
    assert_eq!(map.free_frames(5), 0);
    assert_eq!(map.total_frames(5), 0);
    assert_eq!(map.owned_by_vm(5, 1), 0);
    assert_eq!(map.stats(5).snapshot(), Default::default());
}

#[test]
fn owned_by_vm_counts_guest_replica_and_table_frames() {
    let map = machine(&[8, 8], flat);
    let _keep = [
        map.alloc(0, guest(1, 0)),
        map.alloc(0, Use::Replica { vm: 1, gpfn: 0 }),
        map.alloc(0, Use::Table { vm: 1 }),
        map.alloc(0, Use::Table { vm: 2 }),
        map.alloc(0, Use::Cache { disk: 1, block: 0 }),
        map.alloc(0, Use::Monitor),
        map.alloc(1, guest(1, 1)),
    ];
    assert_eq!(map.owned_by_vm(0, 1), 3);
    assert_eq!(map.owned_by_vm(0, 2), 1);
    assert_eq!(map.owned_by_vm(1, 1), 1);
    assert_eq!(map.used_frames(0), 6);
}

// ---- the random workout ----

#[derive(Debug, Clone)]
enum Op {
    /// Fault in (vm, page) preferring `node`; onto a mapped page the map
    /// must give the frame back.
    Touch { vm: usize, page: u64, node: NodeId },
    /// Migrate (vm, page) to `node`, freeing the old frame from `node`.
    Migrate { vm: usize, page: u64, node: NodeId },
    /// Another reference to (vm, page)'s frame, held aside.
    Share { vm: usize, page: u64 },
    /// Drop a held share from `caller`.
    DropShare { index: usize, caller: NodeId },
    /// Unmap (vm, page) and free it from `caller`.
    Unmap { vm: usize, page: u64, caller: NodeId },
    /// Pin, or unpin if pinned.
    Pin { vm: usize, page: u64 },
    /// Free every frame of the VM from `caller`.
    Teardown { vm: usize, caller: NodeId },
}

const PAGES: u64 = 12;
const VMS: [(u16, u64); 2] = [(1, 0), (2, 0x1000)];

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    let (vm, page, node) = (0..VMS.len(), 0..PAGES, 0..nodes);
    prop_oneof![
        4 => (vm.clone(), page.clone(), node.clone()).prop_map(|(vm, page, node)| Op::Touch { vm, page, node }),
        3 => (vm.clone(), page.clone(), node.clone()).prop_map(|(vm, page, node)| Op::Migrate { vm, page, node }),
        2 => (vm.clone(), page.clone()).prop_map(|(vm, page)| Op::Share { vm, page }),
        2 => (0..8usize, node.clone()).prop_map(|(index, caller)| Op::DropShare { index, caller }),
        2 => (vm.clone(), page.clone(), node.clone()).prop_map(|(vm, page, caller)| Op::Unmap { vm, page, caller }),
        1 => (vm.clone(), page).prop_map(|(vm, page)| Op::Pin { vm, page }),
        1 => (vm, node).prop_map(|(vm, caller)| Op::Teardown { vm, caller }),
    ]
}

fn setup() -> impl Strategy<Value = (Vec<u64>, Vec<Vec<u8>>, Vec<Op>)> {
    (2usize..=3).prop_flat_map(|n| {
        (
            prop::collection::vec(1u64..8, n),
            prop::collection::vec(prop::collection::vec(11u8..40, n), n),
            prop::collection::vec(op(n), 1..80),
        )
    })
}

/// The model's view: references per frame (by pa) and its node.
struct Model {
    refs: BTreeMap<u64, (u32, NodeId)>,
    /// Frames handed out minus frames returned, per node.
    free: Vec<usize>,
}

impl Model {
    fn freed(&mut self, pa: u64, was_freed: bool) {
        let e = self.refs.get_mut(&pa).expect("model knows the frame");
        e.0 -= 1;
        assert_eq!(was_freed, e.0 == 0, "free reports the last reference");
        if e.0 == 0 {
            self.free[e.1] += 1;
            self.refs.remove(&pa);
        }
    }

    fn allocated(&mut self, f: &Frame) {
        assert!(self.refs.insert(f.pa(), (1, f.node())).is_none(), "frame {:#x} handed out twice", f.pa());
        self.free[f.node()] -= 1;
    }
}

fn check(map: &MemMap, pmaps: &[Pmap], model: &Model) {
    let n = map.node_count();
    let mut seen = BTreeSet::new();
    for (pmap, &(vm, base)) in pmaps.iter().zip(&VMS) {
        for (gpfn, info) in pmap.iter_mapped() {
            assert!(seen.insert(info.pa), "frame {:#x} mapped twice", info.pa);
            let refs = model.refs[&info.pa].0;
            assert_eq!(map.owner(info.pa), Some((guest(vm, gpfn), refs)), "owner of gpfn {gpfn:#x}");
            assert_eq!(map.node_of(info.pa), Some(info.node));
            assert!(gpfn >= base && gpfn < base + PAGES);
        }
        assert_eq!(pmap.mapped_per_node(n).iter().sum::<usize>(), pmap.iter_mapped().count());
    }
    for (&pa, &(refs, node)) in &model.refs {
        let (_, r) = map.owner(pa).expect("referenced frame has an owner");
        assert_eq!((r, map.node_of(pa)), (refs, Some(node)), "refcount of {pa:#x}");
    }
    for node in 0..n {
        let used = model.refs.values().filter(|r| r.1 == node).count();
        assert_eq!(map.free_frames(node), model.free[node], "free frames of node {node}");
        assert_eq!(map.free_frames(node) + map.used_frames(node), map.total_frames(node), "node {node} lost a frame");
        assert_eq!(map.used_frames(node), used);
        let by_vm: usize = VMS.iter().map(|&(vm, _)| map.owned_by_vm(node, vm)).sum();
        assert_eq!(by_vm, used, "every frame here is some VM's guest frame");
        let s = map.stats(node).snapshot();
        assert_eq!(s.allocs - s.frees, used as u64, "stats of node {node} add up");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn memmap_and_pmaps_never_lose_or_double_a_frame((frames, dist, ops) in setup()) {
        let n = frames.len();
        let d = |a: NodeId, b: NodeId| if a == b { 10 } else { dist[a.min(b)][a.max(b)] };
        let map = machine(&frames, d);
        let order = |p: NodeId| {
            let mut o: Vec<NodeId> = (0..n).collect();
            o.sort_by_key(|&m| (m != p, d(p, m), m));
            o
        };
        let mut pmaps: Vec<Pmap> = VMS.iter().map(|&(_, base)| Pmap::new(base, PAGES as usize)).collect();
        let mut shares: Vec<Frame> = Vec::new();
        let mut model = Model { refs: BTreeMap::new(), free: frames.iter().map(|&k| k as usize).collect() };
        for op in ops {
            match op {
                Op::Touch { vm, page, node } => {
                    let (id, base) = VMS[vm];
                    let want = order(node).into_iter().find(|&m| model.free[m] > 0);
                    let Some(f) = map.alloc(node, guest(id, base + page)) else {
                        prop_assert_eq!(want, None, "alloc failed with free frames left");
                        continue;
                    };
                    prop_assert_eq!(Some(f.node()), want, "fallback order");
                    model.allocated(&f);
                    let mapped = pmaps[vm].get(base + page).is_some();
                    match pmaps[vm].map(base + page, f) {
                        Ok(()) => prop_assert!(!mapped),
                        Err(f) => {
                            prop_assert!(mapped, "map refused an unmapped page");
                            let pa = f.pa();
                            let freed = map.free(f, node);
                            model.freed(pa, freed);
                        }
                    }
                }
                Op::Migrate { vm, page, node } => {
                    let (id, base) = VMS[vm];
                    let gpfn = base + page;
                    let Some(info) = pmaps[vm].get(gpfn) else { continue };
                    if info.node == node {
                        continue;
                    }
                    let Some(new) = map.alloc_on(node, guest(id, gpfn)) else {
                        prop_assert_eq!(model.free[node], 0);
                        continue;
                    };
                    model.allocated(&new);
                    match pmaps[vm].replace(gpfn, new) {
                        Ok(old) => {
                            prop_assert!(info.pins == 0);
                            prop_assert_eq!(old.pa(), info.pa);
                            prop_assert_eq!(pmaps[vm].get(gpfn).unwrap().moves, info.moves + 1);
                            let freed = map.free(old, node);
                            model.freed(info.pa, freed);
                        }
                        Err(new) => {
                            prop_assert!(info.pins > 0, "replace refused an unpinned page");
                            let pa = new.pa();
                            let freed = map.free(new, node);
                            model.freed(pa, freed);
                        }
                    }
                }
                Op::Share { vm, page } => {
                    let (_, base) = VMS[vm];
                    let Some(info) = pmaps[vm].get(base + page) else { continue };
                    // Borrow the frame through the pmap's own token.
                    let f = pmaps[vm].unmap(base + page);
                    let Some(f) = f else { continue }; // pinned
                    shares.push(map.share(&f));
                    model.refs.get_mut(&info.pa).unwrap().0 += 1;
                    prop_assert!(pmaps[vm].map(base + page, f).is_ok());
                }
                Op::DropShare { index, caller } => {
                    if index < shares.len() {
                        let f = shares.swap_remove(index);
                        let pa = f.pa();
                        let freed = map.free(f, caller);
                        model.freed(pa, freed);
                    }
                }
                Op::Unmap { vm, page, caller } => {
                    let (_, base) = VMS[vm];
                    let info = pmaps[vm].get(base + page);
                    match pmaps[vm].unmap(base + page) {
                        Some(f) => {
                            prop_assert_eq!(info.unwrap().pins, 0);
                            let pa = f.pa();
                            let freed = map.free(f, caller);
                            model.freed(pa, freed);
                        }
                        None => prop_assert!(info.is_none_or(|i| i.pins > 0)),
                    }
                }
                Op::Pin { vm, page } => {
                    let gpfn = VMS[vm].1 + page;
                    match pmaps[vm].get(gpfn) {
                        Some(i) if i.pins > 0 => pmaps[vm].unpin(gpfn),
                        Some(_) => prop_assert!(pmaps[vm].pin(gpfn)),
                        None => prop_assert!(!pmaps[vm].pin(gpfn)),
                    }
                }
                Op::Teardown { vm, caller } => {
                    let frames: Vec<Frame> = pmaps[vm].drain().collect();
                    for f in frames {
                        let pa = f.pa();
                        let freed = map.free(f, caller);
                        model.freed(pa, freed);
                    }
                    prop_assert_eq!(pmaps[vm].iter_mapped().count(), 0);
                }
            }
            check(&map, &pmaps, &model);
        }
        // Give everything back: the machine is whole again.
        for (vm, pmap) in pmaps.iter_mut().enumerate() {
            for f in pmap.drain().collect::<Vec<_>>() {
                let pa = f.pa();
                let freed = map.free(f, vm % n);
                model.freed(pa, freed);
            }
        }
        for f in shares {
            let pa = f.pa();
            let freed = map.free(f, 0);
            model.freed(pa, freed);
        }
        for node in 0..n {
            prop_assert_eq!(map.free_frames(node), map.total_frames(node));
        }
    }
}
