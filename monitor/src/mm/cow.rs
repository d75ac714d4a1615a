//! Copy-on-write sharing of machine frames between VMs: a guest page
//! whose content equals a shared frame's (a boot-image page merged by
//! `mm::merge`, a disk block of `mm::block_cache`) gives up its own frame
//! and maps the shared one read-only (`PageState::CowShared`); the first
//! write gives it a private copy again (`break_cow`, from the write fault
//! in `mm::replica`).

use super::{frames, VmSpace};
use crate::arch::{
    mem,
    stage2::{copy_frame, Stage2, PAGE_SIZE},
};
use alloc::vec::Vec;
use numa::{
    memmap::{Frame, Use},
    pmap::PageState,
    NodeId,
};
use stage2::{Perm, Pte};

impl VmSpace {
    /// Guest pages `first..first + pages` hold page 0.. of boot image
    /// `image`: `mm::merge` may share them with other VMs' copies.
    pub fn add_boot_image(&mut self, first: u64, pages: usize, image: usize) {
        self.boot_images.push((first, pages, image));
    }

    /// Pages mapped to a frame shared with other VMs: (boot-image pages,
    /// the others: cached disk blocks).
    pub fn cow_shared_pages(&self) -> (usize, usize) {
        let in_image =
            |gpfn: u64| self.boot_images.iter().any(|&(first, n, _)| (first..first + n as u64).contains(&gpfn));
        let shared = self.pmap.iter_mapped().filter(|(_, i)| i.state == PageState::CowShared);
        shared
            .fold((0, 0), |(image, disk), (gpfn, _)| if in_image(gpfn) { (image + 1, disk) } else { (image, disk + 1) })
    }

    /// Replaces each page's private frame by the shared `frame` of equal
    /// content (a merged boot-image page, a cached disk block), mapped
    /// read-only copy-on-write: broken in every root, one invalidation,
    /// then remapped; the private frames are freed. With `verify`, a page
    /// whose content differs once no CPU can write it any more (it was
    /// written since it was found equal) is not shared. A page whose frame
    /// cannot be replaced keeps its own, mapped with `keep`. Returns the
    /// pages now shared.
    pub(super) fn map_cow_shared(
        &mut self,
        merges: Vec<(u64, Frame)>,
        here: NodeId,
        (keep, verify): (Perm, bool),
    ) -> usize {
        let ipas: Vec<u64> = merges.iter().map(|(gpfn, _)| gpfn * PAGE_SIZE).collect();
        for &ipa in &ipas {
            let _ = self.set(ipa, Pte::EMPTY);
        }
        self.invalidate(&ipas);
        let mut shared = 0;
        for (gpfn, frame) in merges {
            let pa = frame.pa();
            // SAFETY: both are whole frames: the VM's own, unmapped now,
            // and a shared one, only ever mapped read-only.
            let differs = verify && self.page(gpfn).is_some_and(|own| unsafe { !mem::frames_equal(own.pa, pa) });
            let replaced = if differs { Err(frame) } else { self.pmap.replace(gpfn, frame) };
            match replaced {
                Ok(own) => {
                    frames::free(own, here);
                    self.pmap.set_state(gpfn, PageState::CowShared);
                    self.pmap.reset_moves(gpfn);
                    // Its merge tries stay: a page the guest keeps writing
                    // after each merge stops being merged.
                    if let Some(s) = self.sharing.get_mut(&gpfn) {
                        s.watched = false;
                    }
                    let _ = self.set(gpfn * PAGE_SIZE, Pte::page(pa, Perm::RX));
                    shared += 1;
                }
                Err(frame) => {
                    frames::free(frame, here);
                    if let Some(info) = self.pmap.get(gpfn) {
                        let _ = self.set(gpfn * PAGE_SIZE, Pte::page(info.pa, keep));
                    }
                }
            }
        }
        Stage2::publish();
        shared
    }

    /// Maps cached disk blocks (`mm::block_cache`) at the guest pages a
    /// read just filled with their contents, as (guest address, frame
    /// reference); a page that is not plain private memory (shared,
    /// replicated, watched or pinned), or no longer holds the block (a
    /// later part of the same requests wrote it), keeps its copy. Returns
    /// the pages now shared.
    pub fn map_disk_blocks(&mut self, blocks: Vec<(u64, Frame)>, here: NodeId) -> usize {
        let mut merges = Vec::with_capacity(blocks.len());
        for (gpa, frame) in blocks {
            let gpfn = gpa / PAGE_SIZE;
            let plain =
                self.page(gpfn).is_some_and(|i| i.state == PageState::Private && i.pins == 0 && i.replicas == 0)
                    && !self.sharing(gpfn).watched;
            if plain {
                merges.push((gpfn, frame));
            } else {
                frames::free(frame, here);
            }
        }
        let shared = self.map_cow_shared(merges, here, (Perm::RWX, true));
        self.stats.disk_shared += shared as u64;
        shared
    }

    /// Gives a `CowShared` page its own frame, a copy, mapped writable in
    /// every root; the shared frame loses a reference and the page's
    /// replicas (`mm::replica`) are freed. False: no memory.
    pub(super) fn break_cow(&mut self, gpfn: u64, shared: u64, here: NodeId) -> bool {
        let Some(frame) = frames::alloc(here, Use::Guest { vm: self.vm(), gpfn }) else { return false };
        let (ipa, pa) = (gpfn * PAGE_SIZE, frame.pa());
        copy_frame(pa, shared);
        // Another frame: break, invalidate, make.
        let _ = self.set(ipa, Pte::EMPTY);
        self.invalidate(&[ipa]);
        for replica in self.pmap.collapse(gpfn) {
            frames::free(replica, here);
        }
        match self.pmap.replace(gpfn, frame) {
            Ok(old) => {
                frames::free(old, here);
                self.pmap.set_state(gpfn, PageState::Private);
                self.pmap.reset_moves(gpfn);
                let _ = self.set(ipa, Pte::page(pa, Perm::RWX));
            }
            Err(frame) => {
                frames::free(frame, here);
                let _ = self.set(ipa, Pte::page(shared, Perm::RX));
            }
        }
        Stage2::publish();
        self.stats.cow_breaks += 1;
        true
    }
}
