//! Machine memory: the memmap (`numa::memmap`), which owns every frame of
//! every node and records what each is used for. Each node's per-frame
//! records live in that node's own memory, as Disco kept its memmap node
//! local; a frame freed by a CPU of another node goes back through its
//! owner's lock-free free ring. No machine-wide lock is taken anywhere.

use crate::arch::{heap, mem};
use alloc::vec::Vec;
use numa::{
    memmap::{Frame, MemMap, NodeMemory, Use},
    FrameAllocator, MemRange, NodeId, Topology, FRAME_SIZE,
};
use spin::Once;

static MEMMAP: Once<MemMap> = Once::new();
/// One byte of monitor heap per this many bytes of machine memory: the
/// pmaps alone take 1/256 of guest memory.
const HEAP_SHARE: u64 = 128;

/// Builds every node's memory from the topology, minus `reserved` (the
/// monitor image, DTB, boot bundle, counter region).
pub fn init(topology: &Topology, reserved: &[MemRange]) {
    MEMMAP.call_once(|| {
        let ram: u64 = topology.nodes().iter().flat_map(|n| n.memory.iter()).map(|r| r.end - r.start).sum();
        let heap_bytes = (ram / HEAP_SHARE).next_multiple_of(FRAME_SIZE);
        let nodes = topology
            .nodes()
            .iter()
            .map(|node| {
                let words = NodeMemory::storage_words(&node.memory, reserved);
                if words == 0 {
                    return NodeMemory::new(node.id, &node.memory, reserved, &[]);
                }
                let bytes = (words as u64 * 8).next_multiple_of(FRAME_SIZE);
                // The records go at the node's lowest free frames.
                let base = FrameAllocator::new(&node.memory, reserved)
                    .alloc_contiguous((bytes / FRAME_SIZE) as usize, 1)
                    .expect("a node too small for its own memmap");
                let mut node_reserved = reserved.to_vec();
                node_reserved.push(MemRange { start: base, end: base + bytes });
                if node.id == 0 {
                    let frames = (heap_bytes / FRAME_SIZE) as usize;
                    match FrameAllocator::new(&node.memory, &node_reserved).alloc_contiguous(frames, 1) {
                        Some(heap) => {
                            node_reserved.push(MemRange { start: heap, end: heap + heap_bytes });
                            // SAFETY: free RAM of node 0, reserved from its
                            // allocator just above, handed to the heap for good.
                            unsafe { heap::add_region(heap, heap_bytes as usize) };
                        }
                        None => log::warn!("no {} MiB on node 0 for the monitor heap", heap_bytes >> 20),
                    }
                }
                // SAFETY: [base, base + bytes) is free RAM of this node,
                // reserved from its allocator just above, used for nothing else.
                let storage = unsafe { mem::atomic_words(base, words) };
                NodeMemory::new(node.id, &node.memory, &node_reserved, storage)
            })
            .collect();
        MemMap::new(nodes, |a, b| topology.distance(a, b))
    });
}

pub fn memmap() -> &'static MemMap {
    MEMMAP.get().expect("frames::init not called")
}

/// A zeroed frame for `owner`, from `preferred` or the nearest node with one.
pub fn alloc(preferred: NodeId, owner: Use) -> Option<Frame> {
    let frame = memmap().alloc(preferred, owner)?;
    mem::zero_frame(frame.pa());
    Some(frame)
}

/// A frame (not zeroed) for `owner` from `node` only: a migration target.
pub fn alloc_on(node: NodeId, owner: Use) -> Option<Frame> {
    memmap().alloc_on(node, owner)
}

/// Gives a frame back; `here` is the node of the calling CPU.
pub fn free(frame: Frame, here: NodeId) {
    memmap().free(frame, here);
}

/// Free bytes per node, in node order.
pub fn free_bytes() -> Vec<u64> {
    let map = memmap();
    (0..map.node_count()).map(|n| map.free_frames(n) as u64 * FRAME_SIZE).collect()
}
