//! The pmap: every edge of map / unmap / replace / pin / freeze /
//! replicas / drain, with frames from a real memmap.

use numa::memmap::{Frame, MemMap, NodeMemory, Use};
use numa::pmap::{PageState, Pmap};
use numa::{MemRange, NodeId, FRAME_SIZE};

const F: u64 = FRAME_SIZE;

/// Two nodes of 16 frames each.
fn machine() -> MemMap {
    let nodes = (0..2)
        .map(|n: NodeId| {
            let base = 0x4000_0000 * (n as u64 + 1);
            let ranges = [MemRange::new(base, base + 16 * F)];
            NodeMemory::new(n, &ranges, &[], NodeMemory::heap_storage(NodeMemory::storage_words(&ranges, &[])))
        })
        .collect();
    MemMap::new(nodes, |a, b| if a == b { 10 } else { 20 })
}

fn frame(map: &MemMap, node: NodeId, gpfn: u64) -> Frame {
    map.alloc_on(node, Use::Guest { vm: 1, gpfn }).unwrap()
}

#[test]
fn slots_are_small() {
    // 16 bytes per guest page is the budget; checked at compile time too.
    let pmap = Pmap::new(0, 1 << 20);
    assert_eq!(pmap.pages(), 1 << 20);
}

#[test]
fn map_get_unmap() {
    let map = machine();
    let mut pmap = Pmap::new(0x100, 4);
    assert_eq!(pmap.base_gpfn(), 0x100);
    let f = frame(&map, 1, 0x101);
    let pa = f.pa();
    assert_eq!(pmap.get(0x101), None);
    pmap.map(0x101, f).unwrap();
    let info = pmap.get(0x101).unwrap();
    assert_eq!((info.pa, info.node, info.state), (pa, 1, PageState::Private));
    assert_eq!((info.replicas, info.pins, info.moves, info.frozen_until), (0, 0, 0, 0));
    assert_eq!(pmap.mapped_per_node(2), [0, 1]);
    assert_eq!(pmap.mapped_per_node(1), [0], "nodes beyond the count are left out");
    let back = pmap.unmap(0x101).unwrap();
    assert_eq!((back.pa(), back.node()), (pa, 1));
    assert_eq!(pmap.get(0x101), None);
    assert!(pmap.unmap(0x101).is_none());
    assert!(map.free(back, 1));
}

#[test]
fn map_onto_a_mapped_page_gives_the_frame_back() {
    let map = machine();
    let mut pmap = Pmap::new(0, 4);
    pmap.map(2, frame(&map, 0, 2)).unwrap();
    let second = frame(&map, 0, 2);
    let pa = second.pa();
    let back = pmap.map(2, second).unwrap_err();
    assert_eq!(back.pa(), pa);
    assert_ne!(pmap.get(2).unwrap().pa, pa);
}

#[test]
fn out_of_range_gpfns_are_refused() {
    let map = machine();
    let mut pmap = Pmap::new(0x100, 4);
    for gpfn in [0, 0xff, 0x104, u64::MAX] {
        let f = frame(&map, 0, 0);
        let f = pmap.map(gpfn, f).unwrap_err();
        assert!(pmap.get(gpfn).is_none());
        assert!(pmap.unmap(gpfn).is_none());
        assert!(!pmap.pin(gpfn));
        pmap.unpin(gpfn);
        pmap.freeze(gpfn, 5);
        pmap.reset_moves(gpfn);
        assert!(pmap.replace(gpfn, f).is_err());
    }
    assert_eq!(pmap.iter_mapped().count(), 0);
}

#[test]
fn a_pinned_page_refuses_unmap_and_replace() {
    let map = machine();
    let mut pmap = Pmap::new(0, 2);
    pmap.map(0, frame(&map, 0, 0)).unwrap();
    assert!(pmap.pin(0) && pmap.pin(0));
    assert_eq!(pmap.get(0).unwrap().pins, 2);
    assert!(pmap.unmap(0).is_none());
    let new = frame(&map, 1, 0);
    let new = pmap.replace(0, new).unwrap_err();
    pmap.unpin(0);
    assert!(pmap.unmap(0).is_none(), "still one pin");
    pmap.unpin(0);
    pmap.unpin(0); // logged, no underflow
    assert_eq!(pmap.get(0).unwrap().pins, 0);
    let old = pmap.replace(0, new).unwrap();
    assert_eq!(old.node(), 0);
    assert!(pmap.unmap(0).is_some());
    assert!(!pmap.pin(1), "unmapped pages cannot be pinned");
}

#[test]
fn replace_moves_keeps_state_and_counts() {
    let map = machine();
    let mut pmap = Pmap::new(0, 1);
    assert!(pmap.replace(0, frame(&map, 1, 0)).is_err(), "unmapped");
    pmap.map(0, frame(&map, 0, 0)).unwrap();
    pmap.freeze(0, 42);
    assert!(pmap.set_state(0, PageState::CowShared));
    for i in 1..=3u8 {
        let target = i as usize % 2;
        let old = pmap.replace(0, frame(&map, target, 0)).unwrap();
        assert_eq!(old.node(), 1 - target);
        let info = pmap.get(0).unwrap();
        assert_eq!((info.node, info.moves, info.state, info.frozen_until), (target, i, PageState::CowShared, 42));
        assert!(map.free(old, target));
    }
    pmap.reset_moves(0);
    assert_eq!(pmap.get(0).unwrap().moves, 0);
    assert_eq!(pmap.get(0).unwrap().frozen_until, 42);
}

#[test]
fn replicas_make_a_page_read_shared_until_collapsed() {
    let map = machine();
    let mut pmap = Pmap::new(0, 2);
    pmap.map(1, frame(&map, 0, 1)).unwrap();
    let master = pmap.get(1).unwrap().pa;
    let same_node = pmap.add_replica(1, frame(&map, 0, 1)).unwrap_err();
    assert!(map.free(same_node, 0));
    let r = frame(&map, 1, 1);
    let rpa = r.pa();
    pmap.add_replica(1, r).unwrap();
    let info = pmap.get(1).unwrap();
    assert_eq!((info.state, info.replicas), (PageState::ReadShared, 0b10));
    assert_eq!(pmap.frame_on(1, 0), Some(master));
    assert_eq!(pmap.frame_on(1, 1), Some(rpa));
    let twice = pmap.add_replica(1, frame(&map, 1, 1)).unwrap_err();
    assert!(map.free(twice, 1));
    assert!(pmap.unmap(1).is_none(), "collapse first");
    let new = pmap.replace(1, frame(&map, 1, 1)).unwrap_err();
    assert!(map.free(new, 1));
    let gone = pmap.collapse(1);
    assert_eq!(gone.iter().map(Frame::pa).collect::<Vec<_>>(), [rpa]);
    assert_eq!(pmap.get(1).unwrap().state, PageState::Private);
    assert!(pmap.collapse(1).is_empty());
    assert!(pmap.add_replica(0, frame(&map, 1, 0)).is_err(), "unmapped");
}

#[test]
fn a_cow_shared_page_keeps_its_state_through_replicas() {
    let map = machine();
    let mut pmap = Pmap::new(0, 1);
    pmap.map(0, frame(&map, 0, 0)).unwrap();
    assert!(pmap.set_state(0, PageState::CowShared));
    pmap.add_replica(0, frame(&map, 1, 0)).unwrap();
    let info = pmap.get(0).unwrap();
    assert_eq!((info.state, info.replicas), (PageState::CowShared, 0b10));
    let new = pmap.replace(0, frame(&map, 1, 0)).unwrap_err();
    assert!(map.free(new, 1), "a copy-on-write break collapses first");
    let gone = pmap.collapse(0);
    assert_eq!(gone.len(), 1);
    assert_eq!((pmap.get(0).unwrap().state, pmap.get(0).unwrap().replicas), (PageState::CowShared, 0));
    for f in gone.into_iter().chain(pmap.unmap(0)) {
        let node = f.node();
        assert!(map.free(f, node));
    }
}

#[test]
fn drain_takes_everything_even_pinned_and_replicas() {
    let map = machine();
    let mut pmap = Pmap::new(0, 4);
    for g in 0..3 {
        pmap.map(g, frame(&map, (g % 2) as usize, g)).unwrap();
    }
    assert!(pmap.pin(0));
    pmap.add_replica(0, frame(&map, 1, 0)).unwrap();
    assert_eq!(pmap.iter_mapped().map(|(g, _)| g).collect::<Vec<_>>(), [0, 1, 2]);
    // A drain dropped half-way leaves the rest in the pmap.
    let first: Vec<Frame> = pmap.drain().take(1).collect();
    assert_eq!(first.len(), 1);
    let rest: Vec<Frame> = pmap.drain().collect();
    assert_eq!(rest.len(), 3, "two masters and one replica");
    assert_eq!(pmap.iter_mapped().count(), 0);
    assert_eq!(pmap.drain().count(), 0);
    for f in first.into_iter().chain(rest) {
        let node = f.node();
        assert!(map.free(f, node));
    }
    assert_eq!(map.free_frames(0) + map.free_frames(1), 32);
}
