//! Guest pages the guest gave back (virtio-balloon's free page reporting
//! and inflation): unmapped in every root with break-before-make, their
//! frames (and replicas) returned to their nodes through the memmap. The
//! guest's next touch of such a page faults and gets a fresh zeroed frame
//! ([`VmSpace::touch`]), as after boot.

use super::{frames, VmSpace};
use crate::arch::stage2::{Stage2, PAGE_SIZE};
use alloc::vec::Vec;
use numa::NodeId;
use stage2::Pte;

impl VmSpace {
    /// Drops guest pages `gpfns`: every one that holds a frame and is not
    /// pinned by in-flight I/O loses it (a page the guest reports is free
    /// in the guest, so nothing else of the VM reads it). Pages without a
    /// frame are skipped. Returns the guest pages that held a frame.
    pub fn discard(&mut self, gpfns: core::ops::Range<u64>, here: NodeId) -> usize {
        let dropped: Vec<u64> = gpfns.filter(|&gpfn| self.pmap.get(gpfn).is_some_and(|info| info.pins == 0)).collect();
        // Break in every root, then one invalidation for all of them.
        for &gpfn in &dropped {
            let _ = self.set(gpfn * PAGE_SIZE, Pte::EMPTY);
        }
        let ipas: Vec<u64> = dropped.iter().map(|gpfn| gpfn * PAGE_SIZE).collect();
        self.invalidate(&ipas);
        for &gpfn in &dropped {
            for replica in self.pmap.collapse(gpfn) {
                frames::free(replica, here);
            }
            if let Some(frame) = self.pmap.unmap(gpfn) {
                frames::free(frame, here);
            }
            self.sharing.remove(&gpfn);
        }
        Stage2::publish();
        dropped.len()
    }
}
