//! Guest exits: one table by exception class hands each decoded exit
//! (`arch::exit::ExitInfo`) to its owner: aborts to `abort` (memory to
//! `mm`, devices to the VM's bus), system registers to `sysreg`, HVC/SMC
//! to `psci`. Owners never call into the scheduler: they return an
//! [`Outcome`] that says what the vCPU does next and which vCPUs of the VM
//! must look at their state again, and the dispatcher carries it out.
//! Nothing a guest does here may panic the monitor: bad accesses become
//! guest-visible exceptions.

mod abort;
pub mod psci;
mod sysreg;

use crate::{
    arch::{esr::inject, exit::ExitInfo},
    vm::{
        stats::{ExitReason, Injected},
        End, Vcpu, Vm,
    },
};
use numa::NodeId;

/// What the vCPU does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Run,
    /// A physical interrupt is waiting: the dispatcher takes it.
    Irq,
    /// A plain WFI: the vCPU may give up its CPU if nothing is pending.
    Wfi,
    /// PSCI CPU_OFF: the vCPU stops until a CPU_ON.
    Off,
}

/// An exit's result: the next step and the vCPUs to kick (bit = vCPU
/// index of the same VM), for new virtual interrupts or power changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub next: Next,
    pub kick: u64,
}

impl From<Next> for Outcome {
    fn from(next: Next) -> Self {
        Self { next, kick: 0 }
    }
}

/// Where the exit is handled: the node of the physical CPU (first-touch
/// and sampling faults record it).
#[derive(Debug, Clone, Copy)]
pub struct Here {
    pub node: NodeId,
}

/// Handles one exit of `vcpu` of `vm`. A VM-ending event is recorded with
/// `vm.end()`; the dispatcher notices it.
pub fn handle(vm: &Vm, vcpu: &mut Vcpu, exit: ExitInfo, here: Here) -> Outcome {
    match exit {
        ExitInfo::Irq => {
            vm.stats.exit(ExitReason::Irq);
            Next::Irq.into()
        }
        ExitInfo::Wfx { wfi } => {
            vm.stats.exit(ExitReason::Wfi);
            // WFE, WFIT and WFET complete at once: allowed by the
            // architecture, and their deadlines are the guest's to keep.
            vcpu.regs.pc += 4;
            if wfi { Next::Wfi } else { Next::Run }.into()
        }
        ExitInfo::Hvc => {
            vm.stats.exit(ExitReason::Hypercall);
            psci::call(vm, vcpu)
        }
        ExitInfo::Smc => {
            vm.stats.exit(ExitReason::Hypercall);
            // A trapped SMC returns to the instruction after it; the PSCI
            // conduit the guest DTB names is HVC, but SMC works the same.
            vcpu.regs.pc += 4;
            psci::call(vm, vcpu)
        }
        ExitInfo::SysReg(access) => {
            vm.stats.exit(ExitReason::SysReg);
            sysreg::access(vm, vcpu, access)
        }
        ExitInfo::Abort(abort) => abort::handle(vm, vcpu, abort, here),
        ExitInfo::SError => {
            vm.end(End::Crashed("SError from the guest".into()));
            Next::Run.into()
        }
        ExitInfo::AArch32 => {
            vm.end(End::Crashed("the guest entered AArch32, which is not supported".into()));
            Next::Run.into()
        }
        ExitInfo::Other(esr) => {
            vm.stats.exit(ExitReason::Other);
            let regs = &mut vcpu.regs;
            if let Some(n) = vm.stats.injected(Injected::Undefined) {
                log::warn!(
                    "{}: unhandled {} trap (ESR {:#x}) at pc {:#x}: undefined instruction injected ({n} so far)",
                    vm.name,
                    esr.class_name(),
                    esr.0,
                    regs.pc
                );
            }
            regs.inject_sync(inject::undefined(), 0);
            Next::Run.into()
        }
    }
}
