//! Arbitrary guest memory, descriptor tables, available rings and register
//! writes: the device never panics, never loops (every guest-memory access
//! counts against a budget), and either completes what was made available
//! or sets NEEDS_RESET.

use super::*;
use crate::mem::MemError;
use crate::virtio::blk::{BlockBackend, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use crate::virtio::queue::{
    SplitQueue, MAX_INDIRECT_CHAIN, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use alloc::vec;
use core::cell::Cell;
use proptest::prelude::*;

/// 64 KiB of guest memory: rings, indirect tables, then buffers.
const SMALL: usize = 0x1_0000;
const F_DESC: u64 = BASE;
const F_AVAIL: u64 = BASE + 0x400;
const F_USED: u64 = BASE + 0x800;
const F_TABLES: u64 = BASE + 0x1000;
const F_BUFS: u64 = BASE + 0x2000;
/// Request headers the generated descriptors may point at.
const HEADERS: u64 = 16;

/// Accesses allowed per test case: far above what bounded processing of
/// a 64-entry queue needs, far below what a loop would do.
const BUDGET: u64 = 2_000_000;

/// Guest memory that panics once the device has made too many accesses.
struct Bounded {
    inner: VecMemory,
    accesses: Cell<u64>,
}

impl Bounded {
    fn tick(&self) {
        let n = self.accesses.get() + 1;
        assert!(n <= BUDGET, "more than {BUDGET} guest-memory accesses: a loop?");
        self.accesses.set(n);
    }
}

impl GuestMemory for Bounded {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.tick();
        self.inner.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.tick();
        self.inner.write(gpa, data)
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.tick();
        self.inner.check_range(gpa, len)
    }
}

/// Fills `bytes` from a seed (xorshift), cheaper than generating them.
fn fill(bytes: &mut [u8], mut seed: u64) {
    seed |= 1;
    for chunk in bytes.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = seed.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0..HEADERS).prop_map(|k| F_BUFS + 0x40 * k),
        4 => F_BUFS..BASE + SMALL as u64,
        2 => (0u64..16).prop_map(|k| F_TABLES + 0x100 * k),
        1 => prop::sample::select(vec![F_DESC, F_AVAIL, F_USED, BASE + SMALL as u64 - 1, BASE + SMALL as u64, BASE - 1, 0]),
        1 => u64::MAX - 0x100..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![0u32, 1, 8, 15, 16, 17, 32, 48, 512, 513, 1024, 4096]),
        2 => 0u32..0x4000,
        1 => any::<u32>(),
    ]
}

fn flags() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => prop::sample::select(vec![
            0,
            VIRTQ_DESC_F_NEXT,
            VIRTQ_DESC_F_WRITE,
            VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
            VIRTQ_DESC_F_INDIRECT,
        ]),
        1 => 0u16..8,
        1 => any::<u16>(),
    ]
}

/// (addr, len, flags, next)
fn desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (addr(), len(), flags(), prop_oneof![4 => 0u16..8, 2 => 0u16..70, 1 => any::<u16>()])
}

fn header() -> impl Strategy<Value = (u32, u64)> {
    (
        prop_oneof![
            4 => prop::sample::select(vec![VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID]),
            1 => any::<u32>(),
        ],
        prop_oneof![4 => 0..DISK_SECTORS + 4, 1 => any::<u64>()],
    )
}

#[derive(Debug, Clone)]
struct Scenario {
    size: u16,
    seed: u64,
    descs: Vec<(u64, u32, u16, u16)>,
    /// Entries of the indirect tables, 16 per table, table k at F_TABLES + 0x100 k.
    table_descs: Vec<(u64, u32, u16, u16)>,
    headers: Vec<(u32, u64)>,
    ring: Vec<u16>,
    avail_idx: u16,
    avail_flags: u16,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Descriptors and ring entries as generated.
    Random,
    /// Memory (rings and tables too) as the seed made it.
    Raw,
    /// Well-formed requests (header, data, status), as a driver makes them.
    Requests,
    /// Well-formed requests, then one generated descriptor written over
    /// one of theirs.
    Mutated,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    prop::sample::select(vec![1u16, 2, 4, 8, 16, 64]).prop_flat_map(|size| {
        let n = usize::from(size);
        (
            any::<u64>(),
            prop::collection::vec(desc(), n),
            prop::collection::vec(desc(), 64),
            prop::collection::vec(header(), HEADERS as usize),
            prop::collection::vec(prop_oneof![4 => 0..size, 1 => any::<u16>()], n),
            prop_oneof![6 => 0..=size, 1 => any::<u16>()],
            prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
            prop_oneof![3 => Just(Mode::Random), 1 => Just(Mode::Raw), 2 => Just(Mode::Requests), 3 => Just(Mode::Mutated)],
        )
            .prop_map(move |(seed, descs, table_descs, headers, ring, avail_idx, avail_flags, mode)| Scenario {
                size,
                seed,
                descs,
                table_descs,
                headers,
                ring,
                avail_idx,
                avail_flags,
                mode,
            })
    })
}

fn memory(s: &Scenario) -> VecMemory {
    let mut mem = VecMemory::new(BASE, SMALL);
    fill(&mut mem.bytes, s.seed);
    if s.mode == Mode::Raw {
        return mem;
    }
    for (i, &(addr, len, flags, next)) in s.descs.iter().enumerate() {
        put_desc(&mut mem, F_DESC, i as u16, addr, len, flags, next);
    }
    for (i, &(addr, len, flags, next)) in s.table_descs.iter().enumerate() {
        put_desc(&mut mem, F_TABLES + 0x100 * (i as u64 / 16), (i % 16) as u16, addr, len, flags, next);
    }
    for (k, &(kind, sector)) in s.headers.iter().enumerate() {
        let at = F_BUFS + 0x40 * k as u64;
        mem.write_u32(at, kind).unwrap();
        mem.write_u64(at + 8, sector).unwrap();
    }
    mem.write_u16(F_AVAIL, s.avail_flags).unwrap();
    mem.write_u16(F_AVAIL + 2, s.avail_idx).unwrap();
    for (i, &head) in s.ring.iter().enumerate() {
        mem.write_u16(F_AVAIL + 4 + 2 * i as u64, head).unwrap();
    }
    mem.write_u16(F_USED + 2, 0).unwrap();
    if matches!(s.mode, Mode::Requests | Mode::Mutated) {
        requests(s, &mut mem);
    }
    mem
}

/// Replaces the queue's contents with well-formed requests: header slot
/// `j`, 512 bytes of data (device-writable for IN and GET_ID), a status
/// byte; three direct descriptors each, or one indirect table when the
/// queue is too small.
fn requests(s: &Scenario, mem: &mut VecMemory) {
    let size = s.size;
    let (n, indirect) = if size >= 3 { ((s.avail_idx % (size + 1)).min(size / 3), false) } else { (1, true) };
    let mut next = 0u16;
    for j in 0..n {
        let (kind, sector) = s.headers[usize::from(j) % s.headers.len()];
        let kind = [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID][kind as usize % 4];
        let hdr = F_BUFS + 0x40 * u64::from(j % HEADERS as u16);
        mem.write_u32(hdr, kind).unwrap();
        mem.write_u64(hdr + 8, sector % (DISK_SECTORS + 2)).unwrap();
        let data_writable = matches!(kind, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID);
        let bufs = [
            (hdr, 16, false),
            (F_BUFS + 0x400 + 0x200 * u64::from(j), 512, data_writable),
            (F_BUFS + 0x400 + 0x200 * 64 + u64::from(j), 1, true),
        ];
        let (table, base_index) = if indirect { (F_TABLES, 0) } else { (F_DESC, next) };
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let mut flags = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i < 2 {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let index = base_index + i as u16;
            put_desc(mem, table, index, addr, len, flags, index + 1);
        }
        let head = if indirect {
            put_desc(mem, F_DESC, 0, F_TABLES, 48, VIRTQ_DESC_F_INDIRECT, 0);
            0
        } else {
            next += 3;
            base_index
        };
        mem.write_u16(F_AVAIL + 4 + 2 * u64::from(j), head).unwrap();
    }
    mem.write_u16(F_AVAIL, 0).unwrap();
    mem.write_u16(F_AVAIL + 2, n).unwrap();
    if s.mode == Mode::Mutated {
        let (addr, len, flags, next) = s.descs[0];
        let (table, index) = if indirect { (F_TABLES, next % 3) } else { (F_DESC, next % size) };
        put_desc(mem, table, index, addr, len, flags, next);
    }
}

/// A block device driven to DRIVER_OK with its queue at F_DESC/F_AVAIL/F_USED.
fn device(size: u16) -> VirtioMmio<VirtioBlk> {
    let mut d = VirtioMmio::new(VirtioBlk::new(BlkConfig::new(DISK_SECTORS, false, b"fuzz")));
    assert_ne!(negotiate(&mut d, u64::MAX) & STATUS_FEATURES_OK, 0);
    w(&mut d, QUEUE_SEL, 0);
    w(&mut d, QUEUE_NUM, u32::from(size));
    w(&mut d, QUEUE_DESC_LOW, F_DESC as u32);
    w(&mut d, QUEUE_DESC_HIGH, (F_DESC >> 32) as u32);
    w(&mut d, QUEUE_DRIVER_LOW, F_AVAIL as u32);
    w(&mut d, QUEUE_DRIVER_HIGH, (F_AVAIL >> 32) as u32);
    w(&mut d, QUEUE_DEVICE_LOW, F_USED as u32);
    w(&mut d, QUEUE_DEVICE_HIGH, (F_USED >> 32) as u32);
    w(&mut d, QUEUE_READY, 1);
    add_status(&mut d, STATUS_DRIVER_OK);
    assert_eq!(r(&mut d, STATUS), 0xF);
    d
}

proptest! {
    #[test]
    fn blk_survives_arbitrary_queues(s in scenario()) {
        let mut dev = device(s.size);
        let mut mem = Bounded { inner: memory(&s), accesses: Cell::new(0) };
        let avail_idx = mem.inner.read_u16(F_AVAIL + 2).unwrap();
        let mut disk = MemDisk::new(DISK_SECTORS);
        w(&mut dev, QUEUE_NOTIFY, 0);
        let disk_dyn: &mut dyn BlockBackend = &mut disk;
        let level = dev.process_notified(&mut mem, disk_dyn);
        prop_assert_eq!(level, dev.interrupt_status() != 0);
        let q = dev.queue(0).unwrap().clone();
        if dev.needs_reset() {
            prop_assert!(dev.irq_level(), "NEEDS_RESET raises the configuration interrupt");
            prop_assert_ne!(dev.interrupt_status() & INT_CONFIG, 0);
            prop_assert!(dev.last_error().is_some());
        } else {
            prop_assert!(avail_idx <= s.size, "a jump of avail.idx must be refused");
            // Every chain taken was completed.
            prop_assert_eq!(q.next_used(), q.next_avail());
            if avail_idx > 0 {
                prop_assert!(q.next_avail() > 0, "available requests were processed");
            }
        }
        // Another notification: ignored after NEEDS_RESET, harmless otherwise.
        w(&mut dev, QUEUE_NOTIFY, 0);
        let disk_dyn: &mut dyn BlockBackend = &mut disk;
        dev.process_notified(&mut mem, disk_dyn);
        if dev.needs_reset() {
            let q2 = dev.queue(0).unwrap();
            prop_assert!(q2.next_avail() >= q.next_avail());
        }
    }

    #[test]
    fn queue_survives_random_memory(seed in any::<u64>(), size in prop::sample::select(vec![1u32, 2, 8, 64, 256]),
                                    indirect in any::<bool>()) {
        let mut inner = VecMemory::new(BASE, SMALL);
        fill(&mut inner.bytes, seed);
        let mut mem = Bounded { inner, accesses: Cell::new(0) };
        let mut q = SplitQueue::new(size, F_DESC, F_AVAIL, F_USED + 0x400).unwrap();
        q.set_indirect(indirect);
        for _ in 0..size {
            match q.pop_chain(&mem) {
                Ok(Some(c)) => {
                    prop_assert!(c.descriptors().len() <= (size as usize).max(MAX_INDIRECT_CHAIN));
                    prop_assert!(c.readable().iter().all(|d| !d.writable));
                    prop_assert!(c.writable().iter().all(|d| d.writable));
                    for d in c.descriptors() {
                        prop_assert!(d.len > 0);
                        prop_assert!(mem.inner.check_range(d.addr, u64::from(d.len)).is_ok());
                    }
                    q.add_used(&mut mem, c.head(), 0).unwrap();
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn transport_survives_arbitrary_accesses(ops in prop::collection::vec(op(), 1..80), seed in any::<u64>()) {
        let mut dev = VirtioMmio::new(VirtioBlk::new(BlkConfig::new(DISK_SECTORS, false, b"fuzz")));
        let mut inner = VecMemory::new(BASE, SMALL);
        fill(&mut inner.bytes, seed);
        let mut mem = Bounded { inner, accesses: Cell::new(0) };
        let mut disk = MemDisk::new(DISK_SECTORS);
        for op in ops {
            match op {
                Op::Read(off, size) => { let _ = dev.read(off, size); }
                Op::Write(off, size, v) => { let _ = dev.write(off, size, v); }
                Op::Process(q) => {
                    let disk_dyn: &mut dyn BlockBackend = &mut disk;
                    dev.process(q, &mut mem, disk_dyn);
                }
            }
            let s = dev.status();
            if s & STATUS_FEATURES_OK != 0 {
                prop_assert_ne!(dev.driver_features() & VIRTIO_F_VERSION_1, 0);
                prop_assert_eq!(dev.driver_features() & !dev.device_features(), 0);
            }
            if s & STATUS_DRIVER_OK != 0 {
                prop_assert_ne!(s & STATUS_FEATURES_OK, 0);
            }
            prop_assert_eq!(dev.irq_level(), dev.interrupt_status() != 0);
            if let Some(q) = dev.queue(0) {
                prop_assert!(q.size().is_power_of_two() && q.size() <= 256);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, u8),
    Write(u64, u8, u64),
    Process(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let reg = prop_oneof![
        8 => (0u64..0x40).prop_map(|i| i * 4),
        2 => 0u64..0x200,
        1 => any::<u64>(),
    ];
    let size = prop_oneof![6 => Just(4u8), 1 => prop::sample::select(vec![1u8, 2, 8]), 1 => any::<u8>()];
    let value = prop_oneof![
        3 => 0u64..16,
        2 => prop::sample::select(vec![0xF, 0x7, 0x3, 0x1, 0x80, 0x40, 0x100, 256, 3, 4096]),
        2 => F_DESC..BASE + SMALL as u64,
        1 => any::<u64>(),
    ];
    prop_oneof![
        3 => (reg.clone(), size.clone()).prop_map(|(o, s)| Op::Read(o, s)),
        6 => (reg, size, value).prop_map(|(o, s, v)| Op::Write(o, s, v)),
        1 => prop_oneof![Just(0u16), any::<u16>()].prop_map(Op::Process),
    ]
}
