//! A virtual machine: its guest-physical memory (stage 2), its virtual
//! devices and its vCPUs, built from a bundle VmSpec.
//!
//! Guest-physical map (the QEMU `virt` layout, so the stock kernel needs
//! nothing special): GICD 0x0800_0000, GICR 0x080a_0000 (0x20000 per vCPU),
//! PL011 0x0900_0000 (SPI 1), RAM from 0x4000_0000.

use crate::{
    arch::{
        context::El1Context,
        gicv3, mem,
        stage2::{Stage2, PAGE_SIZE},
        vcpu::VcpuRegs,
    },
    console::GuestLines,
    manifest::VmSpec,
    memory,
    sched::Slot,
};
use alloc::{format, string::String, vec, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use numa::NodeId;
use spin::Mutex;
use vdev::{fdt::GuestFdtConfig, pl011::Pl011, vgic::VGic};

pub const GICD_BASE: u64 = 0x0800_0000;
pub const GICD_SIZE: u64 = 0x1_0000;
pub const GICR_BASE: u64 = 0x080a_0000;
pub const UART_BASE: u64 = 0x0900_0000;
pub const UART_SIZE: u64 = 0x1000;
pub const UART_SPI: u32 = 1;
pub const UART_INTID: u32 = 32 + UART_SPI;
pub const RAM_BASE: u64 = 0x4000_0000;
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
        }
    }
}

/// Guest memory: the stage-2 tables and what they hold.
pub struct Memory {
    pub stage2: Stage2,
    /// Frames this VM holds, per node (guest memory and page tables).
    pub frames: Vec<usize>,
}

/// The virtual devices, behind one lock.
pub struct Devices {
    pub vgic: VGic,
    pub uart: Pl011,
    pub console: GuestLines,
}

pub struct Vm {
    pub id: usize,
    pub name: String,
    pub home: NodeId,
    pub ram_size: u64,
    pub vttbr: u64,
    pub mpidrs: Vec<u64>,
    /// Where each vCPU is (run queue, CPU, parked): the scheduler's.
    pub slots: Vec<Slot>,
    pub power: Vec<Mutex<Power>>,
    pub memory: Mutex<Memory>,
    pub devices: Mutex<Devices>,
    /// Per vCPU (bit = index; at most 64 vCPUs): its vGIC state may have
    /// changed since it last looked (`virq::sync`), which otherwise skips
    /// the devices lock that all of the VM's vCPUs share.
    pub vgic_changed: AtomicU64,
    end: Mutex<Option<End>>,
    ending: AtomicBool,
    /// Its vCPU tasks still alive; the last to retire tears the VM down.
    pub tasks: AtomicUsize,
    pub stats: crate::stats::VmStats,
}

impl Vm {
    /// Builds VM number `id` from `spec`, homed on node `home`:
    /// kernel, initrd and device tree loaded, vCPU 0 ready to start at the
    /// kernel entry (returned with the DTB address).
    /// `boot` counts the VM's boots from 1; the guest finds it on its
    /// command line as `disco.boot=N`.
    pub fn create(
        id: usize,
        spec: &VmSpec,
        home: NodeId,
        nodes: usize,
        boot: usize,
    ) -> Result<(Vm, (u64, u64)), String> {
        let (root, node) = memory::alloc_frame(home).ok_or("out of memory for the stage-2 root")?;
        let mut frames = vec![0usize; nodes];
        frames[node] += 1;
        let stage2 = Stage2::new(root, id as u16 + 1);
        let mpidrs: Vec<u64> = (0..spec.vcpus as u64).map(|i| (i / 16) << 8 | (i % 16)).collect();
        let vm = Vm {
            id,
            name: spec.name.clone(),
            home,
            ram_size: spec.memory,
            vttbr: stage2.vttbr(),
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
            vgic_changed: AtomicU64::new(u64::MAX),
            slots: mpidrs.iter().map(|_| Slot::new()).collect(),
            mpidrs,
            memory: Mutex::new(Memory { stage2, frames }),
            end: Mutex::new(None),
            ending: AtomicBool::new(false),
            tasks: AtomicUsize::new(0),
            stats: Default::default(),
        };
        match vm.load(spec, &format!("{} disco.boot={boot}", spec.bootargs)) {
            Ok(entry) => Ok((vm, entry)),
            Err(e) => {
                vm.destroy();
                Err(e)
            }
        }
    }

    /// Backs the guest page at `ipa` with a zeroed frame from `node` (or the
    /// nearest node with one): Disco's first-touch placement. Returns the
    /// frame, or None when the machine is out of memory.
    pub fn touch(&self, ipa: u64, node: NodeId) -> Option<u64> {
        let page = ipa & !(PAGE_SIZE - 1);
        let mut memory = self.memory.lock();
        if let Some(pa) = memory.stage2.translate(page) {
            return Some(pa);
        }
        let (data, data_node) = memory::alloc_frame(node)?;
        let Memory { stage2, frames } = &mut *memory;
        let mut mapped = false;
        let mut new_table = || {
            let (pa, from) = memory::alloc_frame(node)?;
            frames[from] += 1;
            Some(pa)
        };
        let _ = stage2.walk(page, page + 1, Some(&mut new_table), &mut |_, mut pte| {
            pte.set_ram(data);
            mapped = true;
        });
        if !mapped {
            memory::free_frame(data);
            return None;
        }
        frames[data_node] += 1;
        Some(data)
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
        let initrd = spec.initrd.map(|data| ((dtb - data.len() as u64) & !(PAGE_SIZE - 1), data));
        let low = initrd.map_or(dtb, |(start, _)| start);
        if entry + image_size.max(kernel.len() as u64) > low {
            return Err(format!("{} MiB is too small for kernel and initrd", self.ram_size >> 20));
        }
        self.write(entry, kernel)?;
        if let Some((start, data)) = initrd {
            self.write(start, data)?;
        }
        let blob = vdev::fdt::build_guest_fdt(&GuestFdtConfig {
            memory: &[(RAM_BASE, self.ram_size)],
            vcpu_mpidrs: &self.mpidrs,
            bootargs,
            initrd: initrd.map(|(start, data)| (start, start + data.len() as u64)),
            gicd_base: GICD_BASE,
            gicr_base: GICR_BASE,
            uart_base: UART_BASE,
            uart_spi: UART_SPI,
        })
        .map_err(|e| format!("building the guest device tree: {e:?}"))?;
        if blob.len() as u64 > MIB2 {
            return Err("guest device tree larger than 2 MiB".into());
        }
        self.write(dtb, &blob)?;
        Ok((entry, dtb))
    }

    /// Copies `data` into guest memory at `ipa`, page by page through stage 2.
    pub fn write(&self, ipa: u64, data: &[u8]) -> Result<(), String> {
        let mut done = 0usize;
        while done < data.len() {
            let at = ipa + done as u64;
            if !self.is_ram(at) {
                return Err(format!("guest address {at:#x} is not RAM"));
            }
            let pa = self.touch(at, self.home).ok_or("out of memory")? | (at % PAGE_SIZE);
            let chunk = ((PAGE_SIZE - (at % PAGE_SIZE)) as usize).min(data.len() - done);
            // SAFETY: `pa` is a frame of this VM's memory, which only it uses.
            unsafe { mem::slice_mut(pa, chunk) }.copy_from_slice(&data[done..done + chunk]);
            mem::clean_for_guest(pa, chunk as u64);
            done += chunk;
        }
        Ok(())
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

    pub fn ending(&self) -> bool {
        self.ending.load(Ordering::Acquire)
    }

    pub fn end_reason(&self) -> Option<End> {
        self.end.lock().clone()
    }

    /// Returns every frame to its node. Only once no CPU runs the VM.
    pub fn destroy(self) {
        let memory = self.memory.into_inner();
        memory.stage2.destroy(&mut |pa| memory::free_frame(pa));
    }

    /// Frames per node the VM holds.
    pub fn frames(&self) -> Vec<usize> {
        self.memory.lock().frames.clone()
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
