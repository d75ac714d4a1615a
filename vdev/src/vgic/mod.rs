//! A virtual GICv3: distributor and redistributors for N vCPUs, with
//! affinity routing always enabled, a single Security state
//! (GICD_CTLR.DS == 1) and no LPIs or ITS.
//!
//! The guest programs it through two MMIO views, [`VGic::distributor`] and
//! [`VGic::redistributors`]. The monitor feeds it interrupt sources
//! ([`VGic::set_spi_level`], [`VGic::set_pending`], [`VGic::write_sgi1r`])
//! and moves interrupts to and from the vCPUs' list registers
//! ([`VGic::take_pending`], [`VGic::complete`]). The CPU interface (ICC_*
//! registers, priority mask, running priority) is the hardware's, through
//! the list registers; this model only decides what to offer.
//!
//! Only Group 1 interrupts are delivered (Linux puts everything in Group 1);
//! GICR_WAKER.ProcessorSleep does not gate delivery.

mod affinity;
mod delivery;
mod distributor;
mod irq_bank;
mod irq_regs;
mod redistributor;
pub mod regs;
mod sgi1r;

#[cfg(test)]
mod tests;

use crate::mmio::MmioDevice;
use alloc::vec;
use alloc::vec::Vec;
use irq_bank::{IrqBank, INTID_LIMIT};
use redistributor::Redistributor;

pub use affinity::{affinity, affinity32};
pub use irq_bank::SPI_BASE;
pub use sgi1r::Sgi1r;

/// Size of one vCPU's redistributor: RD_base + SGI_base (64 KiB each).
pub const GICR_FRAME_SIZE: u64 = 0x20000;
/// Size of the distributor frame.
pub const GICD_FRAME_SIZE: u64 = regs::GICD_FRAME_SIZE;

/// The largest number of SPIs (INTIDs 32..1020).
pub const MAX_SPIS: u32 = INTID_LIMIT - SPI_BASE;

/// An interrupt to place in a list register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Virq {
    pub intid: u32,
    /// The priority programmed in GICD_IPRIORITYR / GICR_IPRIORITYR.
    pub priority: u8,
}

/// A virtual GICv3 for one VM.
#[derive(Debug, Clone)]
pub struct VGic {
    /// GICD_CTLR.EnableGrp0 / EnableGrp1.
    ctlr: u32,
    spis: IrqBank,
    /// GICD_IROUTER<n> for each SPI (index INTID - 32).
    irouter: Vec<u64>,
    /// The vCPU an in-flight SPI was given to (index INTID - 32).
    spi_owner: Vec<usize>,
    cpus: Vec<Redistributor>,
}

impl VGic {
    /// `mpidrs[i]` is vCPU i's virtual MPIDR (affinity), `spis` SPIs
    /// (rounded up to a multiple of 32; INTIDs 32..32+spis; at most
    /// [`MAX_SPIS`] usable).
    pub fn new(mpidrs: &[u64], spis: u32) -> Self {
        let count = spis.min(MAX_SPIS).div_ceil(32) * 32;
        let n = count as usize;
        Self {
            ctlr: 0,
            spis: IrqBank::new(SPI_BASE, count),
            irouter: vec![0; n],
            spi_owner: vec![0; n],
            cpus: mpidrs.iter().map(|&m| Redistributor::new(m)).collect(),
        }
    }

    /// Number of vCPUs.
    pub fn vcpus(&self) -> usize {
        self.cpus.len()
    }

    /// Number of SPI INTIDs implemented (a multiple of 32).
    pub fn spis(&self) -> u32 {
        self.spis.end() - SPI_BASE
    }

    /// The GICD frame, 64 KiB.
    pub fn distributor(&mut self) -> impl MmioDevice + '_ {
        distributor::Distributor { gic: self }
    }

    /// All vCPUs' GICR frames, vCPU i at i * [`GICR_FRAME_SIZE`].
    pub fn redistributors(&mut self) -> impl MmioDevice + '_ {
        redistributor::Redistributors { gic: self }
    }
}
