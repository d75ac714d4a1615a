//! Merging a VM's copies of boot-image pages back into one frame shared by
//! every VM (see `mm::boot_image`): a kernel copies most of its text on
//! write while it boots (it patches itself), and every VM makes the same
//! copy, so after boot the copies are merged by content, at the page's
//! known offset in the image.
//!
//! Rounds start once the guest runs user space (its kernel has finished
//! patching itself and unpacking the initrd) and run every [`EVERY`]
//! placement intervals (half a second at the default interval): a watch
//! lasts that long, and a VM with nothing left to merge costs a scan of
//! its boot-image pages only that often. A round costs up to two TLB
//! broadcasts (the watch, the remap), and under QEMU's TCG a broadcast
//! stops every vCPU of the machine, so VMs take turns, [`PER_TURN`] a
//! round ([`due`]), each with a batch of at most [`BATCH`] pages.
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
use alloc::vec::Vec;
use numa::{memmap::Frame, pmap::PageState, NodeId};
use stage2::Perm;

/// Watches per page before the monitor gives up merging it.
pub const MAX_TRIES: u8 = 3;
/// Pages watched per round. The round holds the VM's space lock (its
/// vCPUs' faults wait) and keeps its CPU from running vCPUs, so it is
/// kept short: 64 booting VMs with whole-image rounds (16384 pages) were
/// several times slower to come up (`many-vms`).
const BATCH: usize = 2048;
/// Placement intervals between merge rounds.
pub const EVERY: u32 = 5;
/// VMs that merge in one round, machine-wide: the rounds' cost stays that
/// of one VM's batch however many VMs run.
pub const PER_TURN: usize = 1;

/// Is it the turn, in placement interval `interval`, of the VM at
/// `position` among the `count` VMs whose guests run user space?
pub fn due(interval: u32, position: usize, count: usize) -> bool {
    let turns = count.div_ceil(PER_TURN).max(1);
    interval.is_multiple_of(EVERY) && (interval / EVERY) as usize % turns == position / PER_TURN
}

impl VmSpace {
    /// One merge round for this VM (every [`EVERY`] intervals). Returns the
    /// pages merged.
    pub fn merge_boot_pages(&mut self, here: NodeId) -> usize {
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
                    true => offers.push((gpfn, image, (gpfn - first) as usize, info.pa)),
                    false if watch.len() < BATCH => watch.push(gpfn),
                    false => {}
                }
            }
        }
        let mut merges: Vec<(u64, Frame)> = Vec::new();
        for (gpfn, image, page, pa) in offers {
            self.tried(gpfn);
            let adopt = || self.pmap.share_frame(gpfn, frames::memmap());
            if let Some(frame) = boot_image::offer_booted(image, page, pa, adopt) {
                merges.push((gpfn, frame));
            }
        }
        for &gpfn in &watch {
            self.tried(gpfn);
        }
        self.watch(&watch);
        // A page whose frame could not be replaced stays watched (read-only).
        let merged = self.map_cow_shared(merges, here, (Perm::RX, false));
        self.stats.merged += merged as u64;
        merged
    }

    fn tried(&mut self, gpfn: u64) {
        let s = self.sharing.entry(gpfn).or_default();
        s.merge_tries = s.merge_tries.saturating_add(1);
    }
}
