//! Why a vCPU left the guest, decoded once from the syndrome registers
//! (ESR_EL2, FAR_EL2, HPFAR_EL2) into a value that the exit owners match
//! on, so no policy code reads an exception register itself.

use super::{
    esr::{ec, DataAbort, Esr, SysRegAccess},
    vcpu::Exit,
};
use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};

/// One guest exit.
#[derive(Debug, Clone, Copy)]
pub enum ExitInfo {
    /// A physical interrupt (IRQ or FIQ) arrived while the guest ran.
    Irq,
    /// WFI or WFE; `wfi`: a plain WFI (no WFE, no WFIT/WFET deadline).
    Wfx { wfi: bool },
    Hvc,
    Smc,
    SysReg(SysRegAccess),
    /// A stage-2 data or instruction abort.
    Abort(Abort),
    SError,
    AArch32,
    /// Any other synchronous exception class.
    Other(Esr),
}

/// The stage-2 fault status of an abort (DFSC/IFSC, Arm ARM D17.2.37).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No valid descriptor at this level (0b0001LL).
    Translation,
    /// Access flag clear (0b0010LL).
    AccessFlag,
    /// The descriptor forbids the access (0b0011LL).
    Permission,
    /// External aborts, alignment, TLB conflicts, ...
    Other,
}

/// A stage-2 abort taken from the guest.
#[derive(Debug, Clone, Copy)]
pub struct Abort {
    /// The faulting guest-physical address.
    pub ipa: u64,
    /// The faulting guest-virtual address (for injected aborts).
    pub far: u64,
    pub fault: Fault,
    /// An instruction fetch, not a data access (false on a stage-1 walk,
    /// whose descriptor accesses are data accesses).
    pub fetch: bool,
    /// A data write (WnR), or a stage-1 table walk that faulted on a
    /// stage-2 permission (S1PTW): the walker writing a descriptor's
    /// access or dirty flag (FEAT_HAFDBS), since stage 2 lets it read.
    pub write: bool,
    /// The load/store's syndrome when the hardware provides it (ISV), as
    /// MMIO emulation needs.
    pub access: Option<DataAbort>,
    pub esr: Esr,
}

/// Decodes the exit that `vcpu::run` returned.
pub fn decode(exit: Exit) -> ExitInfo {
    match exit {
        Exit::Irq | Exit::Fiq => ExitInfo::Irq,
        Exit::SError => ExitInfo::SError,
        Exit::AArch32 => ExitInfo::AArch32,
        Exit::Sync => decode_sync(Esr(ESR_EL2.get())),
    }
}

fn decode_sync(esr: Esr) -> ExitInfo {
    match esr.class() {
        ec::WFX => ExitInfo::Wfx { wfi: esr.is_plain_wfi() },
        ec::HVC64 => ExitInfo::Hvc,
        ec::SMC64 => ExitInfo::Smc,
        ec::SYSREG => ExitInfo::SysReg(esr.sysreg()),
        class @ (ec::DABT_LOWER | ec::IABT_LOWER) => {
            let far = FAR_EL2.get();
            // ISS bit 7 (S1PTW) in both abort classes. On a walk the
            // faulting access is the walker's (data), even for a fetch.
            let s1ptw = esr.iss() & (1 << 7) != 0;
            let fetch = class == ec::IABT_LOWER && !s1ptw;
            ExitInfo::Abort(Abort {
                // HPFAR_EL2.FIPA holds IPA[47:12] in bits [43:4].
                ipa: (HPFAR_EL2.get() & 0x0fff_ffff_fff0) << 8 | (far & 0xfff),
                far,
                fault: fault_of(esr.fault_status()),
                fetch,
                write: (!fetch && esr.iss() & (1 << 6) != 0) || s1ptw,
                access: if fetch { None } else { esr.data_abort() },
                esr,
            })
        }
        _ => ExitInfo::Other(esr),
    }
}

fn fault_of(status: u64) -> Fault {
    match status & 0b11_1100 {
        0b00_0100 => Fault::Translation,
        0b00_1000 => Fault::AccessFlag,
        0b00_1100 => Fault::Permission,
        _ => Fault::Other,
    }
}
