//! A vCPU's self-hosted debug state: the breakpoint and watchpoint
//! registers and MDCCINT_EL1. They are EL1 state a guest uses directly
//! (MDCR_EL2.TDA clear, as KVM does once a guest touches them), so they are
//! switched with the rest of the context: otherwise one guest's hardware
//! breakpoints would fire in, or be overwritten by, another.
//!
//! Only the registers the CPU implements are touched (ID_AA64DFR0_EL1.BRPs
//! and .WRPs, each "number minus one"); the others are UNDEFINED.

use aarch64_cpu::registers::{Readable, ID_AA64DFR0_EL1};
use core::arch::asm;

/// The architecture allows at most 16 of each.
const MAX_POINTS: usize = 16;

/// Reads or writes `<reg><n>_EL1` for a run-time `n` below 16.
macro_rules! point_reg {
    (read $reg:literal, $n:expr) => {
        point_reg!(@read $reg, $n; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (write $reg:literal, $n:expr, $value:expr) => {
        point_reg!(@write $reg, $n, $value; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@read $reg:literal, $n:expr; $($i:literal)*) => {
        match $n {
            $($i => {
                let value: u64;
                // SAFETY: callers pass n below the implemented count; reading
                // a debug register has no side effect.
                unsafe { asm!(concat!("mrs {0}, ", $reg, stringify!($i), "_el1"), out(reg) value) };
                value
            })*
            _ => 0,
        }
    };
    (@write $reg:literal, $n:expr, $value:expr; $($i:literal)*) => {
        match $n {
            $($i => {
                // SAFETY: callers pass n below the implemented count; the value
                // is the guest's own, saved from the same register.
                unsafe { asm!(concat!("msr ", $reg, stringify!($i), "_el1, {0}"), in(reg) $value) };
            })*
            _ => {}
        }
    };
}

/// Breakpoint and watchpoint registers of one vCPU.
#[derive(Clone)]
pub struct DebugContext {
    bvr: [u64; MAX_POINTS],
    bcr: [u64; MAX_POINTS],
    wvr: [u64; MAX_POINTS],
    wcr: [u64; MAX_POINTS],
    mdccint: u64,
}

impl DebugContext {
    /// Reset state: every breakpoint and watchpoint disabled.
    pub const fn reset() -> Self {
        Self { bvr: [0; MAX_POINTS], bcr: [0; MAX_POINTS], wvr: [0; MAX_POINTS], wcr: [0; MAX_POINTS], mdccint: 0 }
    }

    pub fn save(&mut self) {
        let (breakpoints, watchpoints) = implemented();
        for n in 0..breakpoints {
            self.bvr[n] = point_reg!(read "dbgbvr", n);
            self.bcr[n] = point_reg!(read "dbgbcr", n);
        }
        for n in 0..watchpoints {
            self.wvr[n] = point_reg!(read "dbgwvr", n);
            self.wcr[n] = point_reg!(read "dbgwcr", n);
        }
        // SAFETY: MDCCINT_EL1 is always implemented; no side effect.
        unsafe { asm!("mrs {0}, mdccint_el1", out(reg) self.mdccint) };
    }

    pub fn load(&self) {
        let (breakpoints, watchpoints) = implemented();
        for n in 0..breakpoints {
            point_reg!(write "dbgbvr", n, self.bvr[n]);
            point_reg!(write "dbgbcr", n, self.bcr[n]);
        }
        for n in 0..watchpoints {
            point_reg!(write "dbgwvr", n, self.wvr[n]);
            point_reg!(write "dbgwcr", n, self.wcr[n]);
        }
        // SAFETY: as in save; the value is the guest's own.
        unsafe { asm!("msr mdccint_el1, {0}", in(reg) self.mdccint) };
    }
}

/// How many breakpoints and watchpoints this CPU implements.
fn implemented() -> (usize, usize) {
    let dfr0 = ID_AA64DFR0_EL1.extract();
    let breakpoints = dfr0.read(ID_AA64DFR0_EL1::BRPs) as usize + 1;
    let watchpoints = dfr0.read(ID_AA64DFR0_EL1::WRPs) as usize + 1;
    (breakpoints.min(MAX_POINTS), watchpoints.min(MAX_POINTS))
}
