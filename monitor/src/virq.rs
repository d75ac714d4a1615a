//! Delivery of virtual interrupts: moves them between a VM's vGIC model and
//! the list registers of the CPU running one of its vCPUs.

use crate::{
    arch::{
        gicv3::{intid, lr},
        timer,
    },
    vm::{Vcpu, Vm},
};
use aarch64_cpu::registers::{ReadWriteable, ICH_HCR_EL2};

/// Called before entering `vcpu`: list registers the guest finished with
/// are completed in the model, those whose interrupt became pending again
/// are marked so, free ones are filled with the highest-priority pending
/// interrupts. If more are pending than fit, the
/// underflow maintenance interrupt brings the vCPU back when slots free up.
pub fn sync(vm: &Vm, vcpu: &mut Vcpu) {
    let count = Vm::list_registers();
    let mut devices = vm.devices.lock();
    let vgic = &mut devices.vgic;
    let held = &mut vcpu.lr_intid;
    for (n, slot) in held.iter_mut().enumerate().take(count) {
        if let Some(intid) = *slot {
            let value = lr::read(n);
            if lr::state(value) == 0 {
                vgic.complete(vcpu.index, intid);
                *slot = None;
            } else if vgic.take_again(vcpu.index, intid) {
                // Pending again while still active: the guest takes it once
                // more when it deactivates this one.
                lr::write(n, value | lr::STATE_PENDING);
            }
        }
    }
    for (n, slot) in held.iter_mut().enumerate().take(count) {
        if slot.is_none() {
            let Some(virq) = vgic.take_pending(vcpu.index) else {
                break;
            };
            lr::write(n, lr::pending(virq.intid, virq.priority));
            *slot = Some(virq.intid);
        }
    }
    let more = vgic.has_pending(vcpu.index);
    ICH_HCR_EL2.modify(if more { ICH_HCR_EL2::UIE::SET } else { ICH_HCR_EL2::UIE::CLEAR });
}

/// The vCPU powers off (PSCI CPU_OFF) or starts afresh (CPU_ON): the
/// interrupts its list registers hold go back to the model, pending again
/// unless the guest had already taken them, and the list registers are
/// cleared. Otherwise they would stay in flight on a vCPU that never
/// completes them, and an SPI routed elsewhere later would never arrive.
pub fn release(vm: &Vm, vcpu: &mut Vcpu) {
    let mut devices = vm.devices.lock();
    for (n, slot) in vcpu.lr_intid.iter_mut().enumerate().take(Vm::list_registers()) {
        if let Some(intid) = slot.take() {
            if lr::state(lr::read(n)) & lr::STATE_PENDING != 0 {
                devices.vgic.give_back(vcpu.index, intid);
            } else {
                devices.vgic.complete(vcpu.index, intid);
            }
            lr::write(n, 0);
        }
    }
}

/// Does a list register hold an interrupt the guest has not yet taken?
/// (A guest may execute WFI with interrupts masked; it must not sleep then.)
pub fn lr_pending(vcpu: &Vcpu) -> bool {
    vcpu.lr_intid.iter().enumerate().any(|(n, slot)| slot.is_some() && lr::state(lr::read(n)) & lr::STATE_PENDING != 0)
}

/// Anything for `vcpu` to do: a pending virtual interrupt in the model or
/// in a list register, or one in flight that became pending again.
pub fn has_work(vm: &Vm, vcpu: &Vcpu) -> bool {
    if lr_pending(vcpu) {
        return true;
    }
    let devices = vm.devices.lock();
    devices.vgic.has_pending(vcpu.index)
        || vcpu.lr_intid.iter().flatten().any(|&intid| devices.vgic.is_pending_again(vcpu.index, intid))
}

/// The running guest's virtual timer fired (physical PPI 27): mask it and
/// make the virtual PPI pending.
pub fn vtimer_fired(vm: &Vm, vcpu: &Vcpu) {
    timer::mask_guest_vtimer();
    vm.devices.lock().vgic.set_pending(vcpu.index, intid::VIRT_TIMER);
}
