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
use arrayvec::ArrayVec;
use core::sync::atomic::Ordering;
use vdev::vgic::SPI_BASE;

/// Every vCPU, for `Vm::vgic_changed`.
pub const ALL: u64 = u64::MAX;

/// Called before entering `vcpu`: list registers the guest finished with
/// are completed in the model, those whose interrupt became pending again
/// are marked so, free ones are filled with the highest-priority pending
/// interrupts. If more are pending than fit, the underflow maintenance
/// interrupt brings the vCPU back when slots free up.
///
/// Most exits (page faults, system registers) change none of this, and the
/// devices lock is shared by all of the VM's vCPUs: under TCG a lock holder
/// whose host thread is descheduled stalls the others for milliseconds. So
/// the lock is taken only when something may have changed: the vCPU's
/// timer fired, its `vgic_dirty` bit is set, a list register was
/// finished, or interrupts were left over last time.
pub fn sync(vm: &Vm, vcpu: &mut Vcpu) {
    let count = Vm::list_registers();
    // The list registers are read and written outside the lock: under TCG
    // they are slow to reach, and the lock should be held for the model only.
    let mut values = [0u64; 16];
    for (n, value) in values.iter_mut().enumerate().take(count) {
        if vcpu.lr_intid[n].is_some() {
            *value = lr::read(n);
        }
    }
    let values = &values[..count];
    let finished = (0..count).any(|n| vcpu.lr_intid[n].is_some() && lr::state(values[n]) == 0);
    let marked = vm.vgic_dirty.load(Ordering::Acquire) & 1 << vcpu.index != 0;
    if !(vcpu.vtimer_fired || vcpu.more_pending || marked || finished) {
        return;
    }
    let writes = update_model(vm, vcpu, values);
    writes.into_iter().for_each(|(n, value)| lr::write(n, value));
    let uie = if vcpu.more_pending { ICH_HCR_EL2::UIE::SET } else { ICH_HCR_EL2::UIE::CLEAR };
    ICH_HCR_EL2.modify(uie);
}

/// The locked half of [`sync`], given the list registers' `values`:
/// completes finished ones, hands over second pending states, and picks
/// interrupts for free ones. Returns the list register writes to make.
fn update_model(vm: &Vm, vcpu: &mut Vcpu, values: &[u64]) -> ArrayVec<(usize, u64), 16> {
    let bit = 1u64 << vcpu.index;
    let mut writes = ArrayVec::new();
    let mut others = 0;
    let mut devices = vm.devices.lock();
    vm.vgic_dirty.fetch_and(!bit, Ordering::AcqRel);
    let vgic = &mut devices.vgic;
    if core::mem::take(&mut vcpu.vtimer_fired) {
        vgic.set_pending(vcpu.index, intid::VIRT_TIMER);
    }
    for (n, slot) in vcpu.lr_intid.iter_mut().enumerate().take(values.len()) {
        let Some(intid) = *slot else { continue };
        if lr::state(values[n]) == 0 {
            vgic.complete(vcpu.index, intid);
            *slot = None;
            if intid >= SPI_BASE {
                // A level line still high is pending again and may be
                // routed to another vCPU now.
                others = !bit;
            }
        } else if vgic.take_again(vcpu.index, intid) {
            // Pending again while still active: the guest takes it once
            // more when it deactivates this one.
            writes.push((n, values[n] | lr::STATE_PENDING));
        }
    }
    for (n, slot) in vcpu.lr_intid.iter_mut().enumerate().take(values.len()) {
        if slot.is_none() {
            let Some(virq) = vgic.take_pending(vcpu.index) else {
                break;
            };
            writes.push((n, lr::pending(virq.intid, virq.priority)));
            *slot = Some(virq.intid);
        }
    }
    vcpu.more_pending = vgic.has_pending(vcpu.index);
    drop(devices);
    vm.vgic_changed(others);
    writes
}

/// The vCPU powers off (PSCI CPU_OFF; the only way to Power::Off, so a
/// later CPU_ON finds it empty): the interrupts its list registers hold go
/// back to the model, pending again unless the guest had already taken
/// them, and the list registers are cleared. Otherwise they would stay in
/// flight on a vCPU that never completes them, and an SPI routed elsewhere
/// later would never arrive. A timer expiry not yet synced is dropped: CPU_ON
/// starts with a reset timer.
pub fn release(vm: &Vm, vcpu: &mut Vcpu) {
    vcpu.vtimer_fired = false;
    if vcpu.lr_intid.iter().all(Option::is_none) {
        return;
    }
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
    // A given-back SPI may now go to another vCPU; this one refills.
    vm.vgic_changed(ALL);
}

/// Does a list register hold an interrupt the guest has not yet taken?
/// (A guest may execute WFI with interrupts masked; it must not sleep then.)
pub fn lr_pending(vcpu: &Vcpu) -> bool {
    vcpu.lr_intid.iter().enumerate().any(|(n, slot)| slot.is_some() && lr::state(lr::read(n)) & lr::STATE_PENDING != 0)
}

/// Anything for `vcpu` to do: a pending virtual interrupt in the model or
/// in a list register, or one in flight that became pending again.
pub fn has_work(vm: &Vm, vcpu: &Vcpu) -> bool {
    if vcpu.vtimer_fired || lr_pending(vcpu) {
        return true;
    }
    let devices = vm.devices.lock();
    devices.vgic.has_pending(vcpu.index)
        || vcpu.lr_intid.iter().flatten().any(|&intid| devices.vgic.is_pending_again(vcpu.index, intid))
}

/// The running guest's virtual timer fired (physical PPI 27): mask it; the
/// next [`sync`] makes the virtual PPI pending (no lock on this path).
pub fn vtimer_fired(vcpu: &mut Vcpu) {
    timer::mask_guest_vtimer();
    vcpu.vtimer_fired = true;
}
