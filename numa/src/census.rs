//! The sharing census (issue 14): how much memory the VMs' sharing saves,
//! against how much it could save (Satori's metric, ATC'09). The monitor
//! lists, per VM, every mapped guest page as the machine frame behind it
//! and a hash of its content; this module counts frames, frames several
//! VMs map, and distinct contents: pages with equal content could all map
//! one frame, so `pages - distinct` is the possible saving and
//! `pages - frames` the captured one.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::fmt;

/// One mapped guest page: its machine frame and a hash of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Machine address of the frame the page maps.
    pub frame: u64,
    /// A hash of the page's content.
    pub hash: u64,
}

/// Frames mapped by 2, 3, 4-7 and 8 or more VMs.
const BUCKETS: [(usize, &str); 4] = [(2, "2"), (3, "3"), (4, "4-7"), (8, "8+")];

/// What the census found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// VMs counted.
    pub vms: usize,
    /// Guest pages mapped, over all VMs.
    pub pages: u64,
    /// Machine frames behind them.
    pub frames: u64,
    /// Frames that more than one VM maps, by [`BUCKETS`].
    pub shared: [u64; 4],
    /// Distinct page contents.
    pub distinct: u64,
    /// Pages whose content is all zeros.
    pub zero: u64,
}

impl Census {
    /// The census of `vms` (each VM's pages); `zero_hash` is the hash of
    /// an all-zero page.
    pub fn of(vms: &[Vec<Page>], zero_hash: u64) -> Self {
        let mut mappers: BTreeMap<u64, usize> = BTreeMap::new();
        let mut contents = BTreeSet::new();
        let mut census = Census { vms: vms.len(), ..Default::default() };
        for pages in vms {
            let mut seen = BTreeSet::new();
            for p in pages {
                census.pages += 1;
                census.zero += (p.hash == zero_hash) as u64;
                contents.insert(p.hash);
                if seen.insert(p.frame) {
                    *mappers.entry(p.frame).or_default() += 1;
                }
            }
        }
        census.frames = mappers.len() as u64;
        census.distinct = contents.len() as u64;
        for &n in mappers.values().filter(|&&n| n > 1) {
            let bucket = BUCKETS.iter().rposition(|&(min, _)| n >= min).unwrap_or(0);
            census.shared[bucket] += 1;
        }
        census
    }

    /// Pages that equal content would let share a frame.
    pub fn possible(&self) -> u64 {
        self.pages - self.distinct
    }

    /// Pages saved: mapped without a frame of their own.
    pub fn captured(&self) -> u64 {
        self.pages - self.frames
    }
}

impl fmt::Display for Census {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared: u64 = self.shared.iter().sum();
        write!(
            f,
            "census: {} VMs map {} guest pages in {} machine frames ({shared} shared:",
            self.vms, self.pages, self.frames
        )?;
        for (i, (&n, (_, label))) in self.shared.iter().zip(BUCKETS).enumerate() {
            write!(f, "{} {n} by {label} VMs", if i == 0 { "" } else { "," })?;
        }
        let percent = self.captured() * 100 / self.possible().max(1);
        write!(
            f,
            "); {} distinct contents ({} zero pages): sharing captured {} of {} possible pages ({percent}%)",
            self.distinct,
            self.zero,
            self.captured(),
            self.possible()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{string::ToString, vec};

    #[test]
    fn counts_frames_sharers_and_possible_sharing() {
        let p = |frame, hash| Page { frame, hash };
        // Frame 1 is mapped by all three VMs (one content, 7); frame 2 by
        // two; VM c has a private page with content 7 too (possible, not
        // captured) and a zero page.
        let vms = vec![
            vec![p(1, 7), p(2, 8), p(10, 9)],
            vec![p(1, 7), p(2, 8), p(11, 10)],
            vec![p(1, 7), p(12, 7), p(13, 0)],
        ];
        let c = Census::of(&vms, 0);
        assert_eq!((c.vms, c.pages, c.frames, c.distinct, c.zero), (3, 9, 6, 5, 1));
        assert_eq!(c.shared, [1, 1, 0, 0]);
        assert_eq!((c.captured(), c.possible()), (3, 4));
        assert_eq!(
            c.to_string(),
            "census: 3 VMs map 9 guest pages in 6 machine frames (2 shared: 1 by 2 VMs, 1 by 3 VMs, 0 by 4-7 VMs, \
             0 by 8+ VMs); 5 distinct contents (1 zero pages): sharing captured 3 of 4 possible pages (75%)"
        );
        assert_eq!(Census::of(&[], 0).to_string().ends_with("captured 0 of 0 possible pages (0%)"), true);
    }
}
