//! The per-node frame allocator: geometry, reservations, contiguous runs,
//! refused frees, and a model-checked random workout.

use std::collections::BTreeSet;

use numa::{FrameAllocator, FrameError, MemRange, FRAME_SIZE};

const F: u64 = FRAME_SIZE;
/// The highest frame-aligned address.
const LAST: u64 = u64::MAX - (F - 1);

fn r(start: u64, end: u64) -> MemRange {
    MemRange::new(start, end)
}

fn drain(a: &mut FrameAllocator) -> Vec<u64> {
    std::iter::from_fn(|| a.alloc()).collect()
}

#[test]
fn whole_range_sequentially() {
    let mut a = FrameAllocator::new(&[r(0x4000_0000, 0x4000_0000 + 100 * F)], &[]);
    assert_eq!((a.total_frames(), a.free_frames()), (100, 100));
    let got = drain(&mut a);
    let want: Vec<u64> = (0..100).map(|i| 0x4000_0000 + i * F).collect();
    assert_eq!(got, want);
    assert_eq!(a.free_frames(), 0);
    assert_eq!(a.alloc(), None);
    assert_eq!(a.alloc_contiguous(1, 1), None);
}

#[test]
fn a_gib_of_sequential_allocations_stays_fast_and_ordered() {
    // Without the hint this is quadratic (~10^9 word reads in debug).
    let base = 0x4000_0000;
    let mut a = FrameAllocator::new(&[r(base, base + (1 << 30))], &[]);
    let mut expect = base;
    while let Some(pa) = a.alloc() {
        assert_eq!(pa, expect);
        expect += F;
    }
    assert_eq!(expect, base + (1 << 30));
}

#[test]
fn partial_frames_at_range_edges_are_not_used() {
    let a = FrameAllocator::new(&[r(0x1001, 0x5fff)], &[]);
    assert_eq!(a.total_frames(), 3); // 0x2000, 0x3000, 0x4000
    assert!(!a.contains(0x1fff) && a.contains(0x2000) && a.contains(0x4fff));
    assert!(!a.contains(0x5000));
    assert_eq!(FrameAllocator::new(&[r(0x1001, 0x1fff)], &[]).total_frames(), 0);
    assert_eq!(FrameAllocator::new(&[r(0x9000, 0x1000)], &[]).total_frames(), 0);
}

#[test]
fn any_frame_touching_a_reservation_is_unavailable() {
    let base = 0x4000_0000;
    let reserved = [r(base + 0x1800, base + 0x2001), r(base + 9 * F, base + 9 * F + 1)];
    let mut a = FrameAllocator::new(&[r(base, base + 10 * F)], &reserved);
    assert_eq!(a.total_frames(), 7);
    for pa in [base + F, base + 2 * F, base + 9 * F] {
        assert!(!a.contains(pa));
        assert_eq!(a.free(pa), Err(FrameError::NotOwned(pa)));
    }
    let got = drain(&mut a);
    assert_eq!(got, [0, 3, 4, 5, 6, 7, 8].map(|i| base + i * F));
}

#[test]
fn empty_outside_and_overlapping_reservations() {
    let ranges = [r(0, 16 * F)];
    let reserved = [
        r(5 * F, 5 * F),     // empty: touches nothing
        r(100 * F, 200 * F), // outside
        r(2 * F, 6 * F),     // overlaps the next one
        r(4 * F, 8 * F),
        r(15 * F + 1, u64::MAX), // to the end of the address space
    ];
    let mut a = FrameAllocator::new(&ranges, &reserved);
    assert_eq!(drain(&mut a), [0, 1, 8, 9, 10, 11, 12, 13, 14].map(|i| i * F));
    let all = FrameAllocator::new(&ranges, &[r(0, u64::MAX)]);
    assert_eq!(all.total_frames(), 0);
}

#[test]
fn several_ranges_overlapping_ones_count_once() {
    let ranges = [r(100 * F, 104 * F), r(0, 4 * F), r(2 * F, 6 * F), r(6 * F, 7 * F)];
    let mut a = FrameAllocator::new(&ranges, &[]);
    assert_eq!(a.total_frames(), 11);
    assert_eq!(drain(&mut a), [0, 1, 2, 3, 4, 5, 6, 100, 101, 102, 103].map(|i| i * F));
}

#[test]
fn lowest_free_frame_comes_back_first() {
    let mut a = FrameAllocator::new(&[r(0, 200 * F)], &[]);
    let got: Vec<u64> = (0..150).map(|_| a.alloc().unwrap()).collect();
    a.free(got[130]).unwrap();
    a.free(got[3]).unwrap();
    assert_eq!(a.alloc(), Some(got[3]));
    assert_eq!(a.alloc(), Some(got[130]));
    assert_eq!(a.alloc(), Some(150 * F));
}

#[test]
fn refused_frees_change_nothing() {
    let mut a = FrameAllocator::new(&[r(0x1000_0000, 0x1000_0000 + 8 * F)], &[]);
    let p = a.alloc().unwrap();
    let q = a.alloc().unwrap();
    assert_eq!(a.free(p + 8), Err(FrameError::Unaligned(p + 8)));
    assert_eq!(a.free(0), Err(FrameError::NotOwned(0)));
    assert_eq!(a.free(LAST), Err(FrameError::NotOwned(LAST)));
    assert_eq!(a.free(q + F), Err(FrameError::DoubleFree(q + F)));
    assert_eq!(a.free_frames(), 6);
    a.free(p).unwrap();
    assert_eq!(a.free(p), Err(FrameError::DoubleFree(p)));
    assert_eq!(a.free_frames(), 7);
    assert!(a.contains(p) && a.contains(q));
    assert!(FrameError::DoubleFree(p).to_string().contains("double free of frame 0x10000000"));
}

#[test]
fn free_contiguous_is_all_or_nothing() {
    let mut a = FrameAllocator::new(&[r(0, 16 * F)], &[]);
    let run = a.alloc_contiguous(8, 1).unwrap();
    assert_eq!(run, 0);
    a.free(3 * F).unwrap();
    assert_eq!(a.free_contiguous(0, 8), Err(FrameError::DoubleFree(3 * F)));
    assert_eq!(a.free_frames(), 9);
    assert_eq!(a.free_contiguous(4 * F, 13), Err(FrameError::DoubleFree(8 * F)));
    assert_eq!(a.free_contiguous(4 * F, 0), Ok(()));
    a.free_contiguous(0, 3).unwrap();
    a.free_contiguous(4 * F, 4).unwrap();
    assert_eq!(a.free_frames(), 16);
    assert_eq!(a.free_contiguous(LAST, 2), Err(FrameError::NotOwned(LAST)));
}

#[test]
fn aligned_two_mib_blocks() {
    let base = 0x4000_1000; // not 2 MiB aligned: the first block starts later
    let mut a = FrameAllocator::new(&[r(base, 0x4080_0000)], &[]);
    let blocks: Vec<u64> = std::iter::from_fn(|| a.alloc_contiguous(512, 512)).collect();
    assert_eq!(blocks, [0x4020_0000, 0x4040_0000, 0x4060_0000]);
    assert_eq!(a.free_frames(), 511);
    assert_eq!(a.alloc(), Some(base));
    a.free_contiguous(0x4040_0000, 512).unwrap();
    assert_eq!(a.alloc_contiguous(512, 512), Some(0x4040_0000));
}

#[test]
fn contiguous_runs_avoid_used_frames_and_holes() {
    let mut a = FrameAllocator::new(&[r(0, 64 * F)], &[r(20 * F, 21 * F)]);
    a.alloc().unwrap(); // frame 0
    assert_eq!(a.alloc_contiguous(4, 4), Some(4 * F));
    // Frames 1..4 are too short for 10, and 4..8 are taken: 8..18.
    assert_eq!(a.alloc_contiguous(10, 1), Some(8 * F));
    assert!(!a.contains(20 * F));
    assert_eq!(a.alloc_contiguous(3, 1), Some(F));
    // 18..20 is too short and the reserved frame 20 splits the range.
    assert_eq!(a.alloc_contiguous(5, 1), Some(21 * F));
    assert_eq!(a.alloc_contiguous(0, 1), None);
    assert_eq!(a.alloc_contiguous(1, 0), None);
    assert_eq!(a.alloc_contiguous(1000, 1), None);
}

#[test]
fn runs_never_span_ranges_that_are_not_adjacent() {
    // Two 64-frame ranges: neighbours in the bitmap, far apart in memory.
    let mut a = FrameAllocator::new(&[r(0, 64 * F), r(1000 * F, 1064 * F)], &[]);
    assert_eq!(a.alloc_contiguous(60, 1), Some(0));
    assert_eq!(a.alloc_contiguous(8, 1), Some(1000 * F));
    assert_eq!(a.alloc_contiguous(57, 1), None);
    assert_eq!(a.alloc_contiguous(56, 8), Some(1008 * F));
    assert_eq!(a.free_frames(), 4);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        AllocRun {
            count: usize,
            align: usize,
        },
        /// Free the `i % len`-th allocation (a single frame or a whole run).
        Free(usize),
        /// Free an arbitrary, maybe unaligned, maybe foreign address.
        FreeAny(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Alloc),
            2 => (1usize..24, prop_oneof![Just(1usize), Just(2), Just(8), Just(64)])
                .prop_map(|(count, align)| Op::AllocRun { count, align }),
            4 => any::<usize>().prop_map(Op::Free),
            1 => (0u64..SPAN).prop_map(Op::FreeAny),
        ]
    }

    /// Addresses stay below this so ranges and reservations collide often.
    const SPAN: u64 = 600 * F;

    fn range() -> impl Strategy<Value = MemRange> {
        (0..SPAN, 0..SPAN / 2).prop_map(|(s, len)| r(s, s + len))
    }

    /// The rule, stated independently of the allocator's code.
    fn owned(pfn: u64, ranges: &[MemRange], reserved: &[MemRange]) -> bool {
        let (lo, hi) = (pfn * F, pfn * F + F);
        ranges.iter().any(|m| m.start <= lo && hi <= m.end)
            && !reserved.iter().any(|m| m.start < m.end && m.start < hi && lo < m.end)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_workout(
            ranges in proptest::collection::vec(range(), 1..4),
            reserved in proptest::collection::vec(range(), 0..4),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut a = FrameAllocator::new(&ranges, &reserved);
            let owned_pfns: BTreeSet<u64> = (0..SPAN * 2 / F)
                .filter(|&p| owned(p, &ranges, &reserved))
                .collect();
            prop_assert_eq!(a.total_frames(), owned_pfns.len());
            // Live allocations as (first pfn, frame count).
            let mut live: Vec<(u64, usize)> = Vec::new();
            let mut used: BTreeSet<u64> = BTreeSet::new();

            let take = |pa: u64, count: usize, used: &mut BTreeSet<u64>| {
                assert_eq!(pa % F, 0);
                for p in pa / F..pa / F + count as u64 {
                    assert!(owned_pfns.contains(&p), "handed out unowned frame {p:#x}");
                    assert!(used.insert(p), "handed out frame {p:#x} twice");
                }
            };

            for op in ops {
                match op {
                    Op::Alloc => match a.alloc() {
                        Some(pa) => {
                            take(pa, 1, &mut used);
                            live.push((pa / F, 1));
                        }
                        None => prop_assert_eq!(used.len(), owned_pfns.len()),
                    },
                    Op::AllocRun { count, align } => {
                        if let Some(pa) = a.alloc_contiguous(count, align) {
                            prop_assert_eq!((pa / F) % align as u64, 0);
                            take(pa, count, &mut used);
                            live.push((pa / F, count));
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (pfn, count) = live.swap_remove(i % live.len());
                        prop_assert_eq!(a.free_contiguous(pfn * F, count), Ok(()));
                        for p in pfn..pfn + count as u64 {
                            used.remove(&p);
                        }
                    }
                    Op::Free(_) => {}
                    Op::FreeAny(pa) => {
                        let pfn = pa / F;
                        let expect = if pa % F != 0 {
                            Err(FrameError::Unaligned(pa))
                        } else if !owned_pfns.contains(&pfn) {
                            Err(FrameError::NotOwned(pa))
                        } else if !used.contains(&pfn) {
                            Err(FrameError::DoubleFree(pa))
                        } else {
                            Ok(())
                        };
                        prop_assert_eq!(a.free(pa), expect);
                        if expect.is_ok() {
                            used.remove(&pfn);
                            // Split the live entry that held this frame.
                            let i = live.iter().position(|&(s, n)| (s..s + n as u64).contains(&pfn)).unwrap();
                            let (s, n) = live.swap_remove(i);
                            if pfn > s {
                                live.push((s, (pfn - s) as usize));
                            }
                            if pfn + 1 < s + n as u64 {
                                live.push((pfn + 1, (s + n as u64 - pfn - 1) as usize));
                            }
                        }
                    }
                }
                prop_assert_eq!(a.free_frames(), owned_pfns.len() - used.len());
            }

            // Whatever is left comes out exactly once, and then nothing.
            while let Some(pa) = a.alloc() {
                take(pa, 1, &mut used);
            }
            prop_assert_eq!(used.len(), owned_pfns.len());
            prop_assert_eq!(a.free_frames(), 0);
        }
    }
}
