//! The machine-wide cache of base-image blocks (Disco's global buffer
//! cache; issue 14): one machine frame per 4 KiB block of a base image
//! that a VM of a trust group read, which every VM of that group that
//! reads the block maps read-only, copy-on-write, instead of keeping its
//! own copy in its page cache.
//!
//! A virtio-blk read of a whole page, page-aligned in the guest and on the
//! disk, reaches `io::blk` through `BlockBackend::filled` with the data
//! the disk returned: a block not cached yet is copied from that data (the
//! disk's, never the guest page, which the guest could change meanwhile)
//! into a frame of the reading VM's node; the VM then maps the cached
//! frame in place of its own (`VmSpace::map_disk_blocks`). Base images
//! never change, so a cached block never goes stale.
//!
//! The cache holds one reference of its own to each frame. Blocks no VM
//! maps any more (only that reference left) are dropped when memory runs
//! short ([`drop_unmapped`], from `VmSpace::touch`) and when the last VM
//! ended ([`release_all`]).

use super::frames;
use crate::arch::{mem, stage2::PAGE_SIZE};
use alloc::collections::BTreeMap;
use numa::{
    memmap::{Frame, Use},
    NodeId,
};
use spin::Mutex;

/// A cached block: the trust group whose VMs share it, the image (its
/// index in the physical disk's header) and the block in the image.
type Key = (&'static str, u16, u64);

static CACHE: Mutex<BTreeMap<Key, Frame>> = Mutex::new(BTreeMap::new());

/// A reference to the cached frame of block `block` of image `image` for
/// trust group `group`: the cached one, or a new one from `node` holding
/// `data` (the block as the disk returned it). None: no memory.
pub fn get_or_insert(group: &'static str, image: u16, block: u64, data: &[u8], node: NodeId) -> Option<Frame> {
    let map = frames::memmap();
    let mut cache = CACHE.lock();
    if let Some(frame) = cache.get(&(group, image, block)) {
        return Some(map.share(frame));
    }
    let frame = frames::alloc_on(node, Use::Cache { disk: image, block })
        .or_else(|| frames::alloc(node, Use::Cache { disk: image, block }))?;
    // SAFETY: a frame just allocated for the cache, written only here,
    // before anyone maps it.
    unsafe { mem::slice_mut(frame.pa(), PAGE_SIZE as usize) }.copy_from_slice(&data[..PAGE_SIZE as usize]);
    mem::clean_for_guest(frame.pa(), PAGE_SIZE);
    let copy = map.share(&frame);
    cache.insert((group, image, block), frame);
    Some(copy)
}

/// Frees the cached blocks no VM maps; returns how many. Called when an
/// allocation failed, with the caller's space lock held (the cache lock
/// is always taken last).
pub fn drop_unmapped(here: NodeId) -> usize {
    let map = frames::memmap();
    let mut cache = CACHE.lock();
    let idle: alloc::vec::Vec<Key> =
        cache.iter().filter(|(_, f)| map.owner(f.pa()).is_some_and(|(_, refs)| refs == 1)).map(|(k, _)| *k).collect();
    for key in &idle {
        if let Some(frame) = cache.remove(key) {
            frames::free(frame, here);
        }
    }
    idle.len()
}

/// Blocks cached now.
pub fn len() -> usize {
    CACHE.lock().len()
}

/// Drops the cache's own references (the last VM ended).
pub fn release_all(here: NodeId) {
    for (_, frame) in core::mem::take(&mut *CACHE.lock()) {
        frames::free(frame, here);
    }
}
