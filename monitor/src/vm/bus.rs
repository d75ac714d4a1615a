//! The VM's device bus: one table of guest-physical regions, each naming
//! the virtual device behind it. MMIO emulation and the guest device tree
//! both read it, so a device is added with one entry.
//!
//! Guest-physical map (the QEMU `virt` layout, so the stock kernel needs
//! nothing special): GICD 0x0800_0000, GICR 0x080a_0000 (0x20000 per vCPU),
//! PL011 0x0900_0000 (SPI 1), virtio-mmio frames from 0x0a00_0000 (0x200
//! apart, SPI 16 + n, where QEMU's `virt` puts its 32 transports: disks in
//! slots 0-3, the network device in slot 4, the balloon in slot 5), RAM
//! from 0x4000_0000.

use super::{Devices, End, Vm};
use crate::{
    arch::esr::DataAbort,
    arch::vcpu::VcpuRegs,
    io::{blk::ImageDisk, console},
    mm::guest::GuestRam,
};
use vdev::{
    fdt::VirtioMmioNode,
    mmio::{MmioDevice, MmioError},
    virtio::{blk::VirtioBlk, transport::VirtioMmio, transport::VIRTIO_MMIO_FRAME_SIZE},
};

pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
pub const GICR_BASE: u64 = 0x080a_0000;
pub const UART_BASE: u64 = 0x0900_0000;
pub const UART_SIZE: u64 = 0x1000;
pub const UART_SPI: u32 = 1;
pub const UART_INTID: u32 = SPI_INTID_BASE + UART_SPI;
/// The first virtio-mmio frame and its SPI (QEMU `virt`'s layout).
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
pub const VIRTIO_FIRST_SPI: u32 = 16;
/// INTID of SPI 0.
pub(super) const SPI_INTID_BASE: u32 = 32;

/// Linux's panic banner: the console line that marks a guest kernel panic.
const PANIC_BANNER: &str = "Kernel panic - not syncing";

/// Which device a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Distributor,
    /// The redistributor frames, one per vCPU: the size depends on the VM.
    Redistributors,
    Uart,
    /// Virtio-blk disk number n of the VM (present if the VM has it).
    Blk(usize),
    /// The VM's virtio-net device (present if it has `[[vm.net]]`).
    Net,
    /// The VM's virtio-balloon device (present with `balloon = true`).
    Balloon,
}

/// One guest-physical device region.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub base: u64,
    /// Bytes; 0 for regions sized per VM (`Vm::region_size`).
    pub size: u64,
    pub device: Device,
    /// Its interrupt, an SPI number (INTID - 32), if it has one.
    pub spi: Option<u32>,
}

/// Virtio-mmio slot `n`: frame `n` and SPI `16 + n`, as on QEMU `virt`.
const fn virtio(n: usize, device: Device) -> Region {
    Region {
        base: VIRTIO_BASE + n as u64 * VIRTIO_MMIO_FRAME_SIZE,
        size: VIRTIO_MMIO_FRAME_SIZE,
        device,
        spi: Some(VIRTIO_FIRST_SPI + n as u32),
    }
}

/// Every device region of a VM (slots of devices a VM lacks are absent
/// for it). The guest device tree lists the virtio ones from here too.
pub const REGIONS: &[Region] = &[
    Region { base: GICD_BASE, size: GICD_SIZE, device: Device::Distributor, spi: None },
    Region { base: GICR_BASE, size: 0, device: Device::Redistributors, spi: None },
    Region { base: UART_BASE, size: UART_SIZE, device: Device::Uart, spi: Some(UART_SPI) },
    virtio(0, Device::Blk(0)),
    virtio(1, Device::Blk(1)),
    virtio(2, Device::Blk(2)),
    virtio(3, Device::Blk(3)),
    virtio(4, Device::Net),
    virtio(5, Device::Balloon),
];

/// Where the guest device tree puts the devices every VM has.
pub struct FixedDevices {
    pub gicd: u64,
    pub gicr: u64,
    pub uart: u64,
    pub uart_spi: u32,
}

/// One guest disk: the virtio-mmio transport and virtio-blk model, and the
/// image of the physical disk behind it.
pub struct GuestDisk {
    pub mmio: VirtioMmio<VirtioBlk>,
    pub backend: ImageDisk,
    /// The level last given to the vGIC, so that an access that leaves it
    /// (most of them) costs no devices lock and no vCPU resync.
    pub line: bool,
}

/// The network device's SPI, from [`REGIONS`].
pub fn net_spi() -> u32 {
    spi_of(Device::Net)
}

/// The balloon's SPI, from [`REGIONS`].
pub fn balloon_spi() -> u32 {
    spi_of(Device::Balloon)
}

fn spi_of(device: Device) -> u32 {
    REGIONS.iter().find(|r| r.device == device).and_then(|r| r.spi).expect("the device has an SPI")
}

/// How many disk slots [`REGIONS`] has.
const fn disk_slots() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < REGIONS.len() {
        if matches!(REGIONS[i].device, Device::Blk(_)) {
            n += 1;
        }
        i += 1;
    }
    n
}
const _: () = assert!(disk_slots() == super::manifest::MAX_DISKS, "a VM's disks each need a region slot");

impl Vm {
    fn region_size(&self, region: &Region) -> u64 {
        match region.device {
            Device::Redistributors => self.gicr_size(),
            Device::Blk(n) if n >= self.disks.len() => 0,
            Device::Net if self.net.is_none() => 0,
            Device::Balloon if self.balloon.is_none() => 0,
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
        if let (Device::Blk(n), Some(spi)) = (region.device, region.spi) {
            let (read, kick) = self.disk_access(n, spi, offset, access, value)?;
            complete_load(regs, access, read);
            return Ok(kick);
        }
        if region.device == Device::Net {
            let (read, kick) = self.net_access(offset, access, value)?;
            complete_load(regs, access, read);
            return Ok(kick);
        }
        if let (Device::Balloon, Some(spi)) = (region.device, region.spi) {
            let (read, kick) = self.balloon_access(spi, offset, access, value)?;
            complete_load(regs, access, read);
            return Ok(kick);
        }
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
            Device::Blk(_) | Device::Net | Device::Balloon => return Err(MmioError::Unmapped),
        };
        drop(devices);
        complete_load(regs, access, read);
        Ok(kick)
    }

    /// An access to disk `n`'s registers. A QueueNotify is handled here and
    /// now: the requests run synchronously against the physical disk
    /// (under the disk's own lock, not the devices lock, so the VM's other
    /// vCPUs keep their UART and GIC meanwhile). Then the SPI follows the
    /// device's interrupt line, if it moved. Returns the value read and the
    /// vCPUs to kick.
    fn disk_access(
        &self,
        n: usize,
        spi: u32,
        offset: u64,
        access: DataAbort,
        value: u64,
    ) -> Result<(Option<u64>, u64), MmioError> {
        let disk = self.disks.get(n).ok_or(MmioError::Unmapped)?;
        let mut disk = disk.lock();
        let GuestDisk { mmio, backend, line } = &mut *disk;
        let had_failed = mmio.needs_reset();
        let read = perform(mmio, offset, access, value)?;
        if access.write {
            let mut ram =
                GuestRam { space: &self.space, base: super::RAM_BASE, size: self.ram_size, node: self.home() };
            mmio.process_notified(&mut ram, backend);
            let cached = backend.take_cached();
            if !cached.is_empty() {
                self.space.lock().map_disk_blocks(cached, self.home());
            }
            if !had_failed && mmio.needs_reset() {
                let why = mmio.last_error().map(|e| alloc::format!("{e}")).unwrap_or_default();
                log::warn!("vm {}: disk {n}: malformed request or queue ({why}): device needs reset", self.name);
            }
        }
        Ok((read, self.drive_spi(spi, line, mmio.irq_level())))
    }

    /// Gives the vGIC a device's interrupt line `level` on SPI `spi` if it
    /// moved since `line` (most accesses leave it: no devices lock, no
    /// vCPU resync then); returns the vCPUs to kick. Called under the
    /// device's lock (order: device, then devices), so two vCPUs' updates
    /// of the line cannot land in the wrong order.
    pub(super) fn drive_spi(&self, spi: u32, line: &mut bool, level: bool) -> u64 {
        if level == core::mem::replace(line, level) {
            return 0;
        }
        let mut devices = self.devices.lock();
        devices.vgic.set_spi_level(SPI_INTID_BASE + spi, level);
        self.pending_changed(&devices)
    }

    /// The guest device tree's fixed devices (GIC distributor and
    /// redistributors, UART and its SPI), from [`REGIONS`] like the MMIO
    /// emulation.
    pub fn fixed_devices() -> FixedDevices {
        let find = |device: Device| REGIONS.iter().find(|r| r.device == device).expect("in REGIONS");
        let uart = find(Device::Uart);
        FixedDevices {
            gicd: find(Device::Distributor).base,
            gicr: find(Device::Redistributors).base,
            uart: uart.base,
            uart_spi: uart.spi.expect("the UART has an SPI"),
        }
    }

    /// The guest device tree's virtio-mmio nodes: this VM's slots of
    /// [`REGIONS`], in table order.
    pub fn virtio_nodes(&self) -> alloc::vec::Vec<VirtioMmioNode> {
        REGIONS
            .iter()
            .filter(|r| matches!(r.device, Device::Blk(_) | Device::Net | Device::Balloon) && self.region_size(r) > 0)
            .filter_map(|r| r.spi.map(|spi| VirtioMmioNode { base: r.base, spi }))
            .collect()
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
    pub(super) fn pending_changed(&self, devices: &Devices) -> u64 {
        self.vgic_changed(u64::MAX);
        (0..self.mpidrs.len()).filter(|&v| devices.vgic.has_pending(v)).fold(0, |mask, v| mask | 1 << v)
    }
}

/// Puts a load's value into its register, sign-extended or truncated as
/// the instruction asks.
fn complete_load(regs: &mut VcpuRegs, access: DataAbort, read: Option<u64>) {
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
}

/// Performs the access on `device`; returns the value read, for loads.
pub(super) fn perform(
    device: &mut impl MmioDevice,
    offset: u64,
    access: DataAbort,
    value: u64,
) -> Result<Option<u64>, MmioError> {
    if access.write {
        let mask = if access.size == 8 { u64::MAX } else { (1u64 << (access.size * 8)) - 1 };
        device.write(offset, access.size, value & mask).map(|()| None)
    } else {
        device.read(offset, access.size).map(Some)
    }
}
