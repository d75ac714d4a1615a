//! What every physical CPU does after bring-up: take the next vCPU from the
//! scheduler, load its context, run it until it parks, is preempted or its
//! VM ends, save its context, and repeat; wait for an interrupt when there
//! is nothing to run.
//!
//! Time slices come from the EL2 physical timer: it is armed only while
//! another task waits for this CPU (or a parked vCPU's timer deadline is
//! due), so a CPU running a single vCPU takes no scheduler interrupts.

use crate::{
    arch::{
        context::{self, El1Context},
        gicv3::{self, intid},
        stage2, timer,
        vcpu::{self, VcpuRegs},
    },
    run,
    sched::{self, Task},
    stats,
    trap::{self, Next},
    virq,
    vm::{Power, Vcpu, Vm},
};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// How long a vCPU runs before a waiting one gets the CPU.
const SLICE_MS: u64 = 10;

/// Why a task left the CPU.
enum Leave {
    Preempted,
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
        match sched::next_task(me) {
            Some(task) => run_task(me, task, &mut last_ran),
            None => {
                arm_timer(sched::next_deadline(me));
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
    vcpu::set_vttbr(vm.vttbr);
    match last_ran.iter_mut().find(|(vttbr, _)| *vttbr == vm.vttbr) {
        Some((_, last)) if *last == vcpu.index => {}
        Some((_, last)) => {
            *last = vcpu.index;
            stage2::flush_local_guest_tlb();
        }
        None => {
            last_ran.push((vm.vttbr, vcpu.index));
            stage2::flush_local_guest_tlb();
        }
    }
    vcpu.last_cpu = Some(me);
    let leave = run_slice(me, vm, vcpu, timer::now());
    vcpu.el1.save(lrs);
    timer::cancel_hyp_timer();
    match leave {
        Leave::Preempted => sched::requeue(me, task, false),
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
        let waiting = sched::others_waiting(me);
        if waiting && timer::now() >= slice_end {
            return Leave::Preempted;
        }
        let deadline = sched::next_deadline(me);
        arm_timer(if waiting { Some(deadline.map_or(slice_end, |d| d.min(slice_end))) } else { deadline });
        virq::sync(vm, vcpu);
        let entered = timer::now();
        let exit = vcpu::run(&mut vcpu.regs);
        vm.stats.run_ticks.fetch_add(timer::now() - entered, Ordering::Relaxed);
        match trap::handle(vm, vcpu, exit) {
            Next::Run => {}
            Next::Off => {
                virq::release(vm, vcpu);
                return Leave::Park { idle: false };
            }
            Next::Idle => return Leave::Park { idle: true },
        }
    }
}

/// The task's VM is ending: drop it, make its other vCPUs notice, and tear
/// the VM down if this was its last vCPU.
fn retire(me: usize, task: Task) {
    sched::retired(me);
    let vm = task.vm.clone();
    drop(task);
    (0..vm.mpidrs.len()).for_each(|v| sched::kick(&vm, v));
    if vm.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
        run::teardown(vm);
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
            id if id == crate::console_intid() => run::console_input(),
            other => log::warn!("unexpected physical interrupt {other}"),
        }
        gicv3::eoi(id);
    }
}
