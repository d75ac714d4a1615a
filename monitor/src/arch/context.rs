//! The EL1 system-register state of a vCPU that the hardware keeps while
//! the vCPU runs, saved and restored when a physical CPU switches vCPUs.
//! With one vCPU per CPU nothing needs switching; the scheduler does.

use aarch64_cpu::registers::*;

macro_rules! el1_context {
    ($($field:ident: $reg:ident),* $(,)?) => {
        /// Saved EL1 registers of a vCPU that is not running.
        #[derive(Clone, Default)]
        pub struct El1Context {
            $(pub $field: u64,)*
        }

        impl El1Context {
            /// Reads the calling CPU's EL1 state (the vCPU that just ran).
            pub fn save(&mut self) {
                $(self.$field = $reg.get();)*
            }

            /// Loads this state into the calling CPU before running the vCPU.
            pub fn restore(&self) {
                $($reg.set(self.$field);)*
                aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            }
        }
    };
}

el1_context! {
    sctlr: SCTLR_EL1,
    cpacr: CPACR_EL1,
    ttbr0: TTBR0_EL1,
    ttbr1: TTBR1_EL1,
    tcr: TCR_EL1,
    mair: MAIR_EL1,
    amair: AMAIR_EL1,
    vbar: VBAR_EL1,
    contextidr: CONTEXTIDR_EL1,
    tpidr_el0: TPIDR_EL0,
    tpidrro_el0: TPIDRRO_EL0,
    tpidr_el1: TPIDR_EL1,
    sp_el0: SP_EL0,
    sp_el1: SP_EL1,
    elr: ELR_EL1,
    spsr: SPSR_EL1,
    esr: ESR_EL1,
    far: FAR_EL1,
    par: PAR_EL1,
    afsr0: AFSR0_EL1,
    afsr1: AFSR1_EL1,
    csselr: CSSELR_EL1,
    cntkctl: CNTKCTL_EL1,
    mdscr: MDSCR_EL1,
    apia_lo: APIAKEYLO_EL1,
    apia_hi: APIAKEYHI_EL1,
    apib_lo: APIBKEYLO_EL1,
    apib_hi: APIBKEYHI_EL1,
    apda_lo: APDAKEYLO_EL1,
    apda_hi: APDAKEYHI_EL1,
    apdb_lo: APDBKEYLO_EL1,
    apdb_hi: APDBKEYHI_EL1,
    apga_lo: APGAKEYLO_EL1,
    apga_hi: APGAKEYHI_EL1,
    cntv_cval: CNTV_CVAL_EL0,
    cntv_ctl: CNTV_CTL_EL0,
    vmpidr: VMPIDR_EL2,
    ich_vmcr: ICH_VMCR_EL2,
    ich_ap1r0: ICH_AP1R0_EL2,
}
