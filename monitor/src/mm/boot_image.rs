//! Boot images shared between VMs (Disco's shared kernel and initrd; issue
//! 14): the first VM that boots a kernel Image or base initramfs has its
//! pages copied into machine frames once; every VM that boots the same
//! image maps those frames read-only (pmap state `CowShared`, one memmap
//! reference each), and a guest write to one breaks the sharing for that
//! page alone (`VmSpace::write_fault`). Pages a guest only reads or runs
//! (most of the kernel text) stay one copy for all VMs.
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
    /// The image's bytes in the boot bundle (address and length identify it).
    key: (usize, usize),
    /// One frame per whole page of the image.
    frames: Vec<Frame>,
}

static IMAGES: Mutex<Vec<Image>> = Mutex::new(Vec::new());

/// The memmap owner of page `block` of image `index`: a block-cache entry
/// of a disk id no real disk has (they count up from 0).
fn owner(index: usize, block: usize) -> Use {
    Use::Cache { disk: MAX_VM - 1 - index as u16, block: block as u64 }
}

/// References to the frames holding the first `pages` whole pages of
/// `data` (loaded into frames from `node` on first use), one memmap
/// reference per frame for the caller. None: out of memory.
pub fn share(data: &'static [u8], pages: usize, node: NodeId) -> Option<Vec<Frame>> {
    let key = (data.as_ptr() as usize, data.len());
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
            images.push(Image { key, frames: loaded });
            index
        }
    };
    let frames = &images[index].frames;
    (frames.len() >= pages).then(|| frames[..pages].iter().map(|f| map.share(f)).collect())
}

/// Drops the cache's own references (the last VM ended): frames no VM
/// maps go back to their nodes.
pub fn release_all(here: NodeId) {
    for image in core::mem::take(&mut *IMAGES.lock()) {
        image.frames.into_iter().for_each(|f| frames::free(f, here));
    }
}
