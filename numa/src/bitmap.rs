//! A plain bit vector with the word-at-a-time searches the frame allocator
//! needs: find the next set bit, and find the first clear bit in a span.

use alloc::vec;
use alloc::vec::Vec;

const BITS: usize = u64::BITS as usize;

/// Fixed-size bit vector, all bits clear when created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    /// A bitmap of `words * 64` clear bits.
    pub(crate) fn new(words: usize) -> Self {
        Self { words: vec![0; words] }
    }

    /// Number of 64-bit words.
    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }

    pub(crate) fn get(&self, bit: usize) -> bool {
        self.words[bit / BITS] & mask(bit) != 0
    }

    pub(crate) fn set(&mut self, bit: usize) {
        self.words[bit / BITS] |= mask(bit);
    }

    pub(crate) fn clear(&mut self, bit: usize) {
        self.words[bit / BITS] &= !mask(bit);
    }

    /// Sets (`on`) or clears every bit in `[start, end)`.
    pub(crate) fn fill(&mut self, start: usize, end: usize, on: bool) {
        let mut bit = start;
        while bit < end {
            let word = bit / BITS;
            let span = span_mask(bit, end);
            if on {
                self.words[word] |= span;
            } else {
                self.words[word] &= !span;
            }
            bit = (word + 1) * BITS;
        }
    }

    /// The lowest set bit in word `from_word` or any later word.
    pub(crate) fn first_set_from(&self, from_word: usize) -> Option<usize> {
        let rest = self.words.get(from_word..)?;
        let (i, w) = rest.iter().enumerate().find(|(_, w)| **w != 0)?;
        Some((from_word + i) * BITS + w.trailing_zeros() as usize)
    }

    /// The lowest clear bit in `[start, end)`.
    pub(crate) fn first_clear_in(&self, start: usize, end: usize) -> Option<usize> {
        let mut bit = start;
        while bit < end {
            let word = bit / BITS;
            let clear = !self.words[word] & span_mask(bit, end);
            if clear != 0 {
                return Some(word * BITS + clear.trailing_zeros() as usize);
            }
            bit = (word + 1) * BITS;
        }
        None
    }
}

fn mask(bit: usize) -> u64 {
    1 << (bit % BITS)
}

/// Bits of `bit`'s word from `bit` up to (not including) `end` or the
/// word's end, whichever comes first.
fn span_mask(bit: usize, end: usize) -> u64 {
    let lo = bit % BITS;
    let hi = (end - (bit - lo)).min(BITS);
    let upper = if hi == BITS { u64::MAX } else { (1 << hi) - 1 };
    upper & !((1 << lo) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear() {
        let mut b = Bitmap::new(2);
        assert_eq!(b.words(), 2);
        b.set(0);
        b.set(127);
        assert!(b.get(0) && b.get(127) && !b.get(64));
        b.clear(0);
        assert!(!b.get(0));
    }

    #[test]
    fn fill_across_words() {
        let mut b = Bitmap::new(3);
        b.fill(60, 130, true);
        assert!((0..192).all(|i| b.get(i) == (60..130).contains(&i)));
        b.fill(64, 128, false);
        assert!((0..192).all(|i| b.get(i) == ((60..64).contains(&i) || (128..130).contains(&i))));
        b.fill(5, 5, true);
        assert!(!b.get(5));
    }

    #[test]
    fn searches() {
        let mut b = Bitmap::new(3);
        assert_eq!(b.first_set_from(0), None);
        b.set(70);
        b.set(150);
        assert_eq!(b.first_set_from(0), Some(70));
        assert_eq!(b.first_set_from(1), Some(70));
        assert_eq!(b.first_set_from(2), Some(150));
        assert_eq!(b.first_set_from(3), None);
        assert_eq!(b.first_set_from(9), None);

        b.fill(0, 192, true);
        assert_eq!(b.first_clear_in(0, 192), None);
        b.clear(100);
        assert_eq!(b.first_clear_in(0, 192), Some(100));
        assert_eq!(b.first_clear_in(101, 192), None);
        assert_eq!(b.first_clear_in(3, 100), None);
        assert_eq!(b.first_clear_in(100, 101), Some(100));
    }
}
