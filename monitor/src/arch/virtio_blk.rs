//! The unsafe half of the physical disk's driver (`io::disk` is the rest):
//! the `virtio-drivers` MMIO transport over the device's registers, its
//! `Hal` (DMA pages from an allocator the caller registers; the monitor's
//! identity mapping makes a buffer's address its machine address), and
//! requests whose buffers the device holds until they complete, queued
//! and taken back through the caller's [`Requests`].

use super::mmu;
use core::ptr::NonNull;
use spin::Once;
use virtio_drivers::{
    device::blk::{BlkReq, BlkResp, VirtIOBlk},
    transport::{
        mmio::{MmioTransport, VirtIOHeader},
        DeviceType, Transport,
    },
    BufferDirection, Error, Hal, PhysAddr, PAGE_SIZE,
};

/// The driver of one virtio-mmio block device.
pub type Driver = VirtIOBlk<DmaHal, MmioTransport<'static>>;

/// Where DMA pages come from: `alloc` gives a zeroed, page-aligned page of
/// RAM nobody else uses (its machine address), `free` takes it back.
#[derive(Clone, Copy)]
pub struct DmaPages {
    pub alloc: fn() -> Option<u64>,
    pub free: fn(u64) -> bool,
}

static DMA_PAGES: Once<DmaPages> = Once::new();

/// The block device at virtio-mmio frame `[base, base + size)`, set up by
/// the driver (features negotiated, queue ready); Ok(None) when the frame
/// is empty or holds another kind of device.
pub fn open(base: u64, size: u64, pages: DmaPages) -> Result<Option<Driver>, Error> {
    DMA_PAGES.call_once(|| pages);
    let Some(registers) = mmu::device_registers(base, size) else { return Ok(None) };
    // SAFETY: a virtio-mmio register frame of the host device tree, in the
    // device-mapped first GiB for the whole run; the caller opens each
    // frame once, so nothing else drives it.
    let transport = match unsafe { MmioTransport::new(registers.cast::<VirtIOHeader>(), size as usize) } {
        Ok(t) if t.device_type() == DeviceType::Block => t,
        _ => return Ok(None),
    };
    VirtIOBlk::new(transport).map(Some)
}

/// How requests share one driver among CPUs (`io::disk` decides): a
/// request is queued by `submit` and taken back by `complete`, each
/// running its closure on the driver under the owner's lock, so that
/// other CPUs can queue theirs while the device works on it.
pub trait Requests {
    /// Runs `add` once the queue has room (`add` returns
    /// [`Error::QueueFull`] when it has none, changing nothing) and
    /// returns the request's token.
    fn submit(&self, add: impl FnMut(&mut Driver) -> Result<u16, Error>) -> Result<u16, Error>;
    /// Runs `pop` once request `token` is the next used one (the driver
    /// takes used requests in order), and returns what `pop` returns.
    fn complete(&self, token: u16, pop: impl FnOnce(&mut Driver) -> Result<(), Error>) -> Result<(), Error>;
}

/// Reads whole sectors into `buf` through `queue`.
pub fn read(queue: &impl Requests, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: `req`, `resp` and `buf` stay borrowed by this frame, and
    // untouched, from the add to the pop: `complete` returns only after
    // the request was popped (or, on an error, never added).
    let token = queue.submit(|d| unsafe { d.read_blocks_nb(sector as usize, &mut req, buf, &mut resp) })?;
    // SAFETY: the same buffers as those added.
    queue.complete(token, |d| unsafe { d.complete_read_blocks(token, &req, buf, &mut resp) })
}

/// Writes whole sectors from `data` through `queue`.
pub fn write(queue: &impl Requests, sector: u64, data: &[u8]) -> Result<(), Error> {
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: as in `read`.
    let token = queue.submit(|d| unsafe { d.write_blocks_nb(sector as usize, &mut req, data, &mut resp) })?;
    // SAFETY: the same buffers as those added.
    queue.complete(token, |d| unsafe { d.complete_write_blocks(token, &req, data, &mut resp) })
}

/// `virtio-drivers`' view of the monitor's memory.
pub struct DmaHal;

// SAFETY: dma_alloc hands out zeroed pages the registered allocator gave
// to the driver alone (page aligned, identity-mapped: the pointer is
// valid); a shared buffer is the caller's memory at its own address.
unsafe impl Hal for DmaHal {
    /// One page at a time: the driver asks for one page per ring area with
    /// the modern (version 2) layout. More, which would need contiguous
    /// frames, is refused (paddr 0: the driver reports a DMA error).
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let page = DMA_PAGES.get().filter(|_| pages == 1).and_then(|p| (p.alloc)());
        match page.and_then(|pa| NonNull::new(pa as *mut u8).map(|ptr| (pa, ptr))) {
            Some(found) => found,
            None => {
                log::error!("virtio-blk: no DMA memory for {pages} page(s)");
                (0, NonNull::dangling())
            }
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match DMA_PAGES.get() {
            Some(p) if pages == 1 && (p.free)(paddr) => 0,
            _ => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Only the PCI transport asks; the monitor uses virtio-mmio.
        mmu::device_registers(paddr, size as u64).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Identity-mapped: the address is the machine address.
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The driver's page size is the monitor's frame size.
const _: () = assert!(PAGE_SIZE as u64 == numa::FRAME_SIZE);
