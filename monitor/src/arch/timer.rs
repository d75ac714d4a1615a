//! The architected generic timer: counter reads and the guest's virtual timer.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0, CNTV_CTL_EL0};

/// Counter ticks since boot (the physical count; CNTVOFF_EL2 is 0).
pub fn now() -> u64 {
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz.
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks * 1000 / frequency().max(1)
}

/// Masks the running guest's virtual timer output after it fired, so the
/// level-sensitive PPI stops; the guest unmasks it when it programs the next
/// event (Linux rewrites CNTV_CTL_EL0 on every set_next_event).
pub fn mask_guest_vtimer() {
    CNTV_CTL_EL0.set(CNTV_CTL_EL0.get() | 0b10);
}

/// Arms the EL2 physical timer (CNTHP, PPI 26) to fire at counter value
/// `deadline`: the scheduler's time slices and sleeping vCPUs' deadlines.
pub fn set_hyp_deadline(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is the monitor's own timer; aarch64-cpu has no
    // accessor for it.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", "isb", in(reg) deadline) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
}

/// Stops the EL2 physical timer (and lowers its interrupt).
pub fn cancel_hyp_timer() {
    CNTHP_CTL_EL2.set(0);
}

pub fn ms_to_ticks(ms: u64) -> u64 {
    ms * frequency() / 1000
}
