//! Lock-free pieces shared between nodes: the per-node remote-free ring and
//! cache-line padded per-node statistics.
//!
//! A CPU that drops the last reference to a frame of another node must not
//! take that node's allocator lock: on a NUMA machine that lock's cache line
//! would bounce between nodes on every remote free (Disco's memmap and
//! Linux's per-CPU free lists avoid the same thing). It pushes the frame
//! into the owning node's [`FreeRing`] instead; the owner drains the ring
//! into its allocator whenever it holds its own lock anyway.
//!
//! The atomics come from `crate::sync`, so under `--cfg loom` the same
//! code is model-checked (`loom_tests` at the end).

use alloc::boxed::Box;
use core::ops::{Deref, DerefMut};

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Slots of the ring every node's memmap uses: enough for a burst of
/// remote frees between two of the owner's lock acquisitions (a migration
/// batch frees at most [`crate::policy::Params::batch`] frames per node).
/// Tiny under loom, to keep the model's state space small.
#[cfg(not(loom))]
pub const RING_CAPACITY: usize = 1024;
/// Slots of the ring every node's memmap uses (tiny under loom).
#[cfg(loom)]
pub const RING_CAPACITY: usize = 2;

/// A value in a cache line of its own, so counters or ring indexes written
/// by different nodes never share a line (no false sharing).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct PerNode<T>(pub T);

impl<T> Deref for PerNode<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for PerNode<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// One slot: `seq` says whose turn it is (Vyukov's bounded queue): equal to
/// the position it will be written at when free, position + 1 once written.
/// The value is an atomic too, so the ring needs no `unsafe`.
struct Slot {
    seq: AtomicUsize,
    value: AtomicU64,
}

/// Bounded multi-producer ring of frame addresses, drained by the node
/// that owns it. `N` is rounded up to a power of two.
///
/// [`FreeRing::push`] is lock-free: a full ring gives the value back and the
/// caller frees the frame the slow way. A producer that has claimed a slot
/// but not yet filled it hides that slot and the ones after it from
/// [`FreeRing::drain`] until it finishes; nothing is lost, the next drain
/// sees them. Drains may even race each other (each slot is claimed by a
/// compare-and-swap), though the memmap only drains under the owner's lock.
pub struct FreeRing<const N: usize = RING_CAPACITY> {
    slots: Box<[Slot]>,
    /// Next position to write; bumped by every producer, so padded.
    tail: PerNode<AtomicUsize>,
    /// Next position to read.
    head: PerNode<AtomicUsize>,
}

impl<const N: usize> Default for FreeRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FreeRing<N> {
    const CAP: usize = if N <= 1 { 1 } else { N.next_power_of_two() };

    /// An empty ring of `N` (rounded up to a power of two) slots, on the heap
    /// so a 1024-slot ring is never built on a small monitor stack.
    pub fn new() -> Self {
        let slots = (0..Self::CAP).map(|i| Slot { seq: AtomicUsize::new(i), value: AtomicU64::new(0) }).collect();
        Self { slots, tail: PerNode(AtomicUsize::new(0)), head: PerNode(AtomicUsize::new(0)) }
    }

    /// Slots in the ring.
    pub const fn capacity(&self) -> usize {
        Self::CAP
    }

    /// Queues `pa` for the owner. `Err(pa)` when the ring is full.
    pub fn push(&self, pa: u64) -> Result<(), u64> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & (Self::CAP - 1)];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos) as isize {
                0 => match self.tail.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        slot.value.store(pa, Ordering::Relaxed);
                        // Publishes the value to the drain's Acquire load.
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                },
                // The slot still holds a value from one lap ago: full.
                d if d < 0 => return Err(pa),
                // Another producer took this position; look again.
                _ => pos = self.tail.load(Ordering::Relaxed),
            }
        }
    }

    /// Hands every queued value to `f`, oldest first. Returns how many.
    pub fn drain(&self, mut f: impl FnMut(u64)) -> usize {
        let mut taken = 0;
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & (Self::CAP - 1)];
            let seq = slot.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos.wrapping_add(1)) as isize {
                0 => match self.head.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        let pa = slot.value.load(Ordering::Relaxed);
                        // Frees the slot for the producer one lap later.
                        slot.seq.store(pos.wrapping_add(Self::CAP), Ordering::Release);
                        pos = pos.wrapping_add(1);
                        taken += 1;
                        f(pa);
                    }
                    Err(now) => pos = now,
                },
                // Empty, or the next producer has not finished writing.
                d if d < 0 => return taken,
                _ => pos = self.head.load(Ordering::Relaxed),
            }
        }
    }
}

/// One event counter, read and bumped without locks (Relaxed: statistics,
/// never used to order other memory).
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// One node's memory statistics, in cache lines of their own (the struct is
/// 64-byte aligned and padded), so the CPUs of one node bumping theirs never
/// invalidate another node's.
#[repr(align(64))]
#[derive(Debug)]
pub struct NodeStats {
    /// Frames handed out from this node.
    pub allocs: Counter,
    /// Frames returned to this node's allocator (local frees and drained
    /// remote ones).
    pub frees: Counter,
    /// Frees by other nodes that went into this node's ring.
    pub remote_frees: Counter,
    /// Remote frees that found the ring full and took this node's lock.
    pub ring_full: Counter,
    /// Allocations that preferred this node and were served by another.
    pub fallbacks: Counter,
    /// Allocations that preferred this node and found no frame anywhere
    /// (or, for `alloc_on`, not on this node).
    pub failed: Counter,
}

impl Default for NodeStats {
    fn default() -> Self {
        Self::new()
    }
}

/// A plain copy of [`NodeStats`], for printing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub allocs: u64,
    pub frees: u64,
    pub remote_frees: u64,
    pub ring_full: u64,
    pub fallbacks: u64,
    pub failed: u64,
}

impl NodeStats {
    /// All counters zero.
    pub fn new() -> Self {
        Self {
            allocs: Counter::new(),
            frees: Counter::new(),
            remote_frees: Counter::new(),
            ring_full: Counter::new(),
            fallbacks: Counter::new(),
            failed: Counter::new(),
        }
    }

    /// Every counter, read one by one (not one atomic snapshot).
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            allocs: self.allocs.get(),
            frees: self.frees.get(),
            remote_frees: self.remote_frees.get(),
            ring_full: self.ring_full.get(),
            fallbacks: self.fallbacks.get(),
            failed: self.failed.get(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn fills_gives_back_when_full_and_drains_in_order() {
        let ring = FreeRing::<3>::new();
        assert_eq!(ring.capacity(), 4);
        for pa in 1..=4 {
            assert_eq!(ring.push(pa), Ok(()));
        }
        assert_eq!(ring.push(5), Err(5));
        let mut got = Vec::new();
        assert_eq!(ring.drain(|pa| got.push(pa)), 4);
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(ring.drain(|_| panic!("empty")), 0);
        // Many laps around the ring.
        for lap in 0..100u64 {
            ring.push(lap).unwrap();
            ring.push(lap + 1000).unwrap();
            got.clear();
            ring.drain(|pa| got.push(pa));
            assert_eq!(got, [lap, lap + 1000]);
        }
    }

    #[test]
    fn padding_keeps_counters_apart() {
        assert_eq!(core::mem::align_of::<NodeStats>(), 64);
        assert_eq!(core::mem::size_of::<NodeStats>() % 64, 0);
        assert_eq!(core::mem::align_of::<PerNode<u8>>(), 64);
        let s = NodeStats::new();
        s.allocs.add(3);
        s.ring_full.add(1);
        assert_eq!(s.snapshot(), StatsSnapshot { allocs: 3, ring_full: 1, ..Default::default() });
    }

    #[test]
    fn concurrent_producers_lose_nothing() {
        let ring = std::sync::Arc::new(FreeRing::<8>::new());
        let producers: Vec<_> = (0..3u64)
            .map(|t| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    let mut back = Vec::new();
                    for i in 0..2000 {
                        if let Err(pa) = ring.push(t << 32 | i) {
                            back.push(pa);
                        }
                    }
                    back
                })
            })
            .collect();
        let mut seen = Vec::new();
        while !producers.iter().all(|p| p.is_finished()) {
            ring.drain(|pa| seen.push(pa));
        }
        for p in producers {
            seen.extend(p.join().unwrap());
        }
        ring.drain(|pa| seen.push(pa));
        seen.sort_unstable();
        let want: Vec<u64> = (0..3u64).flat_map(|t| (0..2000).map(move |i| t << 32 | i)).collect();
        assert_eq!(seen, want);
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p numa --release --lib loom_tests`:
/// every interleaving of remote frees racing the owner's drains.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use alloc::vec::Vec;
    use loom::sync::Arc;
    use loom::thread;

    /// Two producers on other nodes push two frames each into a 2-slot ring
    /// while the owner drains; a push that finds the ring full keeps its
    /// frame (the caller would free it under the lock). Every frame ends up
    /// exactly once: drained or given back.
    #[test]
    fn every_frame_seen_exactly_once() {
        loom::model(|| {
            let ring = Arc::new(FreeRing::<2>::new());
            let producers: Vec<_> = [[0x1000, 0x2000], [0x3000, 0x4000]]
                .into_iter()
                .map(|frames| {
                    let ring = ring.clone();
                    thread::spawn(move || frames.into_iter().filter_map(|pa| ring.push(pa).err()).collect::<Vec<_>>())
                })
                .collect();
            let mut seen = Vec::new();
            ring.drain(|pa| seen.push(pa));
            for p in producers {
                seen.extend(p.join().unwrap());
            }
            ring.drain(|pa| seen.push(pa));
            seen.sort_unstable();
            assert_eq!(seen, [0x1000, 0x2000, 0x3000, 0x4000]);
        });
    }
}
