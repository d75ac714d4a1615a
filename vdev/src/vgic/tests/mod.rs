//! Tests of the whole vGIC through its public interface.

mod delivery;
mod linux_boot;
mod random;
mod registers;

use super::*;
use crate::mmio::MmioDevice;

/// Two vCPUs as the monitor would give them (MPIDR bit 31 is RES1).
pub const MPIDRS: [u64; 2] = [0x8000_0000, 0x8000_0001];

pub fn gicd_r(gic: &mut VGic, off: u64) -> u32 {
    gic.distributor().read(off, 4).unwrap() as u32
}
pub fn gicd_w(gic: &mut VGic, off: u64, v: u32) {
    gic.distributor().write(off, 4, v.into()).unwrap()
}
pub fn gicd_r64(gic: &mut VGic, off: u64) -> u64 {
    gic.distributor().read(off, 8).unwrap()
}
pub fn gicd_w64(gic: &mut VGic, off: u64, v: u64) {
    gic.distributor().write(off, 8, v).unwrap()
}
/// RD_base register of vCPU `cpu`.
pub fn rd_r(gic: &mut VGic, cpu: u64, off: u64) -> u32 {
    gic.redistributors().read(cpu * GICR_FRAME_SIZE + off, 4).unwrap() as u32
}
pub fn rd_w(gic: &mut VGic, cpu: u64, off: u64, v: u32) {
    gic.redistributors().write(cpu * GICR_FRAME_SIZE + off, 4, v.into()).unwrap()
}
pub fn rd_r64(gic: &mut VGic, cpu: u64, off: u64) -> u64 {
    gic.redistributors().read(cpu * GICR_FRAME_SIZE + off, 8).unwrap()
}
/// SGI_base register of vCPU `cpu`.
pub fn sgi_r(gic: &mut VGic, cpu: u64, off: u64) -> u32 {
    rd_r(gic, cpu, regs::GICR_SGI_BASE + off)
}
pub fn sgi_w(gic: &mut VGic, cpu: u64, off: u64, v: u32) {
    rd_w(gic, cpu, regs::GICR_SGI_BASE + off, v)
}
