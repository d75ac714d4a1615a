//! PSCI for guests (Arm DEN0022, version 1.1), over HVC or SMC: how Linux
//! starts, stops and powers off its CPUs, and resets or powers off the VM.
//! Anything else a guest calls returns NOT_SUPPORTED.

use super::{Next, Outcome};
use crate::vm::{End, Power, Vcpu, Vm};

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const CPU_SUSPEND: u32 = 0x8400_0001;
pub const CPU_OFF: u32 = 0x8400_0002;
pub const CPU_ON: u32 = 0x8400_0003;
pub const AFFINITY_INFO: u32 = 0x8400_0004;
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000a;
/// Set in the function ID of the SMC64 variants.
const SMC64: u32 = 0x4000_0000;

const SUCCESS: i64 = 0;
const NOT_SUPPORTED: i64 = -1;
const INVALID_PARAMETERS: i64 = -2;
const ALREADY_ON: i64 = -4;
const ON_PENDING: i64 = -5;
/// PSCI 1.1.
const VERSION_1_1: i64 = 0x1_0001;
/// MIGRATE_INFO_TYPE: no trusted OS that needs migration.
const NO_TRUSTED_OS: i64 = 2;
/// AFFINITY_INFO states.
const AFFINITY_ON: i64 = 0;
const AFFINITY_OFF: i64 = 1;
const AFFINITY_ON_PENDING: i64 = 2;

/// Handles the call in x0..x3 of `vcpu`; the result goes to x0. CPU_ON
/// asks the dispatcher to kick its target.
pub fn call(vm: &Vm, vcpu: &mut Vcpu) -> Outcome {
    let x = &vcpu.regs.x;
    let (function, arg1, arg2, arg3) = (x[0] as u32, x[1], x[2], x[3]);
    let mut kick = 0;
    let result = match function & !SMC64 {
        PSCI_VERSION => VERSION_1_1,
        PSCI_FEATURES => features(arg1 as u32),
        MIGRATE_INFO_TYPE => NO_TRUSTED_OS,
        // A suspend that loses no state is a WFI; Linux only uses it with
        // idle states from the DTB, which guests do not get.
        CPU_SUSPEND => SUCCESS,
        CPU_ON => match vm.vcpu_of_mpidr(arg1) {
            Some(target) => {
                let mut power = vm.power[target].lock();
                match *power {
                    Power::On => ALREADY_ON,
                    Power::OnPending { .. } => ON_PENDING,
                    Power::Off => {
                        *power = Power::OnPending { entry: arg2, context: arg3 };
                        kick = 1 << target;
                        SUCCESS
                    }
                }
            }
            None => INVALID_PARAMETERS,
        },
        CPU_OFF => {
            *vm.power[vcpu.index].lock() = Power::Off;
            return Next::Off.into();
        }
        AFFINITY_INFO => match vm.vcpu_of_mpidr(arg1) {
            Some(target) => match *vm.power[target].lock() {
                Power::On => AFFINITY_ON,
                Power::Off => AFFINITY_OFF,
                Power::OnPending { .. } => AFFINITY_ON_PENDING,
            },
            None => INVALID_PARAMETERS,
        },
        SYSTEM_OFF => {
            vm.end(End::PoweredOff);
            return Next::Run.into();
        }
        SYSTEM_RESET => {
            vm.end(End::Reset);
            return Next::Run.into();
        }
        _ => {
            log::warn!("{}: unknown hypercall {function:#x}: NOT_SUPPORTED", vm.name);
            NOT_SUPPORTED
        }
    };
    vcpu.regs.x[0] = result as u64;
    Outcome { next: Next::Run, kick }
}

fn features(function: u32) -> i64 {
    match function & !SMC64 {
        PSCI_VERSION | CPU_SUSPEND | CPU_OFF | CPU_ON | AFFINITY_INFO | MIGRATE_INFO_TYPE | SYSTEM_OFF
        | SYSTEM_RESET | PSCI_FEATURES => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}
