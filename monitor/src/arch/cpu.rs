//! Per-CPU EL2 configuration: the traps and controls every physical CPU runs
//! guests with, and the per-CPU block that TPIDR_EL2 points at.

use super::{vcpu::VcpuRegs, MAX_CPUS};
use aarch64_cpu::{
    asm::barrier,
    registers::{
        Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, CPTR_EL2, HCR_EL2, ICC_SRE_EL2, ICH_HCR_EL2, ID_AA64DFR0_EL1,
        MDCR_EL2, MIDR_EL1, MPIDR_EL1, TPIDR_EL2,
    },
};
use tock_registers::{register_bitfields, LocalRegisterCopy};

register_bitfields! {u64,
    /// CPTR_EL2 with HCR_EL2.E2H == 0 (Arm ARM D19.2.30).
    pub Cptr [
        TCPAC OFFSET(31) NUMBITS(1) [],
        TAM OFFSET(30) NUMBITS(1) [],
        TTA OFFSET(20) NUMBITS(1) [],
        RES1_13 OFFSET(13) NUMBITS(1) [],
        TSM OFFSET(12) NUMBITS(1) [],
        TFP OFFSET(10) NUMBITS(1) [],
        RES1_9 OFFSET(9) NUMBITS(1) [],
        TZ OFFSET(8) NUMBITS(1) [],
        RES1_0_7 OFFSET(0) NUMBITS(8) []
    ],
    /// CNTHCTL_EL2 with HCR_EL2.E2H == 0 (Arm ARM D19.12.3): the EL1
    /// counter access and the event stream (aarch64-cpu names only the
    /// first two fields).
    pub Cnthctl [
        EVNTI OFFSET(4) NUMBITS(4) [],
        EVNTDIR OFFSET(3) NUMBITS(1) [],
        EVNTEN OFFSET(2) NUMBITS(1) [],
        EL1PCEN OFFSET(1) NUMBITS(1) [],
        EL1PCTEN OFFSET(0) NUMBITS(1) []
    ]
}

/// The event stream's period: about this many microseconds, so that a
/// WFE wait ([`wait_for_event`]) ends within it even when nobody sends
/// an event (Linux runs its stream at 10 kHz for the same reason).
const EVENT_STREAM_US: u64 = 100;

/// What TPIDR_EL2 points at. `regs` must stay the first field: vectors.S
/// loads it to find where to save a guest's registers.
#[repr(C)]
pub struct PerCpu {
    pub regs: *mut VcpuRegs,
    pub index: usize,
}

static mut PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu { regs: core::ptr::null_mut(), index: 0 } }; MAX_CPUS];

/// Configures EL2 on the calling CPU for running guests.
pub fn init(index: usize) {
    assert!(index < MAX_CPUS, "CPU index {index} beyond MAX_CPUS");
    // SAFETY: each CPU writes only its own slot, once, before anything reads it.
    unsafe {
        let slot = &raw mut PER_CPU[index];
        (*slot).index = index;
        TPIDR_EL2.set(slot as u64);
    }
    HCR_EL2.write(
        HCR_EL2::VM::Enable
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::FB::SET
            + HCR_EL2::BSU::InnerShareable
            + HCR_EL2::TWI::SET
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::TID3::SET
            + HCR_EL2::RW::EL1IsAarch64
            + HCR_EL2::API::DisableTrapPointerAuthInstToEl2
            + HCR_EL2::APK::DisableTrapPointerAuthKeyRegsToEl2,
    );
    // FP/SIMD is the guest's; SVE and SME are hidden from guests (idregs.rs)
    // and trap, so their wider state never needs switching.
    let cptr: LocalRegisterCopy<u64, Cptr::Register> = LocalRegisterCopy::new(0);
    let mut cptr = cptr;
    cptr.write(Cptr::RES1_13::SET + Cptr::RES1_9::SET + Cptr::RES1_0_7.val(0xff) + Cptr::TZ::SET + Cptr::TSM::SET);
    CPTR_EL2.set(cptr.get());
    // Guests may read the physical counter; the physical timer is the
    // monitor's. The event stream bounds every WFE wait.
    let mut cnthctl: LocalRegisterCopy<u64, Cnthctl::Register> = LocalRegisterCopy::new(0);
    cnthctl.write(Cnthctl::EL1PCTEN::SET + Cnthctl::EVNTEN::SET + Cnthctl::EVNTI.val(event_stream_bit()));
    CNTHCTL_EL2.set(cnthctl.get());
    CNTVOFF_EL2.set(0);
    // Debug registers are the guest's and switched with its context
    // (debug.rs). The PMU is not virtualized: it is hidden (idregs.rs) and
    // its registers trap, so one guest cannot count or stop another's events.
    // (TPM and TPMCR are RES0 without a PMU.)
    let hpmn = MDCR_EL2.read(MDCR_EL2::HPMN);
    let pmu = !matches!(ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer), 0 | 0xf);
    let trap_pmu = if pmu { MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET } else { MDCR_EL2::TPM::CLEAR };
    MDCR_EL2.write(MDCR_EL2::HPMN.val(hpmn) + trap_pmu);
    // VPIDR_EL2: guests see the machine's MIDR (aarch64-cpu lacks this register).
    // SAFETY: sets the MIDR value EL1 reads; no other effect.
    unsafe { core::arch::asm!("msr vpidr_el2, {0}", in(reg) MIDR_EL1.get()) };
    // The GICv3 system-register interface for EL2 and the guest's virtual one.
    ICC_SRE_EL2.set(ICC_SRE_EL2.get() | 0b1001); // SRE | Enable
    barrier::isb(barrier::SY);
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
    barrier::isb(barrier::SY);
}

/// The calling CPU's logical index.
pub fn index() -> usize {
    // SAFETY: TPIDR_EL2 was set by init() to this CPU's PerCpu slot.
    unsafe { (*(TPIDR_EL2.get() as *const PerCpu)).index }
}

/// The calling CPU's affinity (MPIDR_EL1 without the non-affinity bits).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// Waits for an interrupt with interrupts masked: returns when one is pending.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::barrier::dsb(barrier::SY);
    aarch64_cpu::asm::wfi();
}

/// Waits for an event (another CPU's [`send_event`], the event stream, an
/// exception return) with interrupts masked; a wait for something another
/// CPU does, not for an interrupt.
pub fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// Wakes every CPU waiting in [`wait_for_event`] (after a DSB, so that
/// what it waits for is visible first).
pub fn send_event() {
    aarch64_cpu::asm::barrier::dsb(barrier::ISH);
    aarch64_cpu::asm::sev();
}

/// EVNTI: the stream ticks when counter bit EVNTI changes, every
/// 2^(EVNTI+1) counter ticks; the largest period not above
/// [`EVENT_STREAM_US`].
fn event_stream_bit() -> u64 {
    let ticks = (super::timer::frequency() * EVENT_STREAM_US / 1_000_000).max(2);
    (63 - u64::from(ticks.leading_zeros())).saturating_sub(1).min(15)
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// Bit n: CPU n came up (the boot CPU is CPU 0). Only these get vCPUs.
static ONLINE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// CPU `index` finished its bring-up.
pub fn mark_online(index: usize) {
    ONLINE.fetch_or(1 << index, core::sync::atomic::Ordering::Release);
}

/// Did CPU `index` come up? (A CPU whose PSCI CPU_ON failed, or that was
/// too slow to report, must not be given vCPUs: they would never run.)
pub fn is_online(index: usize) -> bool {
    index < 64 && ONLINE.load(core::sync::atomic::Ordering::Acquire) & 1 << index != 0
}

/// How many CPUs came up.
pub fn online_count() -> u32 {
    ONLINE.load(core::sync::atomic::Ordering::Acquire).count_ones()
}
