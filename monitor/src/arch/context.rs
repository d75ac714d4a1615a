//! A vCPU's EL1 context: the system registers, virtual timer and virtual
//! GIC CPU interface state that belong to the guest while it runs. When the
//! scheduler takes a vCPU off a CPU it saves this image and silences the
//! hardware (timer off, list registers empty), so the next vCPU starts
//! clean; loading writes the image back (KVM's vcpu_load / vcpu_put).

use super::{debug::DebugContext, gicv3::lr};
use aarch64_cpu::registers::{
    Readable, Writeable, AFSR0_EL1, AFSR1_EL1, AMAIR_EL1, CNTKCTL_EL1, CNTV_CTL_EL0, CNTV_CVAL_EL0, CONTEXTIDR_EL1,
    CPACR_EL1, CSSELR_EL1, ELR_EL1, ESR_EL1, FAR_EL1, ICH_AP0R0_EL2, ICH_AP1R0_EL2, ICH_VMCR_EL2, ID_AA64ISAR1_EL1,
    MAIR_EL1, MDSCR_EL1, PAR_EL1, SCTLR_EL1, SPSR_EL1, SP_EL0, SP_EL1, TCR_EL1, TPIDRRO_EL0, TPIDR_EL0, TPIDR_EL1,
    TTBR0_EL1, TTBR1_EL1, VBAR_EL1, VMPIDR_EL2,
};
use spin::Once;

/// SCTLR_EL1 at reset: MMU and caches off, RES1 bits set.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// VMPIDR_EL2.U is RES1 on a uniprocessor-format MPIDR; bit 31 is RES1.
const MPIDR_RES1: u64 = 1 << 31;
/// CNTV_CTL_EL0 bits.
const TIMER_ENABLE: u64 = 1 << 0;
const TIMER_IMASK: u64 = 1 << 1;
const TIMER_ISTATUS: u64 = 1 << 2;

/// Everything of a vCPU that lives in EL1/EL0 system registers or in the
/// GIC's virtual CPU interface.
#[derive(Clone)]
pub struct El1Context {
    sctlr: u64,
    cpacr: u64,
    ttbr0: u64,
    ttbr1: u64,
    tcr: u64,
    mair: u64,
    amair: u64,
    vbar: u64,
    contextidr: u64,
    tpidr_el1: u64,
    tpidr_el0: u64,
    tpidrro_el0: u64,
    sp_el0: u64,
    sp_el1: u64,
    elr: u64,
    spsr: u64,
    esr: u64,
    far: u64,
    par: u64,
    afsr0: u64,
    afsr1: u64,
    csselr: u64,
    cntkctl: u64,
    mdscr: u64,
    debug: DebugContext,
    /// Pointer-authentication keys: APIA, APIB, APDA, APDB, APGA (lo, hi).
    keys: [u64; 10],
    cntv_ctl: u64,
    cntv_cval: u64,
    vmcr: u64,
    ap0r0: u64,
    ap1r0: u64,
    lrs: [u64; 16],
}

impl El1Context {
    /// The architectural reset state: MMU off, timer off, no interrupts.
    pub const fn reset() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            cpacr: 0,
            ttbr0: 0,
            ttbr1: 0,
            tcr: 0,
            mair: 0,
            amair: 0,
            vbar: 0,
            contextidr: 0,
            tpidr_el1: 0,
            tpidr_el0: 0,
            tpidrro_el0: 0,
            sp_el0: 0,
            sp_el1: 0,
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            par: 0,
            afsr0: 0,
            afsr1: 0,
            csselr: 0,
            cntkctl: 0,
            mdscr: 0,
            debug: DebugContext::reset(),
            keys: [0; 10],
            cntv_ctl: 0,
            cntv_cval: 0,
            vmcr: 0,
            ap0r0: 0,
            ap1r0: 0,
            lrs: [0; 16],
        }
    }

    /// Reads the calling CPU's guest state into this image, then silences
    /// the virtual timer and empties the list registers.
    pub fn save(&mut self, list_registers: usize) {
        self.sctlr = SCTLR_EL1.get();
        self.cpacr = CPACR_EL1.get();
        self.ttbr0 = TTBR0_EL1.get();
        self.ttbr1 = TTBR1_EL1.get();
        self.tcr = TCR_EL1.get();
        self.mair = MAIR_EL1.get();
        self.amair = AMAIR_EL1.get();
        self.vbar = VBAR_EL1.get();
        self.contextidr = CONTEXTIDR_EL1.get();
        self.tpidr_el1 = TPIDR_EL1.get();
        self.tpidr_el0 = TPIDR_EL0.get();
        self.tpidrro_el0 = TPIDRRO_EL0.get();
        self.sp_el0 = SP_EL0.get();
        self.sp_el1 = SP_EL1.get();
        self.elr = ELR_EL1.get();
        self.spsr = SPSR_EL1.get();
        self.esr = ESR_EL1.get();
        self.far = FAR_EL1.get();
        self.par = PAR_EL1.get();
        self.afsr0 = AFSR0_EL1.get();
        self.afsr1 = AFSR1_EL1.get();
        self.csselr = CSSELR_EL1.get();
        self.cntkctl = CNTKCTL_EL1.get();
        self.mdscr = MDSCR_EL1.get();
        self.debug.save();
        if has_pointer_auth() {
            self.keys = pauth_keys::read();
        }
        self.cntv_ctl = CNTV_CTL_EL0.get();
        self.cntv_cval = CNTV_CVAL_EL0.get();
        CNTV_CTL_EL0.set(0);
        self.vmcr = ICH_VMCR_EL2.get();
        self.ap0r0 = ICH_AP0R0_EL2.get();
        self.ap1r0 = ICH_AP1R0_EL2.get();
        for n in 0..list_registers.min(16) {
            self.lrs[n] = lr::read(n);
            lr::write(n, 0);
        }
        // With the list registers empty, underflow would fire at once.
        lr::disable_underflow();
    }

    /// Writes this image to the calling CPU for the vCPU with affinity
    /// `mpidr`.
    pub fn load(&self, mpidr: u64, list_registers: usize) {
        SCTLR_EL1.set(self.sctlr);
        CPACR_EL1.set(self.cpacr);
        TTBR0_EL1.set(self.ttbr0);
        TTBR1_EL1.set(self.ttbr1);
        TCR_EL1.set(self.tcr);
        MAIR_EL1.set(self.mair);
        AMAIR_EL1.set(self.amair);
        VBAR_EL1.set(self.vbar);
        CONTEXTIDR_EL1.set(self.contextidr);
        TPIDR_EL1.set(self.tpidr_el1);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        SP_EL0.set(self.sp_el0);
        SP_EL1.set(self.sp_el1);
        ELR_EL1.set(self.elr);
        SPSR_EL1.set(self.spsr);
        ESR_EL1.set(self.esr);
        FAR_EL1.set(self.far);
        PAR_EL1.set(self.par);
        AFSR0_EL1.set(self.afsr0);
        AFSR1_EL1.set(self.afsr1);
        CSSELR_EL1.set(self.csselr);
        CNTKCTL_EL1.set(self.cntkctl);
        MDSCR_EL1.set(self.mdscr);
        self.debug.load();
        if has_pointer_auth() {
            pauth_keys::write(&self.keys);
        }
        VMPIDR_EL2.set(mpidr | MPIDR_RES1);
        CNTV_CVAL_EL0.set(self.cntv_cval);
        CNTV_CTL_EL0.set(self.cntv_ctl);
        ICH_VMCR_EL2.set(self.vmcr);
        ICH_AP0R0_EL2.set(self.ap0r0);
        ICH_AP1R0_EL2.set(self.ap1r0);
        for n in 0..list_registers.min(16) {
            lr::write(n, self.lrs[n]);
        }
    }

    /// The guest's virtual timer deadline (counter value), if it is armed
    /// and not masked: when a parked vCPU must wake.
    pub fn timer_deadline(&self) -> Option<u64> {
        (self.cntv_ctl & (TIMER_ENABLE | TIMER_IMASK) == TIMER_ENABLE).then_some(self.cntv_cval)
    }
}

/// Has the loaded guest's virtual timer fired (enabled, unmasked, condition
/// met)? Its interrupt is then about to be taken.
pub fn vtimer_fired() -> bool {
    CNTV_CTL_EL0.get() & (TIMER_ENABLE | TIMER_IMASK | TIMER_ISTATUS) == TIMER_ENABLE | TIMER_ISTATUS
}

/// Does this CPU implement pointer authentication (address or generic,
/// any algorithm)? Its key registers are UNDEFINED otherwise.
fn has_pointer_auth() -> bool {
    static PAUTH: Once<bool> = Once::new();
    *PAUTH.call_once(|| {
        let isar1 = ID_AA64ISAR1_EL1.get();
        let isar2 = super::idregs::guest_value(6, 2);
        // ISAR1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28];
        // ISAR2: GPA3 [11:8], APA3 [15:12].
        isar1 & (0xff << 4 | 0xff << 24) != 0 || isar2 & 0xff << 8 != 0
    })
}

/// The pointer-authentication key registers, by encoding: the assembler
/// only names them for targets with FEAT_PAuth, which the monitor's is not.
mod pauth_keys {
    use core::arch::asm;

    macro_rules! keys {
        ($($enc:literal),*) => {
            pub fn read() -> [u64; 10] {
                let mut keys = [0u64; 10];
                let mut n = 0;
                $(
                    // SAFETY: reading a key register has no side effects;
                    // callers check FEAT_PAuth first.
                    unsafe { asm!(concat!("mrs {0}, ", $enc), out(reg) keys[n]) };
                    n += 1;
                )*
                let _ = n;
                keys
            }

            pub fn write(keys: &[u64; 10]) {
                let mut n = 0;
                $(
                    // SAFETY: the keys belong to the guest being loaded;
                    // the monitor itself does not use pointer authentication.
                    unsafe { asm!(concat!("msr ", $enc, ", {0}"), in(reg) keys[n]) };
                    n += 1;
                )*
                let _ = n;
            }
        };
    }

    // APIAKey{Lo,Hi}, APIBKey, APDAKey, APDBKey, APGAKey (Arm ARM D23.2).
    keys!(
        "S3_0_C2_C1_0",
        "S3_0_C2_C1_1",
        "S3_0_C2_C1_2",
        "S3_0_C2_C1_3",
        "S3_0_C2_C2_0",
        "S3_0_C2_C2_1",
        "S3_0_C2_C2_2",
        "S3_0_C2_C2_3",
        "S3_0_C2_C3_0",
        "S3_0_C2_C3_1"
    );
}
