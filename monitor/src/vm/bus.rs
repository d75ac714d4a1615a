//! The VM's device bus: one table of guest-physical regions, each naming
//! the virtual device behind it. MMIO emulation and the guest device tree
//! both read it, so a device is added with one entry.
//!
//! Guest-physical map (the QEMU `virt` layout, so the stock kernel needs
//! nothing special): GICD 0x0800_0000, GICR 0x080a_0000 (0x20000 per vCPU),
//! PL011 0x0900_0000 (SPI 1), RAM from 0x4000_0000.

use super::{Devices, End, Vm};
use crate::{arch::esr::DataAbort, arch::vcpu::VcpuRegs, io::console};
use vdev::mmio::{MmioDevice, MmioError};

pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
pub const GICR_BASE: u64 = 0x080a_0000;
pub const UART_BASE: u64 = 0x0900_0000;
pub const UART_SIZE: u64 = 0x1000;
pub const UART_SPI: u32 = 1;
pub const UART_INTID: u32 = 32 + UART_SPI;

/// Linux's panic banner: the console line that marks a guest kernel panic.
const PANIC_BANNER: &str = "Kernel panic - not syncing";

/// Which device a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Distributor,
    /// The redistributor frames, one per vCPU: the size depends on the VM.
    Redistributors,
    Uart,
}

/// One guest-physical device region.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub base: u64,
    /// Bytes; 0 for regions sized per VM (`Vm::region_size`).
    pub size: u64,
    pub device: Device,
}

/// Every device region of a VM.
pub const REGIONS: &[Region] = &[
    Region { base: GICD_BASE, size: GICD_SIZE, device: Device::Distributor },
    Region { base: GICR_BASE, size: 0, device: Device::Redistributors },
    Region { base: UART_BASE, size: UART_SIZE, device: Device::Uart },
];

impl Vm {
    fn region_size(&self, region: &Region) -> u64 {
        match region.device {
            Device::Redistributors => self.gicr_size(),
            _ => region.size,
        }
    }

    /// The region holding `ipa`, and the offset into it.
    fn region_of(&self, ipa: u64) -> Option<(&'static Region, u64)> {
        REGIONS.iter().find(|r| (r.base..r.base + self.region_size(r)).contains(&ipa)).map(|r| (r, ipa - r.base))
    }

    /// Emulates one load or store to a virtual device; returns the vCPUs
    /// to kick (an interrupt became pending for them).
    pub fn mmio(&self, regs: &mut VcpuRegs, ipa: u64, access: DataAbort) -> Result<u64, MmioError> {
        let (region, offset) = self.region_of(ipa).ok_or(MmioError::Unmapped)?;
        let value = regs.reg(access.reg);
        let mut devices = self.devices.lock();
        let (read, kick) = match region.device {
            Device::Distributor => {
                let read = perform(&mut devices.vgic.distributor(), offset, access, value)?;
                (read, if access.write { self.pending_changed(&devices) } else { 0 })
            }
            Device::Redistributors => {
                let read = perform(&mut devices.vgic.redistributors(), offset, access, value)?;
                (read, if access.write { self.pending_changed(&devices) } else { 0 })
            }
            Device::Uart => {
                let read = perform(&mut devices.uart, offset, access, value)?;
                (read, self.uart_changed(&mut devices))
            }
        };
        drop(devices);
        if let Some(mut value) = read {
            let bits = access.size as u32 * 8;
            if access.sign_extend && bits < 64 {
                let shift = 64 - bits;
                value = (((value << shift) as i64) >> shift) as u64;
            }
            if !access.reg64 {
                value &= 0xffff_ffff;
            }
            regs.set_reg(access.reg, value);
        }
        Ok(kick)
    }

    /// After a UART access or console input: print what the guest wrote,
    /// update its interrupt line, and watch the output for the kernel's
    /// panic banner. Returns the vCPUs to kick.
    pub fn uart_changed(&self, devices: &mut Devices) -> u64 {
        let output = devices.uart.take_tx();
        if !output.is_empty() {
            let focused = console::has_focus(self.id);
            devices.console.push(self.id, &self.name, &output, focused, |line| {
                if let Some(at) = line.find(PANIC_BANNER) {
                    self.end(End::Crashed(alloc::format!("guest kernel panic: {}", &line[at..])));
                }
            });
        }
        let level = devices.uart.irq_level();
        devices.vgic.set_spi_level(UART_INTID, level);
        self.pending_changed(devices)
    }

    /// After the vGIC state changed (a line moved, or the guest enabled,
    /// routed or set pending an interrupt through GICD/GICR): every vCPU
    /// looks again at its next `virq::sync` (these changes are rare, and
    /// one may make an interrupt a vCPU holds in flight pending again).
    /// Returns every vCPU with something to take, to be kicked: it may be
    /// parked or running on another CPU.
    fn pending_changed(&self, devices: &Devices) -> u64 {
        self.vgic_changed(u64::MAX);
        (0..self.mpidrs.len()).filter(|&v| devices.vgic.has_pending(v)).fold(0, |mask, v| mask | 1 << v)
    }
}

/// Performs the access on `device`; returns the value read, for loads.
fn perform(device: &mut impl MmioDevice, offset: u64, access: DataAbort, value: u64) -> Result<Option<u64>, MmioError> {
    if access.write {
        let mask = if access.size == 8 { u64::MAX } else { (1u64 << (access.size * 8)) - 1 };
        device.write(offset, access.size, value & mask).map(|()| None)
    } else {
        device.read(offset, access.size).map(Some)
    }
}
