//! Guest exits: decodes why a vCPU stopped and hands the event to its owner
//! (virtual device, PSCI, vGIC, scheduler). Nothing a guest does here may
//! panic the monitor: bad accesses become guest-visible exceptions.

use crate::{
    arch::{
        context,
        esr::{ec, inject, DataAbort, Esr, SysRegAccess},
        idregs,
        vcpu::Exit,
    },
    dispatch, run, sched,
    stats::ExitReason,
    virq,
    vm::{Devices, End, Vcpu, Vm, GICD_BASE, GICD_SIZE, GICR_BASE, UART_BASE, UART_SIZE},
    vpsci,
};
use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};
use vdev::mmio::{MmioDevice, MmioError};

/// ICC_SGI1R_EL1: op0 3, op1 0, CRn 12, CRm 11, op2 5.
const ICC_SGI1R_EL1: u64 = SysRegAccess::encoding(3, 0, 12, 11, 5);
/// Linux's panic banner: the console line that marks a guest kernel panic.
const PANIC_BANNER: &str = "Kernel panic - not syncing";

/// What the vCPU does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Run,
    /// PSCI CPU_OFF: the vCPU stops until a CPU_ON.
    Off,
    /// WFI with nothing pending: the vCPU gives up its CPU until a virtual
    /// interrupt or its timer deadline.
    Idle,
}

/// Handles one exit of `vcpu` of `vm`. A VM-ending event is recorded with
/// `vm.end()`.
pub fn handle(vm: &Vm, vcpu: &mut Vcpu, exit: Exit) -> Next {
    match exit {
        Exit::Sync => return sync(vm, vcpu, Esr(ESR_EL2.get())),
        Exit::Irq | Exit::Fiq => {
            vm.stats.exit(ExitReason::Irq);
            dispatch::physical_irqs(Some((vm, vcpu)))
        }
        Exit::SError => vm.end(End::Crashed("SError from the guest".into())),
        Exit::AArch32 => vm.end(End::Crashed("the guest entered AArch32, which is not supported".into())),
    }
    Next::Run
}

fn sync(vm: &Vm, vcpu: &mut Vcpu, esr: Esr) -> Next {
    vm.stats.exit(match esr.class() {
        ec::WFX => ExitReason::Wfi,
        ec::HVC64 | ec::SMC64 => ExitReason::Hypercall,
        ec::SYSREG => ExitReason::SysReg,
        ec::DABT_LOWER | ec::IABT_LOWER if vm.is_ram(fault_ipa()) => ExitReason::FirstTouch,
        ec::DABT_LOWER => ExitReason::Mmio,
        _ => ExitReason::Other,
    });
    match esr.class() {
        ec::WFX => {
            // WFE, WFIT and WFET complete at once: allowed by the
            // architecture, and their deadlines are the guest's to keep.
            vcpu.regs.pc += 4;
            if esr.is_plain_wfi() && idle(vm, vcpu) {
                return Next::Idle;
            }
        }
        ec::HVC64 => return vpsci::call(vm, vcpu),
        ec::SMC64 => {
            // A trapped SMC returns to the instruction after it; the PSCI
            // conduit the guest DTB names is HVC, but SMC works the same.
            vcpu.regs.pc += 4;
            return vpsci::call(vm, vcpu);
        }
        ec::SYSREG => sysreg(vm, vcpu, esr.sysreg()),
        ec::DABT_LOWER => data_abort(vm, vcpu, esr),
        ec::IABT_LOWER if vm.is_ram(fault_ipa()) => {
            let translation_fault = esr.fault_status() & 0b11_1100 == 0b00_0100;
            first_touch(vm, fault_ipa(), translation_fault, esr)
        }
        ec::IABT_LOWER => {
            let ipa = fault_ipa();
            log::warn!("{}: instruction fetch from {ipa:#x} (not RAM): external abort injected", vm.name);
            let regs = &mut vcpu.regs;
            regs.inject_sync(inject::instruction_sea(regs.at_el0()), FAR_EL2.get());
        }
        _ => {
            let regs = &mut vcpu.regs;
            log::warn!(
                "{}: unhandled {} trap (ESR {:#x}) at pc {:#x}: undefined instruction injected",
                vm.name,
                esr.class_name(),
                esr.0,
                regs.pc
            );
            regs.inject_sync(inject::undefined(), 0);
        }
    }
    Next::Run
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

fn sysreg(vm: &Vm, vcpu: &mut Vcpu, access: SysRegAccess) {
    let regs = &mut vcpu.regs;
    if idregs::is_id_space(access.op0, access.op1, access.crn, access.crm) && access.read {
        regs.set_reg(access.rt, idregs::guest_value(access.crm, access.op2));
    } else if access.id() == ICC_SGI1R_EL1 && !access.read {
        let value = regs.reg(access.rt);
        let targets = vm.devices.lock().vgic.write_sgi1r(vcpu.index, value);
        virq::changed(vm, targets);
        (0..64).filter(|t| targets & 1 << t != 0 && *t != vcpu.index).for_each(|t| sched::kick(vm, t));
    } else {
        log::warn!(
            "{}: {} of system register op0={} op1={} CRn={} CRm={} op2={} at pc {:#x}: undefined instruction injected",
            vm.name,
            if access.read { "read" } else { "write" },
            access.op0,
            access.op1,
            access.crn,
            access.crm,
            access.op2,
            regs.pc
        );
        regs.inject_sync(inject::undefined(), 0);
        return;
    }
    vcpu.regs.pc += 4;
}

/// The faulting guest-physical address of a stage-2 abort.
fn fault_ipa() -> u64 {
    (HPFAR_EL2.get() & 0x0fff_ffff_fff0) << 8 | (FAR_EL2.get() & 0xfff)
}

fn data_abort(vm: &Vm, vcpu: &mut Vcpu, esr: Esr) {
    let ipa = fault_ipa();
    // Only translation faults (DFSC 0b0001LL) are MMIO; RAM is always mapped.
    let translation_fault = esr.fault_status() & 0b11_1100 == 0b00_0100;
    if vm.is_ram(ipa) {
        return first_touch(vm, ipa, translation_fault, esr);
    }
    let result = match (translation_fault, esr.data_abort()) {
        (true, Some(access)) => mmio(vm, vcpu, ipa, access),
        _ => Err(MmioError::Unmapped),
    };
    let regs = &mut vcpu.regs;
    match result {
        Ok(()) => regs.pc += 4,
        Err(error) => {
            log::warn!(
                "{}: {} access to guest-physical {ipa:#x} at pc {:#x} ({error:?}): external abort injected",
                vm.name,
                if esr.iss() & (1 << 6) != 0 { "write" } else { "read" },
                regs.pc
            );
            let write = esr.iss() & (1 << 6) != 0;
            regs.inject_sync(inject::data_sea(regs.at_el0(), write), FAR_EL2.get());
        }
    }
}

/// A stage-2 translation fault on guest RAM: back the page on the node of
/// the CPU the vCPU runs on, and let the guest retry the access.
fn first_touch(vm: &Vm, ipa: u64, translation_fault: bool, esr: Esr) {
    if !translation_fault {
        vm.end(End::Crashed(alloc::format!("stage-2 fault on guest RAM at {ipa:#x} (ESR {:#x})", esr.0)));
    } else if vm.touch(ipa, run::current_node()).is_none() {
        vm.end(End::Crashed(alloc::format!("out of machine memory backing guest page {ipa:#x}")));
    }
}

/// Emulates one load or store to a virtual device.
fn mmio(vm: &Vm, vcpu: &mut Vcpu, ipa: u64, access: DataAbort) -> Result<(), MmioError> {
    let value = vcpu.regs.reg(access.reg);
    let gicr_end = GICR_BASE + vm.gicr_size();
    let mut devices = vm.devices.lock();
    let (read, vgic_written) = match ipa {
        a if (GICD_BASE..GICD_BASE + GICD_SIZE).contains(&a) => {
            (perform(&mut devices.vgic.distributor(), a - GICD_BASE, access, value)?, access.write)
        }
        a if (GICR_BASE..gicr_end).contains(&a) => {
            (perform(&mut devices.vgic.redistributors(), a - GICR_BASE, access, value)?, access.write)
        }
        a if (UART_BASE..UART_BASE + UART_SIZE).contains(&a) => {
            let read = perform(&mut devices.uart, a - UART_BASE, access, value)?;
            uart_changed(vm, &mut devices);
            (read, false)
        }
        _ => return Err(MmioError::Unmapped),
    };
    if vgic_written {
        kick_pending(vm, &devices);
    }
    drop(devices);
    if let Some(mut value) = read {
        let bits = access.size as u32 * 8;
        if access.sign_extend && bits < 64 {
            let shift = 64 - bits;
            value = (((value << shift) as i64) >> shift) as u64;
        }
        if !access.reg64 {
            value &= 0xffff_ffff;
        }
        vcpu.regs.set_reg(access.reg, value);
    }
    Ok(())
}

/// Performs the access on `device`; returns the value read, for loads.
fn perform(device: &mut impl MmioDevice, offset: u64, access: DataAbort, value: u64) -> Result<Option<u64>, MmioError> {
    if access.write {
        let mask = if access.size == 8 { u64::MAX } else { (1u64 << (access.size * 8)) - 1 };
        device.write(offset, access.size, value & mask).map(|()| None)
    } else {
        device.read(offset, access.size).map(Some)
    }
}

/// After a UART access: print what the guest wrote, update its interrupt
/// line, and watch the output for the kernel's panic banner.
pub fn uart_changed(vm: &Vm, devices: &mut Devices) {
    let output = devices.uart.take_tx();
    if !output.is_empty() {
        let focused = run::has_focus(vm);
        devices.console.push(&vm.name, &output, focused, |line| {
            if let Some(at) = line.find(PANIC_BANNER) {
                vm.end(End::Crashed(alloc::format!("guest kernel panic: {}", &line[at..])));
            }
        });
    }
    let level = devices.uart.irq_level();
    devices.vgic.set_spi_level(crate::vm::UART_INTID, level);
    kick_pending(vm, devices);
}

/// After the vGIC state changed (a line moved, or the guest enabled,
/// routed or set pending an interrupt through GICD/GICR): every
/// vCPU looks again at its next `virq::sync` (these changes are rare, and
/// one may make an interrupt a vCPU holds in flight pending again), and
/// every vCPU with something to take is kicked, since it may be parked or
/// running on another CPU.
fn kick_pending(vm: &Vm, devices: &Devices) {
    virq::changed(vm, virq::ALL);
    (0..vm.mpidrs.len()).filter(|&v| devices.vgic.has_pending(v)).for_each(|v| sched::kick(vm, v));
}
