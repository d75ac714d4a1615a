//! virtio-balloon, driven the way Linux's `virtio_balloon` drives it with
//! only free page reporting negotiated: inflateq 0, deflateq 1 and
//! reporting_vq 2, whose chains are device-writable free ranges.

use super::*;
use crate::virtio::balloon::*;
use alloc::vec;
use proptest::prelude::*;

/// Rings of queue q at BASE + q * 0x4000: descriptors, avail (+0x1000),
/// used (+0x2000).
const QSIZE: u16 = 16;
/// Page frame number arrays for inflate/deflate.
const PFNS: u64 = BASE + 0x10000;

fn rings(q: u16) -> (u64, u64, u64) {
    let base = BASE + u64::from(q) * 0x4000;
    (base, base + 0x1000, base + 0x2000)
}

/// Guest memory that records what it was asked to discard, and says
/// every other page had backing (to tell the counts apart).
struct Recording {
    mem: VecMemory,
    ranges: Vec<(u64, u64)>,
}

impl GuestMemory for Recording {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::mem::MemError> {
        self.mem.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), crate::mem::MemError> {
        self.mem.write(gpa, data)
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), crate::mem::MemError> {
        self.mem.check_range(gpa, len)
    }
    fn discard(&mut self, gpa: u64, pages: u64) -> u64 {
        self.ranges.push((gpa, pages));
        self.mem.discard(gpa, pages).div_ceil(2)
    }
}

struct BalloonGuest {
    dev: VirtioMmio<VirtioBalloon>,
    mem: Recording,
    /// Per queue: next avail index and next descriptor.
    avail: [u16; 3],
    next_desc: [u16; 3],
}

impl BalloonGuest {
    fn new() -> Self {
        let mut g = Self {
            dev: VirtioMmio::new(VirtioBalloon::new()),
            mem: Recording { mem: VecMemory::new(BASE, MEM_SIZE), ranges: Vec::new() },
            avail: [0; 3],
            next_desc: [0; 3],
        };
        assert_eq!(r(&mut g.dev, DEVICE_ID), VIRTIO_ID_BALLOON);
        assert_ne!(negotiate(&mut g.dev, u64::MAX) & STATUS_FEATURES_OK, 0);
        assert_eq!(g.dev.driver_features(), VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_BALLOON_F_REPORTING);
        setup_queues(&mut g.dev, &[INFLATE_QUEUE, DEFLATE_QUEUE, REPORTING_QUEUE], (QSIZE, QUEUE_SIZE), rings);
        w(&mut g.dev, QUEUE_SEL, 3);
        assert_eq!(r(&mut g.dev, QUEUE_NUM_MAX), 0, "only three queues");
        add_status(&mut g.dev, STATUS_DRIVER_OK);
        assert_eq!(r(&mut g.dev, STATUS), 0xF);
        g
    }

    /// Makes `bufs` one chain on queue `q` and notifies it; returns used.idx.
    fn send(&mut self, q: u16, bufs: &[Buf]) -> u16 {
        let (desc, avail, used) = rings(q);
        let head = self.next_desc[q as usize];
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = self.next_desc[q as usize];
            let next = (index + 1) % QSIZE;
            self.next_desc[q as usize] = next;
            let mut flags = if writable { queue::VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= queue::VIRTQ_DESC_F_NEXT;
            }
            put_desc(&mut self.mem.mem, desc, index, addr, len, flags, next);
        }
        let slot = u64::from(self.avail[q as usize] % QSIZE);
        self.mem.write_u16(avail + 4 + 2 * slot, head).unwrap();
        self.avail[q as usize] = self.avail[q as usize].wrapping_add(1);
        self.mem.write_u16(avail + 2, self.avail[q as usize]).unwrap();
        w(&mut self.dev, QUEUE_NOTIFY, q.into());
        self.dev.process_notified(&mut self.mem, &mut ());
        self.mem.read_u16(used + 2).unwrap()
    }
}

#[test]
fn a_free_page_report_discards_every_range_and_is_used() {
    let mut g = BalloonGuest::new();
    // Two 64 KiB ranges (2 MiB on a real guest), device-writable as
    // Linux's virtqueue_add_inbuf makes them.
    let ranges = [(BASE + 0x20000, 0x10000u32, true), (BASE + 0x40000, 0x10000, true)];
    g.mem.write_u64(BASE + 0x2fff8, 0x5a5a).unwrap();
    assert_eq!(g.send(REPORTING_QUEUE, &ranges), 1);
    assert_eq!(g.mem.read_u64(BASE + 0x2fff8).unwrap(), 0, "dropped before the chain is used");
    assert_eq!(g.mem.ranges, vec![(BASE + 0x20000, 16), (BASE + 0x40000, 16)]);
    let (_, _, used) = rings(REPORTING_QUEUE);
    assert_eq!(g.mem.read_u32(used + 8).unwrap(), 0, "nothing written");
    let s = g.dev.device().stats();
    assert_eq!((s.reports, s.reported_pages, s.freed_pages, s.unaligned), (1, 32, 16, 0));
    assert_ne!(g.dev.interrupt_status() & INT_VRING, 0, "the driver waits for the buffer back");
    assert!(!g.dev.needs_reset());
}

#[test]
fn only_whole_aligned_pages_are_discarded() {
    let mut g = BalloonGuest::new();
    // 0x800 into a page and 0x2000 long: one whole page inside, the rest
    // counted as unaligned; a range shorter than a page: all unaligned.
    g.send(REPORTING_QUEUE, &[(BASE + 0x20800, 0x2000, true), (BASE + 0x30000, 0x800, true)]);
    assert_eq!(g.mem.ranges, vec![(BASE + 0x21000, 1)]);
    let s = g.dev.device().stats();
    assert_eq!((s.reported_pages, s.unaligned), (1, 0x1000 + 0x800));
}

#[test]
fn inflate_discards_the_pages_named_and_deflate_only_counts() {
    let mut g = BalloonGuest::new();
    // Out of order, with a gap: two runs, one discard each.
    let first = (BASE >> 12) as u32;
    let pfns = [first + 0x31, first + 0x40, first + 0x30, first + 0x32];
    for (i, p) in pfns.iter().enumerate() {
        g.mem.write_u32(PFNS + 4 * i as u64, *p).unwrap();
    }
    assert_eq!(g.send(INFLATE_QUEUE, &[(PFNS, 16, false)]), 1);
    assert_eq!(g.mem.ranges, vec![(BASE + 0x30000, 3), (BASE + 0x40000, 1)]);
    assert_eq!(g.send(DEFLATE_QUEUE, &[(PFNS, 16, false)]), 1);
    assert_eq!(g.mem.ranges.len(), 2, "deflate frees nothing");
    let s = g.dev.device().stats();
    // The recording memory says half of each run's pages (rounded up) held a frame.
    assert_eq!((s.inflated_pages, s.deflated_pages, s.freed_pages), (4, 4, 3));
    assert!(!g.dev.needs_reset());
}

#[test]
fn inflating_a_page_outside_ram_needs_a_reset() {
    for pfn in [7, u32::MAX] {
        // A good page first: nothing of a malformed request is dropped.
        let mut g = BalloonGuest::new();
        g.mem.write_u32(PFNS, (BASE >> 12) as u32 + 0x30).unwrap();
        g.mem.write_u32(PFNS + 4, pfn).unwrap();
        g.send(INFLATE_QUEUE, &[(PFNS, 8, false)]);
        assert!(g.dev.needs_reset(), "page {pfn:#x}");
        assert!(g.mem.ranges.is_empty());
    }
}

#[test]
fn config_space_has_the_target_and_takes_actual() {
    let mut g = BalloonGuest::new();
    g.dev.device_mut().set_target(1234);
    g.dev.config_changed();
    assert_eq!(g.dev.read(CONFIG, 4).unwrap(), 1234);
    g.dev.write(CONFIG + 4, 4, 1000).unwrap();
    g.dev.write(CONFIG, 4, 1).unwrap(); // num_pages is the device's
    assert_eq!(g.dev.device().actual(), 1000);
    assert_eq!(g.dev.read(CONFIG, 4).unwrap(), 1234);
    assert_ne!(g.dev.interrupt_status() & INT_CONFIG, 0);
}

#[test]
fn a_range_outside_ram_needs_a_reset_and_discards_nothing() {
    let mut g = BalloonGuest::new();
    g.send(REPORTING_QUEUE, &[(BASE + 0x20000, 0x1000, true), (BASE + MEM_SIZE as u64, 0x1000, true)]);
    assert!(g.dev.needs_reset());
    assert!(g.mem.ranges.is_empty(), "the chain is checked before any range is used");
}

proptest! {
    /// Arbitrary report chains: the device never panics, gives the sink
    /// only whole aligned pages inside RAM, and accounts for every byte.
    #[test]
    fn arbitrary_reports(bufs in proptest::collection::vec((0u64..MEM_SIZE as u64 + 0x3000, 1u32..0x6000, any::<bool>()), 1..6)) {
        let mut g = BalloonGuest::new();
        let bufs: Vec<Buf> = bufs.into_iter().map(|(off, len, wr)| (BASE + off, len, wr)).collect();
        g.send(REPORTING_QUEUE, &bufs);
        for &(gpa, pages) in &g.mem.ranges {
            prop_assert_eq!(gpa % BALLOON_PAGE, 0);
            prop_assert!(gpa >= BASE && gpa + pages * BALLOON_PAGE <= BASE + MEM_SIZE as u64);
        }
        if !g.dev.needs_reset() {
            let s = g.dev.device().stats();
            let named: u64 = bufs.iter().map(|b| u64::from(b.1)).sum();
            prop_assert_eq!(s.reported_pages * BALLOON_PAGE + s.unaligned, named);
        }
    }
}
