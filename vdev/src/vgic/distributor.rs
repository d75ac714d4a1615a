//! The GICD frame as the guest sees it.

use super::affinity::GICD_IROUTER_MASK;
use super::irq_bank::SPI_BASE;
use super::regs::*;
use super::{irq_regs, VGic};
use crate::mmio::{check_aligned, read_wide, write_wide, MmioDevice, MmioError};

/// IDbits: INTIDs have 10 bits (0..1023).
const ID_BITS: u32 = 9;

/// The distributor view of a [`VGic`].
pub struct Distributor<'a> {
    pub gic: &'a mut VGic,
}

fn need4(size: u8) -> Result<(), MmioError> {
    if size == 4 {
        Ok(())
    } else {
        Err(MmioError::BadWidth)
    }
}

impl VGic {
    fn gicd_ctlr(&self) -> u32 {
        self.ctlr | GICD_CTLR_ARE | GICD_CTLR_DS
    }

    fn gicd_typer(&self) -> u32 {
        let it_lines = (self.spis() / 32) & GICD_TYPER_ITLINESNUMBER_MASK;
        let cpus = (self.vcpus().clamp(1, 8) - 1) as u32;
        it_lines | (cpus << GICD_TYPER_CPUNUMBER_SHIFT) | (ID_BITS << GICD_TYPER_IDBITS_SHIFT) | GICD_TYPER_A3V
    }

    /// The IROUTER index of the register at `offset`, if it is an SPI's.
    fn irouter_index(&self, offset: u64) -> Option<usize> {
        let n = ((offset - GICD_IROUTER) / 8) as u32;
        self.spis.contains(n).then(|| (n - SPI_BASE) as usize)
    }
}

impl MmioDevice for Distributor<'_> {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if offset >= GICD_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        check_aligned(offset, size)?;
        let gic = &*self.gic;
        if let Some(reg) = irq_regs::decode(offset) {
            return irq_regs::read(&gic.spis, reg, size).map(u64::from);
        }
        // 32-bit registers are matched on their base so that narrower
        // accesses inside them are refused rather than RAZ.
        let value = match offset & !3 {
            GICD_CTLR => need4(size).map(|_| gic.gicd_ctlr())?,
            GICD_TYPER => need4(size).map(|_| gic.gicd_typer())?,
            GICD_IIDR => need4(size).map(|_| GIC_IIDR)?,
            GICD_TYPER2 => need4(size).map(|_| 0)?,
            GICD_PIDR2 => need4(size).map(|_| GIC_PIDR2)?,
            GICD_IROUTER..=0x7FFF => {
                let reg = gic.irouter_index(offset).map_or(0, |i| gic.irouter[i]);
                return read_wide(reg, offset & 4, size);
            }
            _ => {
                log::debug!("vgic: RAZ read of GICD offset {offset:#x}");
                0
            }
        };
        Ok(value.into())
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        if offset >= GICD_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        check_aligned(offset, size)?;
        let gic = &mut *self.gic;
        if let Some(reg) = irq_regs::decode(offset) {
            return irq_regs::write(&mut gic.spis, reg, size, value as u32);
        }
        match offset & !3 {
            GICD_CTLR => {
                need4(size)?;
                gic.ctlr = value as u32 & (GICD_CTLR_ENABLE_GRP0 | GICD_CTLR_ENABLE_GRP1);
            }
            GICD_TYPER | GICD_IIDR | GICD_TYPER2 | GICD_PIDR2 => need4(size)?,
            GICD_IROUTER..=0x7FFF => {
                let index = gic.irouter_index(offset);
                let old = index.map_or(0, |i| gic.irouter[i]);
                let new = write_wide(old, offset & 4, size, value)? & GICD_IROUTER_MASK;
                if let Some(i) = index {
                    gic.irouter[i] = new;
                }
            }
            _ => log::debug!("vgic: WI write of GICD offset {offset:#x}"),
        }
        Ok(())
    }
}
