//! A VM's RAM as its virtual devices see it (`vdev::mem::GuestMemory`):
//! every access translates guest-physical to machine addresses through the
//! VM's space, page by page, under the space lock, at the time of the
//! access. No machine address is kept between calls: the placement loop
//! may migrate a page and sampling may unmap it between two accesses, and
//! both take the same lock. A page the guest never touched is backed here
//! with a fresh zeroed frame, as its own first touch would be.

use super::VmSpace;
use crate::arch::{mem, stage2::PAGE_SIZE};
use numa::NodeId;
use spin::Mutex;
use vdev::mem::{GuestMemory, MemError};

/// Guest RAM `[base, base + size)` of one VM, backed by `space`; pages it
/// backs for the first time come from `node` (the caller passes the VM's
/// home node, where its vCPUs run).
pub struct GuestRam<'a> {
    pub space: &'a Mutex<VmSpace>,
    pub base: u64,
    pub size: u64,
    pub node: NodeId,
}

impl GuestRam<'_> {
    /// Calls `each(pa, offset, len)` for every page piece of
    /// `[gpa, gpa + len)`, in order; the range is checked first. For a
    /// `write`, each page is made writable first, as a guest write would
    /// (replicas collapse, a watch ends), so no copy misses the data.
    fn pieces(
        &self,
        gpa: u64,
        len: usize,
        write: bool,
        mut each: impl FnMut(u64, usize, usize),
    ) -> Result<(), MemError> {
        self.check_range(gpa, len as u64)?;
        let mut done = 0usize;
        while done < len {
            let at = gpa + done as u64;
            let chunk = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
            let mut space = self.space.lock();
            let frame = match write {
                true => space.touch_for_write(at, self.node),
                false => space.touch(at, self.node),
            };
            let frame = frame.ok_or(MemError { gpa: at, len: chunk as u64 })?;
            // The copy happens under the lock: the page cannot move meanwhile.
            each(frame | (at % PAGE_SIZE), done, chunk);
            drop(space);
            done += chunk;
        }
        Ok(())
    }
}

impl GuestMemory for GuestRam<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.pieces(gpa, buf.len(), false, |pa, at, n| {
            // SAFETY: `pa` is a frame of this VM's RAM, held under its space
            // lock; the guest may write it concurrently (as with a DMA
            // device), which changes only the bytes read.
            buf[at..at + n].copy_from_slice(unsafe { mem::slice(pa, n) })
        })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.pieces(gpa, data.len(), true, |pa, at, n| {
            // SAFETY: as for read: a frame of this VM's RAM under its lock.
            unsafe { mem::slice_mut(pa, n) }.copy_from_slice(&data[at..at + n])
        })
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        let err = MemError { gpa, len };
        let end = gpa.checked_add(len).ok_or(err)?;
        if gpa < self.base || end > self.base + self.size {
            return Err(err);
        }
        Ok(())
    }

    fn fence(&self) {
        mem::barrier();
    }

    /// The pages lose their frames (`VmSpace::discard`); the next touch
    /// gets a zeroed one.
    fn discard(&mut self, gpa: u64, pages: u64) -> u64 {
        let first = gpa / PAGE_SIZE;
        self.space.lock().discard(first..first.saturating_add(pages), self.node) as u64
    }
}
