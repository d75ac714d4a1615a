//! Stage-2 translation on this machine: the translation regime (VTCR_EL2),
//! table memory for the `stage2` crate's walker, and the TLB maintenance
//! that break-before-make needs. The descriptors and the walker are pure
//! and host-tested in the `stage2` crate; this file is what touches the
//! hardware.

use super::mem;
use aarch64_cpu::{
    asm::barrier,
    registers::{Readable, Writeable, ID_AA64MMFR1_EL1, VTCR_EL2, VTTBR_EL2},
};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use stage2::PAGE_SIZE;

/// More invalidations than this in one batch flush the whole VMID instead
/// (one broadcast instead of hundreds).
const MAX_PER_IPA: usize = 64;

/// Does this CPU have 16-bit VMIDs (else 8-bit)?
fn vmid16() -> bool {
    ID_AA64MMFR1_EL1.matches_all(ID_AA64MMFR1_EL1::VMIDBits::Bits16)
}

/// VMIDs the translation regime distinguishes: 65536 with 16-bit VMIDs,
/// else 256. VMID 0 is the monitor's (no VM uses it); every stage-2 root
/// (one per VM and node with CPUs) needs its own, or roots would share
/// TLB entries.
pub fn vmid_count() -> usize {
    if vmid16() {
        1 << 16
    } else {
        1 << 8
    }
}

/// Configures the stage-2 translation regime on the calling CPU.
pub fn init_cpu() {
    let vmid_size = if vmid16() { VTCR_EL2::VS::Bits16 } else { VTCR_EL2::VS::Bits8 };
    VTCR_EL2.write(
        vmid_size
            + VTCR_EL2::RES1::SET
            + VTCR_EL2::PS::PA_40B_1TB
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::SL0::Granule4KBLevel1
            + VTCR_EL2::T0SZ.val(25),
    );
    barrier::isb(barrier::SY);
}

/// Entry `index` of the stage-2 table frame at `table` (for the owner's
/// `stage2::TableMemory`, which also decides where table frames come from).
pub fn read_entry(table: u64, index: usize) -> u64 {
    // SAFETY: `table` is a table frame of a live Stage2 (the walker only
    // follows descriptors its owner wrote), and the index stays below 512.
    unsafe { core::ptr::read_volatile((table as *const u64).add(index.min(511))) }
}

/// Writes entry `index` of the table frame at `table`: one aligned 64-bit
/// store, so the hardware walker sees the old or the new descriptor, never
/// a mix.
pub fn write_entry(table: u64, index: usize, value: u64) {
    // SAFETY: as for read_entry.
    unsafe { core::ptr::write_volatile((table as *mut u64).add(index.min(511)), value) };
}

/// Invalidations of guest mappings made by broadcast and on one CPU only
/// (`numa::tlb_sync`), for the statistics: under TCG a broadcast stops
/// every vCPU of the machine.
pub static BROADCASTS: AtomicU64 = AtomicU64::new(0);
pub static LOCAL_ONLY: AtomicU64 = AtomicU64::new(0);

/// One stage-2 root of a VM and its VMID.
pub struct Stage2 {
    root: u64,
    vmid: u16,
}

impl Stage2 {
    /// `root` is a zeroed 4 KiB frame that becomes the level-1 table.
    pub fn new(root: u64, vmid: u16) -> Self {
        Self { root, vmid }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// VTTBR_EL2 for this VM: root table and VMID.
    pub fn vttbr(&self) -> u64 {
        self.root | ((self.vmid as u64) << 48)
    }

    /// Makes descriptor writes visible to every CPU's table walker before
    /// a guest may use them (an invalid -> valid change needs no TLB
    /// maintenance: TLBs never hold invalid entries).
    pub fn publish() {
        // SAFETY: a barrier only.
        unsafe { asm!("dsb ishst", "isb") };
    }

    /// The invalidation half of break-before-make: after the old
    /// descriptors of `ipas` were replaced by invalid ones, removes every
    /// TLB entry that may still hold them, on every CPU. Stage-2 entries go
    /// by IPA (TLBI IPAS2E1IS); combined stage-1+2 entries cannot be found
    /// by IPA, so the VM's stage-1 entries go too (TLBI VMALLE1IS), as the
    /// architecture requires. A large batch flushes the VMID whole.
    pub fn invalidate(&self, ipas: &[u64]) {
        if ipas.is_empty() {
            return;
        }
        BROADCASTS.fetch_add(1, Relaxed);
        self.with_vmid(|| {
            if ipas.len() > MAX_PER_IPA {
                // SAFETY: TLB maintenance for the loaded VMID only.
                unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
                return;
            }
            // SAFETY: as above.
            unsafe { asm!("dsb ishst") };
            for &ipa in ipas {
                // SAFETY: as above; the operand is IPA[51:12].
                unsafe { asm!("tlbi ipas2e1is, {0}", in(reg) ipa >> 12) };
            }
            // SAFETY: as above.
            unsafe { asm!("dsb ish", "tlbi vmalle1is", "dsb ish", "isb") };
        });
    }

    /// [`Stage2::invalidate`] on this CPU only: enough when no other CPU
    /// runs the VM now, and the others flush before they next run it
    /// (`numa::tlb_sync`).
    pub fn invalidate_here(&self, ipas: &[u64]) {
        if ipas.is_empty() {
            return;
        }
        LOCAL_ONLY.fetch_add(1, Relaxed);
        self.with_vmid(|| {
            if ipas.len() > MAX_PER_IPA {
                flush_local_vmid();
                return;
            }
            // SAFETY: TLB maintenance for the loaded VMID, this CPU only.
            unsafe { asm!("dsb nshst") };
            for &ipa in ipas {
                // SAFETY: as above; the operand is IPA[51:12].
                unsafe { asm!("tlbi ipas2e1, {0}", in(reg) ipa >> 12) };
            }
            // SAFETY: as above.
            unsafe { asm!("dsb nsh", "tlbi vmalle1", "dsb nsh", "isb") };
        });
    }

    /// Invalidates all of this VM's stage-1 and stage-2 TLB entries on
    /// every CPU.
    pub fn flush_tlb(&self) {
        // SAFETY: TLB maintenance for the loaded VMID only.
        self.with_vmid(|| unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") });
    }

    /// Runs TLB maintenance `f` with this VM's VTTBR_EL2 (so its VMID) loaded,
    /// restoring the CPU's own after: TLBI by VMID uses the current one.
    fn with_vmid(&self, f: impl FnOnce()) {
        // SAFETY: VTTBR_EL2 is restored before returning; EL2 itself does
        // not translate through it.
        unsafe {
            let saved: u64;
            asm!("mrs {0}, vttbr_el2", out(reg) saved);
            VTTBR_EL2.set(self.vttbr());
            asm!("isb");
            f();
            VTTBR_EL2.set(saved);
            asm!("isb");
        }
    }
}

/// Copies one 4 KiB frame to another and makes the copy visible to a
/// guest that may run with caches off or fetch instructions from it.
pub fn copy_frame(to: u64, from: u64) {
    // SAFETY: both are whole frames the caller owns (the mover holds the
    // VM's space lock, and the source is unmapped from the guest).
    unsafe { mem::copy_frame(to, from) };
    mem::clean_for_guest(to, PAGE_SIZE);
}

/// Invalidates every TLB entry (stage 1 and 2) of the VM whose VTTBR_EL2
/// is loaded, on this CPU only: a CPU marked stale for the VM does it
/// before running it (`numa::tlb_sync`).
pub fn flush_local_vmid() {
    // SAFETY: TLB maintenance for the loaded VMID only; no memory is touched.
    unsafe { asm!("dsb nshst", "tlbi vmalls12e1", "dsb nsh", "isb") };
}

/// Invalidates the stage-1 TLB entries of the VM whose VTTBR_EL2 is loaded,
/// on this CPU only: needed when another vCPU of the same VM ran here since
/// this one did, because their entries share the VMID (as KVM does on
/// vcpu_load).
pub fn flush_local_guest_tlb() {
    // SAFETY: TLB maintenance only; no memory is touched.
    unsafe { asm!("isb", "tlbi vmalle1", "dsb nsh", "isb") };
}
