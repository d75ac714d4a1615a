//! Bring-up: from the entry at EL2 to a machine ready to run VMs. The boot
//! CPU parses the host device tree into a topology, builds the per-node
//! frame allocators, copies the monitor's code to every node (`mm::code`),
//! starts every other CPU through PSCI (each moves to its node's EL2 root
//! as soon as its MMU is on), and prints the
//! topology the way `numactl --hardware` does.

use crate::{
    arch::{
        self,
        gicv3::{intid, Gic},
        mem, mmu, psci,
    },
    io::{self, console},
    mm::{self, frames},
    println,
    sched::{dispatch, vms},
};
use alloc::{format, string::String};
use core::sync::atomic::Ordering;
use fdt::Fdt;
use numa::{MemRange, Topology};
use spin::Once;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    fn secondary_entry();
}

static GIC: Once<Gic> = Once::new();
/// PPIs every CPU takes at EL2.
const PPIS: &[u32] = &[intid::MAINTENANCE, intid::HYP_TIMER, intid::VIRT_TIMER];

#[no_mangle]
extern "C" fn primary_main(dtb_pa: u64) -> ! {
    let image = MemRange { start: &raw const __image_start as u64, end: &raw const __image_end as u64 };
    mmu::build_boot(&[image.start, dtb_pa]);
    mmu::enable();
    arch::cpu::init(0);
    arch::heap::init();
    // SAFETY: x0 at entry points at the host DTB (arm64 boot protocol); its
    // header's totalsize (big-endian u32 at offset 4) bounds it.
    let dtb = unsafe {
        let size = u32::from_be_bytes(mem::slice(dtb_pa + 4, 4).try_into().unwrap());
        mem::slice(dtb_pa, size as usize)
    };
    match bring_up(dtb, image) {
        Ok(never) => match never {},
        Err(message) => panic!("boot failed: {message}"),
    }
}

fn bring_up(dtb: &'static [u8], image: MemRange) -> Result<core::convert::Infallible, String> {
    let fdt = Fdt::new(dtb).map_err(|e| format!("host DTB: {e:?}"))?;
    let uart =
        fdt.chosen().stdout().or_else(|| fdt.find_compatible(&["arm,pl011"])).ok_or("host DTB: no console UART")?;
    let uart_base = first_reg(&uart).ok_or("host DTB: UART has no reg")?;
    console::init(uart_base);
    log::info!("monitor starting at EL{}, image {:#x}-{:#x}", current_el(), image.start, image.end);

    let topology = Topology::from_fdt(dtb).map_err(|e| format!("host DTB: {e}"))?;
    for node in topology.nodes() {
        for range in &node.memory {
            mmu::map_ram(range.start, range.end);
        }
    }
    let dtb_range = MemRange { start: dtb.as_ptr() as u64, end: dtb.as_ptr() as u64 + dtb.len() as u64 };
    let bundle = initrd(&fdt).ok_or("no boot bundle: pass one to QEMU with -initrd (cargo xtask run does)")?;
    let mut reserved = alloc::vec![image, dtb_range, bundle];
    reserved.extend(mm::counters::detect(&topology));
    frames::init(&topology, &reserved);
    mm::code::replicate(&topology);

    let gic = fdt.find_compatible(&["arm,gic-v3"]).ok_or("host DTB: no GICv3")?;
    let mut regs = gic.reg().ok_or("host DTB: GICv3 has no reg")?;
    let gicd = regs.next().ok_or("host DTB: no GICD")?.starting_address as u64;
    let gicr = regs.next().ok_or("host DTB: no GICR")?.starting_address as u64;
    // SAFETY: distributor and redistributors as the host DTB describes them,
    // in the device-mapped first GiB.
    let gic = GIC.call_once(|| unsafe { Gic::new(gicd, gicr) });
    gic.init_distributor();
    init_cpu_common(gic);
    let uart_intid = spi_of(&uart).ok_or("host DTB: UART has no interrupt")?;
    crate::CONSOLE_INTID.store(uart_intid, Ordering::Relaxed);
    gic.enable_spi(uart_intid, arch::cpu::mpidr());
    console::enable_input_interrupt();
    probe_disk(&fdt)?;

    start_secondaries(&topology);
    println!("{}", numa::Hardware { topo: &topology, free_bytes: &frames::free_bytes() });

    // SAFETY: the bundle range is reserved from the allocators and never written.
    let blob = unsafe { mem::slice(bundle.start, (bundle.end - bundle.start) as usize) };
    let (specs, settings) = crate::vm::manifest::parse(blob)?;
    vms::run(&topology, specs, settings)?;
    dispatch::cpu_loop(arch::cpu::index())
}

/// Finds the physical disk among the host's virtio-mmio frames (none is
/// fine: VMs then have no disks). A disk that is there but unusable (a bad
/// header) stops the boot, before any VM could write to it.
fn probe_disk(fdt: &Fdt) -> Result<(), String> {
    let frames = fdt
        .all_nodes()
        .filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| s == "virtio,mmio")))
        .filter_map(|n| {
            let reg = n.reg()?.next()?;
            let irq = spi_of(&n).map(|intid| io::disk::DiskIrq { intid, route: route_spi });
            Some(io::disk::Candidate { base: reg.starting_address as u64, size: reg.size.unwrap_or(0) as u64, irq })
        });
    match io::disk::probe(frames)? {
        Some(_) => {}
        None => log::info!("disk: no virtio block device: VMs get no disks"),
    }
    Ok(())
}

/// Routes SPI `intid` to the CPU with affinity `mpidr` and enables it
/// (the disk's interrupt follows the CPU waiting for it).
fn route_spi(intid: u32, mpidr: u64) {
    if let Some(gic) = GIC.get() {
        gic.enable_spi(intid, mpidr);
    }
}

/// Configuration every CPU does for itself.
fn init_cpu_common(gic: &Gic) {
    arch::stage2::init_cpu();
    gic.init_cpu(arch::cpu::mpidr(), PPIS);
}

fn start_secondaries(topology: &Topology) {
    let me = arch::cpu::mpidr();
    let mut expected = 1;
    for cpu in topology.cpus() {
        if cpu.mpidr == me {
            continue;
        }
        if cpu.index >= arch::MAX_CPUS {
            log::warn!("CPU {} (MPIDR {:#x}) beyond MAX_CPUS, left off", cpu.index, cpu.mpidr);
            continue;
        }
        match psci::cpu_on(cpu.mpidr, secondary_entry as *const () as u64, cpu.index as u64) {
            Ok(()) => expected += 1,
            Err(code) => log::error!("PSCI CPU_ON for CPU {} failed: {code}", cpu.index),
        }
    }
    let deadline = arch::timer::now() + arch::timer::frequency();
    let online = arch::cpu::online_count;
    while online() < expected && arch::timer::now() < deadline {}
    log::info!("{} of {} CPUs online", online(), topology.cpus().len());
}

#[no_mangle]
extern "C" fn secondary_main(index: usize) -> ! {
    mmu::enable();
    mm::code::enter_node_root(index);
    arch::cpu::init(index);
    init_cpu_common(GIC.get().expect("GIC set up before secondaries start"));
    arch::cpu::mark_online(index);
    vms::wait_ready();
    dispatch::cpu_loop(index)
}

fn first_reg(node: &fdt::node::FdtNode) -> Option<u64> {
    node.reg()?.next().map(|r| r.starting_address as u64)
}

/// The INTID of a node's first interrupt, if it is an SPI (<0 n flags>).
fn spi_of(node: &fdt::node::FdtNode) -> Option<u32> {
    let cells = node.property("interrupts")?.value;
    let word = |i: usize| cells.get(i * 4..i * 4 + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
    (word(0)? == 0).then(|| word(1).map(|spi| spi + 32))?
}

/// The initrd QEMU loaded (our boot bundle), from /chosen.
fn initrd(fdt: &Fdt) -> Option<MemRange> {
    let chosen = fdt.find_node("/chosen")?;
    let start = chosen.property("linux,initrd-start")?.as_usize()? as u64;
    let end = chosen.property("linux,initrd-end")?.as_usize()? as u64;
    (end > start).then_some(MemRange { start, end })
}

fn current_el() -> u64 {
    use aarch64_cpu::registers::{CurrentEL, Readable};
    CurrentEL.get() >> 2
}
