//! Split virtqueues (virtio 1.2, section 2.7), read and written through a
//! [`GuestMemory`] passed in on every call.
//!
//! Everything in the rings and descriptors is guest-controlled. A
//! [`SplitQueue`] checks all of it and answers anything malformed with a
//! [`QueueError`] (the transport then puts the device into NEEDS_RESET):
//! an available index that runs more than the queue size ahead, a head or
//! `next` index outside the table, a chain longer than the queue (which is
//! also how a loop ends), an indirect descriptor that is not negotiated,
//! has NEXT set, has a bad table length, or sits inside an indirect table,
//! a zero-length descriptor, a range that overflows or leaves guest memory,
//! and a device-readable descriptor after a device-writable one. Work per
//! call is bounded by the queue size.
//!
//! Supported: indirect descriptor tables (`VIRTIO_F_INDIRECT_DESC`, one
//! level). A direct chain holds at most the queue size descriptors; with
//! an indirect table, a chain holds at most `max(queue size,`
//! [`MAX_INDIRECT_CHAIN`]`)` (Linux fills indirect tables independently of
//! the queue size). Also supported: the
//! `VIRTQ_AVAIL_F_NO_INTERRUPT` hint. Not supported: `VIRTIO_F_EVENT_IDX`
//! (not offered, so `used_event`/`avail_event` are never touched) and the
//! device never sets `VIRTQ_USED_F_NO_NOTIFY` (the driver notifies after
//! every batch; each notification is processed).

use crate::mem::{GuestMemory, MemError};
use alloc::vec::Vec;
use core::fmt;

/// The largest split queue (2.7: "Queue Size ... maximum 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Descriptor flags (2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// `avail.flags`: the driver does not want used-buffer interrupts.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// The most descriptors a chain using an indirect table may hold when the
/// queue is smaller than this (QEMU's limit, too).
pub const MAX_INDIRECT_CHAIN: usize = 1024;

/// Size of one descriptor in the table.
const DESC_SIZE: u64 = 16;

/// Why a queue could not be used. Each is the guest's fault (or a
/// configuration the device refuses); none is recoverable without a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Queue size zero, not a power of two, or above the maximum.
    BadSize(u32),
    /// A ring address is not aligned (descriptor table 16, available ring
    /// 2, used ring 4) or the ring's end overflows.
    BadRingAddress(u64),
    /// `avail.idx` is more than the queue size ahead of the device.
    AvailIdxJump { avail: u16, next: u16 },
    /// An available-ring entry names a descriptor outside the table.
    HeadOutOfRange(u16),
    /// A `next` index outside the (direct or indirect) table.
    NextOutOfRange(u16),
    /// More descriptors than the queue size (also what a loop becomes).
    ChainTooLong,
    /// An indirect descriptor although `VIRTIO_F_INDIRECT_DESC` was not
    /// negotiated.
    IndirectNotNegotiated,
    /// An indirect descriptor with NEXT also set.
    IndirectWithNext,
    /// An indirect descriptor inside an indirect table.
    NestedIndirect,
    /// An indirect table length that is zero or not a multiple of 16.
    BadIndirectLen(u32),
    /// A descriptor of length zero.
    ZeroLength,
    /// A device-readable descriptor after a device-writable one.
    ReadableAfterWritable,
    /// Guest memory could not be accessed (ring, table or buffer outside
    /// guest RAM, or an address range overflowing).
    Memory(MemError),
    /// A request the device cannot even answer (e.g. a virtio-blk request
    /// without a writable status byte).
    BadRequest(&'static str),
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QueueError::BadSize(n) => write!(f, "queue size {n} is not a power of two up to {MAX_QUEUE_SIZE}"),
            QueueError::BadRingAddress(a) => write!(f, "ring address {a:#x} misaligned or overflowing"),
            QueueError::AvailIdxJump { avail, next } => {
                write!(f, "avail.idx {avail} is more than the queue size ahead of {next}")
            }
            QueueError::HeadOutOfRange(i) => write!(f, "chain head {i} outside the descriptor table"),
            QueueError::NextOutOfRange(i) => write!(f, "next index {i} outside the descriptor table"),
            QueueError::ChainTooLong => write!(f, "descriptor chain longer than the queue (loop?)"),
            QueueError::IndirectNotNegotiated => write!(f, "indirect descriptor without VIRTIO_F_INDIRECT_DESC"),
            QueueError::IndirectWithNext => write!(f, "indirect descriptor with NEXT set"),
            QueueError::NestedIndirect => write!(f, "indirect descriptor inside an indirect table"),
            QueueError::BadIndirectLen(l) => write!(f, "indirect table length {l} is not a positive multiple of 16"),
            QueueError::ZeroLength => write!(f, "zero-length descriptor"),
            QueueError::ReadableAfterWritable => write!(f, "device-readable descriptor after a device-writable one"),
            QueueError::Memory(e) => write!(f, "{e}"),
            QueueError::BadRequest(why) => write!(f, "malformed request: {why}"),
        }
    }
}

/// One buffer of a chain, already checked to be non-empty and inside
/// guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`); otherwise device-readable.
    pub writable: bool,
}

/// A validated descriptor chain: its head index (for [`SplitQueue::add_used`])
/// and its buffers with indirect tables flattened, device-readable ones
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescChain {
    head: u16,
    descs: Vec<Descriptor>,
    /// Index of the first writable descriptor (`descs.len()` if none).
    split: usize,
}

impl DescChain {
    /// The head descriptor index, which identifies the chain in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }
    /// All buffers, readable first.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descs
    }
    /// The device-readable buffers.
    pub fn readable(&self) -> &[Descriptor] {
        &self.descs[..self.split]
    }
    /// The device-writable buffers.
    pub fn writable(&self) -> &[Descriptor] {
        &self.descs[self.split..]
    }
    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        total(self.readable())
    }
    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        total(self.writable())
    }
}

fn total(descs: &[Descriptor]) -> u64 {
    descs.iter().map(|d| u64::from(d.len)).sum()
}

/// A position in a list of buffers, for copying a byte stream in or out
/// of a chain's readable or writable part.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    descs: &'a [Descriptor],
    /// Offset inside `descs[0]`.
    off: u32,
    /// Bytes still allowed.
    left: u64,
}

impl<'a> Cursor<'a> {
    /// The whole of `descs`.
    pub fn new(descs: &'a [Descriptor]) -> Self {
        Self { descs, off: 0, left: total(descs) }
    }

    /// Bytes left before the end (or the limit).
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Stops the cursor `n` bytes from now (or keeps what is left if less).
    pub fn limit(&mut self, n: u64) {
        self.left = self.left.min(n);
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut done = 0;
        self.walk(n, |_, len| {
            done += len;
            Ok(())
        })
        .ok();
        done
    }

    /// Reads up to `buf.len()` bytes; returns how many were read.
    pub fn read(&mut self, mem: &dyn GuestMemory, buf: &mut [u8]) -> Result<usize, MemError> {
        let mut done = 0usize;
        self.walk(buf.len() as u64, |addr, len| {
            let end = done + len as usize;
            mem.read(addr, &mut buf[done..end])?;
            done = end;
            Ok(())
        })?;
        Ok(done)
    }

    /// Writes up to `data.len()` bytes; returns how many were written.
    pub fn write(&mut self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<usize, MemError> {
        self.write_visiting(mem, data, |_, _, _| {})
    }

    /// [`Cursor::write`], telling `visit` where each piece went: its guest
    /// address, its offset in `data` and its length.
    pub fn write_visiting(
        &mut self,
        mem: &mut dyn GuestMemory,
        data: &[u8],
        mut visit: impl FnMut(u64, usize, usize),
    ) -> Result<usize, MemError> {
        let mut done = 0usize;
        self.walk(data.len() as u64, |addr, len| {
            let end = done + len as usize;
            mem.write(addr, &data[done..end])?;
            visit(addr, done, len as usize);
            done = end;
            Ok(())
        })?;
        Ok(done)
    }

    /// Visits up to `n` bytes as (guest address, length) pieces, advancing
    /// the cursor past each visited piece.
    fn walk(&mut self, n: u64, mut f: impl FnMut(u64, u64) -> Result<(), MemError>) -> Result<(), MemError> {
        let mut want = n.min(self.left);
        while want > 0 {
            let Some(d) = self.descs.first() else { break };
            let avail = u64::from(d.len - self.off);
            let len = avail.min(want);
            // In range: the descriptor was checked when popped.
            f(d.addr + u64::from(self.off), len)?;
            want -= len;
            self.left -= len;
            if len == avail {
                self.descs = &self.descs[1..];
                self.off = 0;
            } else {
                self.off += len as u32;
            }
        }
        Ok(())
    }
}

/// A split virtqueue the driver has made ready: its size and ring
/// addresses (from the transport) and the device's positions in the rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitQueue {
    size: u16,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    indirect: bool,
    /// The next available-ring entry the device will take (free-running).
    next_avail: u16,
    /// The next used-ring entry the device will fill (free-running).
    next_used: u16,
}

impl SplitQueue {
    /// A queue of `size` entries (a power of two up to 32768) with its
    /// descriptor table, available ("driver") ring and used ("device")
    /// ring at the given guest addresses. Checks alignment and that no
    /// ring's end overflows; whether the rings are in guest memory is
    /// checked on each access.
    pub fn new(size: u32, desc_table: u64, avail_ring: u64, used_ring: u64) -> Result<Self, QueueError> {
        if size == 0 || size > u32::from(MAX_QUEUE_SIZE) || !size.is_power_of_two() {
            return Err(QueueError::BadSize(size));
        }
        let n = u64::from(size);
        for (addr, align, bytes) in [(desc_table, 16, 16 * n), (avail_ring, 2, 6 + 2 * n), (used_ring, 4, 6 + 8 * n)] {
            if !addr.is_multiple_of(align) || addr.checked_add(bytes).is_none() {
                return Err(QueueError::BadRingAddress(addr));
            }
        }
        Ok(Self { size: size as u16, desc_table, avail_ring, used_ring, indirect: false, next_avail: 0, next_used: 0 })
    }

    /// Allows indirect descriptors (`VIRTIO_F_INDIRECT_DESC` negotiated).
    pub fn set_indirect(&mut self, on: bool) {
        self.indirect = on;
    }

    pub fn size(&self) -> u16 {
        self.size
    }
    pub fn desc_table(&self) -> u64 {
        self.desc_table
    }
    pub fn avail_ring(&self) -> u64 {
        self.avail_ring
    }
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }
    /// The free-running index of the next available entry the device takes.
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }
    /// The free-running index the device will publish as `used.idx` next.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// How many chains the driver has made available that the device has
    /// not taken.
    pub fn pending(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        let avail = mem.read_u16(self.avail_ring + 2)?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIdxJump { avail, next: self.next_avail });
        }
        Ok(pending)
    }

    /// Takes the next available chain, checked in full, or `None` if the
    /// driver has made nothing more available. The entry is consumed even
    /// when the chain is malformed (the device then needs a reset anyway).
    pub fn pop_chain(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescChain>, QueueError> {
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        // The ring entry and the descriptors were written before avail.idx.
        mem.fence();
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.avail_ring + 4 + 2 * slot)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.walk_chain(mem, head).map(Some)
    }

    fn walk_chain(&self, mem: &dyn GuestMemory, head: u16) -> Result<DescChain, QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange(head));
        }
        let mut chain = DescChain { head, descs: Vec::new(), split: 0 };
        let limit = usize::from(self.size);
        let mut index = head;
        // Direct descriptors visited (an indirect one included).
        let mut visited = 0usize;
        loop {
            visited += 1;
            if visited > limit {
                return Err(QueueError::ChainTooLong);
            }
            let raw = read_desc(mem, self.desc_table, index)?;
            if raw.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                self.walk_indirect(mem, &raw, &mut chain)?;
                break;
            }
            push(mem, &mut chain, &raw, limit)?;
            if raw.flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            if raw.next >= self.size {
                return Err(QueueError::NextOutOfRange(raw.next));
            }
            index = raw.next;
        }
        Ok(chain)
    }

    /// Appends the entries of the indirect table `raw` points to.
    fn walk_indirect(&self, mem: &dyn GuestMemory, raw: &RawDesc, chain: &mut DescChain) -> Result<(), QueueError> {
        if !self.indirect {
            return Err(QueueError::IndirectNotNegotiated);
        }
        if raw.flags & VIRTQ_DESC_F_NEXT != 0 {
            return Err(QueueError::IndirectWithNext);
        }
        if raw.len == 0 || !u64::from(raw.len).is_multiple_of(DESC_SIZE) {
            return Err(QueueError::BadIndirectLen(raw.len));
        }
        mem.check_range(raw.addr, u64::from(raw.len))?;
        let entries = u64::from(raw.len) / DESC_SIZE;
        let limit = usize::from(self.size).max(MAX_INDIRECT_CHAIN);
        let mut index = 0u16;
        let mut visited = 0u64;
        loop {
            visited += 1;
            // More steps than entries means a loop; `push` bounds the
            // chain's length.
            if visited > entries {
                return Err(QueueError::ChainTooLong);
            }
            let d = read_desc(mem, raw.addr, index)?;
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                return Err(QueueError::NestedIndirect);
            }
            push(mem, chain, &d, limit)?;
            if d.flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(());
            }
            if u64::from(d.next) >= entries {
                return Err(QueueError::NextOutOfRange(d.next));
            }
            index = d.next;
        }
    }

    /// Returns the chain with head `head` to the driver, `len` bytes
    /// written into it, and publishes the new `used.idx`.
    pub fn add_used(&mut self, mem: &mut dyn GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange(head));
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used_ring + 4 + 8 * slot;
        mem.write_u32(elem, u32::from(head))?;
        mem.write_u32(elem + 4, len)?;
        // The element must be visible before the index that publishes it.
        mem.fence();
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(self.used_ring + 2, self.next_used)?;
        Ok(())
    }

    /// Whether the driver wants an interrupt for used buffers (it has not
    /// set `VIRTQ_AVAIL_F_NO_INTERRUPT`). Call after [`Self::add_used`].
    pub fn needs_interrupt(&self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        // used.idx (written) before avail.flags (read).
        mem.fence();
        let flags = mem.read_u16(self.avail_ring)?;
        Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
    }
}

/// A descriptor as the guest wrote it.
#[derive(Debug, Clone, Copy)]
struct RawDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn read_desc(mem: &dyn GuestMemory, table: u64, index: u16) -> Result<RawDesc, QueueError> {
    let at = table.checked_add(DESC_SIZE * u64::from(index)).ok_or(QueueError::BadRingAddress(table))?;
    let mut b = [0u8; 16];
    mem.read(at, &mut b)?;
    Ok(RawDesc {
        addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        flags: u16::from_le_bytes([b[12], b[13]]),
        next: u16::from_le_bytes([b[14], b[15]]),
    })
}

/// Checks one buffer descriptor and appends it.
fn push(mem: &dyn GuestMemory, chain: &mut DescChain, d: &RawDesc, limit: usize) -> Result<(), QueueError> {
    if chain.descs.len() >= limit {
        return Err(QueueError::ChainTooLong);
    }
    if d.len == 0 {
        return Err(QueueError::ZeroLength);
    }
    let len = u64::from(d.len);
    if d.addr.checked_add(len).is_none() {
        return Err(QueueError::Memory(MemError { gpa: d.addr, len }));
    }
    mem.check_range(d.addr, len)?;
    let writable = d.flags & VIRTQ_DESC_F_WRITE != 0;
    let any_writable = chain.split < chain.descs.len();
    if !writable && any_writable {
        return Err(QueueError::ReadableAfterWritable);
    }
    chain.descs.push(Descriptor { addr: d.addr, len: d.len, writable });
    if !writable {
        chain.split = chain.descs.len();
    }
    Ok(())
}
