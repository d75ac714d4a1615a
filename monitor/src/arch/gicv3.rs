//! The machine's GICv3: distributor and redistributors for the physical
//! interrupts the monitor takes at EL2, and the virtual CPU interface's list
//! registers through which it delivers virtual interrupts to guests.

use aarch64_cpu::registers::*;
use core::arch::asm;
use tock_registers::{
    interfaces::{Readable, Writeable},
    register_structs,
    registers::{ReadOnly, ReadWrite},
};

register_structs! {
    Gicd {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _r0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _r1),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _r2),
        (0x6000 => irouter: [ReadWrite<u64>; 1024]),
        (0x8000 => @END),
    },
    GicrRd {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => _r0),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => @END),
    },
    GicrSgi {
        (0x0000 => _r0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _r1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _r2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _r3),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => @END),
    }
}

const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_G1: u32 = 0b11; // EnableGrp1NS/EnableGrp1A (or Grp0|Grp1 with DS=1)
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_STRIDE: u64 = 0x20000;
const GICR_SGI_OFFSET: u64 = 0x10000;
/// Priority of every interrupt the monitor takes: they are all equal.
const PRIORITY: u8 = 0xa0;

/// INTIDs of the private interrupts the monitor uses.
pub mod intid {
    /// The SGI one CPU sends another to make it look at its vCPU again.
    pub const KICK: u32 = 0;
    pub const MAINTENANCE: u32 = 25;
    /// The EL2 physical timer (CNTHP): the scheduler's clock.
    pub const HYP_TIMER: u32 = 26;
    pub const VIRT_TIMER: u32 = 27;
    /// First INTID that is not spurious.
    pub const SPURIOUS: u32 = 1020;
}

pub struct Gic {
    gicd: u64,
    gicr: u64,
}

impl Gic {
    /// # Safety
    /// The bases must be the machine's GICv3 distributor and redistributor
    /// region, mapped as device memory.
    pub const unsafe fn new(gicd: u64, gicr: u64) -> Self {
        Self { gicd, gicr }
    }

    fn gicd(&self) -> &Gicd {
        // SAFETY: guaranteed by `new`.
        unsafe { &*(self.gicd as *const Gicd) }
    }

    /// Enables affinity routing and group 1; all SPIs group 1, disabled.
    pub fn init_distributor(&self) {
        let d = self.gicd();
        d.ctlr.set(0);
        self.wait_rwp();
        let lines = ((d.typer.get() & 0x1f) + 1) as usize * 32;
        for i in 1..lines / 32 {
            d.igroupr[i].set(!0);
            d.icenabler[i].set(!0);
        }
        for i in 32..lines {
            d.ipriorityr[i].set(PRIORITY);
        }
        d.ctlr.set(GICD_CTLR_ARE | GICD_CTLR_ENABLE_G1);
        self.wait_rwp();
    }

    fn wait_rwp(&self) {
        while self.gicd().ctlr.get() & GICD_CTLR_RWP != 0 {}
    }

    /// The redistributor frame of the CPU with affinity `mpidr`.
    fn redistributor(&self, mpidr: u64) -> Option<u64> {
        let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
        let mut frame = self.gicr;
        loop {
            // SAFETY: frames up to the one marked Last are redistributors.
            let rd = unsafe { &*(frame as *const GicrRd) };
            let typer = rd.typer.get();
            if typer >> 32 == aff {
                return Some(frame);
            }
            if typer & GICR_TYPER_LAST != 0 {
                return None;
            }
            frame += GICR_STRIDE;
        }
    }

    /// Wakes the calling CPU's redistributor, enables `ppis` and all SGIs,
    /// and opens the CPU interface for group-1 interrupts at EL2.
    pub fn init_cpu(&self, mpidr: u64, ppis: &[u32]) {
        let frame = self.redistributor(mpidr).expect("no GICv3 redistributor for this CPU");
        // SAFETY: `frame` is this CPU's redistributor.
        let (rd, sgi) = unsafe { (&*(frame as *const GicrRd), &*((frame + GICR_SGI_OFFSET) as *const GicrSgi)) };
        rd.waker.set(rd.waker.get() & !GICR_WAKER_PROCESSOR_SLEEP);
        while rd.waker.get() & GICR_WAKER_CHILDREN_ASLEEP != 0 {}
        sgi.igroupr0.set(!0);
        sgi.icenabler0.set(!0);
        for p in sgi.ipriorityr.iter() {
            p.set(PRIORITY);
        }
        let mask = ppis.iter().fold(0xffffu32, |m, &ppi| m | 1 << ppi);
        sgi.isenabler0.set(mask);
        // SAFETY: CPU interface setup for EL2 (ICC_SRE_EL2.SRE is set).
        unsafe {
            asm!("msr ICC_PMR_EL1, {0}", in(reg) 0xffu64);
            asm!("msr ICC_BPR1_EL1, {0}", in(reg) 0u64);
            asm!("msr ICC_CTLR_EL1, {0}", in(reg) 0u64); // EOImode 0: EOI also deactivates
            asm!("msr ICC_IGRPEN1_EL1, {0}", in(reg) 1u64);
            asm!("isb");
        }
    }

    /// Routes SPI `intid` to the CPU with affinity `mpidr` and enables it.
    pub fn enable_spi(&self, intid: u32, mpidr: u64) {
        let d = self.gicd();
        d.irouter[intid as usize].set(mpidr & 0xff_00ff_ffff);
        d.ipriorityr[intid as usize].set(PRIORITY);
        d.isenabler[intid as usize / 32].set(1 << (intid % 32));
    }
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn ack() -> Option<u32> {
    let intid: u64;
    // SAFETY: reading IAR acknowledges one interrupt; the caller EOIs it.
    unsafe { asm!("mrs {0}, ICC_IAR1_EL1", out(reg) intid) };
    let intid = intid as u32 & 0xff_ffff;
    (intid < intid::SPURIOUS).then_some(intid)
}

/// Ends (drops priority and deactivates) an acknowledged interrupt.
pub fn eoi(intid: u32) {
    // SAFETY: EOI of an interrupt this CPU acknowledged.
    unsafe { asm!("msr ICC_EOIR1_EL1, {0}", "isb", in(reg) intid as u64) };
}

/// Sends SGI `sgi` to the CPU with affinity `mpidr`.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    let range = (mpidr & 0xff) >> 4;
    let target_list = 1u64 << (mpidr & 0xf);
    let value = aff3 << 48 | range << 44 | aff2 << 32 | (sgi as u64) << 24 | aff1 << 16 | target_list;
    // SAFETY: generating an SGI has no effect beyond the interrupt.
    unsafe { asm!("dsb ish", "msr ICC_SGI1R_EL1, {0}", "isb", in(reg) value) };
}

/// The virtual CPU interface's list registers (ICH_LR<n>_EL2).
pub mod lr {
    use super::*;

    pub const STATE_PENDING: u64 = 0b01 << 62;
    const STATE_MASK: u64 = 0b11 << 62;
    const GROUP1: u64 = 1 << 60;

    /// Stops the underflow maintenance interrupt (ICH_HCR_EL2.UIE), which
    /// stays asserted while the list registers are (nearly) empty.
    pub fn disable_underflow() {
        ICH_HCR_EL2.modify(ICH_HCR_EL2::UIE::CLEAR);
    }

    /// How many list registers this CPU has.
    pub fn count() -> usize {
        (ICH_VTR_EL2.get() & 0x1f) as usize + 1
    }

    /// A list-register value making `intid` pending in group 1 at `priority`.
    pub fn pending(intid: u32, priority: u8) -> u64 {
        STATE_PENDING | GROUP1 | (priority as u64) << 48 | intid as u64
    }

    /// The state bits of a list-register value; 0 means the slot is free.
    pub fn state(value: u64) -> u64 {
        value & STATE_MASK
    }

    pub fn read(n: usize) -> u64 {
        match n {
            0 => ICH_LR0_EL2.get(),
            1 => ICH_LR1_EL2.get(),
            2 => ICH_LR2_EL2.get(),
            3 => ICH_LR3_EL2.get(),
            4 => ICH_LR4_EL2.get(),
            5 => ICH_LR5_EL2.get(),
            6 => ICH_LR6_EL2.get(),
            7 => ICH_LR7_EL2.get(),
            8 => ICH_LR8_EL2.get(),
            9 => ICH_LR9_EL2.get(),
            10 => ICH_LR10_EL2.get(),
            11 => ICH_LR11_EL2.get(),
            12 => ICH_LR12_EL2.get(),
            13 => ICH_LR13_EL2.get(),
            14 => ICH_LR14_EL2.get(),
            _ => ICH_LR15_EL2.get(),
        }
    }

    pub fn write(n: usize, value: u64) {
        match n {
            0 => ICH_LR0_EL2.set(value),
            1 => ICH_LR1_EL2.set(value),
            2 => ICH_LR2_EL2.set(value),
            3 => ICH_LR3_EL2.set(value),
            4 => ICH_LR4_EL2.set(value),
            5 => ICH_LR5_EL2.set(value),
            6 => ICH_LR6_EL2.set(value),
            7 => ICH_LR7_EL2.set(value),
            8 => ICH_LR8_EL2.set(value),
            9 => ICH_LR9_EL2.set(value),
            10 => ICH_LR10_EL2.set(value),
            11 => ICH_LR11_EL2.set(value),
            12 => ICH_LR12_EL2.set(value),
            13 => ICH_LR13_EL2.set(value),
            14 => ICH_LR14_EL2.set(value),
            _ => ICH_LR15_EL2.set(value),
        }
    }
}
