//! Merging a VM's copies of boot-image pages back into one frame shared by
//! every VM (see `mm::boot_image`): a kernel copies most of its text on
//! write while it boots (it patches itself), and every VM makes the same
//! copy, so after boot the copies are merged by content, at the page's
//! known offset in the image.
//!
//! Rounds run every [`EVERY`] placement intervals (half a second at the
//! default interval): a watch lasts that long, and a VM with nothing left
//! to merge costs a scan of its boot-image pages only that often.
//!
//! A page is merged only when stable: each round write-protects (watches)
//! a batch of the VM's private boot-image pages; one still clean at the
//! next round, so read-only and unchanged for an interval, is offered to
//! the image: if its content equals the image's booted copy (or there is
//! none yet and it becomes it) the VM maps that frame copy-on-write
//! instead and its own goes back to its node. A page is tried at most
//! [`MAX_TRIES`] times, a merge counting as a try (written data pages
//! stop costing).

use super::{boot_image, frames, VmSpace};
use crate::arch::stage2::{Stage2, PAGE_SIZE};
use alloc::vec::Vec;
use numa::{memmap::Frame, pmap::PageState, NodeId};
use stage2::{Perm, Pte};

/// Watches per page before the monitor gives up merging it.
pub const MAX_TRIES: u8 = 3;
/// Pages watched per VM per round.
const BATCH: usize = 1024;
/// Placement intervals between merge rounds.
pub const EVERY: u32 = 5;
/// Rounds a VM waits before its first: its kernel is still patching
/// itself early in boot, and a page merged before it is written again.
const DELAY_ROUNDS: u32 = 12;

impl VmSpace {
    /// One merge round for this VM (every [`EVERY`] intervals). Returns the
    /// pages merged.
    pub fn merge_boot_pages(&mut self, here: NodeId) -> usize {
        self.merge_rounds += 1;
        if self.merge_rounds <= DELAY_ROUNDS {
            return 0;
        }
        let mut offers = Vec::new();
        let mut watch = Vec::new();
        for &(first, pages, image) in &self.boot_images {
            for gpfn in first..first + pages as u64 {
                let Some(info) = self.pmap.get(gpfn) else { continue };
                let s = self.sharing(gpfn);
                if info.state != PageState::Private || info.pins > 0 || s.merge_tries >= MAX_TRIES {
                    continue;
                }
                match s.watched {
                    // Read-only since the last round and never written.
                    true => offers.push((gpfn, image, (gpfn - first) as usize, info.pa, info.node)),
                    false if watch.len() < BATCH => watch.push(gpfn),
                    false => {}
                }
            }
        }
        let mut merges: Vec<(u64, Frame)> = Vec::new();
        for (gpfn, image, page, pa, node) in offers {
            self.tried(gpfn);
            if let Some(frame) = boot_image::offer_booted(image, page, pa, node) {
                merges.push((gpfn, frame));
            }
        }
        for &gpfn in &watch {
            self.tried(gpfn);
        }
        self.watch(&watch);
        let merged = self.map_booted(merges, here);
        self.stats.merged += merged as u64;
        merged
    }

    fn tried(&mut self, gpfn: u64) {
        let s = self.sharing.entry(gpfn).or_default();
        s.merge_tries = s.merge_tries.saturating_add(1);
    }

    /// Replaces each page's private frame by the shared `frame` (equal
    /// content), mapped read-only copy-on-write: broken in every root, one
    /// invalidation, then remapped; the private frames are freed.
    fn map_booted(&mut self, merges: Vec<(u64, Frame)>, here: NodeId) -> usize {
        let ipas: Vec<u64> = merges.iter().map(|(gpfn, _)| gpfn * PAGE_SIZE).collect();
        for &ipa in &ipas {
            let _ = self.set(ipa, Pte::EMPTY);
        }
        self.invalidate(&ipas);
        let mut merged = 0;
        for (gpfn, frame) in merges {
            let pa = frame.pa();
            match self.pmap.replace(gpfn, frame) {
                Ok(own) => {
                    frames::free(own, here);
                    self.pmap.set_state(gpfn, PageState::CowShared);
                    self.pmap.reset_moves(gpfn);
                    // Its tries stay: a page the guest keeps writing after
                    // each merge stops being merged.
                    if let Some(s) = self.sharing.get_mut(&gpfn) {
                        s.watched = false;
                    }
                    let _ = self.set(gpfn * PAGE_SIZE, Pte::page(pa, Perm::RX));
                    merged += 1;
                }
                Err(frame) => {
                    frames::free(frame, here);
                    // Unchanged: the page keeps its own frame, read-only
                    // until a write ends the watch.
                    if let Some(info) = self.pmap.get(gpfn) {
                        let _ = self.set(gpfn * PAGE_SIZE, Pte::page(info.pa, Perm::RX));
                    }
                }
            }
        }
        Stage2::publish();
        merged
    }
}
