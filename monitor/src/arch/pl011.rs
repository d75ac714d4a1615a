//! The machine's PL011 UART: the monitor's console, shared by all VMs.

use tock_registers::{
    interfaces::{Readable, Writeable},
    register_bitfields, register_structs,
    registers::{ReadOnly, ReadWrite, WriteOnly},
};

register_bitfields! {u32,
    FR [ TXFF OFFSET(5) NUMBITS(1) [], RXFE OFFSET(4) NUMBITS(1) [] ],
    IMSC [ RTIM OFFSET(6) NUMBITS(1) [], RXIM OFFSET(4) NUMBITS(1) [] ],
    ICR [ ALL OFFSET(0) NUMBITS(11) [] ]
}

register_structs! {
    Regs {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _r0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _r1),
        (0x038 => imsc: ReadWrite<u32, IMSC::Register>),
        (0x03c => _r2),
        (0x044 => icr: WriteOnly<u32, ICR::Register>),
        (0x048 => @END),
    }
}

pub struct Pl011 {
    regs: *const Regs,
}

// SAFETY: the device is accessed under the console lock only.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011 mapped as device memory, used
    /// by nobody else.
    pub const unsafe fn new(base: u64) -> Self {
        Self { regs: base as *const Regs }
    }

    fn regs(&self) -> &Regs {
        // SAFETY: guaranteed by `new`.
        unsafe { &*self.regs }
    }

    pub fn write_byte(&self, byte: u8) {
        while self.regs().fr.is_set(FR::TXFF) {}
        self.regs().dr.set(byte as u32);
    }

    pub fn read_byte(&self) -> Option<u8> {
        if self.regs().fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs().dr.get() as u8)
        }
    }

    /// Raises the UART's interrupt when input arrives.
    pub fn enable_rx_interrupt(&self) {
        self.regs().icr.write(ICR::ALL.val(0x7ff));
        self.regs().imsc.write(IMSC::RXIM::SET + IMSC::RTIM::SET);
    }
}
