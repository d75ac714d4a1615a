//! Stage-2 aborts: on guest RAM they are memory events for `mm` (first
//! touch, a sampled or moving page, a permission change); anywhere else
//! they are device accesses, emulated through the VM's bus, or a wild
//! access that becomes a synchronous external abort in the guest.

use super::{Here, Next, Outcome};
use crate::{
    arch::{esr::inject, exit::Abort, exit::Fault},
    mm::fault::{self, Resolved},
    vm::{
        stats::{ExitReason, Injected},
        End, Vcpu, Vm,
    },
};
use vdev::mmio::MmioError;

pub fn handle(vm: &Vm, vcpu: &mut Vcpu, abort: Abort, here: Here) -> Outcome {
    if vm.is_ram(abort.ipa) {
        return ram(vm, abort, here);
    }
    vm.stats.exit(ExitReason::Mmio);
    // Only translation faults are device accesses: devices are never mapped.
    let result = match (abort.fetch, abort.fault, abort.access) {
        (false, Fault::Translation, Some(access)) => vm.mmio(&mut vcpu.regs, abort.ipa, access),
        _ => Err(MmioError::Unmapped),
    };
    let regs = &mut vcpu.regs;
    match result {
        Ok(kick) => {
            regs.pc += 4;
            return Outcome { next: Next::Run, kick };
        }
        Err(error) => {
            if let Some(n) = vm.stats.injected(Injected::ExternalAbort) {
                log::warn!(
                    "{}: {} guest-physical {:#x} at pc {:#x} ({error:?}): external abort injected ({n} so far; \
                     logged at the 1st, 2nd, 4th, ...)",
                    vm.name,
                    if abort.fetch {
                        "instruction fetch from"
                    } else if abort.write {
                        "write to"
                    } else {
                        "read of"
                    },
                    abort.ipa,
                    regs.pc
                );
            }
            // The exception the guest took (a fetch whose walk faulted
            // is still an instruction abort).
            let syndrome = if abort.esr.class() == crate::arch::esr::ec::IABT_LOWER {
                inject::instruction_sea(regs.at_el0())
            } else {
                inject::data_sea(regs.at_el0(), abort.write)
            };
            regs.inject_sync(syndrome, abort.far);
        }
    }
    Next::Run.into()
}

/// A fault on guest RAM: `mm` resolves it and the guest retries the access.
fn ram(vm: &Vm, abort: Abort, here: Here) -> Outcome {
    match fault::resolve(&vm.space, &abort, here.node) {
        Ok(Resolved::FirstTouch) => vm.stats.exit(ExitReason::FirstTouch),
        Ok(Resolved::Sampled) => vm.stats.exit(ExitReason::Sampling),
        Ok(Resolved::Retry) => vm.stats.exit(ExitReason::Other),
        Ok(Resolved::WriteProtect(_)) => vm.stats.exit(ExitReason::WriteProtect),
        Err(reason) => {
            vm.end(End::Crashed(alloc::format!("{reason} (ESR {:#x})", abort.esr.0)));
        }
    }
    Next::Run.into()
}
