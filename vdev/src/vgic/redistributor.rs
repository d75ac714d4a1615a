//! One vCPU's redistributor state, and the GICR frames of all vCPUs as the
//! guest sees them (vCPU i at i * GICR_FRAME_SIZE: RD_base, then SGI_base).

use super::affinity::{affinity, affinity32};
use super::irq_bank::{IrqBank, SPI_BASE};
use super::regs::*;
use super::{irq_regs, VGic, GICR_FRAME_SIZE};
use crate::mmio::{check_aligned, read_wide, MmioDevice, MmioError};

/// A vCPU's redistributor: its SGIs and PPIs and its power state.
#[derive(Debug, Clone)]
pub struct Redistributor {
    /// The vCPU's MPIDR affinity.
    pub mpidr: u64,
    /// INTIDs 0..32.
    pub bank: IrqBank,
    /// GICR_WAKER.ProcessorSleep (ChildrenAsleep mirrors it).
    pub processor_sleep: bool,
}

impl Redistributor {
    pub fn new(mpidr: u64) -> Self {
        Self { mpidr: affinity(mpidr), bank: IrqBank::new(0, SPI_BASE), processor_sleep: true }
    }

    fn waker(&self) -> u32 {
        if self.processor_sleep {
            GICR_WAKER_PROCESSOR_SLEEP | GICR_WAKER_CHILDREN_ASLEEP
        } else {
            0
        }
    }
}

/// The redistributors view of a [`VGic`].
pub struct Redistributors<'a> {
    pub gic: &'a mut VGic,
}

fn need4(size: u8) -> Result<(), MmioError> {
    if size == 4 {
        Ok(())
    } else {
        Err(MmioError::BadWidth)
    }
}

/// Where an access lands: the vCPU index and the offset in its frame.
fn locate(gic: &VGic, offset: u64, size: u8) -> Result<(usize, u64), MmioError> {
    let index = offset / GICR_FRAME_SIZE;
    if index >= gic.cpus.len() as u64 {
        return Err(MmioError::Unmapped);
    }
    check_aligned(offset, size)?;
    Ok((index as usize, offset % GICR_FRAME_SIZE))
}

impl VGic {
    fn gicr_typer(&self, index: usize) -> u64 {
        let mut typer = (u64::from(affinity32(self.cpus[index].mpidr)) << GICR_TYPER_AFFINITY_SHIFT)
            | (((index as u64) & 0xFFFF) << GICR_TYPER_PROCESSOR_NUMBER_SHIFT);
        if index + 1 == self.cpus.len() {
            typer |= GICR_TYPER_LAST;
        }
        typer
    }
}

impl MmioDevice for Redistributors<'_> {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        let gic = &*self.gic;
        let (index, offset) = locate(gic, offset, size)?;
        let cpu = &gic.cpus[index];
        if offset >= GICR_SGI_BASE {
            let offset = offset - GICR_SGI_BASE;
            if let Some(reg) = irq_regs::decode(offset) {
                return irq_regs::read(&cpu.bank, reg, size).map(u64::from);
            }
            log::debug!("vgic: RAZ read of GICR{index} SGI_base offset {offset:#x}");
            return Ok(0);
        }
        // 32-bit registers are matched on their base so that narrower
        // accesses inside them are refused rather than RAZ.
        let value = match offset & !3 {
            GICR_CTLR => need4(size).map(|_| 0)?,
            GICR_IIDR => need4(size).map(|_| GIC_IIDR)?,
            GICR_WAKER => need4(size).map(|_| cpu.waker())?,
            GICR_PIDR2 => need4(size).map(|_| GIC_PIDR2)?,
            0x0008..=0x000F => return read_wide(gic.gicr_typer(index), offset - GICR_TYPER, size),
            0x0070..=0x007F => return read_wide(0, offset & 4, size),
            _ => {
                log::debug!("vgic: RAZ read of GICR{index} offset {offset:#x}");
                0
            }
        };
        Ok(value.into())
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        let (index, offset) = locate(self.gic, offset, size)?;
        let cpu = &mut self.gic.cpus[index];
        if offset >= GICR_SGI_BASE {
            let offset = offset - GICR_SGI_BASE;
            if let Some(reg) = irq_regs::decode(offset) {
                return irq_regs::write(&mut cpu.bank, reg, size, value as u32);
            }
            log::debug!("vgic: WI write of GICR{index} SGI_base offset {offset:#x}");
            return Ok(());
        }
        match offset & !3 {
            GICR_WAKER => {
                need4(size)?;
                cpu.processor_sleep = value as u32 & GICR_WAKER_PROCESSOR_SLEEP != 0;
            }
            GICR_CTLR | GICR_IIDR | GICR_PIDR2 => need4(size)?,
            0x0008..=0x000F | 0x0070..=0x007F => {
                read_wide(0, offset & 4, size)?;
            }
            _ => log::debug!("vgic: WI write of GICR{index} offset {offset:#x}"),
        }
        Ok(())
    }
}
