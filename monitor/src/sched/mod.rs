//! The vCPU scheduler's data: per-CPU run queues, where each vCPU is, and
//! the wake-up protocol.
//!
//! A vCPU is a [`Task`] that moves between three places: a CPU's run queue,
//! the CPU running it, and its VM's [`Slot`] while it is parked (in WFI, or
//! powered off). A parked vCPU costs nothing: its context is saved and no
//! CPU looks at it until [`kick`] moves it to a run queue, either because
//! its VM has a new virtual interrupt for it or because its virtual timer's
//! deadline, which the parking CPU keeps in its sleeper list, has come.
//!
//! Lost wake-ups are avoided with the slot's `wake` flag (`numa::park`,
//! model-checked with loom): a kick that finds its vCPU active sets it, and
//! a vCPU about to park refuses to while it is set. The vCPU clears it
//! before it looks for work (see `dispatch::idle`).
//!
//! Placement (Disco's "vCPUs prefer their VM's home node";
//! `numa::placement`): a woken vCPU goes to the CPU it last ran on if that
//! CPU is idle, else to the idle CPU nearest its home node, else to the
//! least-loaded CPU of its home node. An idle CPU steals queued vCPUs,
//! nearest node first.
//!
//! Lock order: a VM's devices, then a vCPU slot, then a run queue or a
//! sleeper list; never two slots or two queues at once.

pub mod dispatch;
pub mod virq;
pub mod vms;

use crate::{
    arch::{
        cpu,
        gicv3::{self, intid},
        timer, MAX_CPUS,
    },
    vm::{Task, Vm},
};
use alloc::{
    collections::VecDeque,
    sync::{Arc, Weak},
    vec::Vec,
};
use core::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use numa::{park::Kick, placement, NodeId};
use spin::{Mutex, Once};

/// A parked vCPU whose virtual timer is armed.
struct Sleeper {
    deadline: u64,
    vm: Weak<Vm>,
    vcpu: usize,
}

struct Cpu {
    queue: Mutex<VecDeque<Task>>,
    /// Tasks queued here plus the one running: what placement compares.
    load: AtomicUsize,
    sleepers: Mutex<Vec<Sleeper>>,
    /// The earliest sleeper deadline (u64::MAX: none), read without the lock.
    next_deadline: AtomicU64,
}

static CPUS: [Cpu; MAX_CPUS] = [const {
    Cpu {
        queue: Mutex::new(VecDeque::new()),
        load: AtomicUsize::new(0),
        sleepers: Mutex::new(Vec::new()),
        next_deadline: AtomicU64::new(u64::MAX),
    }
}; MAX_CPUS];

/// The machine as the scheduler sees it.
struct Machine {
    /// Per CPU index: its node and MPIDR, None if it is not online.
    cpus: Vec<Option<(NodeId, u64)>>,
    /// Per node: every CPU, nearest first (then by index).
    nearest: Vec<Vec<usize>>,
    /// Node distances (SLIT), [from][to].
    distance: Vec<Vec<u8>>,
}

static MACHINE: Once<Machine> = Once::new();

/// Records the online CPUs (node and MPIDR per logical index; None for a
/// CPU that did not come up) and the node distances; derives each node's
/// CPU preference list, which only holds online CPUs.
pub fn init(cpus: Vec<Option<(NodeId, u64)>>, distance: Vec<Vec<u8>>) {
    let indexed: Vec<(usize, NodeId)> =
        cpus.iter().enumerate().filter_map(|(cpu, c)| c.map(|(node, _)| (cpu, node))).collect();
    let nearest =
        (0..distance.len()).map(|home| placement::nearest_cpus(&indexed, |node| distance[home][node])).collect();
    MACHINE.call_once(|| Machine { cpus, nearest, distance });
}

fn machine() -> &'static Machine {
    MACHINE.get().expect("sched::init runs before any VM starts")
}

/// The node of CPU `cpu`.
pub fn node_of(cpu: usize) -> NodeId {
    MACHINE.get().and_then(|m| *m.cpus.get(cpu)?).map_or(0, |c| c.0)
}

pub fn cpu_count() -> usize {
    MACHINE.get().map_or(1, |m| m.cpus.len())
}

/// Hands a new task to the scheduler: powered-on vCPUs are queued, others
/// park until a CPU_ON kicks them.
pub fn start(task: Task, powered_on: bool) {
    let vm = task.vm.clone();
    let slot = &vm.slots[task.vcpu.index];
    if powered_on {
        let target = choose_cpu(vm.home(), None);
        slot.set_active(target);
        enqueue(target, task);
    } else {
        slot.park_new(task);
    }
}

/// Makes vCPU `vcpu` of `vm` look at its state again (new virtual
/// interrupt, power change, VM ending): a parked vCPU is queued, an active
/// one is interrupted.
pub fn kick(vm: &Vm, vcpu: usize) {
    wake(vm, vcpu, None);
}

/// Kicks every vCPU of `vm` in `mask` (bit = vCPU index).
pub fn kick_mask(vm: &Vm, mask: u64) {
    (0..vm.mpidrs.len().min(64)).filter(|v| mask & 1 << v != 0).for_each(|v| kick(vm, v));
}

/// `timer`: only wake it if it still sleeps on that deadline.
fn wake(vm: &Vm, vcpu: usize, timer: Option<u64>) {
    let Some(slot) = vm.slots.get(vcpu) else { return };
    match slot.kick(timer, |task| choose_cpu(vm.home(), task.vcpu.last_cpu)) {
        Kick::Interrupt(cpu) => kick_cpu(cpu),
        Kick::Unparked { item, cpu, idle_since } => {
            if idle_since != 0 {
                vm.stats.idle_ticks.fetch_add(timer::now() - idle_since, Relaxed);
            }
            enqueue(cpu, item);
        }
        Kick::Stale => {}
    }
}

/// Forgets earlier kicks of an active vCPU: it is about to look for work.
pub fn clear_wake(vm: &Vm, vcpu: usize) {
    vm.slots[vcpu].clear_wake();
}

/// Parks the task that CPU `me` was running (its context saved): in WFI
/// (`idle`) it wakes at its timer deadline or at a kick; powered off only
/// at a kick. Returns the task if a kick came first: it must run again.
pub fn park(me: usize, task: Task, idle: bool) -> Option<Task> {
    let vm = task.vm.clone();
    let index = task.vcpu.index;
    let deadline = if idle { task.vcpu.el1.timer_deadline() } else { None };
    let idle_since = if idle { timer::now().max(1) } else { 0 };
    if let Err(task) = vm.slots[index].park(task, deadline, idle_since) {
        return Some(task);
    }
    CPUS[me].load.fetch_sub(1, Release);
    if let Some(deadline) = deadline {
        let mut sleepers = CPUS[me].sleepers.lock();
        // A vCPU kicked before its deadline leaves its entry behind; drop
        // it (and those of ended VMs) so that each CPU's list holds at most
        // one entry per live vCPU however often a guest parks.
        sleepers.retain(|s| s.vm.strong_count() > 0 && !(s.vcpu == index && s.vm.as_ptr() == Arc::as_ptr(&vm)));
        sleepers.push(Sleeper { deadline, vm: Arc::downgrade(&vm), vcpu: index });
        CPUS[me].next_deadline.fetch_min(deadline, Relaxed);
    }
    None
}

/// Wakes the sleepers of CPU `me` whose deadline has come.
pub fn wake_sleepers(me: usize) {
    let now = timer::now();
    if CPUS[me].next_deadline.load(Relaxed) > now {
        return;
    }
    let due: Vec<Sleeper> = {
        let mut sleepers = CPUS[me].sleepers.lock();
        let due = sleepers.extract_if(.., |s| s.deadline <= now).collect();
        let next = sleepers.iter().map(|s| s.deadline).min().unwrap_or(u64::MAX);
        CPUS[me].next_deadline.store(next, Relaxed);
        due
    };
    for sleeper in due {
        if let Some(vm) = sleeper.vm.upgrade() {
            wake(&vm, sleeper.vcpu, Some(sleeper.deadline));
        }
    }
}

/// The earliest sleeper deadline of CPU `me`.
pub fn next_deadline(me: usize) -> Option<u64> {
    Some(CPUS[me].next_deadline.load(Relaxed)).filter(|&d| d != u64::MAX)
}

/// Marks the running task of CPU `me` as active there.
pub fn set_running(me: usize, task: &Task) {
    task.vm.slots[task.vcpu.index].set_active(me);
}

/// The next task for CPU `me`: its own queue first, then one stolen from
/// the nearest CPU that has tasks waiting.
pub fn next_task(me: usize) -> Option<Task> {
    if let Some(task) = CPUS[me].queue.lock().pop_front() {
        return Some(task);
    }
    let nearest = machine().nearest.get(node_of(me))?;
    for &other in nearest.iter().filter(|&&c| c != me) {
        if CPUS[other].load.load(Acquire) < 2 {
            continue; // at most the one it runs
        }
        let Some(mut queue) = CPUS[other].queue.try_lock() else {
            continue;
        };
        if let Some(task) = queue.pop_back() {
            CPUS[other].load.fetch_sub(1, Release);
            CPUS[me].load.fetch_add(1, Release);
            return Some(task);
        }
    }
    None
}

/// Does another task wait for CPU `me`?
pub fn others_waiting(me: usize) -> bool {
    !CPUS[me].queue.lock().is_empty()
}

/// Puts a preempted (or refused-to-park) task back on its own CPU's queue.
pub fn requeue(me: usize, task: Task, front: bool) {
    let mut queue = CPUS[me].queue.lock();
    if front {
        queue.push_front(task)
    } else {
        queue.push_back(task)
    }
}

/// A task left CPU `me` for good (its VM ended).
pub fn retired(me: usize) {
    CPUS[me].load.fetch_sub(1, Release);
}

fn enqueue(cpu: usize, task: Task) {
    let mut queue = CPUS[cpu].queue.lock();
    queue.push_back(task);
    // Inside the lock: a thief that sees the task also sees the load.
    CPUS[cpu].load.fetch_add(1, Release);
    drop(queue);
    kick_cpu(cpu);
}

/// Sends the task CPU `me` was running to a CPU of its VM's home node
/// (the VM moved there). The CPU it ran on stops being its preference.
pub fn send_home(me: usize, mut task: Task) {
    task.vcpu.last_cpu = None;
    CPUS[me].load.fetch_sub(1, Release);
    let target = choose_cpu(task.vm.home(), None);
    task.vm.slots[task.vcpu.index].set_active(target);
    enqueue(target, task);
}

/// Does node `node` have an online CPU?
pub fn node_has_cpus(node: NodeId) -> bool {
    MACHINE.get().is_some_and(|m| m.cpus.iter().flatten().any(|c| c.0 == node))
}

/// The CPU a waking vCPU of a VM homed on `home` goes to.
fn choose_cpu(home: NodeId, last: Option<usize>) -> usize {
    let machine = machine();
    let home = home.min(machine.nearest.len().saturating_sub(1));
    let Some(nearest) = machine.nearest.get(home) else { return 0 };
    let distance = |cpu: usize| machine.distance[home][node_of(cpu)];
    placement::choose_cpu(nearest, distance, |cpu| CPUS[cpu].load.load(Acquire), last).unwrap_or(0)
}

/// Interrupts CPU `cpu` (unless it is the caller) so it re-reads its state.
pub fn kick_cpu(cpu: usize) {
    if cpu != cpu::index() {
        if let Some((_, mpidr)) = MACHINE.get().and_then(|m| *m.cpus.get(cpu)?) {
            gicv3::send_sgi(intid::KICK, mpidr);
        }
    }
}
