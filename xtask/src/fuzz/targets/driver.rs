//! A virtio driver whose every step comes from the fuzz input, for the
//! virtio-blk and virtio-net targets: it negotiates features, sets up the
//! queues at input-chosen guest addresses, writes descriptors and rings
//! into guest RAM, notifies, and pokes transport registers at random.
//! After each `process` it checks what holds for any device on this
//! transport: a failed guest-memory access leaves the device in
//! NEEDS_RESET (with the configuration interrupt); after NEEDS_RESET the
//! device touches no guest memory; it wrote only the used rings and
//! device-writable buffers; every new used element names a descriptor of
//! the table; the interrupt line is InterruptStatus != 0.
//!
//! Program: a flags byte and per queue (size exponent, descriptor table,
//! available ring, used ring offsets, a wild byte that moves the rings
//! out of RAM), then operations (see [`step`]).

use super::guest::{check_writes, writable_ranges, Watched, MEM_BASE};
use crate::fuzz::input::Bytes;
use vdev::mem::GuestMemory;
use vdev::mmio::MmioDevice;
use vdev::virtio::transport::*;
use vdev::virtio::{VirtioDevice, INT_CONFIG, STATUS_NEEDS_RESET, VIRTIO_F_INDIRECT_DESC};

/// What a step did (a feature bit for the corpus).
pub enum Step {
    /// Not a driver step: the device target handles operation `n`.
    Device(usize),
    Done(u32),
}

/// Resets the device and brings it up as the input says.
pub fn bring_up<D: VirtioDevice>(t: &mut VirtioMmio<D>, b: &mut Bytes) {
    let w = |t: &mut VirtioMmio<D>, off: u64, v: u64| {
        let _ = t.write(off, 4, v);
    };
    w(t, STATUS, 0);
    let flags = b.u8();
    w(t, STATUS, 1);
    w(t, STATUS, 3);
    let offered = t.device_features();
    let mut features = if flags & 1 != 0 { offered } else { offered & !VIRTIO_F_INDIRECT_DESC };
    if flags & 0x40 != 0 {
        features ^= 1 << b.below(64);
    }
    for sel in 0..2 {
        w(t, DRIVER_FEATURES_SEL, sel);
        w(t, DRIVER_FEATURES, features >> (32 * sel) & 0xFFFF_FFFF);
    }
    if flags & 2 == 0 {
        w(t, STATUS, 0xb);
    }
    let queues = t.device().num_queues();
    for q in 0..queues {
        w(t, QUEUE_SEL, u64::from(q));
        let size = 1u64 << (b.u8() % 16);
        let (desc, avail, used) = (b.u16() & !15, b.u16() & !1, b.u16() & !3);
        let wild = u64::from(b.u8()) << 32;
        let wild = if wild >> 32 < 0xf0 { 0 } else { wild };
        w(t, QUEUE_NUM, size);
        for (low, off) in [(QUEUE_DESC_LOW, desc), (QUEUE_DRIVER_LOW, avail), (QUEUE_DEVICE_LOW, used)] {
            let addr = MEM_BASE + u64::from(off) + wild;
            w(t, low, addr & 0xFFFF_FFFF);
            w(t, low + 4, addr >> 32);
        }
        w(t, QUEUE_READY, 1);
    }
    if flags & 4 == 0 {
        w(t, STATUS, 0xf);
    }
}

/// Makes descriptor `head` available on queue `q` (as a driver would).
fn make_available<D: VirtioDevice>(t: &VirtioMmio<D>, mem: &mut Watched, q: u16, head: u16) {
    let Some(queue) = t.queue(q) else { return };
    let ring = queue.avail_ring();
    let Some(idx) = mem.peek_u16(ring + 2) else { return };
    let slot = ring + 4 + 2 * u64::from(idx % queue.size());
    let _ = mem.mem.write_u16(slot, head);
    let _ = mem.mem.write_u16(ring + 2, idx.wrapping_add(1));
}

/// One driver operation; the device target's own ones come back as
/// [`Step::Device`].
pub fn step<D: VirtioDevice>(
    t: &mut VirtioMmio<D>,
    mem: &mut Watched,
    backend: &mut D::Backend,
    b: &mut Bytes,
) -> Step {
    let queues = t.device().num_queues();
    match b.below(10) {
        0 | 1 => {
            let (off, n) = (b.u16(), 1 + b.below(64));
            let data = b.take(n);
            mem.poke(off, data);
            Step::Done(0)
        }
        2 => {
            let (q, head) = (b.below(usize::from(queues)) as u16, b.u16());
            make_available(t, mem, q, head);
            Step::Done(1)
        }
        3 | 4 => {
            let q = b.below(usize::from(queues)) as u16;
            let _ = t.write(QUEUE_NOTIFY, 4, u64::from(q));
            Step::Done(2 + process(t, mem, backend))
        }
        5 => {
            let (off, size, value) = (u64::from(b.u16()) % 0x220, [4, 4, 1, 2, 8][b.below(5)], u64::from(b.u32()));
            let r = t.write(off, size, value);
            assert!(off < VIRTIO_MMIO_FRAME_SIZE || r.is_err(), "write past the frame at {off:#x} accepted");
            Step::Done(6)
        }
        6 => {
            let (off, size) = (u64::from(b.u16()) % 0x220, [4, 4, 1, 2, 8][b.below(5)]);
            let r = t.read(off, size);
            assert!(off < VIRTIO_MMIO_FRAME_SIZE || r.is_err(), "read past the frame at {off:#x} accepted");
            if off == MAGIC && size == 4 {
                assert_eq!(r, Ok(u64::from(MAGIC_VALUE)), "MagicValue");
            }
            Step::Done(7)
        }
        7 if b.u8() < 16 => {
            bring_up(t, b);
            Step::Done(8)
        }
        n => Step::Device(n),
    }
}

/// Processes the notified queues and checks the transport's promises.
pub fn process<D: VirtioDevice>(t: &mut VirtioMmio<D>, mem: &mut Watched, backend: &mut D::Backend) -> u32 {
    let was_reset = t.needs_reset();
    let queues = t.device().num_queues();
    let mut allowed = Vec::new();
    let mut used_before = Vec::new();
    for q in 0..queues {
        if let Some(queue) = t.queue(q) {
            writable_ranges(&mem.mem, queue, &mut allowed);
            used_before.push((q, queue.next_used()));
        }
    }
    let (failed, accesses) = (mem.failed.get(), mem.accesses.get());
    mem.writes.clear();
    let level = t.process_notified(mem, backend);
    let new_failures = mem.failed.get() - failed;
    if was_reset {
        assert_eq!(mem.accesses.get(), accesses, "a device in NEEDS_RESET accessed guest memory");
    }
    if new_failures > 0 {
        assert!(t.needs_reset(), "{new_failures} failed guest-memory accesses, but no NEEDS_RESET");
    }
    if t.needs_reset() {
        assert!(t.status() & STATUS_NEEDS_RESET != 0 && t.last_error().is_some(), "NEEDS_RESET without its error");
        // (Once set, the driver may have acknowledged the interrupt.)
        if !was_reset {
            assert!(t.interrupt_status() & INT_CONFIG != 0, "NEEDS_RESET without the configuration interrupt");
        }
    }
    for q in 0..queues {
        if let Some(queue) = t.queue(q) {
            writable_ranges(&mem.mem, queue, &mut allowed);
        }
    }
    check_writes(&mem.writes, &allowed);
    for (q, before) in used_before {
        let Some(queue) = t.queue(q) else { continue };
        let size = queue.size();
        // A guest may place buffers over its own used ring; the device's
        // later writes into them then overwrite used elements.
        let ring = (queue.used_ring(), 6 + 8 * u64::from(size));
        if allowed.iter().any(|&r| r != ring && r.0 < ring.0 + ring.1 && ring.0 < r.0.saturating_add(r.1)) {
            continue;
        }
        let added = queue.next_used().wrapping_sub(before);
        assert!(added <= size, "queue {q}: {added} used elements in one call, queue size {size}");
        for k in 0..added {
            let slot = queue.used_ring() + 4 + 8 * u64::from(before.wrapping_add(k) % size);
            if let Ok(id) = mem.mem.read_u32(slot) {
                assert!(id < u32::from(size), "queue {q}: used element names descriptor {id}, size {size}");
            }
        }
    }
    assert_eq!(level, t.interrupt_status() != 0, "interrupt line vs InterruptStatus");
    // Which error (feature bits 16..56 of the target), else how it went.
    match t.last_error() {
        Some(e) => 14 + (crate::fuzz::rng::fnv(format!("{e:?}").as_bytes()) % 40) as u32,
        None => 2 * u32::from(level),
    }
}

/// Seed programs in the format [`bring_up`] and [`step`] read.
pub mod seed {
    /// The bring-up: flags (1: indirect descriptors), then per queue its
    /// size exponent and ring offsets in guest RAM.
    pub fn setup(flags: u8, queues: &[(u8, u16, u16, u16)]) -> Vec<u8> {
        let mut v = vec![flags];
        for &(exp, desc, avail, used) in queues {
            v.push(exp);
            for off in [desc, avail, used] {
                v.extend_from_slice(&off.to_le_bytes());
            }
            v.push(0);
        }
        v
    }

    /// Guest RAM at `off` gets `data`.
    pub fn poke(v: &mut Vec<u8>, off: u16, data: &[u8]) {
        for (k, chunk) in data.chunks(64).enumerate() {
            v.push(0);
            v.extend_from_slice(&(off + 64 * k as u16).to_le_bytes());
            v.push(chunk.len() as u8 - 1);
            v.extend_from_slice(chunk);
        }
    }

    /// A descriptor at index `i` of the table at `table`.
    pub fn desc(v: &mut Vec<u8>, table: u16, i: u16, addr_off: u16, len: u32, flags: u16, next: u16) {
        let mut d = (super::MEM_BASE + u64::from(addr_off)).to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        poke(v, table + 16 * i, &d);
    }

    /// Makes `head` available on `queue`, then notifies it.
    pub fn submit(v: &mut Vec<u8>, queue: u8, head: u16) {
        v.extend_from_slice(&[2, queue]);
        v.extend_from_slice(&head.to_le_bytes());
        v.extend_from_slice(&[3, queue]);
    }
}
