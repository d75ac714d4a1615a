//! Boot images shared between VMs (Disco's shared kernel and initrd; issue
//! 14): the first VM that boots a kernel Image or base initramfs has its
//! pages copied into machine frames once; every VM that boots the same
//! image maps those frames read-only (pmap state `CowShared`, one memmap
//! reference each), and a guest write to one breaks the sharing for that
//! page alone (`VmSpace::write_fault`). Pages a guest only reads or runs
//! (most of the kernel text) stay one copy for all VMs.
//!
//! A kernel patches its own text at boot (ftrace rewrites every function's
//! entry, alternatives patch instructions), so most text pages are copied
//! on write while a VM boots, every VM making the same copy. The image
//! therefore also keeps each page *as booted*: the first VM that offers a
//! stable copy of a page provides it, and a VM whose copy has equal
//! content maps that one instead (`mm::merge`), as VMware ESX and KSM
//! merge equal pages, but only at known offsets of a known image.
//!
//! The cache keeps one reference of its own, so a VM that restarts finds
//! its images loaded; [`release_all`] drops it when the last VM ended.

use super::frames;
use crate::arch::{mem, stage2::PAGE_SIZE};
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
    /// One frame per whole page of the image.
    frames: Vec<Frame>,
    /// Per page, its content as booted guests left it (see the module doc).
    booted: Vec<Option<Frame>>,
}

static IMAGES: Mutex<Vec<Image>> = Mutex::new(Vec::new());

/// The memmap owner of page `block` of image `index`: a block-cache entry
/// of a disk id no real disk has (they count up from 0).
fn owner(index: usize, block: usize) -> Use {
    Use::Cache { disk: MAX_VM - 1 - index as u16, block: block as u64 }
}

/// References to the frames holding the first `pages` whole pages of
/// `data` (loaded into frames from `node` on first use), one memmap
/// reference per frame for the caller, and the image's index (for
/// [`offer_booted`]). None: out of memory.
pub fn share(data: &'static [u8], pages: usize, group: &'static str, node: NodeId) -> Option<(usize, Vec<Frame>)> {
    let key = (data.as_ptr() as usize, data.len(), group);
    let map = frames::memmap();
    let mut images = IMAGES.lock();
    let index = match images.iter().position(|i| i.key == key) {
        Some(index) => index,
        None => {
            let index = images.len();
            let mut loaded = Vec::with_capacity(pages);
            for (block, chunk) in data.chunks(PAGE_SIZE as usize).take(pages).enumerate() {
                let Some(frame) = frames::alloc(node, owner(index, block)) else {
                    loaded.into_iter().for_each(|f| frames::free(f, node));
                    return None;
                };
                // SAFETY: a frame just allocated for the cache, not mapped anywhere yet.
                unsafe { mem::slice_mut(frame.pa(), chunk.len()) }.copy_from_slice(chunk);
                mem::clean_for_guest(frame.pa(), PAGE_SIZE);
                loaded.push(frame);
            }
            let booted = loaded.iter().map(|_| None).collect();
            log::info!(
                "boot image {index} ({} KiB) loaded for share group {:?}",
                data.len() >> 10,
                if group.is_empty() { "(the run's)" } else { group }
            );
            images.push(Image { key, frames: loaded, booted });
            index
        }
    };
    let frames = &images[index].frames;
    (frames.len() >= pages).then(|| (index, frames[..pages].iter().map(|f| map.share(f)).collect()))
}

/// A VM offers its copy (at machine address `pa`, read-only while this
/// runs) of page `page` of image `index`: a reference to the image's
/// booted frame if it has the same content (the caller maps it instead of
/// its own), or if there was none yet (the copy becomes it, copied into a
/// frame from `node`). None: a different content, or no memory.
pub fn offer_booted(index: usize, page: usize, pa: u64, node: NodeId) -> Option<Frame> {
    let mut images = IMAGES.lock();
    let image = images.get_mut(index)?;
    let map = frames::memmap();
    let block = image.frames.len() + page;
    match image.booted.get(page)? {
        // SAFETY: both are whole frames nobody writes: the caller's copy
        // is mapped read-only, a booted frame only ever read-only.
        Some(frame) => unsafe { mem::slice(frame.pa(), PAGE_SIZE as usize) == mem::slice(pa, PAGE_SIZE as usize) }
            .then(|| map.share(frame)),
        None => {
            let frame = frames::alloc(node, owner(index, block))?;
            crate::arch::stage2::copy_frame(frame.pa(), pa);
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
        image.frames.into_iter().chain(image.booted.into_iter().flatten()).for_each(|f| frames::free(f, here));
    }
}
