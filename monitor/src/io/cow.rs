//! Where a VM's copy-on-write overlay keeps its blocks (`cow_disk::Overlay`):
//! machine frames from the VM's home node, owned by the VM in the memmap
//! (`Use::Overlay`), so they count as the VM's memory and the teardown
//! check sees any left behind.

use crate::{arch::mem, mm::frames};
use cow_disk::BlockStore;
use numa::{
    memmap::{Frame, Use},
    NodeId,
};

pub struct OverlayFrames {
    /// The VM's memmap owner id.
    pub vm: u16,
    /// Where new blocks come from (the nearest node with memory if it has
    /// none), and the node frees are made from.
    pub node: NodeId,
}

impl BlockStore for OverlayFrames {
    type Block = Frame;

    fn alloc(&mut self, block: u64) -> Option<Frame> {
        let frame = frames::alloc(self.node, Use::Overlay { vm: self.vm, block });
        if frame.is_none() {
            log::warn!("VMID {}: no memory for a copy-on-write disk block", self.vm);
        }
        frame
    }

    fn read(&self, b: &Frame, offset: usize, buf: &mut [u8]) {
        // SAFETY: a frame of this overlay, written only under the disk's
        // lock, which the caller holds; the overlay keeps ranges inside it.
        buf.copy_from_slice(unsafe { mem::slice(b.pa() + offset as u64, buf.len()) });
    }

    fn write(&mut self, b: &Frame, offset: usize, data: &[u8]) {
        // SAFETY: as for read.
        unsafe { mem::slice_mut(b.pa() + offset as u64, data.len()) }.copy_from_slice(data);
    }

    fn free(&mut self, b: Frame) {
        frames::free(b, self.node);
    }
}
