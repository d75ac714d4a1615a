//! PSCI for guests (Arm DEN0022, version 1.1), over HVC or SMC: how Linux
//! starts, stops and powers off its CPUs, and resets or powers off the VM.
//! The call is decoded by `vdev::psci` (host-tested and fuzzed); this acts
//! on the VM's power states. Anything else a guest calls returns
//! NOT_SUPPORTED.

use super::{Next, Outcome};
use crate::vm::{stats::Injected, End, Power, Vcpu, Vm};
use vdev::psci::{self, Call};

/// Handles the call in x0..x3 of `vcpu`; the result goes to x0. CPU_ON
/// asks the dispatcher to kick its target.
pub fn call(vm: &Vm, vcpu: &mut Vcpu) -> Outcome {
    let x = &vcpu.regs.x;
    let mut kick = 0;
    let result = match psci::decode([x[0], x[1], x[2], x[3]]) {
        Call::Version => psci::VERSION_1_1,
        Call::Features(function) => psci::features(function),
        Call::MigrateInfoType => psci::NO_TRUSTED_OS,
        Call::CpuSuspend => psci::SUCCESS,
        Call::CpuOn { target, entry, context } => match vm.vcpu_of_mpidr(target) {
            Some(target) => {
                let mut power = vm.power[target].lock();
                match *power {
                    Power::On => psci::ALREADY_ON,
                    Power::OnPending { .. } => psci::ON_PENDING,
                    Power::Off => {
                        *power = Power::OnPending { entry, context };
                        kick = 1 << target;
                        psci::SUCCESS
                    }
                }
            }
            None => psci::INVALID_PARAMETERS,
        },
        Call::CpuOff => {
            *vm.power[vcpu.index].lock() = Power::Off;
            // Nobody is left to CPU_ON it: the VM can never run again, and
            // would hold its memory until the run ends.
            if vm.power.iter().all(|p| matches!(*p.lock(), Power::Off)) {
                vm.end(End::Crashed("every vCPU called PSCI CPU_OFF".into()));
                return Next::Run.into();
            }
            return Next::Off.into();
        }
        Call::AffinityInfo { target } => match vm.vcpu_of_mpidr(target) {
            Some(target) => match *vm.power[target].lock() {
                Power::On => psci::AFFINITY_ON,
                Power::Off => psci::AFFINITY_OFF,
                Power::OnPending { .. } => psci::AFFINITY_ON_PENDING,
            },
            None => psci::INVALID_PARAMETERS,
        },
        Call::SystemOff => {
            vm.end(End::PoweredOff);
            return Next::Run.into();
        }
        Call::SystemReset => {
            vm.end(End::Reset);
            return Next::Run.into();
        }
        Call::Unknown(function) => {
            if let Some(n) = vm.stats.injected(Injected::NotSupported) {
                log::warn!("{}: unknown hypercall {function:#x}: NOT_SUPPORTED ({n} so far)", vm.name);
            }
            psci::NOT_SUPPORTED
        }
    };
    vcpu.regs.x[0] = result as u64;
    Outcome { next: Next::Run, kick }
}
