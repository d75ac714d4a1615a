//! The physical disk: the machine's virtio-mmio block device (QEMU's
//! `-device virtio-blk-device`, which `cargo xtask` attaches), driven with
//! the `virtio-drivers` crate (its unsafe glue is `arch::virtio_blk`), and
//! its `cow_disk` header, the table of named images that guests' disks are
//! carved from.
//!
//! One request is in flight at a time, under one lock: the CPU that makes
//! it routes the disk's interrupt to itself, queues the request and sleeps
//! (WFI, interrupts masked) until the device has used it, then acks the
//! device's interrupt. Without an interrupt in the host device tree it
//! polls instead. Requests in flight from several CPUs at once are the next
//! step (issue 13, item 2). An interrupt that reaches a CPU later (the
//! device raised it after the ack) is acked by [`take_interrupt`] from the
//! dispatcher.
//!
//! DMA memory (the virtqueue rings) is frames from the memmap, recorded
//! as `Use::Monitor`; data buffers are the callers' own memory.

use crate::{
    arch::{
        cpu,
        virtio_blk::{self, DmaPages, Driver},
    },
    mm::frames,
};
use alloc::{format, string::String, vec::Vec};
use cow_disk::header::{DiskHeader, HEADER_BYTES, SECTOR_BYTES};
use numa::memmap::{Frame, Use};
use spin::{Mutex, Once};

/// Node the DMA frames come from (QEMU's devices belong to no node).
const DMA_NODE: usize = 0;

/// The disk's interrupt: its INTID, and how to route it to the CPU with
/// a given MPIDR and enable it (the GIC is the caller's).
#[derive(Clone, Copy)]
pub struct DiskIrq {
    pub intid: u32,
    pub route: fn(intid: u32, mpidr: u64),
}

/// One virtio-mmio frame of the host device tree.
#[derive(Clone, Copy)]
pub struct Candidate {
    pub base: u64,
    pub size: u64,
    pub irq: Option<DiskIrq>,
}

/// The physical disk, once [`probe`] found one.
pub struct Disk {
    driver: Mutex<Driver>,
    irq: Option<DiskIrq>,
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
        let mut d = self.start();
        let result = virtio_blk::read(&mut d, sector, buf, |d, token| self.wait(d, token));
        d.ack_interrupt();
        result.map_err(|e| failed("read", sector, e))
    }

    /// Writes whole sectors at `sector`.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check(sector, data.len())?;
        let mut d = self.start();
        let result = virtio_blk::write(&mut d, sector, data, |d, token| self.wait(d, token));
        d.ack_interrupt();
        result.map_err(|e| failed("write", sector, e))
    }

    /// VIRTIO_BLK_T_FLUSH on the physical disk: every completed write is
    /// durable (in QEMU: written to the disk file) when this returns. The
    /// driver has no split flush, so this one polls.
    pub fn flush(&self) -> Result<(), DiskError> {
        let mut d = self.driver.lock();
        let result = d.flush();
        d.ack_interrupt();
        result.map_err(|e| failed("flush", 0, e))
    }

    /// Takes the driver and points the interrupt at this CPU.
    fn start(&self) -> spin::MutexGuard<'_, Driver> {
        let d = self.driver.lock();
        if let Some(irq) = self.irq {
            (irq.route)(irq.intid, cpu::mpidr());
        }
        d
    }

    /// Until the device used request `token` (the only one in flight).
    fn wait(&self, d: &mut Driver, token: u16) {
        while d.peek_used() != Some(token) {
            if self.irq.is_some() {
                cpu::wait_for_interrupt();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), DiskError> {
        let whole = len > 0 && (len as u64).is_multiple_of(SECTOR_BYTES);
        let end = sector.checked_add(len as u64 / SECTOR_BYTES);
        if whole && end.is_some_and(|end| end <= self.sectors) {
            Ok(())
        } else {
            log::warn!("disk: request of {len} bytes at sector {sector} is outside the disk");
            Err(DiskError)
        }
    }
}

fn failed(what: &str, sector: u64, e: virtio_drivers::Error) -> DiskError {
    log::error!("disk: {what} at sector {sector} failed: {e:?}");
    DiskError
}

/// A physical interrupt taken by the dispatcher: if it is the disk's,
/// acks it at the device (which lowers the line) and returns true.
pub fn take_interrupt(intid: u32) -> bool {
    match DISK.get() {
        Some(disk) if disk.irq.is_some_and(|i| i.intid == intid) => {
            disk.driver.lock().ack_interrupt();
            true
        }
        _ => false,
    }
}

/// Looks at each virtio-mmio frame of the host device tree, takes the
/// first block device (device ID 2) and reads its header. Ok(None): no
/// block device (the monitor runs without disks).
pub fn probe(frames: impl Iterator<Item = Candidate>) -> Result<Option<&'static Disk>, String> {
    let pages = DmaPages { alloc: dma_alloc, free: dma_free };
    for Candidate { base, size, irq } in frames {
        let mut driver = match virtio_blk::open(base, size, pages) {
            Ok(Some(driver)) => driver,
            Ok(None) => continue,
            Err(e) => return Err(format!("disk at {base:#x}: virtio-blk set-up failed: {e:?}")),
        };
        let sectors = driver.capacity();
        let mut first = alloc::vec![0u8; HEADER_BYTES];
        let read = driver.read_blocks(0, &mut first);
        driver.ack_interrupt();
        read.map_err(|e| format!("disk at {base:#x}: reading the header: {e:?}"))?;
        let header = DiskHeader::decode(&first).map_err(|e| format!("disk at {base:#x}: header: {e}"))?;
        if header.disk_bytes > sectors * SECTOR_BYTES {
            return Err(format!(
                "disk at {base:#x}: header describes {} bytes, the device has {}",
                header.disk_bytes,
                sectors * SECTOR_BYTES
            ));
        }
        if irq.is_some() {
            driver.enable_interrupts();
        } else {
            driver.disable_interrupts();
        }
        log::info!(
            "disk: virtio-blk at {base:#x}, {} MiB, {} image(s): {}; {}",
            (sectors * SECTOR_BYTES) >> 20,
            header.images.len(),
            names(&header),
            irq.map_or(String::from("polled"), |i| format!("interrupt {}", i.intid))
        );
        return Ok(Some(DISK.call_once(|| Disk { driver: Mutex::new(driver), irq, sectors, header })));
    }
    Ok(None)
}

fn names(header: &DiskHeader) -> String {
    let list: Vec<&str> = header.images.iter().map(|e| e.name.as_str()).collect();
    list.join(", ")
}

/// The DMA frames handed to the driver, to give back on free.
static DMA_FRAMES: Mutex<Vec<Frame>> = Mutex::new(Vec::new());

/// A zeroed frame for the driver, recorded as the monitor's.
fn dma_alloc() -> Option<u64> {
    let frame = frames::alloc(DMA_NODE, Use::Monitor)?;
    let pa = frame.pa();
    DMA_FRAMES.lock().push(frame);
    Some(pa)
}

fn dma_free(pa: u64) -> bool {
    let mut held = DMA_FRAMES.lock();
    match held.iter().position(|f| f.pa() == pa) {
        Some(i) => {
            frames::free(held.swap_remove(i), DMA_NODE);
            true
        }
        None => false,
    }
}
