//! Trapped system register accesses: the ID registers (sanitized, see
//! `arch::idregs`) and ICC_SGI1R_EL1 (software-generated interrupts between
//! vCPUs). Anything else is undefined for the guest.

use super::{Next, Outcome};
use crate::{
    arch::{
        esr::{inject, SysRegAccess},
        idregs,
    },
    vm::{stats::Injected, Vcpu, Vm},
};

/// ICC_SGI1R_EL1: op0 3, op1 0, CRn 12, CRm 11, op2 5.
const ICC_SGI1R_EL1: u64 = SysRegAccess::encoding(3, 0, 12, 11, 5);

pub fn access(vm: &Vm, vcpu: &mut Vcpu, access: SysRegAccess) -> Outcome {
    let regs = &mut vcpu.regs;
    let mut kick = 0;
    if idregs::is_id_space(access.op0, access.op1, access.crn, access.crm) && access.read {
        regs.set_reg(access.rt, idregs::guest_value(access.crm, access.op2));
    } else if access.id() == ICC_SGI1R_EL1 && !access.read {
        let value = regs.reg(access.rt);
        let targets = vm.devices.lock().vgic.write_sgi1r(vcpu.index, value);
        vm.vgic_changed(targets);
        kick = targets & !(1 << vcpu.index);
    } else {
        if let Some(n) = vm.stats.injected(Injected::Undefined) {
            log::warn!(
                "{}: {} of system register op0={} op1={} CRn={} CRm={} op2={} at pc {:#x}: undefined instruction \
                 injected ({n} so far)",
                vm.name,
                if access.read { "read" } else { "write" },
                access.op0,
                access.op1,
                access.crn,
                access.crm,
                access.op2,
                regs.pc
            );
        }
        regs.inject_sync(inject::undefined(), 0);
        return Next::Run.into();
    }
    vcpu.regs.pc += 4;
    Outcome { next: Next::Run, kick }
}
