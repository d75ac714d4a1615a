//! Boot images shared between VMs (Disco's shared kernel and initrd; issue
//! 14). Every VM that boots a kernel Image or base initramfs first gets
//! its own copy (written at load, as without sharing), and the monitor then
//! merges the copies page by page (`mm::merge`): the image keeps each page
//! *as booted*, the first stable copy any VM of the trust group offered,
//! and a VM whose copy has equal content maps that frame read-only,
//! copy-on-write (pmap state `CowShared`, one memmap reference each) and
//! frees its own, as VMware ESX and KSM merge equal pages, but only at
//! known offsets of a known image.
//!
//! Why not map one loaded copy into every VM from the start: a kernel
//! patches its own text at boot (ftrace rewrites every function's entry,
//! alternatives patch instructions), so most pages would be copied on
//! write during boot anyway, each copy a break-before-make with a TLB
//! broadcast. Under QEMU's TCG a broadcast stops every vCPU, and 64 VMs
//! booting that way did not finish booting in 10 minutes (`many-vms`).
//!
//! The cache keeps one reference of its own to each booted frame, so a
//! VM that restarts finds them; [`release_all`] drops them when the last
//! VM ended.

use super::frames;
use crate::arch::mem;
use alloc::vec::Vec;
use numa::{
    memmap::{Frame, Use, MAX_VM},
    NodeId,
};
use spin::Mutex;

struct Image {
    /// The image's bytes in the boot bundle (address and length identify
    /// it) and the trust group whose VMs share this copy: VMs of different
    /// groups never map the same frame.
    key: (usize, usize, &'static str),
    /// Per page, its content as booted guests left it (see the module doc).
    booted: Vec<Option<Frame>>,
}

static IMAGES: Mutex<Vec<Image>> = Mutex::new(Vec::new());

/// The memmap owner of page `block` of image `index`: a block-cache entry
/// of a disk id no real disk has (they count up from 0).
fn owner(index: usize, block: usize) -> Use {
    Use::Cache { disk: MAX_VM - 1 - index as u16, block: block as u64 }
}

/// The index of `data`'s entry for trust group `group` (made on first
/// use), for [`offer_booted`] of its first `pages` pages.
pub fn register(data: &'static [u8], pages: usize, group: &'static str) -> usize {
    let key = (data.as_ptr() as usize, data.len(), group);
    let mut images = IMAGES.lock();
    if let Some(index) = images.iter().position(|i| i.key == key) {
        return index;
    }
    log::info!(
        "boot image {} ({} KiB) registered for share group {:?}",
        images.len(),
        data.len() >> 10,
        if group.is_empty() { "(the run's)" } else { group }
    );
    images.push(Image { key, booted: (0..pages).map(|_| None).collect() });
    images.len() - 1
}

/// A VM offers its copy (at machine address `pa`, read-only while this
/// runs) of page `page` of image `index`: a reference to the image's
/// booted frame if it has the same content (the caller maps it instead of
/// its own), or if there was none yet: then the VM's own frame becomes the
/// booted one (`adopt` gives another reference to it), relabelled in the
/// memmap and kept, not copied: under the ccNUMA plugin a copy is a
/// thousand modelled accesses, and a round adopts thousands of pages. None:
/// a different content.
pub fn offer_booted(index: usize, page: usize, pa: u64, adopt: impl FnOnce() -> Option<Frame>) -> Option<Frame> {
    let mut images = IMAGES.lock();
    let image = images.get_mut(index)?;
    let map = frames::memmap();
    match image.booted.get(page)? {
        // SAFETY: both are whole frames nobody writes: the caller's copy
        // is mapped read-only, a booted frame only ever read-only.
        Some(frame) => unsafe { mem::frames_equal(frame.pa(), pa) }.then(|| map.share(frame)),
        None => {
            let frame = adopt()?;
            map.set_owner(&frame, owner(index, page));
            let copy = map.share(&frame);
            image.booted[page] = Some(frame);
            Some(copy)
        }
    }
}

/// Drops the cache's own references (the last VM ended): frames no VM
/// maps go back to their nodes.
pub fn release_all(here: NodeId) {
    for image in core::mem::take(&mut *IMAGES.lock()) {
        image.booted.into_iter().flatten().for_each(|f| frames::free(f, here));
    }
}
