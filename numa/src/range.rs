//! Half-open physical address ranges, shared by topology and allocators.

use core::fmt;

/// A physical address range `[start, end)`.
///
/// Half-open so that adjacent ranges compose without `- 1` arithmetic and an
/// empty range is simply `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemRange {
    /// First byte in the range.
    pub start: u64,
    /// First byte past the range.
    pub end: u64,
}

impl MemRange {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Length in bytes (0 for an empty or inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True when `pa` lies inside the range.
    pub const fn contains(&self, pa: u64) -> bool {
        self.start <= pa && pa < self.end
    }

    /// True when the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let r = MemRange::new(0x1000, 0x3000);
        assert_eq!(r.len(), 0x2000);
        assert!(!r.is_empty());
        assert!(r.contains(0x1000) && r.contains(0x2fff) && !r.contains(0x3000));
        assert!(r.overlaps(&MemRange::new(0x2fff, 0x4000)));
        assert!(!r.overlaps(&MemRange::new(0x3000, 0x4000)));
        assert!(MemRange::new(5, 5).is_empty());
        assert_eq!(MemRange::new(9, 5).len(), 0);
        assert_eq!(r.to_string(), "[0x1000, 0x3000)");
    }
}
