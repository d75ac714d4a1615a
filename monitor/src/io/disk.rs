//! The physical disk: the machine's virtio-mmio block device (QEMU's
//! `-device virtio-blk-device`, which `cargo xtask` attaches), driven with
//! the `virtio-drivers` crate, and its `cow_disk` header (the table of named
//! images that guests' disks are carved from).
//!
//! The driver runs in polling mode: a request is queued, the device
//! notified, and the calling CPU spins on the used ring until the device
//! answers (QEMU completes requests in its I/O thread while the vCPU
//! waits). One lock serialises requests from every CPU; the device's
//! interrupt is left disabled. That keeps the first version small: an
//! interrupt-driven queue with several requests in flight is the next step
//! (issue 13, item 2).
//!
//! DMA memory (the virtqueue rings) is frames from the memmap, recorded
//! as `Use::Monitor`; data buffers are the callers' own (heap or bounce)
//! memory, which the monitor sees identity-mapped, so a buffer's virtual
//! address is its machine address.

use crate::{arch::mmu, mm::frames};
use alloc::{format, string::String, vec::Vec};
use core::ptr::NonNull;
use cow_disk::header::{DiskHeader, HEADER_BYTES};
use numa::memmap::{Frame, Use};
use spin::{Mutex, Once};
use virtio_drivers::{
    device::blk::{VirtIOBlk, SECTOR_SIZE},
    transport::{
        mmio::{MmioTransport, VirtIOHeader},
        DeviceType, Transport,
    },
    BufferDirection, Hal, PhysAddr, PAGE_SIZE,
};

/// Node the DMA frames come from (QEMU's devices belong to no node).
const DMA_NODE: usize = 0;

/// The physical disk, once [`probe`] found one.
pub struct Disk {
    driver: Mutex<VirtIOBlk<DmaHal, MmioTransport<'static>>>,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    pub header: DiskHeader,
}

static DISK: Once<Disk> = Once::new();

/// The physical disk, if the machine has one with a valid header.
pub fn get() -> Option<&'static Disk> {
    DISK.get()
}

/// Why a request failed (the guest request completes with IOERR).
#[derive(Debug, Clone, Copy)]
pub struct DiskError;

impl Disk {
    /// Reads whole sectors from `sector` into `buf`.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check(sector, buf.len())?;
        self.driver.lock().read_blocks(sector as usize, buf).map_err(|e| self.failed("read", sector, e))
    }

    /// Writes whole sectors at `sector`.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check(sector, data.len())?;
        self.driver.lock().write_blocks(sector as usize, data).map_err(|e| self.failed("write", sector, e))
    }

    /// VIRTIO_BLK_T_FLUSH on the physical disk: every completed write is
    /// durable (in QEMU: written to the disk file) when this returns.
    pub fn flush(&self) -> Result<(), DiskError> {
        self.driver.lock().flush().map_err(|e| self.failed("flush", 0, e))
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), DiskError> {
        let whole = len > 0 && len.is_multiple_of(SECTOR_SIZE);
        let end = sector.checked_add((len / SECTOR_SIZE) as u64);
        if whole && end.is_some_and(|end| end <= self.sectors) {
            Ok(())
        } else {
            log::warn!("disk: request of {len} bytes at sector {sector} is outside the disk");
            Err(DiskError)
        }
    }

    fn failed(&self, what: &str, sector: u64, e: virtio_drivers::Error) -> DiskError {
        log::error!("disk: {what} at sector {sector} failed: {e:?}");
        DiskError
    }
}

/// Looks at each virtio-mmio register frame the host device tree lists
/// (`(base, size)`), takes the first block device (device ID 2) and reads
/// its header. Ok(None): no block device (the monitor runs without disks).
pub fn probe(frames: impl Iterator<Item = (u64, u64)>) -> Result<Option<&'static Disk>, String> {
    for (base, size) in frames {
        let Some(registers) = mmu::device_registers(base, size) else {
            log::warn!("disk: virtio-mmio frame {base:#x}+{size:#x} is not in device memory, skipped");
            continue;
        };
        // SAFETY: a virtio-mmio register frame the host DTB lists, mapped as
        // device memory for the rest of the run and used by nothing else.
        let transport = match unsafe { MmioTransport::new(registers.cast::<VirtIOHeader>(), size as usize) } {
            Ok(t) => t,
            // An empty slot (device ID 0) or something else: not ours.
            Err(_) => continue,
        };
        if transport.device_type() != DeviceType::Block {
            continue;
        }
        let mut driver = VirtIOBlk::<DmaHal, _>::new(transport)
            .map_err(|e| format!("disk at {base:#x}: virtio-blk set-up failed: {e:?}"))?;
        driver.disable_interrupts();
        let sectors = driver.capacity();
        let mut first = alloc::vec![0u8; HEADER_BYTES];
        driver.read_blocks(0, &mut first).map_err(|e| format!("disk at {base:#x}: reading the header: {e:?}"))?;
        let header = DiskHeader::decode(&first).map_err(|e| format!("disk at {base:#x}: header: {e}"))?;
        if header.disk_bytes > sectors * SECTOR_SIZE as u64 {
            return Err(format!(
                "disk at {base:#x}: header describes {} bytes, the device has {}",
                header.disk_bytes,
                sectors * SECTOR_SIZE as u64
            ));
        }
        log::info!(
            "disk: virtio-blk at {base:#x}, {} MiB, {} image(s): {}",
            sectors * SECTOR_SIZE as u64 >> 20,
            header.images.len(),
            names(&header)
        );
        return Ok(Some(DISK.call_once(|| Disk { driver: Mutex::new(driver), sectors, header })));
    }
    Ok(None)
}

fn names(header: &DiskHeader) -> String {
    let list: Vec<&str> = header.images.iter().map(|e| e.name.as_str()).collect();
    list.join(", ")
}

/// The DMA frames handed to the driver, to give back on `dma_dealloc`.
static DMA_FRAMES: Mutex<Vec<Frame>> = Mutex::new(Vec::new());

/// `virtio-drivers`' view of the monitor's memory.
pub struct DmaHal;

// SAFETY: dma_alloc returns zeroed frames the memmap gave to the monitor
// alone (page aligned, identity-mapped, so the pointer is valid); a buffer
// shared with the device is the caller's memory at its own address.
unsafe impl Hal for DmaHal {
    /// One frame from the memmap. The driver asks for one page per ring
    /// area with the modern (version 2) layout; a larger, contiguous
    /// request is refused (paddr 0: the driver reports a DMA error).
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        if pages != 1 {
            log::error!("disk: DMA request for {pages} contiguous pages refused (one page at a time)");
            return (0, NonNull::dangling());
        }
        let Some(frame) = frames::alloc(DMA_NODE, Use::Monitor) else {
            log::error!("disk: out of memory for a DMA frame");
            return (0, NonNull::dangling());
        };
        let pa = frame.pa();
        DMA_FRAMES.lock().push(frame);
        match NonNull::new(pa as *mut u8) {
            Some(ptr) => (pa, ptr),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let mut held = DMA_FRAMES.lock();
        match held.iter().position(|f| f.pa() == paddr) {
            Some(i) if pages == 1 => {
                frames::free(held.swap_remove(i), DMA_NODE);
                0
            }
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
