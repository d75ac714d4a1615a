//! The state of a contiguous range of INTIDs: one vCPU's SGIs and PPIs
//! (INTIDs 0..32, held by its redistributor) or the SPIs (held by the
//! distributor). Both are addressed by INTID.

use alloc::vec;
use alloc::vec::Vec;

/// One past the largest INTID that can be an SGI, PPI or SPI (1020..1023
/// are special INTIDs).
pub const INTID_LIMIT: u32 = 1020;
/// INTIDs below this are SGIs.
pub const SGI_LIMIT: u32 = 16;
/// INTIDs below this are private (SGIs and PPIs); SPIs start here.
pub const SPI_BASE: u32 = 32;

/// The state bits of 32 consecutive INTIDs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqWord {
    /// IGROUPR: 1 = Group 1.
    pub group: u32,
    /// ISENABLER/ICENABLER.
    pub enable: u32,
    /// The pending latch (ISPENDR, edges, `set_pending`).
    pub pending: u32,
    /// ISACTIVER set by software.
    pub active: u32,
    /// ICFGR: 1 = edge-triggered, 0 = level-sensitive.
    pub edge: u32,
    /// The input line level (level-sensitive SPIs).
    pub line: u32,
    /// Placed in a list register and not yet completed.
    pub in_flight: u32,
}

impl IrqWord {
    /// The pending state seen by software: the latch, or a level-sensitive
    /// interrupt whose line is high.
    pub fn pending_state(&self) -> u32 {
        self.pending | (self.line & !self.edge)
    }

    /// Interrupts that may be signalled: pending, enabled, Group 1, neither
    /// active nor in flight.
    pub fn deliverable(&self) -> u32 {
        self.pending_state() & self.enable & self.group & !self.active & !self.in_flight
    }
}

/// State of INTIDs `first..first + 32 * words.len()`.
#[derive(Debug, Clone)]
pub struct IrqBank {
    first: u32,
    words: Vec<IrqWord>,
    priority: Vec<u8>,
}

impl IrqBank {
    /// A bank of `count` INTIDs from `first` (both multiples of 32), in the
    /// reset state: Group 0, disabled, not pending, priority 0, SGIs edge
    /// and everything else level-sensitive.
    pub fn new(first: u32, count: u32) -> Self {
        let n = (count / 32) as usize;
        let mut bank = Self { first, words: vec![IrqWord::default(); n], priority: vec![0; n * 32] };
        if first == 0 && n > 0 {
            bank.words[0].edge = (1 << SGI_LIMIT) - 1;
        }
        bank
    }

    /// One past the last INTID of the bank.
    pub fn end(&self) -> u32 {
        self.first + 32 * self.words.len() as u32
    }

    pub fn contains(&self, intid: u32) -> bool {
        intid >= self.first && intid < self.end() && intid < INTID_LIMIT
    }

    /// The word holding `intid`, which must be a multiple of 32.
    pub fn word(&self, intid: u32) -> Option<&IrqWord> {
        if intid < self.first {
            return None;
        }
        self.words.get(((intid - self.first) / 32) as usize)
    }

    pub fn word_mut(&mut self, intid: u32) -> Option<&mut IrqWord> {
        if intid < self.first {
            return None;
        }
        self.words.get_mut(((intid - self.first) / 32) as usize)
    }

    /// The bits of the word starting at `intid` that name real interrupts.
    pub fn valid_mask(intid: u32) -> u32 {
        if intid + 32 <= INTID_LIMIT {
            u32::MAX
        } else if intid >= INTID_LIMIT {
            0
        } else {
            (1u32 << (INTID_LIMIT - intid)) - 1
        }
    }

    /// The word holding `intid` and its bit, if the bank has `intid`.
    fn slot(&self, intid: u32) -> Option<(&IrqWord, u32)> {
        if !self.contains(intid) {
            return None;
        }
        self.word(intid & !31).map(|word| (word, 1u32 << (intid % 32)))
    }

    fn slot_mut(&mut self, intid: u32) -> Option<(&mut IrqWord, u32)> {
        if !self.contains(intid) {
            return None;
        }
        self.word_mut(intid & !31).map(|word| (word, 1u32 << (intid % 32)))
    }

    pub fn priority(&self, intid: u32) -> Option<u8> {
        if !self.contains(intid) {
            return None;
        }
        self.priority.get((intid - self.first) as usize).copied()
    }

    pub fn set_priority(&mut self, intid: u32, value: u8) {
        if self.contains(intid) {
            if let Some(p) = self.priority.get_mut((intid - self.first) as usize) {
                *p = value;
            }
        }
    }

    /// Latches `intid` pending.
    pub fn set_pending(&mut self, intid: u32) {
        if let Some((word, bit)) = self.slot_mut(intid) {
            word.pending |= bit;
        }
    }

    /// Drives the input line of `intid`; a rising edge latches an
    /// edge-triggered interrupt pending.
    pub fn set_line(&mut self, intid: u32, level: bool) {
        if let Some((word, bit)) = self.slot_mut(intid) {
            if level {
                if word.line & bit == 0 && word.edge & bit != 0 {
                    word.pending |= bit;
                }
                word.line |= bit;
            } else {
                word.line &= !bit;
            }
        }
    }

    /// Marks `intid` in flight and clears its latch.
    pub fn take(&mut self, intid: u32) {
        if let Some((word, bit)) = self.slot_mut(intid) {
            word.in_flight |= bit;
            word.pending &= !bit;
        }
    }

    /// Whether `intid` is edge-triggered (ICFGR).
    pub fn is_edge(&self, intid: u32) -> bool {
        self.slot(intid).is_some_and(|(word, bit)| word.edge & bit != 0)
    }

    /// Whether `intid` is in flight.
    pub fn is_in_flight(&self, intid: u32) -> bool {
        self.slot(intid).is_some_and(|(word, bit)| word.in_flight & bit != 0)
    }

    /// Whether `intid` is in flight and latched pending again (an edge, or
    /// `set_pending`, while the guest had it in a list register).
    pub fn is_pending_again(&self, intid: u32) -> bool {
        self.slot(intid).is_some_and(|(word, bit)| word.in_flight & word.pending & bit != 0)
    }

    /// Clears the pending latch of `intid` (its list register takes it).
    pub fn clear_latch(&mut self, intid: u32) {
        if let Some((word, bit)) = self.slot_mut(intid) {
            word.pending &= !bit;
        }
    }

    /// `intid` is no longer in flight.
    pub fn complete(&mut self, intid: u32) {
        if let Some((word, bit)) = self.slot_mut(intid) {
            word.in_flight &= !bit;
        }
    }

    /// The highest-priority deliverable interrupt accepted by `routed`:
    /// (priority, INTID), lowest priority value first, then lowest INTID.
    pub fn best(&self, mut routed: impl FnMut(u32) -> bool) -> Option<(u8, u32)> {
        let mut best: Option<(u8, u32)> = None;
        for (i, word) in self.words.iter().enumerate() {
            let base = self.first + 32 * i as u32;
            let mut bits = word.deliverable() & Self::valid_mask(base);
            while bits != 0 {
                let intid = base + bits.trailing_zeros();
                bits &= bits - 1;
                let prio = self.priority[(intid - self.first) as usize];
                if best.is_none_or(|b| (prio, intid) < b) && routed(intid) {
                    best = Some((prio, intid));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_and_bounds() {
        let private = IrqBank::new(0, 32);
        assert_eq!(private.word(0).unwrap().edge, 0xFFFF);
        assert!(private.contains(31) && !private.contains(32));
        let spis = IrqBank::new(32, 992);
        assert_eq!(spis.end(), 1024);
        assert!(spis.contains(1019) && !spis.contains(1020) && !spis.contains(31));
        assert_eq!(IrqBank::valid_mask(992), 0x0FFF_FFFF);
        assert_eq!(IrqBank::valid_mask(1024), 0);
        assert_eq!(spis.word(32).unwrap().edge, 0);
        assert!(spis.word(0).is_none());
    }

    #[test]
    fn level_and_edge_lines() {
        let mut b = IrqBank::new(32, 32);
        let w = b.word_mut(32).unwrap();
        w.enable = u32::MAX;
        w.group = u32::MAX;
        w.edge = 0b10;
        b.set_line(32, true);
        b.set_line(33, true);
        assert_eq!(b.word(32).unwrap().pending, 0b10, "only the edge latches");
        assert_eq!(b.word(32).unwrap().deliverable(), 0b11);
        b.set_line(32, false);
        b.set_line(33, false);
        assert_eq!(b.word(32).unwrap().deliverable(), 0b10);
        b.take(33);
        assert_eq!(b.word(32).unwrap().deliverable(), 0);
        b.complete(33);
        assert_eq!(b.word(32).unwrap().deliverable(), 0);
    }

    #[test]
    fn best_orders_by_priority_then_intid() {
        let mut b = IrqBank::new(0, 32);
        let w = b.word_mut(0).unwrap();
        w.enable = u32::MAX;
        w.group = u32::MAX;
        for i in [3, 5, 27] {
            b.set_pending(i);
        }
        b.set_priority(3, 0xA0);
        b.set_priority(5, 0xA0);
        b.set_priority(27, 0x80);
        assert_eq!(b.best(|_| true), Some((0x80, 27)));
        assert_eq!(b.best(|i| i != 27), Some((0xA0, 3)));
        assert_eq!(b.best(|_| false), None);
    }
}
