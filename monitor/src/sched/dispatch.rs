//! What every physical CPU does after bring-up: take the next vCPU from the
//! scheduler, load its context, run it until it parks, is preempted or its
//! VM ends, save its context, and repeat; wait for an interrupt when there
//! is nothing to run.
//!
//! Time slices come from the EL2 physical timer: it is armed only while
//! another task waits for this CPU (or a parked vCPU's timer deadline is
//! due), so a CPU running a single vCPU takes no scheduler interrupts.

use super::{virq, vms};
use crate::{
    arch::{
        context::{self, El1Context},
        exit as decode,
        gicv3::{self, intid},
        stage2, timer,
        vcpu::{self, VcpuRegs},
    },
    exit::{self, Here, Next},
    mm, sched,
    vm::{stats, Power, Task, Vcpu, Vm},
};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// How long a vCPU runs before a waiting one gets the CPU.
const SLICE_MS: u64 = 10;

/// Why a task left the CPU.
enum Leave {
    Preempted,
    /// Its VM moved to another node: the vCPU goes there.
    Moved,
    Park { idle: bool },
    Retire,
}

/// The CPU loop; never returns.
pub fn cpu_loop(me: usize) -> ! {
    // Per VMID, the vCPU that last ran here: another vCPU of the same VM
    // must not see its TLB entries.
    let mut last_ran: Vec<(u64, usize)> = Vec::new();
    loop {
        sched::wake_sleepers(me);
        placement(me);
        match sched::next_task(me) {
            Some(task) => run_task(me, task, &mut last_ran),
            None => {
                arm_timer(deadline(me));
                stats::idle_wait();
                physical_irqs(None);
            }
        }
    }
}

fn run_task(me: usize, mut task: Task, last_ran: &mut Vec<(u64, usize)>) {
    sched::set_running(me, &task);
    let lrs = Vm::list_registers();
    let Task { vm, vcpu } = &mut task;
    vcpu.el1.load(vm.mpidrs[vcpu.index], lrs);
    let vttbr = vm.vttbr_on(sched::node_of(me));
    vcpu::set_vttbr(vttbr);
    match last_ran.iter_mut().find(|(v, _)| *v == vttbr) {
        Some((_, last)) if *last == vcpu.index => {}
        Some((_, last)) => {
            *last = vcpu.index;
            stage2::flush_local_guest_tlb();
        }
        None => {
            last_ran.push((vttbr, vcpu.index));
            stage2::flush_local_guest_tlb();
        }
    }
    // Descriptors changed while no vCPU of the VM ran here (numa::tlb_sync).
    if vm.tlb.load(me) {
        stage2::flush_local_vmid();
    }
    vcpu.last_cpu = Some(me);
    let leave = run_slice(me, vm, vcpu, timer::now());
    vm.tlb.unload(me);
    vcpu.el1.save(lrs);
    timer::cancel_hyp_timer();
    match leave {
        Leave::Preempted => sched::requeue(me, task, false),
        Leave::Moved => sched::send_home(me, task),
        Leave::Park { idle } => {
            if let Some(task) = sched::park(me, task, idle) {
                sched::requeue(me, task, true);
            }
        }
        Leave::Retire => retire(me, task),
    }
}

/// Runs the loaded vCPU until it must leave the CPU.
fn run_slice(me: usize, vm: &Vm, vcpu: &mut Vcpu, loaded: u64) -> Leave {
    let slice_end = loaded + timer::ms_to_ticks(SLICE_MS);
    loop {
        if vm.ending() {
            return Leave::Retire;
        }
        let power = *vm.power[vcpu.index].lock();
        match power {
            Power::On => {}
            Power::OnPending { entry, context } => {
                // Its interrupts went back to the model when it powered off
                // (below), so the list registers and `lr_intid` are empty.
                *vm.power[vcpu.index].lock() = Power::On;
                vcpu.regs = VcpuRegs::boot(entry, context);
                El1Context::reset().load(vm.mpidrs[vcpu.index], Vm::list_registers());
            }
            Power::Off => return Leave::Park { idle: false },
        }
        sched::wake_sleepers(me);
        // Once per move: later steals by other nodes' CPUs are fine.
        if vcpu.home_epoch != vm.home_epoch() {
            vcpu.home_epoch = vm.home_epoch();
            if sched::node_of(me) != vm.home() {
                return Leave::Moved;
            }
        }
        let waiting = sched::others_waiting(me);
        if waiting && timer::now() >= slice_end {
            return Leave::Preempted;
        }
        placement(me);
        let deadline = deadline(me);
        arm_timer(if waiting { Some(deadline.map_or(slice_end, |d| d.min(slice_end))) } else { deadline });
        virq::sync(vm, vcpu);
        let entered = timer::now();
        let exit = decode::decode(vcpu::run(&mut vcpu.regs));
        vm.stats.run_ticks.fetch_add(timer::now() - entered, Ordering::Relaxed);
        if !vm.user_ran() && vcpu.regs.at_el0() {
            vm.note_user();
        }
        let outcome = exit::handle(vm, vcpu, exit, Here { node: sched::node_of(me) });
        sched::kick_mask(vm, outcome.kick);
        vms::kick_owed();
        match outcome.next {
            Next::Run => {}
            Next::Irq => physical_irqs(Some((vm, vcpu))),
            Next::Wfi if idle(vm, vcpu) => return Leave::Park { idle: true },
            Next::Wfi => {}
            Next::Off => {
                virq::release(vm, vcpu);
                return Leave::Park { idle: false };
            }
        }
    }
}

/// WFI: may the vCPU leave its CPU? Not while an interrupt is pending for
/// it (WFI wakes on pending interrupts even when the guest masks them) or
/// its timer has fired. Kicks before this check are seen by it; later ones
/// stop the park (sched::park).
fn idle(vm: &Vm, vcpu: &mut Vcpu) -> bool {
    sched::clear_wake(vm, vcpu.index);
    virq::sync(vm, vcpu);
    !virq::has_work(vm, vcpu) && !context::vtimer_fired() && !vm.ending()
}

/// The task's VM is ending: drop it, make its other vCPUs notice, and tear
/// the VM down if this was its last vCPU.
fn retire(me: usize, task: Task) {
    sched::retired(me);
    let vm = task.vm.clone();
    drop(task);
    (0..vm.mpidrs.len()).for_each(|v| sched::kick(&vm, v));
    if vm.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
        vms::teardown(vm);
    }
}

/// When CPU `me` must look at the clock again: its earliest sleeper and,
/// on CPU 0, which keeps the placement loop going, the next interval.
fn deadline(me: usize) -> Option<u64> {
    let sleeper = sched::next_deadline(me);
    match (me, mm::placement::deadline()) {
        (0, Some(placement)) => Some(sleeper.map_or(placement, |s| s.min(placement))),
        _ => sleeper,
    }
}

/// Runs the placement interval if it is due and this CPU claims it.
fn placement(me: usize) {
    if let Some(interval) = mm::placement::claim(timer::now()) {
        vms::placement_interval(interval, sched::node_of(me));
    }
}

fn arm_timer(deadline: Option<u64>) {
    match deadline {
        Some(deadline) => timer::set_hyp_deadline(deadline),
        None => timer::cancel_hyp_timer(),
    }
}

/// Physical interrupts pending on this CPU; `current` is the vCPU it was
/// running, if any.
pub fn physical_irqs(current: Option<(&Vm, &mut Vcpu)>) {
    let mut current = current;
    while let Some(id) = gicv3::ack() {
        match id {
            // State is re-read before the next entry.
            intid::KICK => {}
            // Underflow: virq::sync refills the list registers and decides
            // again whether it needs to know.
            intid::MAINTENANCE => gicv3::lr::disable_underflow(),
            intid::HYP_TIMER => timer::cancel_hyp_timer(),
            // On real hardware the line may still be seen high just after
            // the previous vCPU's timer was silenced: only a timer that fired
            // in the loaded context is this vCPU's (masking another's would
            // leave it masked for good, as its guest finds nothing to handle).
            intid::VIRT_TIMER => match current.as_mut() {
                Some((_, vcpu)) if context::vtimer_fired() => virq::vtimer_fired(vcpu),
                Some(_) => {}
                None => timer::mask_guest_vtimer(),
            },
            id if id == crate::console_intid() => vms::console_input(),
            // The disk's, raised after its request was done: acked there.
            id if crate::io::disk::take_interrupt(id) => {}
            other => log::warn!("unexpected physical interrupt {other}"),
        }
        gicv3::eoi(id);
    }
}
