//! FLASH-style per-page miss counters: the layout of the counter region.
//!
//! The ccNUMA cost-model plugin (`bench/numa-sim`, a QEMU TCG plugin) counts,
//! for every 4 KiB physical page of RAM and every node, how many cache misses
//! CPUs of that node took on that page, like the FLASH machine's per-page
//! miss counters that drove Disco's migration and replication. It writes them
//! into a *counter region* of machine memory; the monitor reads them as if
//! they were hardware counters. This module is the one definition of that
//! region, used by both sides. It is pure data and offset arithmetic.
//!
//! # Where the region is (fixed agreed layout)
//!
//! The region is the last [`CounterLayout::region_size`] bytes of RAM, i.e.
//! it ends where the highest-addressed node's memory ends (the last node in
//! `qemu-configs/`). Both sides compute it with [`CounterLayout::for_machine`]
//! from the RAM range of the machine (lowest RAM address, highest RAM end)
//! and the node count, which both know from the topology (host device tree
//! for the monitor, the machine configuration for the plugin). The region is
//! 2 MiB aligned and a multiple of 2 MiB, so the monitor can map it with one
//! block and carve it off a node's frame allocator whole.
//!
//! The monitor finds out whether the plugin is present by reading the header
//! at [`CounterLayout::region_base`]: if [`Header`] `magic`, `version` and the
//! geometry fields match what it computed, the plugin is there and the region
//! must be kept out of every allocator. QEMU clears the backing file before
//! the run (xtask does), so without the plugin the magic is absent (plain RAM
//! backends start zeroed). When the magic is present the monitor must never
//! hand the region to a guest or to itself.
//!
//! What the monitor does, step by step:
//! 1. From its `Topology`: `ram_start` = lowest node memory address,
//!    `ram_end` = highest node memory end, `nodes` = node count; then
//!    `let l = CounterLayout::for_machine(ram_start, ram_end, nodes)`.
//! 2. Map `[l.region_base, l.region_end())` as normal memory (the plugin
//!    writes the host side of the same RAM; TCG has no cache to bypass),
//!    decode the first [`Header::ENCODED_LEN`] bytes with [`Header::decode`]
//!    and call [`CounterLayout::check`].
//! 3. `Ok`: remove the region from the last node's frame allocator before
//!    anything is allocated (it is 2 MiB aligned). `Err(NoMagic)`: no plugin;
//!    the memory is ordinary RAM. Any other error: warn and still exclude.
//! 4. To report: [`CounterLayout::hottest`] with a volatile `u32` read of
//!    `region_base + HEADER_SIZE + 4 * i`; to reset: bump `reset_request`.
//!
//! Natively (no monitor) xtask boots Linux with `mem=` set to
//! `region_base - ram_start`, so Linux never touches the region.
//!
//! # Format (all fields little-endian, naturally aligned)
//!
//! | offset | size | field | written by |
//! |---|---|---|---|
//! | 0x00 | 8 | `magic` = [`MAGIC`] (`b"FLASHCTR"`) | plugin, once |
//! | 0x08 | 4 | `version` = [`VERSION`] | plugin, once |
//! | 0x0c | 4 | `header_size` = offset of the counter array (4096) | plugin, once |
//! | 0x10 | 8 | `first_pfn`: first counted page frame number (RAM base >> 12) | plugin, once |
//! | 0x18 | 8 | `page_count`: number of counted 4 KiB pages (all of RAM) | plugin, once |
//! | 0x20 | 4 | `node_count` | plugin, once |
//! | 0x24 | 4 | `counter_bytes` = 4 (u32 counters) | plugin, once |
//! | 0x28 | 8 | `region_base`: physical address of this header | plugin, once |
//! | 0x30 | 8 | `region_size` in bytes | plugin, once |
//! | 0x38 | 4 | `reset_request`: generation, bumped by the reader | reader |
//! | 0x3c | 4 | `reset_done`: last generation the writer completed | plugin |
//! | 0x40 | 8 | `misses_total`: misses counted since the last reset (approximate) | plugin |
//! | 0x48 | 4 | `line_size` of the modelled cache in bytes | plugin, once |
//! | 0x4c | 4 | `page_shift` = 12 | plugin, once |
//! | 0x50 | 4 | `trigger`: remote misses that make a page hot (0: no queue) | reader |
//! | 0x54 | 4 | `queue_entries` = [`QUEUE_ENTRIES`] | plugin, once |
//! | 0x58 | 8 | `queue_head`: entries ever pushed | plugin |
//! | 0x60 | 8 | `queue_tail`: entries ever taken | reader |
//! | 0x68 | 8 | `queue_dropped`: pushes lost to a full queue | plugin |
//! | 0x1000 | 8 x `queue_entries` | the hot-page queue | both |
//!
//! The counter array starts at `header_size`. Counter `(pfn, node)` is the
//! u32 at `header_size + ((pfn - first_pfn) * node_count + node) * 4`: the
//! counts of one page for all nodes are adjacent. `node` is the node of the
//! CPU that missed (the *requesting* node), not the page's home node.
//! Counters saturate at `u32::MAX`.
//!
//! # Reset protocol
//!
//! Counters only grow. The reader resets them in one of two ways:
//! - **Per counter**: the reader may store 0 into any counter at any time. The
//!   writer increments with an atomic read-modify-write, so a concurrent
//!   increment is either kept or lost whole (at most one count per race).
//! - **Whole array** (generation): the reader stores `reset_request + 1`
//!   into `reset_request` (wrapping). The writer checks `reset_request`
//!   regularly (at least every [`RESET_POLL_MISSES`] misses of any CPU and at
//!   every translation block flush), and when it differs from `reset_done`
//!   it zeroes the whole array and `misses_total`, then stores the request
//!   value into `reset_done`. The reset is complete when
//!   `reset_done == reset_request`; counts taken before that may still show.
//!
//! # Hot-page queue
//!
//! FLASH did not make Disco scan its counters: the directory controller
//! interrupted when a page's count passed a threshold. The queue is that
//! interrupt, polled: when a miss takes the counter `(pfn, node)` to
//! exactly `trigger` and `node` is not the page's home node (a *remote*
//! hot page, the only kind placement acts on), the writer pushes `pfn + 1`
//! into entry `queue_head % queue_entries` of the ring and bumps
//! `queue_head` (it claims the slot first with a compare-and-swap on
//! `queue_head`, after checking `queue_head - queue_tail < queue_entries`;
//! if the ring is full it bumps `queue_dropped` instead). The reader takes
//! entries from `queue_tail` up to `queue_head`, stopping at an entry
//! still 0 (claimed, not yet written); it zeroes each entry it takes and
//! then stores the new `queue_tail`. A page can be pushed again once its
//! counter was reset. When `queue_dropped` grew, the reader has missed hot
//! pages and falls back to reading every counter once.
//!
//! There is no interrupt: the reader polls. The writer only ever writes the
//! counters, `reset_done`, `misses_total`, the queue entries, `queue_head`
//! and `queue_dropped` after setting up the header.

/// `b"FLASHCTR"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FLASHCTR");
/// Layout version; bump on any incompatible change.
pub const VERSION: u32 = 2;
/// Bytes reserved for the header and the hot-page queue; the counter
/// array starts here.
pub const HEADER_SIZE: u64 = 64 << 10;
/// Offset of the hot-page queue (after the header fields' page).
pub const QUEUE_OFFSET: u64 = 4096;
/// Entries (u64) of the hot-page queue.
pub const QUEUE_ENTRIES: u32 = ((HEADER_SIZE - QUEUE_OFFSET) / 8) as u32;
/// Size of one counter (u32).
pub const COUNTER_BYTES: u64 = 4;
/// Counted page size: 4 KiB.
pub const PAGE_SHIFT: u32 = 12;
/// Page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Alignment and size granule of the region (2 MiB).
pub const REGION_ALIGN: u64 = 2 << 20;
/// The writer looks at `reset_request` at least this often (in misses).
pub const RESET_POLL_MISSES: u64 = 4096;
/// Most nodes a counter region describes.
pub const MAX_COUNTED_NODES: usize = 8;

/// One page's per-node miss counts, as a reader reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageCounts {
    /// Page frame number.
    pub pfn: u64,
    /// Sum of `counts`.
    pub total: u64,
    /// Misses by CPUs of each node (entries past `node_count` are 0).
    pub counts: [u32; MAX_COUNTED_NODES],
}

/// Byte offsets of the header fields, relative to the region base.
pub mod off {
    /// Offset of `magic`.
    pub const MAGIC: usize = 0x00;
    /// Offset of `version`.
    pub const VERSION: usize = 0x08;
    /// Offset of `header_size`.
    pub const HEADER_SIZE: usize = 0x0c;
    /// Offset of `first_pfn`.
    pub const FIRST_PFN: usize = 0x10;
    /// Offset of `page_count`.
    pub const PAGE_COUNT: usize = 0x18;
    /// Offset of `node_count`.
    pub const NODE_COUNT: usize = 0x20;
    /// Offset of `counter_bytes`.
    pub const COUNTER_BYTES: usize = 0x24;
    /// Offset of `region_base`.
    pub const REGION_BASE: usize = 0x28;
    /// Offset of `region_size`.
    pub const REGION_SIZE: usize = 0x30;
    /// Offset of `reset_request`.
    pub const RESET_REQUEST: usize = 0x38;
    /// Offset of `reset_done`.
    pub const RESET_DONE: usize = 0x3c;
    /// Offset of `misses_total`.
    pub const MISSES_TOTAL: usize = 0x40;
    /// Offset of `line_size`.
    pub const LINE_SIZE: usize = 0x48;
    /// Offset of `page_shift`.
    pub const PAGE_SHIFT: usize = 0x4c;
    /// Offset of `trigger`.
    pub const TRIGGER: usize = 0x50;
    /// Offset of `queue_entries`.
    pub const QUEUE_ENTRIES: usize = 0x54;
    /// Offset of `queue_head`.
    pub const QUEUE_HEAD: usize = 0x58;
    /// Offset of `queue_tail`.
    pub const QUEUE_TAIL: usize = 0x60;
    /// Offset of `queue_dropped`.
    pub const QUEUE_DROPPED: usize = 0x68;
}

/// Geometry of the counter region of one machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterLayout {
    /// First counted page frame number (RAM base >> 12).
    pub first_pfn: u64,
    /// Number of counted pages.
    pub page_count: u64,
    /// Number of nodes (counters per page).
    pub node_count: u32,
    /// Physical address of the region (its header).
    pub region_base: u64,
    /// Region size in bytes (multiple of [`REGION_ALIGN`]).
    pub region_size: u64,
}

/// Why a header does not describe the expected region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// No magic: the plugin is not running (or the region was not set up).
    NoMagic,
    /// Magic present but a different layout version.
    Version(u32),
    /// Magic and version match but the geometry differs from the expected.
    Geometry,
}

const fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

impl CounterLayout {
    /// The region for a machine whose RAM spans `[ram_start, ram_end)` (all
    /// nodes, lowest to highest address) with `node_count` nodes: every page
    /// of that span is counted, and the region sits at the end of RAM.
    /// Returns `None` if the region would not fit in RAM.
    pub fn for_machine(ram_start: u64, ram_end: u64, node_count: u32) -> Option<Self> {
        if node_count == 0
            || node_count as usize > MAX_COUNTED_NODES
            || ram_end <= ram_start
            || !ram_start.is_multiple_of(PAGE_SIZE)
        {
            return None;
        }
        let first_pfn = ram_start >> PAGE_SHIFT;
        let page_count = (ram_end - ram_start) >> PAGE_SHIFT;
        let bytes = HEADER_SIZE + page_count * node_count as u64 * COUNTER_BYTES;
        let region_size = round_up(bytes, REGION_ALIGN);
        let region_base = (ram_end - region_size.min(ram_end)) & !(REGION_ALIGN - 1);
        if region_base < ram_start || region_base + region_size > ram_end {
            return None;
        }
        Some(Self { first_pfn, page_count, node_count, region_base, region_size })
    }

    /// Physical end of the region (exclusive).
    pub fn region_end(&self) -> u64 {
        self.region_base + self.region_size
    }

    /// Number of counters in the array.
    pub fn counter_count(&self) -> u64 {
        self.page_count * self.node_count as u64
    }

    /// Byte offset (from the region base) of the counter of physical page
    /// `pfn` for requesting node `node`, or `None` if out of range.
    pub fn counter_offset(&self, pfn: u64, node: u32) -> Option<u64> {
        let idx = self.counter_index(pfn, node)?;
        Some(HEADER_SIZE + idx * COUNTER_BYTES)
    }

    /// Index into the counter array (as u32 elements) of `(pfn, node)`.
    pub fn counter_index(&self, pfn: u64, node: u32) -> Option<u64> {
        let page = pfn.checked_sub(self.first_pfn)?;
        if page >= self.page_count || node >= self.node_count {
            return None;
        }
        Some(page * self.node_count as u64 + node as u64)
    }

    /// The page frame number and node of counter index `idx`.
    pub fn index_to_page(&self, idx: u64) -> (u64, u32) {
        let n = self.node_count as u64;
        (self.first_pfn + idx / n, (idx % n) as u32)
    }

    /// Physical address of the counter of `(pfn, node)`.
    pub fn counter_phys(&self, pfn: u64, node: u32) -> Option<u64> {
        Some(self.region_base + self.counter_offset(pfn, node)?)
    }

    /// The hottest pages (by misses summed over nodes), hottest first, into
    /// `out`; returns how many it filled. `read(i)` returns counter `i` of
    /// the array (for the monitor: a volatile read of machine memory at
    /// `region_base + HEADER_SIZE + 4 * i`). Pages without misses are skipped.
    pub fn hottest(&self, read: impl Fn(u64) -> u32, out: &mut [PageCounts]) -> usize {
        let n = self.node_count as u64;
        let mut filled = 0;
        for page in 0..self.page_count {
            let mut p = PageCounts { pfn: self.first_pfn + page, ..PageCounts::default() };
            for node in 0..n {
                let c = read(page * n + node);
                p.counts[node as usize] = c;
                p.total += c as u64;
            }
            if p.total == 0 || (filled == out.len() && out.last().is_none_or(|l| l.total >= p.total)) {
                continue;
            }
            let mut at = filled.min(out.len() - 1);
            if filled < out.len() {
                filled += 1;
            }
            while at > 0 && out[at - 1].total < p.total {
                out[at] = out[at - 1];
                at -= 1;
            }
            out[at] = p;
        }
        filled
    }

    /// Byte offset (from the region base) of hot-page queue entry number
    /// `n` (a `queue_head`/`queue_tail` count: it wraps around the ring).
    pub fn queue_entry_offset(&self, n: u64) -> u64 {
        QUEUE_OFFSET + (n % QUEUE_ENTRIES as u64) * 8
    }

    /// Does `[addr, addr + len)` overlap the region?
    pub fn overlaps(&self, addr: u64, len: u64) -> bool {
        addr < self.region_end() && self.region_base < addr.saturating_add(len)
    }

    /// The header the writer puts at the region base (`line_size` is the
    /// modelled cache line size, informational).
    pub fn header(&self, line_size: u32) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            first_pfn: self.first_pfn,
            page_count: self.page_count,
            node_count: self.node_count,
            counter_bytes: COUNTER_BYTES as u32,
            region_base: self.region_base,
            region_size: self.region_size,
            reset_request: 0,
            reset_done: 0,
            misses_total: 0,
            line_size,
            page_shift: PAGE_SHIFT,
            trigger: 0,
            queue_entries: QUEUE_ENTRIES,
            queue_head: 0,
            queue_tail: 0,
            queue_dropped: 0,
        }
    }

    /// Check a header read from the region base against this layout.
    pub fn check(&self, h: &Header) -> Result<(), HeaderError> {
        if h.magic != MAGIC {
            return Err(HeaderError::NoMagic);
        }
        if h.version != VERSION {
            return Err(HeaderError::Version(h.version));
        }
        let same = h.header_size as u64 == HEADER_SIZE
            && h.first_pfn == self.first_pfn
            && h.page_count == self.page_count
            && h.node_count == self.node_count
            && h.counter_bytes as u64 == COUNTER_BYTES
            && h.region_base == self.region_base
            && h.region_size == self.region_size
            && h.page_shift == PAGE_SHIFT
            && h.queue_entries == QUEUE_ENTRIES;
        if same {
            Ok(())
        } else {
            Err(HeaderError::Geometry)
        }
    }
}

/// The header fields, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// [`MAGIC`] when the plugin set the region up.
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// Offset of the counter array.
    pub header_size: u32,
    /// First counted page frame number.
    pub first_pfn: u64,
    /// Number of counted pages.
    pub page_count: u64,
    /// Number of nodes.
    pub node_count: u32,
    /// Bytes per counter (4).
    pub counter_bytes: u32,
    /// Physical address of the region.
    pub region_base: u64,
    /// Region size in bytes.
    pub region_size: u64,
    /// Whole-array reset generation requested by the reader.
    pub reset_request: u32,
    /// Last reset generation completed by the writer.
    pub reset_done: u32,
    /// Misses counted since the last reset (approximate).
    pub misses_total: u64,
    /// Modelled cache line size in bytes.
    pub line_size: u32,
    /// log2 of the counted page size (12).
    pub page_shift: u32,
    /// Remote misses that make a page hot; 0: the queue is off.
    pub trigger: u32,
    /// Entries of the hot-page queue.
    pub queue_entries: u32,
    /// Hot-page queue entries ever pushed.
    pub queue_head: u64,
    /// Hot-page queue entries ever taken.
    pub queue_tail: u64,
    /// Pushes lost because the queue was full.
    pub queue_dropped: u64,
}

fn get<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

impl Header {
    /// Bytes the encoded header occupies (the rest of the 4 KiB is zero).
    /// Offset of `encoded_len`.
    pub const ENCODED_LEN: usize = 0x70;

    /// Encode into the first [`Header::ENCODED_LEN`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(off::MAGIC, &self.magic.to_le_bytes());
        put(off::VERSION, &self.version.to_le_bytes());
        put(off::HEADER_SIZE, &self.header_size.to_le_bytes());
        put(off::FIRST_PFN, &self.first_pfn.to_le_bytes());
        put(off::PAGE_COUNT, &self.page_count.to_le_bytes());
        put(off::NODE_COUNT, &self.node_count.to_le_bytes());
        put(off::COUNTER_BYTES, &self.counter_bytes.to_le_bytes());
        put(off::REGION_BASE, &self.region_base.to_le_bytes());
        put(off::REGION_SIZE, &self.region_size.to_le_bytes());
        put(off::RESET_REQUEST, &self.reset_request.to_le_bytes());
        put(off::RESET_DONE, &self.reset_done.to_le_bytes());
        put(off::MISSES_TOTAL, &self.misses_total.to_le_bytes());
        put(off::LINE_SIZE, &self.line_size.to_le_bytes());
        put(off::PAGE_SHIFT, &self.page_shift.to_le_bytes());
        put(off::TRIGGER, &self.trigger.to_le_bytes());
        put(off::QUEUE_ENTRIES, &self.queue_entries.to_le_bytes());
        put(off::QUEUE_HEAD, &self.queue_head.to_le_bytes());
        put(off::QUEUE_TAIL, &self.queue_tail.to_le_bytes());
        put(off::QUEUE_DROPPED, &self.queue_dropped.to_le_bytes());
    }

    /// Decode from at least [`Header::ENCODED_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            magic: u64::from_le_bytes(get(b, off::MAGIC)),
            version: u32::from_le_bytes(get(b, off::VERSION)),
            header_size: u32::from_le_bytes(get(b, off::HEADER_SIZE)),
            first_pfn: u64::from_le_bytes(get(b, off::FIRST_PFN)),
            page_count: u64::from_le_bytes(get(b, off::PAGE_COUNT)),
            node_count: u32::from_le_bytes(get(b, off::NODE_COUNT)),
            counter_bytes: u32::from_le_bytes(get(b, off::COUNTER_BYTES)),
            region_base: u64::from_le_bytes(get(b, off::REGION_BASE)),
            region_size: u64::from_le_bytes(get(b, off::REGION_SIZE)),
            reset_request: u32::from_le_bytes(get(b, off::RESET_REQUEST)),
            reset_done: u32::from_le_bytes(get(b, off::RESET_DONE)),
            misses_total: u64::from_le_bytes(get(b, off::MISSES_TOTAL)),
            line_size: u32::from_le_bytes(get(b, off::LINE_SIZE)),
            page_shift: u32::from_le_bytes(get(b, off::PAGE_SHIFT)),
            trigger: u32::from_le_bytes(get(b, off::TRIGGER)),
            queue_entries: u32::from_le_bytes(get(b, off::QUEUE_ENTRIES)),
            queue_head: u64::from_le_bytes(get(b, off::QUEUE_HEAD)),
            queue_tail: u64::from_le_bytes(get(b, off::QUEUE_TAIL)),
            queue_dropped: u64::from_le_bytes(get(b, off::QUEUE_DROPPED)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    #[test]
    fn numa2_layout() {
        // numa2: 2 nodes x 1 GiB from 0x4000_0000.
        let l = CounterLayout::for_machine(G, 3 * G, 2).unwrap();
        assert_eq!(l.first_pfn, 0x40000);
        assert_eq!(l.page_count, 2 * G / 4096);
        // 64 KiB header + queue, 512 Ki pages * 2 nodes * 4 B = 4 MiB -> 6 MiB.
        assert_eq!(l.region_size, 6 << 20);
        assert_eq!(l.region_end(), 3 * G);
        assert_eq!(l.region_base % REGION_ALIGN, 0);
        assert!(l.overlaps(3 * G - 1, 1));
        assert!(!l.overlaps(l.region_base - 4096, 4096));
    }

    #[test]
    fn counter_offsets() {
        let l = CounterLayout::for_machine(G, 3 * G, 2).unwrap();
        assert_eq!(l.counter_offset(0x40000, 0), Some(HEADER_SIZE));
        assert_eq!(l.counter_offset(0x40000, 1), Some(HEADER_SIZE + 4));
        assert_eq!(l.counter_offset(0x40001, 0), Some(HEADER_SIZE + 8));
        assert_eq!(l.counter_offset(0x3ffff, 0), None);
        assert_eq!(l.counter_offset(0x40000, 2), None);
        let last = l.first_pfn + l.page_count - 1;
        let o = l.counter_offset(last, 1).unwrap();
        assert!(o + COUNTER_BYTES <= l.region_size);
        let i = l.counter_index(last, 1).unwrap();
        assert_eq!(l.index_to_page(i), (last, 1));
        assert_eq!(l.counter_index(last + 1, 0), None);
    }

    #[test]
    fn header_roundtrip_and_check() {
        let l = CounterLayout::for_machine(G, 5 * G, 4).unwrap();
        let mut b = [0u8; 4096];
        let mut h = l.header(64);
        h.reset_request = 7;
        h.misses_total = 123;
        h.trigger = 64;
        h.queue_head = 9;
        h.queue_tail = 8;
        h.queue_dropped = 1;
        h.encode(&mut b);
        assert_eq!(&b[..8], b"FLASHCTR");
        let d = Header::decode(&b).unwrap();
        assert_eq!(d, h);
        assert_eq!(l.check(&d), Ok(()));
        let other = CounterLayout::for_machine(G, 5 * G, 2).unwrap();
        assert_eq!(other.check(&d), Err(HeaderError::Geometry));
        assert_eq!(l.check(&Header::default()), Err(HeaderError::NoMagic));
        let mut v = d;
        v.version = 99;
        assert_eq!(l.check(&v), Err(HeaderError::Version(99)));
    }

    #[test]
    fn queue_entries_wrap_inside_the_header() {
        let l = CounterLayout::for_machine(G, 3 * G, 2).unwrap();
        assert_eq!(l.queue_entry_offset(0), QUEUE_OFFSET);
        assert_eq!(l.queue_entry_offset(1), QUEUE_OFFSET + 8);
        let last = l.queue_entry_offset(QUEUE_ENTRIES as u64 - 1);
        assert_eq!(last + 8, HEADER_SIZE);
        assert_eq!(l.queue_entry_offset(QUEUE_ENTRIES as u64), QUEUE_OFFSET);
        assert!(Header::ENCODED_LEN as u64 <= QUEUE_OFFSET);
    }

    #[test]
    fn hottest_pages() {
        let l = CounterLayout::for_machine(G, 3 * G, 2).unwrap();
        // Pages 0..4 with (node0, node1) counts; everything else zero.
        let c = [(1, 0), (0, 0), (5, 7), (3, 3), (0, 2)];
        let read = |i: u64| {
            let (page, node) = ((i / 2) as usize, i % 2);
            c.get(page).map_or(0, |&(a, b)| if node == 0 { a } else { b })
        };
        let mut out = [PageCounts::default(); 3];
        assert_eq!(l.hottest(read, &mut out), 3);
        assert_eq!((out[0].pfn, out[0].total, out[0].counts[..2].to_vec()), (0x40002, 12, vec![5, 7]));
        assert_eq!((out[1].pfn, out[1].total), (0x40003, 6));
        assert_eq!((out[2].pfn, out[2].total), (0x40004, 2));
        let mut many = [PageCounts::default(); 10];
        assert_eq!(l.hottest(read, &mut many), 4);
        assert_eq!(many[3].pfn, 0x40000);
        assert_eq!(l.counter_phys(0x40001, 1), Some(l.region_base + HEADER_SIZE + 12));
    }

    #[test]
    fn rejects_bad_machines() {
        assert_eq!(CounterLayout::for_machine(G, G, 2), None);
        assert_eq!(CounterLayout::for_machine(G, 2 * G, 0), None);
        assert_eq!(CounterLayout::for_machine(G, 2 * G, 9), None);
        // Too small to hold its own counters.
        assert_eq!(CounterLayout::for_machine(G, G + (1 << 20), 1), None);
    }
}
