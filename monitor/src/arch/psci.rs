//! PSCI calls from the monitor to the machine's firmware (SMC conduit: with
//! virtualization=on, QEMU's firmware emulation answers SMCs).

use core::arch::asm;

pub const CPU_ON: u64 = 0xc400_0003;
pub const SYSTEM_OFF: u64 = 0x8400_0008;

fn smc(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: a PSCI call to firmware; it preserves our state per SMCCC.
    unsafe {
        asm!("smc #0", inlateout("x0") function as i64 => ret, inlateout("x1") a1 => _,
             inlateout("x2") a2 => _, inlateout("x3") a3 => _, options(nostack));
    }
    ret
}

/// Starts the CPU with affinity `mpidr` at `entry` (physical) with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match smc(CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        err => Err(err),
    }
}

pub fn system_off() -> ! {
    smc(SYSTEM_OFF, 0, 0, 0);
    super::cpu::halt()
}
