//! Per-node allocator of 4 KiB machine frames.
//!
//! One allocator owns one node's memory minus whatever the monitor must
//! never hand out (its own image, the DTB, the boot bundle, counter
//! regions). It is a bitmap, one bit per frame (1 = free), because the
//! monitor needs both single frames (stage-2 pages, page tables) and
//! aligned contiguous runs (2 MiB blocks), and must detect a bad free
//! instead of corrupting state. Frames come out lowest address first: a
//! hint word below which every frame is in use makes sequential
//! allocation O(1) amortized. Frames are not zeroed here; the monitor does
//! that through its own mapping.

use alloc::vec::Vec;
use core::fmt;

use crate::bitmap::Bitmap;
use crate::{MemRange, FRAME_SIZE};

/// Why a free was refused. Carries the offending physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not frame aligned.
    Unaligned(u64),
    /// The frame is not one this allocator hands out (other node, reserved,
    /// or outside memory).
    NotOwned(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned(pa) => write!(f, "free of unaligned address {pa:#x}"),
            Self::NotOwned(pa) => write!(f, "free of frame {pa:#x} not owned by this allocator"),
            Self::DoubleFree(pa) => write!(f, "double free of frame {pa:#x}"),
        }
    }
}

/// A physically contiguous run of owned frames. Each segment starts on a
/// bitmap word boundary so a run search never crosses into a neighbour
/// that is not physically adjacent; padding bits stay 0 (never free).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    first_pfn: u64,
    frames: usize,
    first_bit: usize,
}

impl Segment {
    fn end_pfn(&self) -> u64 {
        self.first_pfn + self.frames as u64
    }
}

/// Bitmap allocator over one node's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAllocator {
    /// Sorted by address (and so by `first_bit`).
    segments: Vec<Segment>,
    free: Bitmap,
    free_frames: usize,
    total_frames: usize,
    /// Every frame in words below this one is allocated.
    hint: usize,
}

impl FrameAllocator {
    /// An allocator over the whole frames of `ranges`, less every frame
    /// that touches any of `reserved`. Partial frames at range edges are
    /// not used; overlapping `ranges` count once. All frames start free.
    pub fn new(ranges: &[MemRange], reserved: &[MemRange]) -> Self {
        let owned = owned_spans(ranges, reserved);
        let mut segments = Vec::with_capacity(owned.len());
        let mut bits = 0;
        for (start, end) in owned {
            let frames = (end - start) as usize;
            segments.push(Segment { first_pfn: start, frames, first_bit: bits });
            bits += frames.div_ceil(64) * 64;
        }
        let mut free = Bitmap::new(bits / 64);
        for s in &segments {
            free.fill(s.first_bit, s.first_bit + s.frames, true);
        }
        let total = segments.iter().map(|s| s.frames).sum();
        Self { segments, free, free_frames: total, total_frames: total, hint: 0 }
    }

    /// One free frame, lowest address first.
    pub fn alloc(&mut self) -> Option<u64> {
        let Some(bit) = self.free.first_set_from(self.hint) else {
            self.hint = self.free.words();
            return None;
        };
        self.hint = bit / 64;
        self.free.clear(bit);
        self.free_frames -= 1;
        Some(self.pa_of_bit(bit))
    }

    /// `count` physically contiguous free frames whose first frame number
    /// is a multiple of `align_frames` (512 for a 2 MiB block), lowest
    /// address first. `None` for `count == 0` or `align_frames == 0`.
    pub fn alloc_contiguous(&mut self, count: usize, align_frames: usize) -> Option<u64> {
        if count == 0 || align_frames == 0 || count > self.free_frames {
            return None;
        }
        let from = self.hint * 64;
        let align = align_frames as u64;
        for seg in self.segments.iter().filter(|s| s.first_bit + s.frames > from) {
            let lowest = seg.first_pfn + from.saturating_sub(seg.first_bit) as u64;
            let mut pfn = lowest.checked_next_multiple_of(align)?;
            while pfn.checked_add(count as u64)? <= seg.end_pfn() {
                let bit = seg.first_bit + (pfn - seg.first_pfn) as usize;
                match self.free.first_clear_in(bit, bit + count) {
                    None => {
                        self.free.fill(bit, bit + count, false);
                        self.free_frames -= count;
                        return Some(pfn * FRAME_SIZE);
                    }
                    Some(used) => {
                        let next = seg.first_pfn + (used - seg.first_bit) as u64 + 1;
                        pfn = next.checked_next_multiple_of(align)?;
                    }
                }
            }
        }
        None
    }

    /// Returns one frame. Refuses, changing nothing, an unaligned address,
    /// a frame this allocator does not own, or one that is already free.
    pub fn free(&mut self, pa: u64) -> Result<(), FrameError> {
        self.free_contiguous(pa, 1)
    }

    /// Returns `count` frames starting at `pa`. Every frame is checked
    /// before any is freed, so an error changes nothing.
    pub fn free_contiguous(&mut self, pa: u64, count: usize) -> Result<(), FrameError> {
        if !pa.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(pa));
        }
        let frame_pa = |i: usize| (i as u64).checked_mul(FRAME_SIZE).and_then(|off| pa.checked_add(off));
        for i in 0..count {
            let at = frame_pa(i).ok_or(FrameError::NotOwned(pa))?;
            let bit = self.bit_of_pfn(at / FRAME_SIZE).ok_or(FrameError::NotOwned(at))?;
            if self.free.get(bit) {
                return Err(FrameError::DoubleFree(at));
            }
        }
        for i in 0..count {
            // Checked above: every address exists and is owned.
            if let Some(bit) = frame_pa(i).and_then(|at| self.bit_of_pfn(at / FRAME_SIZE)) {
                self.free.set(bit);
                self.hint = self.hint.min(bit / 64);
            }
        }
        self.free_frames += count;
        Ok(())
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> usize {
        self.free_frames
    }

    /// Frames this allocator owns, free or not.
    pub fn total_frames(&self) -> usize {
        self.total_frames
    }

    /// True when the frame holding `pa` is one this allocator owns (free
    /// or allocated).
    pub fn contains(&self, pa: u64) -> bool {
        self.bit_of_pfn(pa / FRAME_SIZE).is_some()
    }

    fn segment_of_pfn(&self, pfn: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.first_pfn <= pfn).checked_sub(1)?;
        let seg = &self.segments[i];
        (pfn < seg.end_pfn()).then_some(seg)
    }

    fn bit_of_pfn(&self, pfn: u64) -> Option<usize> {
        self.segment_of_pfn(pfn).map(|s| s.first_bit + (pfn - s.first_pfn) as usize)
    }

    /// Physical address of an owned bit (never a padding bit: those are
    /// never set, so never found free).
    fn pa_of_bit(&self, bit: usize) -> u64 {
        let i = self.segments.partition_point(|s| s.first_bit <= bit) - 1;
        let seg = &self.segments[i];
        (seg.first_pfn + (bit - seg.first_bit) as u64) * FRAME_SIZE
    }
}

/// Whole frames of `ranges` minus every frame touching `reserved`, as
/// sorted, disjoint `[start, end)` frame numbers: the frames an allocator
/// over the same arguments owns (the memmap keeps one entry per each).
pub(crate) fn owned_spans(ranges: &[MemRange], reserved: &[MemRange]) -> Vec<(u64, u64)> {
    subtract(&merged_frames(ranges), &reserved_frames(reserved))
}

/// Whole frames inside `ranges`, as sorted, merged `[start, end)` frame
/// numbers.
fn merged_frames(ranges: &[MemRange]) -> Vec<(u64, u64)> {
    let mut frames: Vec<(u64, u64)> =
        ranges.iter().map(|r| (r.start.div_ceil(FRAME_SIZE), r.end / FRAME_SIZE)).filter(|(s, e)| s < e).collect();
    frames.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(frames.len());
    for (s, e) in frames {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Every frame touched by a non-empty reserved range, sorted by start.
fn reserved_frames(reserved: &[MemRange]) -> Vec<(u64, u64)> {
    let mut frames: Vec<(u64, u64)> =
        reserved.iter().filter(|r| !r.is_empty()).map(|r| (r.start / FRAME_SIZE, r.end.div_ceil(FRAME_SIZE))).collect();
    frames.sort_unstable();
    frames
}

/// `owned` minus `holes`; both sorted by start, `owned` disjoint.
fn subtract(owned: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(start, end) in owned {
        let mut cur = start;
        for &(hs, he) in holes.iter().filter(|h| h.0 < end && h.1 > start) {
            if hs > cur {
                out.push((cur, hs));
            }
            cur = cur.max(he);
        }
        if cur < end {
            out.push((cur, end));
        }
    }
    out
}
