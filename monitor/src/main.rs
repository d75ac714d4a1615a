//! The monitor: boots at EL2 on an aarch64 NUMA machine and runs Linux
//! guests (see ../shared/DESIGN.md for the data flow).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod exit;
mod io;
mod mm;
mod sched;
mod vm;

use core::sync::atomic::{AtomicU32, Ordering};

/// INTID of the console UART's interrupt (from the host DTB).
static CONSOLE_INTID: AtomicU32 = AtomicU32::new(0);

pub fn console_intid() -> u32 {
    CONSOLE_INTID.load(Ordering::Relaxed)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    io::console::print_emergency(format_args!("\nMONITOR PANIC on cpu{}: {info}\n", arch::cpu::index()));
    arch::psci::system_off()
}
