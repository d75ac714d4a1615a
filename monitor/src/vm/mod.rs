//! A virtual machine: its guest-physical memory (stage 2), its virtual
//! devices and its vCPUs, built from a bundle VmSpec.
//!
//! Guest-physical map (the QEMU `virt` layout, so the stock kernel needs
//! nothing special): GICD 0x0800_0000, GICR 0x080a_0000 (0x20000 per vCPU),
//! PL011 0x0900_0000 (SPI 1), virtio-blk disks from 0x0a00_0000 (SPI 16 +
//! n), virtio-net at 0x0a00_0800 (SPI 20), virtio-balloon at 0x0a00_0a00
//! (SPI 21), RAM from 0x4000_0000 (the table is `bus::REGIONS`).

pub mod balloon;
pub mod bus;
pub mod manifest;
pub mod net;
pub mod stats;

use crate::{
    arch::{context::El1Context, gicv3, mem, stage2::PAGE_SIZE, vcpu::VcpuRegs},
    io::{
        blk::{ImageDisk, Mode},
        console::GuestLines,
    },
    mm::{boot_image, VmSpace},
};
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use manifest::VmSpec;
use numa::{park::ParkSlot, NodeId};
use spin::Mutex;
use vdev::{
    fdt::GuestFdtConfig,
    pl011::Pl011,
    vgic::VGic,
    virtio::{
        blk::{BlkConfig, VirtioBlk},
        transport::VirtioMmio,
    },
};

use bus::GuestDisk;

pub use crate::mm::space::RAM_BASE;
/// SPIs the virtual distributor offers.
const SPIS: u32 = 32;
const MIB2: u64 = 2 << 20;

/// Why a VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    PoweredOff,
    Reset,
    Crashed(String),
}

/// A vCPU's PSCI power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Off,
    /// CPU_ON was called: start at `entry` with x0 = `context`.
    OnPending {
        entry: u64,
        context: u64,
    },
    On,
}

/// A guest disk for `spec`: the image it names, behind virtio-blk, for the
/// VM with memmap owner id `vm` homed on `home`.
fn guest_disk(spec: &manifest::DiskSpec, vm: u16, home: NodeId, group: Option<&'static str>) -> Result<Mutex<GuestDisk>, String> {
    let backend = ImageDisk::open(&spec.image, spec.mode, (vm, home), group)?;
    let read_only = spec.mode == (Mode::Direct { read_only: true });
    let config = BlkConfig::new(backend.sectors(), read_only, spec.image.as_bytes());
    Ok(Mutex::new(GuestDisk { mmio: VirtioMmio::new(VirtioBlk::new(config)), backend, line: false }))
}

/// The state of a vCPU that only the physical CPU running it touches; it
/// travels with the vCPU between CPUs (sched::Task).
pub struct Vcpu {
    pub index: usize,
    pub regs: VcpuRegs,
    /// Its EL1 system registers, timer and GIC interface, while off a CPU.
    pub el1: El1Context,
    /// The INTID each list register holds (in hardware while it runs, in
    /// `el1` while it does not).
    pub lr_intid: [Option<u32>; 16],
    /// The CPU it last ran on.
    pub last_cpu: Option<usize>,
    /// Its virtual timer fired (and was masked) since `virq::sync` last ran.
    pub vtimer_fired: bool,
    /// More interrupts were pending than list registers at the last sync.
    pub more_pending: bool,
    /// The VM's `home_epoch` this vCPU has followed.
    pub home_epoch: usize,
}

impl Vcpu {
    pub fn new(index: usize, entry: u64, x0: u64) -> Self {
        Self {
            index,
            regs: VcpuRegs::boot(entry, x0),
            el1: El1Context::reset(),
            lr_intid: [None; 16],
            last_cpu: None,
            vtimer_fired: false,
            more_pending: false,
            home_epoch: 0,
        }
    }
}

/// A vCPU and the VM it belongs to: the unit the scheduler moves.
pub struct Task {
    pub vm: Arc<Vm>,
    pub vcpu: Box<Vcpu>,
}

/// Where one vCPU is (active on a CPU, or parked with its task): one per
/// vCPU, in its VM. The protocol is `numa::park`, model-checked with loom.
pub type Slot = ParkSlot<Task>;

/// The virtual devices, behind one lock.
pub struct Devices {
    pub vgic: VGic,
    pub uart: Pl011,
    pub console: GuestLines,
}

pub struct Vm {
    pub id: usize,
    pub name: String,
    /// The node its vCPUs and memory prefer (Ctrl-] m changes it).
    home: AtomicUsize,
    /// Counts moves, so each vCPU follows a move once (`Vcpu::home_epoch`).
    home_epoch: AtomicUsize,
    pub ram_size: u64,
    /// VTTBR_EL2 per node with CPUs: its stage-2 root there and VMID.
    vttbrs: Vec<(NodeId, u64)>,
    pub mpidrs: Vec<u64>,
    /// Where each vCPU is (run queue, CPU, parked): the scheduler's.
    pub slots: Vec<Slot>,
    pub power: Vec<Mutex<Power>>,
    pub space: Mutex<VmSpace>,
    pub devices: Mutex<Devices>,
    /// Its virtio-blk disks (`bus::Device::Blk(n)`), each behind its own
    /// lock: a request holds it while the physical disk works.
    pub disks: Vec<Mutex<GuestDisk>>,
    /// Its virtio-net device (`bus::Device::Net`), if the manifest gives
    /// it one: a port of the switch between VMs (`io::net`).
    pub net: Option<net::GuestNet>,
    /// Its virtio-balloon device (`bus::Device::Balloon`), with `balloon =
    /// true`: free page reporting gives guest memory back.
    pub balloon: Option<Mutex<balloon::GuestBalloon>>,
    /// Per vCPU (bit = index; at most 64 vCPUs): its vGIC state may have
    /// changed since it last looked (`virq::sync`), which otherwise skips
    /// the devices lock that all of the VM's vCPUs share.
    pub vgic_dirty: AtomicU64,
    end: Mutex<Option<End>>,
    ending: AtomicBool,
    /// A vCPU exited from EL0: the guest kernel has booted and runs user
    /// space (its boot-time self-patching is over: `mm::merge` may start).
    user_ran: AtomicBool,
    /// Which CPUs run it, and which must flush its TLB entries first
    /// (shared with its space, which changes the descriptors).
    pub tlb: Arc<numa::tlb_sync::TlbSync>,
    /// Its vCPU tasks still alive; the last to retire tears the VM down.
    pub tasks: AtomicUsize,
    pub stats: stats::VmStats,
}

impl Vm {
    /// Builds VM number `id` from `spec`, homed on node `home`:
    /// kernel, initrd and device tree loaded, vCPU 0 ready to start at the
    /// kernel entry (returned with the DTB address).
    /// `boot` counts the VM's boots from 1; the guest finds it on its
    /// command line as `disco.boot=N`. `roots`: a stage-2 root per node
    /// with CPUs and its VMID; the VM's memmap owner id is `id + 1`.
    pub fn create(
        id: usize,
        spec: &VmSpec,
        (home, roots): (NodeId, &[(NodeId, u16)]),
        nodes: usize,
        boot: usize,
    ) -> Result<(Vm, (u64, u64)), String> {
        let space =
            VmSpace::new(id as u16 + 1, roots, spec.memory, nodes).ok_or("out of memory for the stage-2 roots")?;
        let mpidrs: Vec<u64> = (0..spec.vcpus as u64).map(|i| (i / 16) << 8 | (i % 16)).collect();
        let disks = match spec.disks.iter().map(|d| guest_disk(d, id as u16 + 1, home, spec.share_group)).collect::<Result<Vec<_>, _>>() {
            Ok(disks) => disks,
            Err(e) => {
                space.destroy(home);
                return Err(e);
            }
        };
        let tlb = space.tlb();
        let vm = Vm {
            id,
            name: spec.name.clone(),
            home: AtomicUsize::new(home),
            home_epoch: AtomicUsize::new(0),
            ram_size: spec.memory,
            vttbrs: space.vttbrs(),
            power: mpidrs
                .iter()
                .enumerate()
                .map(|(i, _)| Mutex::new(if i == 0 { Power::On } else { Power::Off }))
                .collect(),
            devices: Mutex::new(Devices {
                vgic: VGic::new(&mpidrs, SPIS),
                uart: Pl011::new(),
                console: GuestLines::default(),
            }),
            disks,
            net: spec.net.as_ref().map(|n| net::GuestNet::new(n.mac, bus::net_spi())),
            balloon: spec.balloon.then(balloon::GuestBalloon::new),
            vgic_dirty: AtomicU64::new(u64::MAX),
            slots: mpidrs.iter().map(|_| Slot::new()).collect(),
            mpidrs,
            space: Mutex::new(space),
            end: Mutex::new(None),
            ending: AtomicBool::new(false),
            user_ran: AtomicBool::new(false),
            tlb,
            tasks: AtomicUsize::new(0),
            stats: Default::default(),
        };
        match vm.load(spec, &format!("{} disco.boot={boot}", spec.bootargs)) {
            Ok(entry) => Ok((vm, entry)),
            Err(e) => {
                vm.destroy(home);
                Err(e)
            }
        }
    }

    /// Copies kernel, initrd and the guest DTB into guest memory; returns
    /// the kernel entry point and the DTB address.
    fn load(&self, spec: &VmSpec, bootargs: &str) -> Result<(u64, u64), String> {
        let kernel = spec.kernel;
        let header = |offset: usize| -> u64 {
            kernel.get(offset..offset + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        if kernel.len() < 64 || &kernel[56..60] != b"ARM\x64" {
            return Err("kernel is not an arm64 Image (no ARM\\x64 magic)".into());
        }
        let (text_offset, image_size) = match header(16) {
            0 => (0x80000, kernel.len() as u64),
            size => (header(8), size),
        };
        let entry = RAM_BASE + text_offset;
        let ram_end = RAM_BASE + self.ram_size;
        let dtb = (ram_end - MIB2) & !(MIB2 - 1);
        // The extra archive follows the base at a 4-byte boundary, as the
        // kernel expects of concatenated cpio archives (the gap is zero).
        let extra_at = spec.initrd.map_or(0, |base| base.len().next_multiple_of(4));
        let initrd_len = (extra_at + spec.initrd_extra.map_or(0, <[u8]>::len)) as u64;
        let initrd = spec.initrd.map(|data| ((dtb - initrd_len) & !(PAGE_SIZE - 1), data));
        let low = initrd.map_or(dtb, |(start, _)| start);
        if entry + image_size.max(kernel.len() as u64) > low {
            return Err(format!("{} MiB is too small for kernel and initrd", self.ram_size >> 20));
        }
        self.load_shared(entry, kernel, spec.share_group)?;
        self.space.lock().kernel_image = entry / PAGE_SIZE..(entry + kernel.len() as u64).div_ceil(PAGE_SIZE);
        if let Some((start, data)) = initrd {
            self.load_shared(start, data, spec.share_group)?;
            if let Some(extra) = spec.initrd_extra {
                self.write(start + extra_at as u64, extra)?;
            }
        }
        let fixed = Vm::fixed_devices();
        let blob = vdev::fdt::build_guest_fdt(&GuestFdtConfig {
            memory: &[(RAM_BASE, self.ram_size)],
            vcpu_mpidrs: &self.mpidrs,
            bootargs,
            initrd: initrd.map(|(start, _)| (start, start + initrd_len)),
            gicd_base: fixed.gicd,
            gicr_base: fixed.gicr,
            uart_base: fixed.uart,
            uart_spi: fixed.uart_spi,
            virtio: &self.virtio_nodes(),
        })
        .map_err(|e| format!("building the guest device tree: {e:?}"))?;
        if blob.len() as u64 > MIB2 {
            return Err("guest device tree larger than 2 MiB".into());
        }
        self.write(dtb, &blob)?;
        Ok((entry, dtb))
    }

    /// Loads a boot image (kernel or base initrd) at the page-aligned
    /// `ipa`: a private copy, whose whole pages the monitor later merges
    /// with the other VMs' of the same trust group (`mm::boot_image`); a
    /// VM that shares with nobody (`group` None) keeps its copy.
    fn load_shared(&self, ipa: u64, data: &'static [u8], group: Option<&'static str>) -> Result<(), String> {
        self.write(ipa, data)?;
        if let Some(group) = group {
            let pages = data.len() / PAGE_SIZE as usize;
            let index = boot_image::register(data, pages, group);
            self.space.lock().add_boot_image(ipa / PAGE_SIZE, pages, index);
        }
        Ok(())
    }

    /// Copies `data` into guest memory at `ipa`, page by page through stage 2.
    pub fn write(&self, ipa: u64, data: &[u8]) -> Result<(), String> {
        let mut done = 0usize;
        while done < data.len() {
            let at = ipa + done as u64;
            if !self.is_ram(at) {
                return Err(format!("guest address {at:#x} is not RAM"));
            }
            let pa = self.space.lock().touch_for_write(at, self.home()).ok_or("out of memory")? | (at % PAGE_SIZE);
            let chunk = ((PAGE_SIZE - (at % PAGE_SIZE)) as usize).min(data.len() - done);
            // SAFETY: `pa` is a frame of this VM's memory, which only it uses.
            unsafe { mem::slice_mut(pa, chunk) }.copy_from_slice(&data[done..done + chunk]);
            mem::clean_for_guest(pa, chunk as u64);
            done += chunk;
        }
        Ok(())
    }

    pub fn home(&self) -> NodeId {
        self.home.load(Ordering::Relaxed)
    }

    /// Re-homes the VM: its vCPUs go to `node` at their next exit, and the
    /// placement loop moves its memory after them.
    pub fn set_home(&self, node: NodeId) {
        self.home.store(node, Ordering::Relaxed);
        self.home_epoch.fetch_add(1, Ordering::Release);
    }

    pub fn home_epoch(&self) -> usize {
        self.home_epoch.load(Ordering::Acquire)
    }

    /// Is `ipa` guest RAM?
    pub fn is_ram(&self, ipa: u64) -> bool {
        (RAM_BASE..RAM_BASE + self.ram_size).contains(&ipa)
    }

    /// Records why the VM ends; the first reason wins. Its CPUs notice
    /// `ending()` at their next exit.
    pub fn end(&self, end: End) {
        let mut slot = self.end.lock();
        if slot.is_none() {
            *slot = Some(end);
            self.ending.store(true, Ordering::Release);
        }
    }

    /// Has the guest run user space yet?
    pub fn user_ran(&self) -> bool {
        self.user_ran.load(Ordering::Relaxed)
    }

    /// A vCPU exited from EL0 (once per VM matters).
    pub fn note_user(&self) {
        if !self.user_ran.swap(true, Ordering::Relaxed) {
            let ms = crate::arch::timer::ticks_to_ms(self.stats.run_ticks.load(Ordering::Relaxed));
            log::info!("vm {}: the guest runs user space ({ms} ms of vCPU time)", self.name);
        }
    }

    pub fn ending(&self) -> bool {
        self.ending.load(Ordering::Acquire)
    }

    pub fn end_reason(&self) -> Option<End> {
        self.end.lock().clone()
    }

    /// Returns every frame to its node. Only once no CPU runs the VM.
    /// VTTBR_EL2 for running a vCPU on a CPU of `node` (the primary
    /// root's on a node without one of its own).
    pub fn vttbr_on(&self, node: NodeId) -> u64 {
        self.vttbrs.iter().find(|(n, _)| *n == node).unwrap_or(&self.vttbrs[0]).1
    }

    pub fn destroy(self, here: NodeId) {
        for disk in self.disks {
            disk.into_inner().backend.discard();
        }
        self.space.into_inner().destroy(here);
    }

    /// Prints the VM's statistics: exits and time, frames per node, and
    /// what placement did (pages migrated and frozen, sampling faults, and
    /// per node the share of accesses that were local, like `numastat`).
    pub fn print_stats(&self) {
        let (frames, placement, replicas, kernel, shared) = {
            let space = self.space.lock();
            let shared = space.cow_shared_pages();
            let image = space.kernel_image.clone();
            let kernel = (space.replicated_in(image.clone()), image.end - image.start);
            (space.frames_per_node(), space.stats.clone(), space.replicas_per_node(), kernel, shared)
        };
        self.stats.print(&self.name, &frames);
        if let Some(line) = self.net_stats_line() {
            crate::println!("{line}");
        }
        if let Some(line) = self.balloon_stats_line() {
            crate::println!("{line}");
        }
        for (n, disk) in self.disks.iter().enumerate() {
            let blocks = disk.lock().backend.overlay_blocks();
            if blocks > 0 {
                let dev = (b'a' + n as u8) as char;
                crate::println!("stats: vm {}: disk vd{dev}: copy-on-write blocks {blocks} ({} KiB)", self.name, blocks * 4);
            }
        }
        let mut shares = String::new();
        for (node, (local, remote)) in placement.local.iter().zip(&placement.remote).enumerate() {
            let total = local + remote;
            if total > 0 {
                shares.push_str(&format!("; node {node}: {}% local of {total}", local * 100 / total));
            }
        }
        crate::println!(
            "stats: vm {}: placement: migrated {}, frozen {}, sampling faults {}{shares}",
            self.name,
            placement.migrated,
            placement.frozen,
            placement.sampling_faults
        );
        crate::println!(
            "stats: vm {}: replication: replicated {}, replicas alive {} per node {replicas:?}, collapses {}, \
             watched {}, write faults {}; kernel image {} of {} pages replicated; boot image pages shared {}, \
             copied on write {}, merged back {}; disk blocks from the block cache mapped {}, now {}",
            self.name,
            placement.replicated,
            replicas.iter().sum::<usize>(),
            placement.collapses,
            placement.watched,
            placement.write_faults,
            kernel.0,
            kernel.1,
            shared.0,
            placement.cow_breaks,
            placement.merged,
            placement.disk_shared,
            shared.1
        );
    }

    /// Frames per node the VM holds.
    pub fn frames(&self) -> Vec<usize> {
        self.space.lock().frames_per_node()
    }

    /// The vGIC state of the vCPUs in `mask` (bit = vCPU index) changed:
    /// their next `virq::sync` must look. Callers change the model first.
    pub fn vgic_changed(&self, mask: u64) {
        if mask != 0 {
            self.vgic_dirty.fetch_or(mask, Ordering::Release);
        }
    }

    /// The redistributor region size for this VM's vCPUs.
    pub fn gicr_size(&self) -> u64 {
        self.mpidrs.len() as u64 * vdev::vgic::GICR_FRAME_SIZE
    }

    /// The vCPU with affinity `mpidr`.
    pub fn vcpu_of_mpidr(&self, mpidr: u64) -> Option<usize> {
        self.mpidrs.iter().position(|&m| m == mpidr & 0xff_00ff_ffff)
    }

    /// How many list registers the vGIC may use on this CPU.
    pub fn list_registers() -> usize {
        gicv3::lr::count().min(16)
    }
}
