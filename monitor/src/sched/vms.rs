//! Running VMs: placing them, starting them, and what happens when one
//! ends (teardown, restart, the machine's power-off after the last one).
//! The vCPUs themselves are the scheduler's (sched.rs, dispatch.rs); each
//! VM has a home node whose CPUs its vCPUs prefer and whose memory it uses
//! first.

use crate::{
    arch::{cpu, heap, psci, stage2, timer, MAX_CPUS},
    io::console::{self, Command},
    mm::{self, frames},
    sched,
    vm::{
        manifest::{Restart, Settings, VmSpec},
        stats, End, Task, Vcpu, Vm,
    },
};
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use numa::{NodeId, Topology};
use spin::{Mutex, Once};

/// A VM's home node and how often it booted.
struct Placement {
    home: AtomicUsize,
    boots: AtomicUsize,
}

static VMS: Mutex<Vec<Option<Arc<Vm>>>> = Mutex::new(Vec::new());
static SPECS: Once<&'static [VmSpec]> = Once::new();
static PLACEMENTS: Once<Vec<Placement>> = Once::new();
static NODES: AtomicUsize = AtomicUsize::new(1);
/// The nodes with CPUs, lowest first: each VM has a stage-2 root on each.
static CPU_NODES: Once<Vec<NodeId>> = Once::new();
static LIVE: AtomicUsize = AtomicUsize::new(0);
static BASELINE: Once<Vec<u64>> = Once::new();
/// Set once the scheduler knows the machine: until then CPUs wait with WFE.
static READY: AtomicBool = AtomicBool::new(false);

/// Places and starts every VM of the bundle; the boot CPU then joins the
/// other CPUs in the scheduler (`dispatch::cpu_loop`).
pub fn run(topology: &Topology, specs: Vec<VmSpec>, settings: Settings) -> Result<(), String> {
    let specs: &'static [VmSpec] = specs.leak();
    let cpus: Vec<_> = topology.cpus().iter().filter(|c| c.index < MAX_CPUS && cpu::is_online(c.index)).collect();
    if let Some(spec) = specs.iter().find(|s| s.home_node.is_some_and(|n| n >= topology.node_count())) {
        return Err(format!("VM {}: home node {:?} does not exist", spec.name, spec.home_node));
    }
    // A memory-only node cannot run vCPUs, so it cannot be a home: its
    // memory serves VMs as the allocators' fallback instead.
    let has_cpus = |n: usize| cpus.iter().any(|c| c.node == n);
    let cpu_nodes: Vec<NodeId> = (0..topology.node_count()).filter(|&n| has_cpus(n)).collect();
    // Each VM has its own VMID (see `roots`): more VMs than VMIDs would
    // share TLB entries, one VM seeing another's memory. The memmap's
    // owner field (the VM's id + 1) is the other limit.
    let ids = (stage2::vmid_count() - 1).min(numa::memmap::MAX_VM as usize - 1);
    if specs.len() > ids {
        return Err(format!("{} VMs: the monitor can tell at most {ids} apart (VMIDs, memmap owners)", specs.len()));
    }
    if let Some(spec) = specs.iter().find(|s| s.home_node.is_some_and(|n| !has_cpus(n))) {
        return Err(format!("VM {}: home node {:?} has no CPUs (a memory-only node)", spec.name, spec.home_node));
    }
    let mut table = alloc::vec![None; cpus.iter().map(|c| c.index + 1).max().unwrap_or(1)];
    cpus.iter().for_each(|c| table[c.index] = Some((c.node, c.mpidr)));
    let nodes = topology.node_count();
    let distance = (0..nodes).map(|a| (0..nodes).map(|b| topology.distance(a, b)).collect()).collect();
    sched::init(table, distance);
    // A VM without a home node gets the one with the fewest vCPUs so far.
    let mut homed = alloc::vec![0usize; topology.node_count()];
    let placements = specs
        .iter()
        .map(|spec| {
            let home = spec.home_node.unwrap_or_else(|| {
                (0..homed.len())
                    .filter(|&n| topology.cpus().iter().any(|c| c.node == n))
                    .min_by_key(|&n| homed[n])
                    .unwrap_or(0)
            });
            homed[home] += spec.vcpus;
            Placement { home: AtomicUsize::new(home), boots: AtomicUsize::new(0) }
        })
        .collect();
    PLACEMENTS.call_once(|| placements);
    SPECS.call_once(|| specs);
    NODES.store(topology.node_count(), Ordering::Relaxed);
    CPU_NODES.call_once(|| cpu_nodes);
    BASELINE.call_once(frames::free_bytes);
    *VMS.lock() = specs.iter().map(|_| None).collect();
    LIVE.store(specs.len(), Ordering::Release);
    mm::placement::init(settings.placement, settings.params, timer::ms_to_ticks(1), timer::now());
    // Not asked for: as if already taken.
    CENSUS_TAKEN.store(!settings.census, Ordering::Relaxed);
    READY.store(true, Ordering::Release);
    aarch64_cpu::asm::sev();
    (0..specs.len()).for_each(start_vm);
    Ok(())
}

/// A secondary CPU waits here until the VMs are set up.
pub fn wait_ready() {
    while !READY.load(Ordering::Acquire) {
        aarch64_cpu::asm::wfe();
    }
}

/// Builds VM `id` and hands its vCPUs to the scheduler.
fn start_vm(id: usize) {
    let spec = &SPECS.get().unwrap()[id];
    let place = &PLACEMENTS.get().unwrap()[id];
    let boot = place.boots.fetch_add(1, Ordering::Relaxed) + 1;
    // The monitor's own metadata for the VM (its pmap, vCPU contexts,
    // devices; not guest frames or stage-2 tables, which are frames): exact
    // at boot, when VMs are built one after another on the boot CPU.
    let heap_before = heap::used();
    let roots = roots(id);
    match Vm::create(id, spec, (place.home.load(Ordering::Relaxed), &roots), NODES.load(Ordering::Relaxed), boot) {
        Ok((vm, (entry, dtb))) => {
            log::info!(
                "vm {} started: {} vCPUs, {} MiB, home node {}, frames per node {:?}, monitor heap {} KiB",
                vm.name,
                vm.mpidrs.len(),
                vm.ram_size >> 20,
                vm.home(),
                vm.frames(),
                heap::used().saturating_sub(heap_before) >> 10
            );
            let vm = Arc::new(vm);
            vm.tasks.store(vm.mpidrs.len(), Ordering::Release);
            VMS.lock()[id] = Some(vm.clone());
            if let Some(net) = &vm.net {
                let mac = net.nic.lock().mmio.device().mac();
                crate::io::net::attach(id, mac, vm.clone());
            }
            // The secondaries park first: vCPU 0 may CPU_ON them as soon
            // as it is queued, and a kick needs a parked task to wake.
            for index in (0..vm.mpidrs.len()).rev() {
                let vcpu = if index == 0 { Vcpu::new(0, entry, dtb) } else { Vcpu::new(index, 0, 0) };
                sched::start(Task { vm: vm.clone(), vcpu: Box::new(vcpu) }, index == 0);
            }
        }
        Err(e) => {
            log::error!("vm {} ended: crashed: cannot build it: {e}", spec.name);
            vm_gone();
        }
    }
}

/// VM `id`'s stage-2 roots: one per node with CPUs, its home's first (the
/// primary), all with the VM's VMID `id + 1` (0 stays the monitor's).
///
/// One VMID for all of a VM's roots, not one each as KVM gives each
/// nested `kvm_s2_mmu`: the guest's own broadcast TLB maintenance (TLBI
/// ...IS) acts on the VMID it runs with, so with a VMID per root a vCPU
/// that moved to another node would leave stale stage-1 entries of the
/// old root's VMID on the CPUs it left (KVM traps a nested guest's TLBIs
/// for that). A CPU always uses its own node's root, and with
/// VTTBR_EL2.CnP clear its TLB entries are its own, so entries of two
/// roots never meet in one TLB, and every invalidation by the VMID
/// reaches the CPUs of every root.
fn roots(id: usize) -> Vec<(NodeId, u16)> {
    let nodes = CPU_NODES.get().unwrap();
    let home = PLACEMENTS.get().unwrap()[id].home.load(Ordering::Relaxed);
    let mut roots: Vec<(NodeId, u16)> = nodes.iter().map(|&n| (n, (id + 1) as u16)).collect();
    if let Some(at) = roots.iter().position(|&(n, _)| n == home) {
        roots[..=at].rotate_right(1);
    }
    roots
}

/// The last vCPU has left the VM: free it, then restart or retire it.
pub fn teardown(vm: Arc<Vm>) {
    let id = vm.id;
    // The census at the end of a run, if the bundle asks for it: by the
    // first VM to end, while it and the others are still in the registry,
    // so that it sees what they share (in a run of one VM: that VM). A VM
    // ending meanwhile waits here until the census is taken, so that it
    // is counted too.
    {
        let _census = CENSUS.lock();
        if !CENSUS_TAKEN.swap(true, Ordering::Relaxed) {
            print_census();
        }
        VMS.lock()[id] = None;
    }
    // The switch holds the VM too: frames to it are dropped from now on.
    crate::io::net::detach(id);
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
    vm.print_stats();
    // Its metadata at the end (pmap, sharing records, vCPU contexts,
    // devices and their buffers): what the heap gets back when it goes.
    // Exact unless another CPU allocates meanwhile.
    let heap_before = heap::used();
    vm.destroy(sched::node_of(cpu::index()));
    let freed = heap_before.saturating_sub(heap::used());
    crate::println!("stats: vm {name}: monitor metadata {} KiB at exit (heap freed with the VM)", freed >> 10);
    match end {
        End::Reset => {
            log::info!("vm {name} reset: booting it again");
            start_vm(id);
        }
        End::PoweredOff => {
            log::info!("vm {name} ended: powered off");
            restart_or_gone(id, &name, Restart::Always);
        }
        End::Crashed(reason) => {
            log::error!("vm {name} ended: crashed: {reason}");
            restart_or_gone(id, &name, Restart::OnCrash);
        }
    }
}

/// Boots VM `id` again if its restart policy covers the end (`on-crash`
/// covers crashes, `always` power-offs too) and it has not booted more
/// often than its bound; otherwise it is gone.
fn restart_or_gone(id: usize, name: &str, needs: Restart) {
    let spec = &SPECS.get().unwrap()[id];
    let boots = PLACEMENTS.get().unwrap()[id].boots.load(Ordering::Relaxed);
    let covered = spec.restart == Restart::Always || spec.restart == needs;
    if covered && boots <= spec.max_restarts {
        let policy = if spec.restart == Restart::Always { "always" } else { "on-crash" };
        log::info!("vm {name} restarting (restart = {policy}, boot {})", boots + 1);
        start_vm(id);
    } else {
        vm_gone();
    }
}

fn vm_gone() {
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish();
    }
}

/// Kicks the vCPUs that frames from another VM gave an interrupt
/// (`io::net`), after the exit that forwarded them.
pub fn kick_owed() {
    for (id, mask) in crate::io::net::take_owed() {
        let vm = VMS.lock().get(id).cloned().flatten();
        if let Some(vm) = vm {
            sched::kick_mask(&vm, mask);
        }
    }
}

/// Runs placement interval `interval` for every VM, on a CPU of `here`.
pub fn placement_interval(interval: u32, here: usize) {
    let vms: Vec<Arc<Vm>> = VMS.lock().iter().flatten().cloned().collect();
    let hot = mm::placement::begin(interval);
    let merging = vms.iter().filter(|vm| !vm.ending() && vm.user_ran()).count();
    let mut position = 0;
    for vm in vms.iter().filter(|vm| !vm.ending()) {
        // Boot images merge once the guest runs user space, a few VMs a turn.
        let merge = vm.user_ran() && mm::merge::due(interval, position, merging);
        position += vm.user_ran() as usize;
        mm::placement::run(&vm.space, &hot, interval, here, merge);
    }
    mm::placement::end();
}

/// Gives the console's input to VM `id`, if it exists.
fn set_focus(id: usize) {
    let vms = VMS.lock();
    match vms.get(id).and_then(|v| v.as_ref()) {
        Some(vm) => {
            console::set_focus(id);
            crate::println!("\ndisco: console input goes to vm {} now", vm.name);
        }
        None => crate::println!("\ndisco: there is no running VM number {id}"),
    }
}

/// Prints the statistics of every running VM and of every CPU (Ctrl-] s).
fn print_stats() {
    let vms: Vec<Arc<Vm>> = VMS.lock().iter().flatten().cloned().collect();
    for vm in vms {
        vm.print_stats();
    }
    stats::print_cpus(sched::cpu_count());
    crate::io::disk::print_stats();
}

/// Prints the sharing census of every VM in the registry.
fn print_census() {
    let vms: Vec<Arc<Vm>> = VMS.lock().iter().flatten().cloned().collect();
    let pages: Vec<Vec<numa::census::Page>> = vms.iter().map(|vm| mm::census::pages_of(&vm.space)).collect();
    crate::println!("stats: {}", numa::census::Census::of(&pages, mm::census::zero_hash()));
}

/// The census was printed at the first VM's end (`teardown`), or the run
/// did not ask for it; `CENSUS` is held while it is taken.
static CENSUS_TAKEN: AtomicBool = AtomicBool::new(false);
static CENSUS: Mutex<()> = Mutex::new(());

/// Typed bytes go to the VM with the focus; monitor commands are carried
/// out.
pub fn console_input() {
    let (input, commands) = console::take_input();
    for command in commands {
        match command {
            Command::Stats => print_stats(),
            Command::HotPages => crate::println!("{}", mm::counters::report(10)),
            Command::Census => print_census(),
            Command::Focus(id) => set_focus(id),
            Command::Move { vm, node } => move_vm(vm, node),
            Command::Reset(vm) => reset_vm(vm),
            Command::Balloon { vm, tenths } => balloon_vm(vm, tenths),
        }
    }
    if input.is_empty() {
        return;
    }
    let focused = VMS.lock().get(console::focus()).cloned().flatten();
    if let Some(vm) = focused {
        let mut devices = vm.devices.lock();
        input.iter().for_each(|&b| devices.uart.push_rx(b));
        let kick = vm.uart_changed(&mut devices);
        drop(devices);
        sched::kick_mask(&vm, kick);
    }
}

/// VM number `id` of a console command, if it runs (else says so).
fn running(id: usize) -> Option<Arc<Vm>> {
    let vm = VMS.lock().get(id).cloned().flatten();
    if vm.is_none() {
        crate::println!("\ndisco: there is no running VM number {id}");
    }
    vm
}

/// Sets VM `id`'s balloon target to `tenths` of its memory (Ctrl-] b).
fn balloon_vm(id: usize, tenths: usize) {
    let Some(vm) = running(id) else { return };
    let pages = (vm.ram_size / 4096 * tenths as u64 / 10) as u32;
    match vm.set_balloon_target(pages) {
        Some(kick) => {
            crate::println!("\ndisco: vm {}: balloon target {pages} pages ({} MiB)", vm.name, pages >> 8);
            sched::kick_mask(&vm, kick);
        }
        None => crate::println!("\ndisco: vm {} has no balloon (balloon = true in its manifest)", vm.name),
    }
}

/// Moves VM `id` to `node` (Ctrl-] m): its vCPUs prefer that node's CPUs
/// from their next wake-up, and the placement loop migrates its memory
/// after them.
fn move_vm(id: usize, node: usize) {
    let Some(vm) = running(id) else { return };
    if node >= NODES.load(Ordering::Relaxed) || !sched::node_has_cpus(node) {
        crate::println!("\ndisco: node {node} does not exist or has no CPUs");
        return;
    }
    vm.set_home(node);
    PLACEMENTS.get().unwrap()[id].home.store(node, Ordering::Relaxed);
    crate::println!("\ndisco: vm {} moves to node {node}", vm.name);
    (0..vm.mpidrs.len()).for_each(|v| sched::kick(&vm, v));
}

/// Resets VM `id` (Ctrl-] r): it ends as if it had called PSCI
/// SYSTEM_RESET, and boots again.
fn reset_vm(id: usize) {
    let Some(vm) = running(id) else { return };
    crate::println!("\ndisco: resetting vm {}", vm.name);
    vm.end(End::Reset);
    (0..vm.mpidrs.len()).for_each(|v| sched::kick(&vm, v));
}

/// The last VM ended: check that all memory came back, then power off.
fn finish() -> ! {
    mm::boot_image::release_all(sched::node_of(cpu::index()));
    let cached = mm::block_cache::len();
    if cached > 0 {
        log::info!("block cache: {cached} blocks ({} KiB) cached at the end", cached * 4);
    }
    mm::block_cache::release_all(sched::node_of(cpu::index()));
    let now = frames::free_bytes();
    let baseline = BASELINE.get().cloned().unwrap_or_default();
    for (node, (&free, &base)) in now.iter().zip(&baseline).enumerate() {
        if free == base {
            log::info!("node {node}: all frames returned ({} KiB free)", free >> 10);
        } else {
            log::error!("node {node}: {} KiB free after all VMs ended, {} KiB before", free >> 10, base >> 10);
        }
    }
    stats::print_cpus(sched::cpu_count());
    crate::io::disk::print_stats();
    if mm::counters::present() {
        crate::println!("{}", mm::counters::report(10));
    }
    log::info!("all VMs ended; powering off");
    psci::system_off()
}
