//! The guest's device tree, shaped like QEMU's `virt` DTB for the devices
//! the monitor emulates: memory, CPUs (PSCI over HVC), GICv3, the generic
//! timer, a PL011 with its APB clock, and virtio-mmio devices. No NUMA
//! information: the monitor hides the machine's topology from guests.

use crate::vgic::{affinity, GICD_FRAME_SIZE, GICR_FRAME_SIZE};
use crate::virtio::transport::VIRTIO_MMIO_FRAME_SIZE;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vm_fdt::{Error, FdtWriter};

/// What the guest's device tree describes.
#[derive(Debug, Clone, Copy)]
pub struct GuestFdtConfig<'a> {
    /// Guest RAM regions: (base, size).
    pub memory: &'a [(u64, u64)],
    /// Each vCPU's virtual MPIDR; vCPU 0 boots.
    pub vcpu_mpidrs: &'a [u64],
    pub bootargs: &'a str,
    /// The initrd's guest-physical (start, end).
    pub initrd: Option<(u64, u64)>,
    pub gicd_base: u64,
    /// Base of the redistributors, one [`GICR_FRAME_SIZE`] frame per vCPU.
    pub gicr_base: u64,
    pub uart_base: u64,
    /// SPI number of the UART (1 => INTID 33).
    pub uart_spi: u32,
    /// virtio-mmio devices, in this order in the tree (Linux probes them,
    /// and so names its disks `vda`, `vdb`, ..., in this order).
    pub virtio: &'a [VirtioMmioNode],
}

/// A virtio-mmio device in the guest's device tree: a
/// [`VIRTIO_MMIO_FRAME_SIZE`] register frame at `base`, an edge-triggered
/// SPI (Linux's `virtio,mmio` binding, as QEMU's `virt` has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioNode {
    pub base: u64,
    /// SPI number (16 => INTID 48).
    pub spi: u32,
}

/// Phandle of the interrupt controller.
pub const GIC_PHANDLE: u32 = 1;
/// Phandle of the 24 MHz APB clock.
pub const APB_PCLK_PHANDLE: u32 = 2;

/// `interrupts` cell 0: SPI or PPI.
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
/// `interrupts` cell 2 (GICv3 binding: only the trigger type).
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
const IRQ_TYPE_EDGE_RISING: u32 = 1;

/// The GIC maintenance interrupt (PPI 9, INTID 25).
const GIC_MAINTENANCE_PPI: u32 = 9;
/// Generic timer PPIs: secure physical, non-secure physical, virtual,
/// hypervisor physical (INTIDs 29, 30, 27, 26).
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

const APB_PCLK_HZ: u32 = 24_000_000;
const PL011_SIZE: u64 = 0x1000;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| String::from(*s)).collect()
}

/// Builds the guest's flattened device tree blob.
pub fn build_guest_fdt(cfg: &GuestFdtConfig) -> Result<Vec<u8>, Error> {
    let mut fdt = FdtWriter::new()?;
    if let Some(&boot) = cfg.vcpu_mpidrs.first() {
        fdt.set_boot_cpuid_phys(affinity(boot) as u32);
    }
    let uart_path = format!("/pl011@{:x}", cfg.uart_base);

    let root = fdt.begin_node("")?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;

    chosen(&mut fdt, cfg, &uart_path)?;
    let aliases = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", &uart_path)?;
    fdt.end_node(aliases)?;
    memory(&mut fdt, cfg.memory)?;
    cpus(&mut fdt, cfg.vcpu_mpidrs)?;
    psci(&mut fdt)?;
    gic(&mut fdt, cfg)?;
    timer(&mut fdt)?;
    apb_pclk(&mut fdt)?;
    pl011(&mut fdt, cfg)?;
    for dev in cfg.virtio {
        virtio_mmio(&mut fdt, dev)?;
    }

    fdt.end_node(root)?;
    fdt.finish()
}

fn chosen(fdt: &mut FdtWriter, cfg: &GuestFdtConfig, uart_path: &str) -> Result<(), Error> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.bootargs)?;
    fdt.property_string("stdout-path", uart_path)?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(node)
}

fn memory(fdt: &mut FdtWriter, regions: &[(u64, u64)]) -> Result<(), Error> {
    for &(base, size) in regions {
        let node = fdt.begin_node(&format!("memory@{base:x}"))?;
        fdt.property_string("device_type", "memory")?;
        fdt.property_array_u64("reg", &[base, size])?;
        fdt.end_node(node)?;
    }
    Ok(())
}

/// `/cpus` with one `cpu@N` per vCPU, `reg` = MPIDR affinity. Uses one
/// address cell, or two if some MPIDR has a non-zero Aff3.
fn cpus(fdt: &mut FdtWriter, mpidrs: &[u64]) -> Result<(), Error> {
    let wide = mpidrs.iter().any(|&m| affinity(m) > u64::from(u32::MAX));
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", if wide { 2 } else { 1 })?;
    fdt.property_u32("#size-cells", 0)?;
    for &mpidr in mpidrs {
        let reg = affinity(mpidr);
        let cpu = fdt.begin_node(&format!("cpu@{reg:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        if wide {
            fdt.property_u64("reg", reg)?;
        } else {
            fdt.property_u32("reg", reg as u32)?;
        }
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(node)
}

fn psci(fdt: &mut FdtWriter) -> Result<(), Error> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]))?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(node)
}

fn gic(fdt: &mut FdtWriter, cfg: &GuestFdtConfig) -> Result<(), Error> {
    let gicr_size = cfg.vcpu_mpidrs.len() as u64 * GICR_FRAME_SIZE;
    let node = fdt.begin_node(&format!("intc@{:x}", cfg.gicd_base))?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_array_u64("reg", &[cfg.gicd_base, GICD_FRAME_SIZE, cfg.gicr_base, gicr_size])?;
    fdt.property_array_u32("interrupts", &[GIC_FDT_IRQ_TYPE_PPI, GIC_MAINTENANCE_PPI, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.end_node(node)
}

fn timer(fdt: &mut FdtWriter) -> Result<(), Error> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let mut cells = vec![];
    for ppi in TIMER_PPIS {
        cells.extend_from_slice(&[GIC_FDT_IRQ_TYPE_PPI, ppi, IRQ_TYPE_LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.property_null("always-on")?;
    fdt.end_node(node)
}

fn apb_pclk(fdt: &mut FdtWriter) -> Result<(), Error> {
    let node = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", APB_PCLK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(APB_PCLK_PHANDLE)?;
    fdt.end_node(node)
}

fn pl011(fdt: &mut FdtWriter, cfg: &GuestFdtConfig) -> Result<(), Error> {
    let node = fdt.begin_node(&format!("pl011@{:x}", cfg.uart_base))?;
    fdt.property_string_list("compatible", strings(&["arm,pl011", "arm,primecell"]))?;
    fdt.property_array_u64("reg", &[cfg.uart_base, PL011_SIZE])?;
    fdt.property_array_u32("interrupts", &[GIC_FDT_IRQ_TYPE_SPI, cfg.uart_spi, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[APB_PCLK_PHANDLE, APB_PCLK_PHANDLE])?;
    fdt.property_string_list("clock-names", strings(&["uartclk", "apb_pclk"]))?;
    fdt.end_node(node)
}

fn virtio_mmio(fdt: &mut FdtWriter, dev: &VirtioMmioNode) -> Result<(), Error> {
    let node = fdt.begin_node(&format!("virtio_mmio@{:x}", dev.base))?;
    fdt.property_string("compatible", "virtio,mmio")?;
    fdt.property_array_u64("reg", &[dev.base, VIRTIO_MMIO_FRAME_SIZE])?;
    fdt.property_array_u32("interrupts", &[GIC_FDT_IRQ_TYPE_SPI, dev.spi, IRQ_TYPE_EDGE_RISING])?;
    fdt.property_null("dma-coherent")?;
    fdt.end_node(node)
}

#[cfg(test)]
mod tests;
