//! Markers for the ccNUMA cost-model plugin (`bench/numa-sim`): `HINT`
//! instructions in the architecture's NOP space, so real hardware (and
//! QEMU without the plugin) executes nothing. `HINT #0x7c` / `#0x7d`
//! bracket work the plugin charges to the monitor, summed over intervals
//! and CPUs in its report (`charged`): that is how `cargo xtask bench
//! placement` finds the simulated cost of a migrated page.

use core::arch::asm;

/// Work charged to the monitor from now until the guard is dropped.
pub struct Charged(());

impl Charged {
    pub fn begin() -> Self {
        // SAFETY: a hint instruction: no effect on registers or memory.
        unsafe { asm!("hint #0x7c", options(nomem, nostack, preserves_flags)) };
        Charged(())
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        // SAFETY: as in `begin`.
        unsafe { asm!("hint #0x7d", options(nomem, nostack, preserves_flags)) };
    }
}
