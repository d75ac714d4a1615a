//! The monitor-code table: where the monitor's code (text and read-only
//! data, with its per-node copies) lies in machine memory, published by the
//! monitor for the ccNUMA cost-model plugin.
//!
//! Why a table: the plugin must tell the monitor's instruction fetches from
//! the guests' to report whether they are node local. QEMU's plugin API 4
//! does not say at translation time which exception level a block runs at,
//! and guest code may run at the same virtual addresses (a guest kernel with
//! its MMU off); physical addresses are exact, and the monitor is the only
//! one that knows where it put its copies (frames from each node's memmap).
//!
//! Where: in the counter region's header page (`numa::counters`), at
//! [`CODE_TABLE_OFFSET`], which the counter layout leaves unused (its header
//! fields end below 0x100; the hot-page queue starts at
//! [`QUEUE_OFFSET`]). The plugin already maps that page; without the
//! plugin there is no region and the monitor publishes nothing.
//!
//! Format (little-endian u64 words, offsets from [`CODE_TABLE_OFFSET`]):
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | `magic` = [`CODE_MAGIC`], written last |
//! | 0x08 | `count` of ranges, at most [`MAX_CODE_RANGES`] |
//! | 0x10 + 24 i | range i: `start`, `end` (physical, end exclusive), `node` |
//!
//! The monitor writes it once, on the boot CPU, before any CPU executes a
//! copy; the plugin reads it until it finds the magic, then keeps it.

use super::counters::QUEUE_OFFSET;
use alloc::vec::Vec;

/// Offset of the table in the counter region.
pub const CODE_TABLE_OFFSET: usize = 0x800;
/// `b"MONCODE1"` as a little-endian u64.
pub const CODE_MAGIC: u64 = u64::from_le_bytes(*b"MONCODE1");
/// Bytes of the table's fixed part (magic, count).
const FIXED: usize = 16;
/// Bytes of one range entry.
const ENTRY: usize = 24;
/// Most ranges the table holds.
pub const MAX_CODE_RANGES: usize = (QUEUE_OFFSET as usize - CODE_TABLE_OFFSET - FIXED) / ENTRY;

/// One run of physical memory holding monitor code, on `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRange {
    /// First byte.
    pub start: u64,
    /// First byte past the range.
    pub end: u64,
    /// Node whose memory holds it.
    pub node: u64,
}

/// Writes `ranges` (at most [`MAX_CODE_RANGES`]; more are left out) through
/// `write(offset_in_region, word)`, the magic last. Returns how many were
/// written.
pub fn publish(ranges: &[CodeRange], mut write: impl FnMut(usize, u64)) -> usize {
    let n = ranges.len().min(MAX_CODE_RANGES);
    for (i, r) in ranges[..n].iter().enumerate() {
        let at = CODE_TABLE_OFFSET + FIXED + i * ENTRY;
        write(at, r.start);
        write(at + 8, r.end);
        write(at + 16, r.node);
    }
    write(CODE_TABLE_OFFSET + 8, n as u64);
    write(CODE_TABLE_OFFSET, CODE_MAGIC);
    n
}

/// Reads the table through `read(offset_in_region)`; None until the magic
/// is there.
pub fn read(read: impl Fn(usize) -> u64) -> Option<Vec<CodeRange>> {
    if read(CODE_TABLE_OFFSET) != CODE_MAGIC {
        return None;
    }
    let n = (read(CODE_TABLE_OFFSET + 8) as usize).min(MAX_CODE_RANGES);
    let entry = |i: usize| CODE_TABLE_OFFSET + FIXED + i * ENTRY;
    Some(
        (0..n)
            .map(|i| CodeRange { start: read(entry(i)), end: read(entry(i) + 8), node: read(entry(i) + 16) })
            .collect(),
    )
}

/// Frames (`page`-sized, any order) merged into runs of adjacent frames,
/// sorted by address.
pub fn runs(frames: &[u64], page: u64, node: u64) -> Vec<CodeRange> {
    let mut sorted = frames.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<CodeRange> = Vec::new();
    for pa in sorted {
        match out.last_mut() {
            Some(r) if r.end == pa => r.end += page,
            _ => out.push(CodeRange { start: pa, end: pa + page, node }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_runs() {
        let mut mem = alloc::vec![0u64; QUEUE_OFFSET as usize / 8];
        assert_eq!(read(|o| mem[o / 8]), None);
        let mut ranges = runs(&[0x8000_3000, 0x8000_1000, 0x8000_2000, 0x8000_9000], 0x1000, 1);
        assert_eq!(
            ranges,
            [
                CodeRange { start: 0x8000_1000, end: 0x8000_4000, node: 1 },
                CodeRange { start: 0x8000_9000, end: 0x8000_a000, node: 1 }
            ]
        );
        ranges.insert(0, CodeRange { start: 0x4008_0000, end: 0x400c_0000, node: 0 });
        assert_eq!(publish(&ranges, |o, w| mem[o / 8] = w), 3);
        assert_eq!(read(|o| mem[o / 8]), Some(ranges));
        let many = alloc::vec![CodeRange { start: 0, end: 1, node: 0 }; MAX_CODE_RANGES + 5];
        assert_eq!(publish(&many, |o, w| mem[o / 8] = w), MAX_CODE_RANGES);
        assert!(CODE_TABLE_OFFSET + FIXED + MAX_CODE_RANGES * ENTRY <= QUEUE_OFFSET as usize);
        assert!(super::super::counters::Header::ENCODED_LEN <= CODE_TABLE_OFFSET);
    }
}
