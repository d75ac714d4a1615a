//! A virtual CPU's register state and the world switch into it.

use aarch64_cpu::registers::{Readable, Writeable, ELR_EL1, ESR_EL1, FAR_EL1, SPSR_EL1, VBAR_EL1, VTTBR_EL2};
use core::mem::offset_of;

/// The registers saved on every guest exit. The layout is shared with
/// vectors.S (REGS_* offsets).
#[repr(C, align(16))]
pub struct VcpuRegs {
    pub x: [u64; 31],
    pub pc: u64,
    pub pstate: u64,
    _pad: u64,
    pub v: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

const _: () = {
    assert!(offset_of!(VcpuRegs, pc) == 248);
    assert!(offset_of!(VcpuRegs, v) == 272);
    assert!(offset_of!(VcpuRegs, fpsr) == 784);
    assert!(offset_of!(VcpuRegs, fpcr) == 792);
};

/// PSTATE for a guest at EL1h with D, A, I and F masked: how Linux expects
/// to be entered, and how exceptions are delivered.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;
const PSTATE_MODE: u64 = 0xf;
const MODE_EL0T: u64 = 0b0000;
const MODE_EL1T: u64 = 0b0100;

impl VcpuRegs {
    /// Registers at a Linux kernel's entry (arm64 booting.txt): x0 = DTB.
    pub fn boot(entry: u64, dtb: u64) -> Self {
        let mut regs =
            Self { x: [0; 31], pc: entry, pstate: PSTATE_EL1H_MASKED, _pad: 0, v: [0; 32], fpsr: 0, fpcr: 0 };
        regs.x[0] = dtb;
        regs
    }

    /// Register `n` as an instruction operand: 31 is the zero register.
    pub fn reg(&self, n: usize) -> u64 {
        if n < 31 {
            self.x[n]
        } else {
            0
        }
    }

    pub fn set_reg(&mut self, n: usize, value: u64) {
        if n < 31 {
            self.x[n] = value;
        }
    }

    /// Was the guest at EL0 when it exited?
    pub fn at_el0(&self) -> bool {
        self.pstate & PSTATE_MODE == MODE_EL0T
    }

    /// Delivers a synchronous exception to the guest's EL1, as the hardware
    /// would: ELR/SPSR/ESR/FAR_EL1 set, PC at the right VBAR_EL1 vector.
    pub fn inject_sync(&mut self, esr: u64, far: u64) {
        let offset = match self.pstate & PSTATE_MODE {
            MODE_EL0T => 0x400,
            MODE_EL1T => 0x000,
            _ => 0x200,
        };
        ELR_EL1.set(self.pc);
        SPSR_EL1.set(self.pstate);
        ESR_EL1.set(esr);
        FAR_EL1.set(far);
        self.pc = VBAR_EL1.get() + offset;
        self.pstate = PSTATE_EL1H_MASKED;
    }
}

/// Why guest_run returned (the vector that was taken; vectors.S).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Sync,
    Irq,
    Fiq,
    SError,
    AArch32,
}

extern "C" {
    fn guest_run(regs: *mut VcpuRegs) -> u64;
}

/// Makes `vttbr` (a VM's stage-2 tables and VMID) the current guest
/// address space of the calling CPU.
pub fn set_vttbr(vttbr: u64) {
    if VTTBR_EL2.get() != vttbr {
        VTTBR_EL2.set(vttbr);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
}

/// Runs the guest vCPU whose EL1 context and VTTBR are loaded on this CPU
/// until it exits.
pub fn run(regs: &mut VcpuRegs) -> Exit {
    // SAFETY: `regs` is a valid, exclusively borrowed VcpuRegs; the EL2
    // configuration (cpu::init, stage2::init_cpu) is in place.
    match unsafe { guest_run(regs) } {
        0 => Exit::Sync,
        1 => Exit::Irq,
        2 => Exit::Fiq,
        3 => Exit::SError,
        _ => Exit::AArch32,
    }
}
