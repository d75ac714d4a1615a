//! A per-CPU set-associative cache with true LRU replacement.
//!
//! Physical line numbers go in; `access` says hit or miss. Write-allocate,
//! no write-back traffic and no coherence between CPUs: a line written by
//! another CPU stays valid here (FLASH's protocol would invalidate it). That
//! undercounts misses on write-shared data and is the model's main
//! simplification.

/// One CPU's cache. Each set is `assoc` tags, most recently used first;
/// a tag is `line + 1` so that 0 means empty.
pub struct Cache {
    tags: Vec<u64>,
    assoc: usize,
    set_mask: u64,
}

impl Cache {
    /// `sets` must be a power of two.
    pub fn new(sets: usize, assoc: usize) -> Self {
        assert!(sets.is_power_of_two() && assoc > 0);
        Self { tags: vec![0; sets * assoc], assoc, set_mask: sets as u64 - 1 }
    }

    /// Access physical line `line`; true on a hit. The line becomes the
    /// most recently used of its set; on a miss the LRU line is evicted.
    #[inline]
    pub fn access(&mut self, line: u64) -> bool {
        let set = (line & self.set_mask) as usize;
        let ways = &mut self.tags[set * self.assoc..(set + 1) * self.assoc];
        let tag = line + 1;
        if ways[0] == tag {
            return true;
        }
        for i in 1..ways.len() {
            if ways[i] == tag {
                ways[..=i].rotate_right(1);
                return true;
            }
        }
        ways.rotate_right(1);
        ways[0] = tag;
        false
    }

    /// Empty every set.
    pub fn clear(&mut self) {
        self.tags.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_lru_eviction() {
        let mut c = Cache::new(4, 2);
        assert!(!c.access(0));
        assert!(c.access(0));
        assert!(!c.access(4)); // same set (0), second way
        assert!(c.access(0)); // 0 is MRU again
        assert!(!c.access(8)); // evicts 4 (LRU)
        assert!(c.access(0));
        assert!(!c.access(4));
        assert!(!c.access(1)); // other set unaffected
        c.clear();
        assert!(!c.access(0));
    }

    #[test]
    fn streaming_over_capacity_always_misses() {
        // 1 MiB of 64 B lines, 8-way; stream 2 MiB twice.
        let sets = (1 << 20) / 64 / 8;
        let mut c = Cache::new(sets, 8);
        let lines = 2 * (1u64 << 20) / 64;
        let mut misses = 0;
        for _ in 0..2 {
            for l in 0..lines {
                misses += !c.access(l) as u64;
            }
        }
        assert_eq!(misses, 2 * lines);
        // Half the capacity fits: second pass hits.
        let mut c = Cache::new(sets, 8);
        let mut misses = 0;
        for _ in 0..2 {
            for l in 0..lines / 4 {
                misses += !c.access(l) as u64;
            }
        }
        assert_eq!(misses, lines / 4);
    }
}
