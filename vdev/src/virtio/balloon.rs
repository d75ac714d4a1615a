//! virtio-balloon (virtio 1.2 section 5.5) with free page reporting
//! (`VIRTIO_BALLOON_F_REPORTING`), so a guest hands back memory it does
//! not use without being asked: Linux's page reporting offers free blocks
//! (2 MiB on arm64 with 4 KiB pages) a few seconds after they became free,
//! and a later allocation of such a block just touches it again.
//!
//! Features offered: `VIRTIO_BALLOON_F_REPORTING` only (no stats queue, no
//! free page hinting, no page poisoning; the transport adds
//! `VIRTIO_F_VERSION_1` and `VIRTIO_F_INDIRECT_DESC`). Linux's
//! `virtio_mmio` numbers only the queues a driver uses, so the queues are
//! inflateq 0, deflateq 1 and reporting_vq 2.
//!
//! Configuration space: `num_pages` (the balloon target in 4 KiB pages,
//! set by the monitor: [`VirtioBalloon::set_target`]) and `actual` (what
//! the driver says it holds), each le32; the rest reads as 0.
//!
//! Requests:
//! - reporting_vq: each buffer of a chain (Linux makes them
//!   device-writable; either direction is taken) is a free range the
//!   device may drop: [`GuestMemory::discard`] gets its whole 4 KiB pages
//!   (the monitor unmaps them and frees their frames), before the chain
//!   goes back to the driver, which may reuse the pages from then on.
//!   The device writes nothing; the chain is used with length 0.
//! - inflateq: the device-readable bytes are le32 page frame numbers (4
//!   KiB units) the driver gave the balloon: they are discarded in runs
//!   of consecutive pages (one unmap and invalidation per run, not per
//!   page); one outside guest RAM makes the request malformed
//!   (NEEDS_RESET) and none of its pages is dropped.
//! - deflateq: page frame numbers the driver takes back: nothing to do, a
//!   discarded page comes back zeroed on its next touch.
//!
//! A range that is not inside guest RAM cannot be in a chain (the queue
//! checks every buffer); bytes of a buffer outside whole, aligned pages
//! are not discarded and are counted in [`BalloonStats::unaligned`]. A
//! chain with nothing in it is not an error.

use super::queue::{Cursor, QueueError, SplitQueue};
use super::{VirtioDevice, VIRTIO_ID_BALLOON};
use crate::mem::GuestMemory;

/// Feature bits (5.5.3).
pub const VIRTIO_BALLOON_F_REPORTING: u64 = 1 << 5;
/// Queue numbers (with only `VIRTIO_BALLOON_F_REPORTING` negotiated).
pub const INFLATE_QUEUE: u16 = 0;
pub const DEFLATE_QUEUE: u16 = 1;
pub const REPORTING_QUEUE: u16 = 2;
/// The queue size offered (Linux reports up to 32 ranges at a time).
pub const QUEUE_SIZE: u16 = 128;
/// The balloon's page size: page frame numbers and `num_pages` count it.
pub const BALLOON_PAGE: u64 = 4096;
/// Bytes of the configuration space this device defines (`num_pages`,
/// `actual`, `free_page_hint_cmd_id`, `poison_val`).
const CONFIG_BYTES: u64 = 16;

/// What the device did, for the VM's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BalloonStats {
    /// Free-page reports (chains) taken from reporting_vq.
    pub reports: u64,
    /// 4 KiB pages those reports named.
    pub reported_pages: u64,
    /// Pages inflateq gave the balloon.
    pub inflated_pages: u64,
    /// Pages deflateq took back.
    pub deflated_pages: u64,
    /// Pages whose backing the memory dropped (reported or inflated).
    pub freed_pages: u64,
    /// Bytes named that were not whole aligned pages (not discarded).
    pub unaligned: u64,
}

/// The device model.
#[derive(Debug, Clone, Default)]
pub struct VirtioBalloon {
    num_pages: u32,
    actual: u32,
    stats: BalloonStats,
}

impl VirtioBalloon {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> BalloonStats {
        self.stats
    }

    /// The balloon target (`num_pages`), in 4 KiB pages; the transport's
    /// `config_changed` must follow so that the driver reads it.
    pub fn set_target(&mut self, pages: u32) {
        self.num_pages = pages;
    }

    /// The balloon target (`num_pages`).
    pub fn target(&self) -> u32 {
        self.num_pages
    }

    /// What the driver says the balloon holds (`actual`).
    pub fn actual(&self) -> u32 {
        self.actual
    }

    /// Discards the whole aligned pages of `[addr, addr + len)`.
    fn discard_range(&mut self, addr: u64, len: u64, mem: &mut dyn GuestMemory) -> u64 {
        let start = addr.next_multiple_of(BALLOON_PAGE);
        let end = (addr + len) & !(BALLOON_PAGE - 1);
        if end <= start {
            self.stats.unaligned += len;
            return 0;
        }
        self.stats.unaligned += len - (end - start);
        let pages = (end - start) / BALLOON_PAGE;
        let freed = mem.discard(start, pages);
        self.stats.freed_pages += freed;
        pages
    }

    /// A chain of le32 page frame numbers: calls `each` with every one.
    fn for_each_pfn(
        mem: &dyn GuestMemory,
        chain: &super::queue::DescChain,
        mut each: impl FnMut(u64),
    ) -> Result<(), QueueError> {
        let mut cursor = Cursor::new(chain.readable());
        let mut word = [0u8; 4];
        while cursor.remaining() >= 4 {
            cursor.read(mem, &mut word).map_err(QueueError::Memory)?;
            each(u64::from(u32::from_le_bytes(word)));
        }
        Ok(())
    }
}

impl VirtioDevice for VirtioBalloon {
    /// Nothing: what it frees goes through [`GuestMemory::discard`].
    type Backend = ();

    fn device_id(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn features(&self) -> u64 {
        VIRTIO_BALLOON_F_REPORTING
    }

    fn num_queues(&self) -> u16 {
        3
    }

    fn queue_max(&self) -> u16 {
        QUEUE_SIZE
    }

    fn config_read(&self, offset: u64, size: u8) -> u64 {
        let mut bytes = [0u8; CONFIG_BYTES as usize];
        bytes[0..4].copy_from_slice(&self.num_pages.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.actual.to_le_bytes());
        super::config_bytes_read(&bytes, offset, size)
    }

    fn config_write(&mut self, offset: u64, size: u8, value: u64) {
        // Only `actual` is the driver's to write (5.5.6).
        if offset == 4 && size == 4 {
            self.actual = value as u32;
        }
    }

    fn process(
        &mut self,
        queue: u16,
        q: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
        _: &mut (),
    ) -> Result<bool, QueueError> {
        let mut used = false;
        // At most one queue's worth per call: bounded work.
        for _ in 0..q.size() {
            let Some(chain) = q.pop_chain(mem)? else { break };
            match queue {
                REPORTING_QUEUE => {
                    self.stats.reports += 1;
                    for d in chain.descriptors() {
                        self.stats.reported_pages += self.discard_range(d.addr, u64::from(d.len), mem);
                    }
                }
                INFLATE_QUEUE => {
                    let mut pfns = alloc::vec::Vec::new();
                    Self::for_each_pfn(mem, &chain, |pfn| pfns.push(pfn))?;
                    // A page outside guest RAM makes the request malformed:
                    // checked before any page is dropped.
                    for &pfn in &pfns {
                        mem.check_range(pfn * BALLOON_PAGE, BALLOON_PAGE)?;
                    }
                    self.stats.inflated_pages += pfns.len() as u64;
                    for (first, pages) in runs(pfns) {
                        self.stats.freed_pages += mem.discard(first * BALLOON_PAGE, pages);
                    }
                }
                _ => Self::for_each_pfn(mem, &chain, |_| self.stats.deflated_pages += 1)?,
            }
            q.add_used(mem, chain.head(), 0)?;
            used = true;
        }
        Ok(used)
    }

    fn reset(&mut self) {
        self.actual = 0;
    }
}

/// Page frame numbers as runs of consecutive pages `(first, pages)`, each
/// number once: a run costs the memory one unmap and one invalidation
/// where page by page would cost one per page.
fn runs(mut pfns: alloc::vec::Vec<u64>) -> impl Iterator<Item = (u64, u64)> {
    pfns.sort_unstable();
    pfns.dedup();
    let mut pfns = pfns.into_iter().peekable();
    core::iter::from_fn(move || {
        let first = pfns.next()?;
        let mut pages = 1;
        while pfns.next_if_eq(&(first + pages)).is_some() {
            pages += 1;
        }
        Some((first, pages))
    })
}
