//! The architected generic timer: counter reads and the guest's virtual timer.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTV_CTL_EL0};

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
