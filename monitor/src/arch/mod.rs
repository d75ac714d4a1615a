//! Architecture code: everything that touches AArch64 system registers, the
//! GIC, device registers or raw memory. Policy lives outside this module.

use core::arch::global_asm;

pub mod context;
pub mod cpu;
pub mod debug;
pub mod el2_node;
pub mod esr;
pub mod exit;
pub mod gicv3;
pub mod heap;
pub mod idregs;
pub mod marker;
pub mod mem;
pub mod mmu;
pub mod pl011;
pub mod psci;
pub mod stage2;
pub mod timer;
pub mod vcpu;
pub mod virtio_blk;

/// Bytes of EL2 stack per physical CPU.
pub const STACK_SIZE: usize = 0x10000;
/// Physical CPUs the monitor supports.
pub const MAX_CPUS: usize = 16;

#[repr(C, align(16))]
pub struct Stacks([u8; STACK_SIZE * (MAX_CPUS + 1)]);

/// One stack per CPU; head.S puts CPU i's stack top at (i + 1) * STACK_SIZE.
#[no_mangle]
static mut STACKS: Stacks = Stacks([0; STACK_SIZE * (MAX_CPUS + 1)]);

global_asm!(include_str!("head.S"), STACK_SIZE = const STACK_SIZE);
global_asm!(include_str!("vectors.S"));

/// An exception taken at EL2 itself: the monitor has a bug. Report and stop.
#[no_mangle]
extern "C" fn el2_exception(kind: u64) -> ! {
    use aarch64_cpu::registers::{Readable, ELR_EL2, ESR_EL2, FAR_EL2};
    panic!(
        "exception at EL2: vector {kind}, ESR_EL2 {:#x} ({}), ELR_EL2 {:#x}, FAR_EL2 {:#x}",
        ESR_EL2.get(),
        esr::Esr(ESR_EL2.get()).class_name(),
        ELR_EL2.get(),
        FAR_EL2.get()
    );
}
