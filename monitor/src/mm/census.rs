//! Taking the sharing census (`numa::census`): every VM's mapped guest
//! pages, each as its frame and a hash of its content. The guest may write
//! its pages while they are hashed (only its space lock is held), so the
//! content is read with volatile word loads, like memory another agent
//! writes, and a page changing meanwhile just hashes as either version.

use super::VmSpace;
use crate::arch::{mem, stage2::PAGE_SIZE};
use alloc::vec::Vec;
use numa::census::Page;
use spin::Mutex;

/// FNV-1a over the page's 64-bit words.
fn hash_frame(pa: u64) -> u64 {
    (0..PAGE_SIZE / 8)
        .fold(0xcbf2_9ce4_8422_2325, |h, i| (h ^ mem::read_u64_shared(pa + i * 8)).wrapping_mul(0x100_0000_01b3))
}

/// The hash of an all-zero page.
pub fn zero_hash() -> u64 {
    (0..PAGE_SIZE / 8).fold(0xcbf2_9ce4_8422_2325u64, |h, _| h.wrapping_mul(0x100_0000_01b3))
}

/// The pages of one VM, for [`numa::census::Census::of`]. Only the list
/// of frames is taken under the VM's space lock: hashing 16k pages takes
/// long under TCG, and a vCPU faulting meanwhile would spin on the lock,
/// holding its CPU. A frame the VM frees before it is hashed is still
/// machine RAM the monitor maps; its hash is merely stale (a statistic).
pub fn pages_of(space: &Mutex<VmSpace>) -> Vec<Page> {
    let frames: Vec<u64> = space.lock().pmap.iter_mapped().map(|(_, info)| info.pa).collect();
    frames.into_iter().map(|frame| Page { frame, hash: hash_frame(frame) }).collect()
}
