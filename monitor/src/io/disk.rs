//! The physical disk: the machine's virtio-mmio block device (QEMU's
//! `-device virtio-blk-device`, which `cargo xtask` attaches), driven with
//! the `virtio-drivers` crate (its unsafe glue is `arch::virtio_blk`), and
//! its `cow_disk` header, the table of named images that guests' disks are
//! carved from.
//!
//! Requests from several CPUs are in flight at once: the driver's lock is
//! held only to queue a request and to take it back, not while the device
//! works. The driver takes used requests in ring order, so each CPU waits
//! until its own is the next used one, then pops it. One waiter at a time
//! is the *sleeper*: the disk's interrupt is routed to it, it acks the
//! device before it looks at the ring and sleeps in WFI, so a completion
//! always wakes it. The others sleep in WFE and are woken by an event:
//! whoever sees another's request done (the sleeper, a CPU popping its
//! own, the dispatcher taking a stray interrupt) sends one, and the event
//! stream (`arch::cpu`) bounds every wait. Without an interrupt in the
//! host device tree every waiter uses WFE. A disk interrupt that reaches
//! a CPU which is not waiting ([`take_interrupt`]) is passed on to the
//! sleeper, or acked when there is none.
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
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// The driver and who waits on it.
struct Queue {
    driver: Driver,
    /// Requests queued and not yet popped.
    in_flight: u16,
    /// The waiter the interrupt is routed to (its MPIDR).
    sleeper: Option<u64>,
}

/// The physical disk, once [`probe`] found one.
pub struct Disk {
    queue: Mutex<Queue>,
    irq: Option<DiskIrq>,
    counts: Counts,
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
        self.counts.reads.fetch_add(1, Relaxed);
        virtio_blk::read(self, sector, buf).map_err(|e| failed("read", sector, e))
    }

    /// Writes whole sectors at `sector`.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check(sector, data.len())?;
        self.counts.writes.fetch_add(1, Relaxed);
        virtio_blk::write(self, sector, data).map_err(|e| failed("write", sector, e))
    }

    /// VIRTIO_BLK_T_FLUSH on the physical disk: every completed write is
    /// durable (in QEMU: written to the disk file) when this returns. The
    /// driver has no split flush and its blocking one expects to be the
    /// only request in flight, so this waits until no request is, then
    /// keeps the lock for the flush (others queue theirs after it).
    pub fn flush(&self) -> Result<(), DiskError> {
        self.counts.flushes.fetch_add(1, Relaxed);
        loop {
            let mut q = self.queue.lock();
            if q.in_flight == 0 {
                let result = q.driver.flush();
                q.driver.ack_interrupt();
                return result.map_err(|e| failed("flush", 0, e));
            }
            drop(q);
            cpu::wait_for_event();
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

impl virtio_blk::Requests for Disk {
    fn submit(&self, mut add: impl FnMut(&mut Driver) -> Result<u16, virtio_drivers::Error>) -> Result<u16, virtio_drivers::Error> {
        loop {
            let mut q = self.queue.lock();
            match add(&mut q.driver) {
                Err(virtio_drivers::Error::QueueFull) => {
                    drop(q);
                    self.counts.queue_full.fetch_add(1, Relaxed);
                    cpu::wait_for_event();
                }
                Ok(token) => {
                    q.in_flight += 1;
                    self.counts.note_in_flight(q.in_flight);
                    return Ok(token);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn complete(
        &self,
        token: u16,
        pop: impl FnOnce(&mut Driver) -> Result<(), virtio_drivers::Error>,
    ) -> Result<(), virtio_drivers::Error> {
        let me = cpu::mpidr();
        loop {
            let mut q = self.queue.lock();
            let sleeper = match self.irq {
                Some(irq) if q.sleeper.is_none() => {
                    (irq.route)(irq.intid, me);
                    q.sleeper = Some(me);
                    true
                }
                Some(_) => q.sleeper == Some(me),
                None => false,
            };
            if sleeper {
                // Lowers the line: a completion from now on raises it again.
                q.driver.ack_interrupt();
            }
            match q.driver.peek_used() {
                Some(used) if used == token => {
                    let result = pop(&mut q.driver);
                    q.in_flight -= 1;
                    if sleeper {
                        q.sleeper = None;
                    }
                    drop(q);
                    // Another waiter becomes the sleeper, or its request is next.
                    cpu::send_event();
                    return result;
                }
                Some(_) => {
                    // Another CPU's request is next: wake its owner.
                    drop(q);
                    cpu::send_event();
                    cpu::wait_for_event();
                }
                None if sleeper => {
                    drop(q);
                    cpu::wait_for_interrupt();
                }
                None => {
                    drop(q);
                    cpu::wait_for_event();
                }
            }
        }
    }
}

/// A physical interrupt taken by the dispatcher: if it is the disk's,
/// routes it on to the waiting sleeper, or (nobody sleeps) acks it at the
/// device, which lowers the line; wakes the other waiters; returns true.
pub fn take_interrupt(intid: u32) -> bool {
    let Some(disk) = DISK.get() else { return false };
    let Some(irq) = disk.irq.filter(|i| i.intid == intid) else { return false };
    let mut q = disk.queue.lock();
    match q.sleeper {
        Some(sleeper) if sleeper != cpu::mpidr() => (irq.route)(intid, sleeper),
        _ => {
            q.driver.ack_interrupt();
        }
    }
    drop(q);
    cpu::send_event();
    true
}

/// What the disk did: requests by kind and how many overlapped.
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    /// Requests queued while another was in flight.
    overlapped: AtomicU64,
    /// The most in flight at once.
    most_in_flight: AtomicU64,
    /// Times a request found the queue full and waited for room.
    queue_full: AtomicU64,
}

impl Counts {
    fn note_in_flight(&self, now: u16) {
        if now > 1 {
            self.overlapped.fetch_add(1, Relaxed);
        }
        self.most_in_flight.fetch_max(u64::from(now), Relaxed);
    }
}

/// The physical disk's statistics line (nothing without a disk).
pub fn print_stats() {
    let Some(disk) = DISK.get() else { return };
    let c = &disk.counts;
    crate::println!(
        "stats: physical disk: {} reads, {} writes, {} flushes; {} queued while another was in flight, \
         at most {} in flight, {} waited for queue room",
        c.reads.load(Relaxed),
        c.writes.load(Relaxed),
        c.flushes.load(Relaxed),
        c.overlapped.load(Relaxed),
        c.most_in_flight.load(Relaxed),
        c.queue_full.load(Relaxed)
    );
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
        let queue = Mutex::new(Queue { driver, in_flight: 0, sleeper: None });
        return Ok(Some(DISK.call_once(|| Disk { queue, irq, counts: Counts::default(), sectors, header })));
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
