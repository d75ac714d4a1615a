//! Which exception level a translation block runs at, as far as the
//! plugin can tell: EL2 (the monitor) when its code lies in the ranges the
//! monitor publishes (`monitor_code.rs`), else EL1 (a guest kernel) for an
//! upper-half virtual address (TTBR1, where Linux runs), else EL0 (guest
//! user space). Plugin API 4 tells no exception level, and reading PSTATE
//! per block would need a register callback on every block; this costs
//! one range check per executed block, in the instruction-fetch callback
//! that runs anyway.
//!
//! Where it errs: guest kernel code run with the MMU off or from a
//! lower-half address (early boot, EFI stub) counts as EL0; instructions
//! of a block interrupted by an exception count where the block began.
//! Time is split as the model makes it: the block's instructions, and the
//! misses of the accesses that follow it, go to its level.

/// Levels, as indices of the per-level counters.
pub const LEVELS: usize = 3;

/// The level of a block: in monitor code, or at an upper-half address.
pub fn level(monitor_code: bool, vaddr: u64) -> usize {
    if monitor_code {
        2
    } else if vaddr >> 63 == 1 {
        1
    } else {
        0
    }
}

/// A fetch run's callback data: its first cache line, lines - 1 (< 64),
/// and for a block's first run also its instruction count (< 1024) and
/// whether it starts at an upper-half address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub first_line: u64,
    pub extra_lines: u64,
    /// Some((instructions, upper half)) on the block's first run only.
    pub block: Option<(u64, bool)>,
}

impl Run {
    pub fn encode(self) -> u64 {
        let (n, upper, first) = match self.block {
            Some((n, upper)) => (n, upper, true),
            None => (0, false, false),
        };
        debug_assert!(self.extra_lines < 64 && n < 1024 && self.first_line < 1 << 46);
        (self.first_line << 18) | (n << 8) | (u64::from(upper) << 7) | (u64::from(first) << 6) | self.extra_lines
    }

    pub fn decode(u: u64) -> Run {
        let first = (u >> 6) & 1 == 1;
        Run { first_line: u >> 18, extra_lines: u & 63, block: first.then_some(((u >> 8) & 1023, (u >> 7) & 1 == 1)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        for r in [
            Run { first_line: (1 << 40) >> 6, extra_lines: 63, block: Some((512, true)) },
            Run { first_line: 0x4020_0000 >> 6, extra_lines: 0, block: Some((1, false)) },
            Run { first_line: 12345, extra_lines: 7, block: None },
        ] {
            assert_eq!(Run::decode(r.encode()), r);
        }
    }

    #[test]
    fn levels() {
        assert_eq!(level(true, 0xffff_8000_0000_0000), 2);
        assert_eq!(level(true, 0x4020_0000), 2);
        assert_eq!(level(false, 0xffff_8000_1000_0000), 1);
        assert_eq!(level(false, 0x0000_aaaa_0000_0000), 0);
    }
}
