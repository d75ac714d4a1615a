//! Running VMs. Until the vCPU scheduler lands, each VM has one vCPU and a
//! physical CPU of its own: VM i runs on logical CPU i, its memory on that
//! CPU's node. When the last VM ends the monitor checks that every frame
//! came back and powers the machine off.

use crate::{
    arch::{self, psci, vcpu, MAX_CPUS},
    manifest::VmSpec,
    memory, trap, virq,
    vm::{End, Vm},
};
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use numa::{NodeId, Topology};
use spin::{Mutex, Once};

struct Job {
    id: usize,
    spec: &'static VmSpec,
    home: NodeId,
}

static JOBS: [Mutex<Option<Job>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Set once every VM has its CPU: a CPU without one then sleeps for good.
static ASSIGNED: AtomicBool = AtomicBool::new(false);
static BASELINE: Once<Vec<u64>> = Once::new();
static NODES: AtomicUsize = AtomicUsize::new(1);
/// The NUMA node of each logical CPU.
static CPU_NODE: Once<Vec<NodeId>> = Once::new();

/// The node of the calling CPU: where first-touch allocations go.
pub fn current_node() -> NodeId {
    CPU_NODE.get().and_then(|nodes| nodes.get(arch::cpu::index()).copied()).unwrap_or(0)
}

/// Starts every VM of the bundle; the boot CPU runs VM 0 itself.
pub fn run(topology: &Topology, specs: Vec<VmSpec>) -> Result<(), String> {
    let specs: &'static [VmSpec] = specs.leak();
    let cpus = topology.cpus();
    if specs.len() > cpus.len().min(MAX_CPUS) {
        return Err(format!("{} VMs but only {} CPUs: each VM needs a CPU of its own", specs.len(), cpus.len()));
    }
    if let Some(spec) = specs.iter().find(|s| s.vcpus != 1) {
        return Err(format!("VM {}: {} vCPUs requested; this monitor runs 1 vCPU per VM", spec.name, spec.vcpus));
    }
    NODES.store(topology.node_count(), Ordering::Relaxed);
    CPU_NODE.call_once(|| {
        let mut nodes = alloc::vec![0; cpus.iter().map(|c| c.index + 1).max().unwrap_or(1)];
        cpus.iter().for_each(|c| nodes[c.index] = c.node);
        nodes
    });
    BASELINE.call_once(memory::free_bytes);
    LIVE.store(specs.len(), Ordering::Release);
    for (id, spec) in specs.iter().enumerate() {
        let cpu = &cpus[id];
        *JOBS[cpu.index].lock() = Some(Job { id, spec, home: cpu.node });
    }
    ASSIGNED.store(true, Ordering::Release);
    aarch64_cpu::asm::sev();
    secondary(arch::cpu::index())
}

/// A CPU's life after bring-up: run the VM it is given, if any, then sleep
/// in WFI (under QEMU a WFE loop would keep a host thread busy).
pub fn secondary(index: usize) -> ! {
    while !ASSIGNED.load(Ordering::Acquire) {
        aarch64_cpu::asm::wfe();
    }
    let job = JOBS[index].lock().take();
    if let Some(job) = job {
        run_vm(job);
    }
    arch::cpu::halt()
}

fn run_vm(job: Job) {
    loop {
        let mut vm = match Vm::create(job.id, job.spec, job.home, NODES.load(Ordering::Relaxed)) {
            Ok(vm) => vm,
            Err(e) => {
                log::error!("vm {} ended: crashed: cannot build it: {e}", job.spec.name);
                break;
            }
        };
        log::info!(
            "vm {} started: {} vCPU, {} MiB, home node {}, frames per node {:?}",
            vm.name,
            vm.vcpus.len(),
            vm.ram_size >> 20,
            vm.home,
            vm.frames
        );
        let end = run_vcpu(&mut vm);
        let name = vm.name.clone();
        vm.destroy();
        match end {
            End::Reset => log::info!("vm {name} reset: booting it again"),
            End::PoweredOff => {
                log::info!("vm {name} ended: powered off");
                break;
            }
            End::Crashed(reason) => {
                log::error!("vm {name} ended: crashed: {reason}");
                break;
            }
        }
    }
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish();
    }
}

fn run_vcpu(vm: &mut Vm) -> End {
    vcpu::reset_el1(vm.vcpus[0].mpidr, Vm::list_registers());
    loop {
        virq::sync(vm, 0);
        let exit = vcpu::run(&mut vm.vcpus[0].regs, vm.stage2.vttbr());
        if let Some(end) = trap::handle(vm, 0, exit) {
            return end;
        }
    }
}

/// The last VM ended: check that all memory came back, then power off.
fn finish() -> ! {
    let now = memory::free_bytes();
    let baseline = BASELINE.get().cloned().unwrap_or_default();
    for (node, (&free, &base)) in now.iter().zip(&baseline).enumerate() {
        if free == base {
            log::info!("node {node}: all frames returned ({} KiB free)", free >> 10);
        } else {
            log::error!("node {node}: {} KiB free after all VMs ended, {} KiB before", free >> 10, base >> 10);
        }
    }
    if crate::flash::present() {
        crate::flash::report(10);
    }
    log::info!("all VMs ended; powering off");
    psci::system_off()
}
