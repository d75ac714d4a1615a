//! Tests of the virtio transport, queues and block device, driven the way
//! Linux's `virtio_mmio` and `virtio_blk` drivers drive them.

mod balloon;
mod chains;
mod fuzz;
mod net;
mod requests;
mod transport;

use super::blk::{BlkConfig, MemDisk, VirtioBlk, SECTOR_SIZE};
use super::transport::*;
use super::*;
use crate::mem::{GuestMemory, VecMemory};
use crate::mmio::MmioDevice;
use alloc::vec::Vec;

/// Guest RAM for the tests: 1 MiB at 1 GiB.
pub const BASE: u64 = 0x4000_0000;
pub const MEM_SIZE: usize = 0x10_0000;
/// Queue rings (room for 256 entries each).
pub const DESC: u64 = BASE;
pub const AVAIL: u64 = BASE + 0x1000;
pub const USED: u64 = BASE + 0x2000;
/// Indirect tables.
pub const INDIRECT: u64 = BASE + 0x4000;
/// Buffers.
pub const DATA: u64 = BASE + 0x10000;

/// Disk size of the test device, in sectors (64 KiB).
pub const DISK_SECTORS: u64 = 128;

pub fn r<D: VirtioDevice>(dev: &mut VirtioMmio<D>, off: u64) -> u32 {
    dev.read(off, 4).unwrap() as u32
}

pub fn w<D: VirtioDevice>(dev: &mut VirtioMmio<D>, off: u64, v: u32) {
    dev.write(off, 4, v.into()).unwrap()
}

/// The device's features as Linux reads them (high half first).
pub fn read_features<D: VirtioDevice>(dev: &mut VirtioMmio<D>) -> u64 {
    w(dev, DEVICE_FEATURES_SEL, 1);
    let hi = u64::from(r(dev, DEVICE_FEATURES));
    w(dev, DEVICE_FEATURES_SEL, 0);
    (hi << 32) | u64::from(r(dev, DEVICE_FEATURES))
}

pub fn write_features<D: VirtioDevice>(dev: &mut VirtioMmio<D>, f: u64) {
    w(dev, DRIVER_FEATURES_SEL, 1);
    w(dev, DRIVER_FEATURES, (f >> 32) as u32);
    w(dev, DRIVER_FEATURES_SEL, 0);
    w(dev, DRIVER_FEATURES, f as u32);
}

/// Status, as Linux sets it: read-modify-write.
pub fn add_status<D: VirtioDevice>(dev: &mut VirtioMmio<D>, bits: u32) {
    let s = r(dev, STATUS);
    w(dev, STATUS, s | bits);
}

/// Reset, ACKNOWLEDGE, DRIVER, features `accept` (masked by what is
/// offered), FEATURES_OK; returns the status read back.
pub fn negotiate<D: VirtioDevice>(dev: &mut VirtioMmio<D>, accept: u64) -> u32 {
    w(dev, STATUS, 0);
    add_status(dev, STATUS_ACKNOWLEDGE);
    add_status(dev, STATUS_DRIVER);
    let offered = read_features(dev);
    write_features(dev, offered & accept);
    add_status(dev, STATUS_FEATURES_OK);
    r(dev, STATUS)
}

/// Queue 0 with `size` entries at DESC/AVAIL/USED, as Linux's
/// `vm_setup_vq` programs it.
pub fn setup_queue<D: VirtioDevice>(dev: &mut VirtioMmio<D>, size: u32) {
    w(dev, QUEUE_SEL, 0);
    assert_eq!(r(dev, QUEUE_READY), 0);
    assert!(r(dev, QUEUE_NUM_MAX) >= size);
    w(dev, QUEUE_NUM, size);
    w(dev, QUEUE_DESC_LOW, DESC as u32);
    w(dev, QUEUE_DESC_HIGH, (DESC >> 32) as u32);
    w(dev, QUEUE_DRIVER_LOW, AVAIL as u32);
    w(dev, QUEUE_DRIVER_HIGH, (AVAIL >> 32) as u32);
    w(dev, QUEUE_DEVICE_LOW, USED as u32);
    w(dev, QUEUE_DEVICE_HIGH, (USED >> 32) as u32);
    w(dev, QUEUE_READY, 1);
}

/// Queues `queues` with `size` entries at `rings(q)` (descriptor table,
/// avail, used; below 4 GiB), as Linux's `vm_setup_vq` programs each;
/// each must offer `max` entries.
pub fn setup_queues<D: VirtioDevice>(
    dev: &mut VirtioMmio<D>,
    queues: &[u16],
    (size, max): (u16, u16),
    rings: impl Fn(u16) -> (u64, u64, u64),
) {
    for &q in queues {
        let (desc, avail, used) = rings(q);
        w(dev, QUEUE_SEL, q.into());
        assert_eq!(r(dev, QUEUE_NUM_MAX), u32::from(max), "queue {q}");
        w(dev, QUEUE_NUM, size.into());
        w(dev, QUEUE_DESC_LOW, desc as u32);
        w(dev, QUEUE_DRIVER_LOW, avail as u32);
        w(dev, QUEUE_DEVICE_LOW, used as u32);
        w(dev, QUEUE_READY, 1);
    }
}

/// A buffer for a chain: (guest address, length, device-writable).
pub type Buf = (u64, u32, bool);

/// Writes descriptor `index` of the table at `table`.
pub fn put_desc(mem: &mut VecMemory, table: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let at = table + 16 * u64::from(index);
    mem.write_u64(at, addr).unwrap();
    mem.write_u32(at + 8, len).unwrap();
    mem.write_u16(at + 12, flags).unwrap();
    mem.write_u16(at + 14, next).unwrap();
}

/// The driver side of one queue at DESC/AVAIL/USED.
#[derive(Debug, Clone)]
pub struct Driver {
    pub size: u16,
    /// Next free descriptor (descriptors are used round-robin).
    next_desc: u16,
    pub avail_idx: u16,
}

impl Driver {
    pub fn new(size: u16) -> Self {
        Self { size, next_desc: 0, avail_idx: 0 }
    }

    /// Writes `bufs` as a chain of direct descriptors; returns its head.
    pub fn chain(&mut self, mem: &mut VecMemory, bufs: &[Buf]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let mut flags = if writable { queue::VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= queue::VIRTQ_DESC_F_NEXT;
            }
            put_desc(mem, DESC, index, addr, len, flags, self.next_desc);
        }
        head
    }

    /// Writes `bufs` as an indirect table at `table` and one direct
    /// descriptor pointing to it; returns its head.
    pub fn indirect(&mut self, mem: &mut VecMemory, table: u64, bufs: &[Buf]) -> u16 {
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let mut flags = if writable { queue::VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= queue::VIRTQ_DESC_F_NEXT;
            }
            put_desc(mem, table, i as u16, addr, len, flags, i as u16 + 1);
        }
        let head = self.next_desc;
        self.next_desc = (self.next_desc + 1) % self.size;
        put_desc(mem, DESC, head, table, 16 * bufs.len() as u32, queue::VIRTQ_DESC_F_INDIRECT, 0);
        head
    }

    /// Makes `head` available (ring entry, then the index).
    pub fn publish(&mut self, mem: &mut VecMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_u16(AVAIL + 4 + 2 * slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_u16(AVAIL + 2, self.avail_idx).unwrap();
    }

    /// used.idx as the device published it.
    pub fn used_idx(mem: &VecMemory) -> u16 {
        mem.read_u16(USED + 2).unwrap()
    }

    /// Used element `n` (free-running index): (id, len).
    pub fn used(&self, mem: &VecMemory, n: u16) -> (u32, u32) {
        let at = USED + 4 + 8 * u64::from(n % self.size);
        (mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap())
    }
}

/// A guest with a virtio-blk device, its memory and its disk.
pub struct Guest {
    pub dev: VirtioMmio<VirtioBlk>,
    pub mem: VecMemory,
    pub disk: MemDisk,
    pub q: Driver,
}

impl Guest {
    /// A read-write disk of [`DISK_SECTORS`], driven up to DRIVER_OK with
    /// a queue of `size` entries and every offered feature accepted.
    pub fn new(size: u16) -> Self {
        Self::with(BlkConfig::new(DISK_SECTORS, false, b"disco-test-disk"), size)
    }

    pub fn with(config: BlkConfig, size: u16) -> Self {
        let mut g = Self {
            dev: VirtioMmio::new(VirtioBlk::new(config)),
            mem: VecMemory::new(BASE, MEM_SIZE),
            disk: MemDisk::new(config.sectors),
            q: Driver::new(size),
        };
        g.start();
        g
    }

    /// Reset and full initialisation, as after a boot.
    pub fn start(&mut self) {
        let s = negotiate(&mut self.dev, u64::MAX);
        assert_ne!(s & STATUS_FEATURES_OK, 0);
        setup_queue(&mut self.dev, u32::from(self.q.size));
        add_status(&mut self.dev, STATUS_DRIVER_OK);
        assert_eq!(r(&mut self.dev, STATUS), 0xF);
        self.q = Driver::new(self.q.size);
    }

    /// Notifies queue 0 and lets the device process it, as the monitor
    /// would; returns the interrupt level.
    pub fn kick(&mut self) -> bool {
        w(&mut self.dev, QUEUE_NOTIFY, 0);
        let disk: &mut dyn blk::BlockBackend = &mut self.disk;
        self.dev.process_notified(&mut self.mem, disk)
    }

    /// The interrupt handler: reads and acknowledges InterruptStatus.
    pub fn ack(&mut self) -> u32 {
        let s = r(&mut self.dev, INTERRUPT_STATUS);
        w(&mut self.dev, INTERRUPT_ACK, s);
        s
    }
}

/// Bytes of guest memory.
pub fn bytes(mem: &VecMemory, gpa: u64, len: usize) -> Vec<u8> {
    let mut v = alloc::vec![0; len];
    mem.read(gpa, &mut v).unwrap();
    v
}

/// A recognisable pattern for sector-sized data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

pub const SECTOR: usize = SECTOR_SIZE as usize;
