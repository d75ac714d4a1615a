//! Machine memory: one frame allocator per NUMA node, and the boot regions
//! kept out of them (monitor image, host DTB, boot bundle).

use alloc::vec::Vec;
use numa::{FrameAllocator, MemRange, NodeId, Topology};
use spin::{Mutex, Once};

struct Node {
    id: NodeId,
    frames: Mutex<FrameAllocator>,
}

static NODES: Once<Vec<Node>> = Once::new();
/// Nodes ordered by distance from each node: where to fall back to.
static FALLBACK: Once<Vec<Vec<NodeId>>> = Once::new();

/// Builds the per-node allocators from the topology, minus `reserved`.
pub fn init(topology: &Topology, reserved: &[MemRange]) {
    NODES.call_once(|| {
        topology
            .nodes()
            .iter()
            .map(|node| Node { id: node.id, frames: Mutex::new(FrameAllocator::new(&node.memory, reserved)) })
            .collect()
    });
    FALLBACK.call_once(|| {
        let count = topology.node_count();
        (0..count)
            .map(|from| {
                let mut order: Vec<NodeId> = (0..count).collect();
                order.sort_by_key(|&to| (topology.distance(from, to), to));
                order
            })
            .collect()
    });
}

fn nodes() -> &'static [Node] {
    NODES.get().expect("memory::init not called")
}

/// A zeroed 4 KiB frame, from `preferred` if it has one, else from the
/// nearest node that does. Returns the frame and the node it came from.
pub fn alloc_frame(preferred: NodeId) -> Option<(u64, NodeId)> {
    let order = FALLBACK.get()?.get(preferred)?;
    for &id in order {
        let node = nodes().iter().find(|n| n.id == id)?;
        if let Some(pa) = node.frames.lock().alloc() {
            crate::arch::mem::zero_frame(pa);
            return Some((pa, id));
        }
    }
    None
}

/// Returns a frame to the allocator of the node that owns it.
pub fn free_frame(pa: u64) {
    match nodes().iter().find(|n| n.frames.lock().contains(pa)) {
        Some(node) => {
            if node.frames.lock().free(pa).is_err() {
                log::error!("frame {pa:#x} freed twice");
            }
        }
        None => log::error!("frame {pa:#x} belongs to no node"),
    }
}

/// Free bytes per node, in node order.
pub fn free_bytes() -> Vec<u64> {
    nodes().iter().map(|n| n.frames.lock().free_frames() as u64 * numa::FRAME_SIZE).collect()
}
