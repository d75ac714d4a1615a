//! Running VMs. Until the vCPU scheduler lands, every vCPU has a physical
//! CPU of its own: a VM's vCPUs are pinned to consecutive CPUs (so to one
//! node when they fit), its memory comes first from that node. A VM that
//! resets boots again on the same CPUs; when the last VM ends the monitor
//! checks that every frame came back and powers the machine off.

use crate::{
    arch::{cpu, gicv3::{self, intid}, psci, timer, vcpu, MAX_CPUS},
    console,
    manifest::{Restart, VmSpec},
    memory, stats,
    trap::{self, Next},
    virq,
    vm::{End, Power, Vcpu, Vm},
};
use alloc::{format, string::String, sync::Arc, vec, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use numa::{NodeId, Topology};
use spin::{Mutex, Once};

/// A vCPU for a CPU to run; vCPU 0 carries its boot registers.
struct Job {
    vm: Arc<Vm>,
    vcpu: usize,
    boot: Option<(u64, u64)>,
}

/// Where a VM runs: its home node and the CPUs of its vCPUs; and how
/// often it booted.
struct Placement {
    home: NodeId,
    cpus: Vec<usize>,
    boots: AtomicUsize,
}

/// A guest that keeps crashing is not restarted more often than this.
const MAX_RESTARTS: usize = 5;

static JOBS: [Mutex<Option<Job>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];
static VMS: Mutex<Vec<Option<Arc<Vm>>>> = Mutex::new(Vec::new());
static SPECS: Once<&'static [VmSpec]> = Once::new();
static PLACEMENTS: Once<Vec<Placement>> = Once::new();
/// Per logical CPU: its node and MPIDR.
static CPUS: Once<Vec<(NodeId, u64)>> = Once::new();
static NODES: AtomicUsize = AtomicUsize::new(1);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static FOCUS: AtomicUsize = AtomicUsize::new(0);
static BASELINE: Once<Vec<u64>> = Once::new();
/// Set once every VM has its CPUs: until then CPUs wait with WFE.
static ASSIGNED: AtomicBool = AtomicBool::new(false);

/// Places and starts every VM of the bundle; the boot CPU then runs its
/// own share like every other CPU.
pub fn run(topology: &Topology, specs: Vec<VmSpec>) -> Result<(), String> {
    let specs: &'static [VmSpec] = specs.leak();
    let cpus: Vec<_> = topology.cpus().iter().filter(|c| c.index < MAX_CPUS).collect();
    let wanted: usize = specs.iter().map(|s| s.vcpus).sum();
    if wanted > cpus.len() {
        return Err(format!(
            "the VMs have {wanted} vCPUs but the machine has {} CPUs; this monitor gives every vCPU a CPU of its own",
            cpus.len()
        ));
    }
    if let Some(spec) = specs.iter().find(|s| s.home_node.is_some_and(|n| n >= topology.node_count())) {
        return Err(format!("VM {}: home node {:?} does not exist", spec.name, spec.home_node));
    }
    // Each VM takes free CPUs nearest its home node (by default the node of
    // the first free CPU), so its vCPUs share a node when they fit.
    let mut free: Vec<_> = cpus.clone();
    let placements = specs
        .iter()
        .map(|spec| {
            let home = spec.home_node.unwrap_or(free[0].node);
            free.sort_by_key(|c| (topology.distance(home, c.node), c.index));
            let mine: Vec<usize> = free.drain(..spec.vcpus).map(|c| c.index).collect();
            free.sort_by_key(|c| c.index);
            Placement { home, cpus: mine, boots: AtomicUsize::new(0) }
        })
        .collect();
    let mut table = vec![(0, 0); cpus.iter().map(|c| c.index + 1).max().unwrap_or(1)];
    cpus.iter().for_each(|c| table[c.index] = (c.node, c.mpidr));
    CPUS.call_once(|| table);
    PLACEMENTS.call_once(|| placements);
    SPECS.call_once(|| specs);
    NODES.store(topology.node_count(), Ordering::Relaxed);
    BASELINE.call_once(memory::free_bytes);
    *VMS.lock() = specs.iter().map(|_| None).collect();
    LIVE.store(specs.len(), Ordering::Release);
    (0..specs.len()).for_each(start_vm);
    ASSIGNED.store(true, Ordering::Release);
    aarch64_cpu::asm::sev();
    secondary(cpu::index())
}

/// The node of the calling CPU: where first-touch allocations go.
pub fn current_node() -> NodeId {
    CPUS.get().and_then(|cpus| cpus.get(cpu::index())).map_or(0, |c| c.0)
}

/// Builds VM `id` and hands its vCPUs to their CPUs.
fn start_vm(id: usize) {
    let spec = &SPECS.get().unwrap()[id];
    let place = &PLACEMENTS.get().unwrap()[id];
    let boot = place.boots.fetch_add(1, Ordering::Relaxed) + 1;
    match Vm::create(id, spec, place.home, NODES.load(Ordering::Relaxed), place.cpus.clone(), boot) {
        Ok((vm, boot)) => {
            log::info!(
                "vm {} started: {} vCPUs on CPUs {:?}, {} MiB, home node {}, frames per node {:?}",
                vm.name,
                vm.mpidrs.len(),
                vm.cpus,
                vm.ram_size >> 20,
                vm.home,
                vm.frames()
            );
            let vm = Arc::new(vm);
            vm.cpus_in.store(vm.cpus.len(), Ordering::Release);
            VMS.lock()[id] = Some(vm.clone());
            for (index, &cpu) in vm.cpus.iter().enumerate() {
                let boot = (index == 0).then_some(boot);
                *JOBS[cpu].lock() = Some(Job { vm: vm.clone(), vcpu: index, boot });
                kick_cpu(cpu);
            }
        }
        Err(e) => {
            log::error!("vm {} ended: crashed: cannot build it: {e}", spec.name);
            vm_gone();
        }
    }
}

/// A CPU's life after bring-up: run the vCPU it is given, sleep otherwise.
pub fn secondary(index: usize) -> ! {
    while !ASSIGNED.load(Ordering::Acquire) {
        aarch64_cpu::asm::wfe();
    }
    loop {
        let job = JOBS[index].lock().take();
        match job {
            Some(job) => run_job(job),
            None => {
                stats::idle_wait();
                physical_irqs(None);
            }
        }
    }
}

fn run_job(job: Job) {
    let vm = job.vm;
    let lrs = Vm::list_registers();
    let mut vcpu = Vcpu::new(job.vcpu, 0, 0);
    if let Some((entry, dtb)) = job.boot {
        vcpu = Vcpu::new(job.vcpu, entry, dtb);
    }
    vcpu::reset_el1(vm.mpidrs[vcpu.index], lrs);
    while !vm.ending() {
        let power = *vm.power[vcpu.index].lock();
        match power {
            Power::On => {}
            Power::OnPending { entry, context } => {
                *vm.power[vcpu.index].lock() = Power::On;
                vcpu = Vcpu::new(vcpu.index, entry, context);
                vcpu::reset_el1(vm.mpidrs[vcpu.index], lrs);
            }
            Power::Off => {
                stats::idle_wait();
                physical_irqs(None);
                continue;
            }
        }
        virq::sync(&vm, &mut vcpu);
        let entered = timer::now();
        let exit = vcpu::run(&mut vcpu.regs, vm.vttbr);
        vm.stats.run_ticks.fetch_add(timer::now() - entered, Ordering::Relaxed);
        if trap::handle(&vm, &mut vcpu, exit) == Next::Off {
            vcpu::reset_el1(vm.mpidrs[vcpu.index], lrs);
        }
    }
    // Stop this vCPU's timer and tell the VM's other CPUs.
    vcpu::reset_el1(vm.mpidrs[vcpu.index], lrs);
    vm.cpus.iter().for_each(|&cpu| kick_cpu(cpu));
    if vm.cpus_in.fetch_sub(1, Ordering::AcqRel) == 1 {
        teardown(vm);
    }
}

/// The last CPU has left the VM: free it, then restart or retire it.
fn teardown(vm: Arc<Vm>) {
    let id = vm.id;
    VMS.lock()[id] = None;
    let end = vm.end_reason().unwrap_or(End::PoweredOff);
    let name = vm.name.clone();
    let mut vm = vm;
    let vm = loop {
        match Arc::try_unwrap(vm) {
            Ok(vm) => break vm,
            Err(shared) => {
                vm = shared;
                core::hint::spin_loop();
            }
        }
    };
    vm.stats.print(&name, &vm.frames());
    vm.destroy();
    match end {
        End::Reset => {
            log::info!("vm {name} reset: booting it again");
            start_vm(id);
        }
        End::PoweredOff => {
            log::info!("vm {name} ended: powered off");
            vm_gone();
        }
        End::Crashed(reason) => {
            log::error!("vm {name} ended: crashed: {reason}");
            let spec = &SPECS.get().unwrap()[id];
            let boots = PLACEMENTS.get().unwrap()[id].boots.load(Ordering::Relaxed);
            if spec.restart == Restart::OnCrash && boots <= MAX_RESTARTS {
                log::info!("vm {name} restarting (restart = on-crash, boot {})", boots + 1);
                start_vm(id);
            } else {
                vm_gone();
            }
        }
    }
}

fn vm_gone() {
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish();
    }
}

/// Makes the CPU running `vcpu` of `vm` look at it again (new virtual
/// interrupt, power change, VM ending).
pub fn kick(vm: &Vm, vcpu: usize) {
    if let Some(&cpu) = vm.cpus.get(vcpu) {
        kick_cpu(cpu);
    }
}

fn kick_cpu(cpu: usize) {
    if cpu != cpu::index() {
        if let Some(&(_, mpidr)) = CPUS.get().and_then(|c| c.get(cpu)) {
            gicv3::send_sgi(intid::KICK, mpidr);
        }
    }
}

/// Does `vm` have the console's input focus?
pub fn has_focus(vm: &Vm) -> bool {
    FOCUS.load(Ordering::Relaxed) == vm.id
}

/// Gives the console's input to VM `id`, if it exists.
pub fn set_focus(id: usize) {
    let vms = VMS.lock();
    match vms.get(id).and_then(|v| v.as_ref()) {
        Some(vm) => {
            FOCUS.store(id, Ordering::Relaxed);
            crate::println!("\ndisco: console input goes to vm {} now", vm.name);
        }
        None => crate::println!("\ndisco: there is no running VM number {id}"),
    }
}

/// Prints the statistics of every running VM and of every CPU (Ctrl-] s).
pub fn print_stats() {
    let vms: Vec<Arc<Vm>> = VMS.lock().iter().flatten().cloned().collect();
    for vm in vms {
        vm.stats.print(&vm.name, &vm.frames());
    }
    stats::print_cpus(CPUS.get().map_or(1, |c| c.len()));
}

/// Physical interrupts pending on this CPU; `current` is the vCPU it was
/// running, if any.
pub fn physical_irqs(current: Option<(&Vm, &mut Vcpu)>) {
    let mut current = current;
    while let Some(id) = gicv3::ack() {
        match id {
            intid::KICK | intid::MAINTENANCE => {} // state is re-read before re-entry
            intid::VIRT_TIMER => match current.as_mut() {
                Some((vm, vcpu)) => virq::vtimer_fired(vm, vcpu),
                None => timer::mask_guest_vtimer(),
            },
            id if id == crate::console_intid() => console_input(),
            other => log::warn!("unexpected physical interrupt {other}"),
        }
        gicv3::eoi(id);
    }
}

/// Typed bytes go to the VM with the focus.
fn console_input() {
    let input = console::take_input();
    if input.is_empty() {
        return;
    }
    let focused = VMS.lock().get(FOCUS.load(Ordering::Relaxed)).cloned().flatten();
    if let Some(vm) = focused {
        let mut devices = vm.devices.lock();
        input.iter().for_each(|&b| devices.uart.push_rx(b));
        trap::uart_changed(&vm, &mut devices);
        drop(devices);
        (0..vm.cpus.len()).for_each(|v| kick(&vm, v));
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
    stats::print_cpus(CPUS.get().map_or(1, |c| c.len()));
    if crate::flash::present() {
        crate::flash::report(10);
    }
    log::info!("all VMs ended; powering off");
    psci::system_off()
}
