//! Stage-2 translation: guest-physical (IPA) to machine addresses.
//!
//! One walker, `Stage2::walk`, visits the level-3 (4 KiB) entries of an IPA
//! range and hands each to a callback; mapping, translation, teardown (and
//! later migration, replication and copy-on-write) are callbacks on it, as in
//! KVM's kvm_pgtable_walk. Layout: 4 KiB granule, 39-bit IPA space, walks
//! start at level 1 (VTCR_EL2.T0SZ = 25, SL0 = 1).

use aarch64_cpu::{
    asm::barrier,
    registers::{Writeable, VTCR_EL2, VTTBR_EL2},
};
use core::arch::asm;

pub const PAGE_SIZE: u64 = 4096;
const ENTRIES: u64 = 512;
/// Size of the guest-physical address space.
pub const IPA_LIMIT: u64 = 1 << 39;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
// Stage-2 page attributes (Arm ARM D8.5.5).
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;

/// Configures the stage-2 translation regime on the calling CPU.
pub fn init_cpu() {
    VTCR_EL2.write(
        VTCR_EL2::RES1::SET
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

/// A level-3 stage-2 descriptor, as the walker hands it to callbacks.
pub struct Pte<'a>(&'a mut u64);

impl Pte<'_> {
    pub fn is_valid(&self) -> bool {
        *self.0 & VALID != 0
    }
    /// The machine frame this entry maps, if valid.
    pub fn frame(&self) -> Option<u64> {
        self.is_valid().then_some(*self.0 & ADDR_MASK)
    }
    /// Maps the page read-write to normal memory at machine address `pa`.
    pub fn set_ram(&mut self, pa: u64) {
        *self.0 = (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE | MEMATTR_NORMAL_WB | S2AP_READ | S2AP_WRITE | SH_INNER | AF;
    }
    pub fn clear(&mut self) {
        *self.0 = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A table frame was needed and none was left.
    NoMemory,
    /// The range is outside the IPA space.
    OutOfRange,
}

/// One VM's stage-2 tables.
pub struct Stage2 {
    root: u64,
    vmid: u16,
}

impl Stage2 {
    /// `root` is a zeroed 4 KiB frame that becomes the level-1 table.
    pub fn new(root: u64, vmid: u16) -> Self {
        Self { root, vmid }
    }

    /// VTTBR_EL2 for this VM: root table and VMID.
    pub fn vttbr(&self) -> u64 {
        self.root | ((self.vmid as u64) << 48)
    }

    /// Visits every level-3 entry for pages in `[start, end)`. With
    /// `new_table`, missing tables are allocated (zeroed frames); without, the
    /// pages under a missing table are skipped.
    pub fn walk(
        &mut self,
        start: u64,
        end: u64,
        mut new_table: Option<&mut dyn FnMut() -> Option<u64>>,
        visit: &mut dyn FnMut(u64, Pte),
    ) -> Result<(), WalkError> {
        if end > IPA_LIMIT || start > end {
            return Err(WalkError::OutOfRange);
        }
        let mut ipa = start & !(PAGE_SIZE - 1);
        while ipa < end {
            match self.leaf_table(ipa, &mut new_table)? {
                Some(table) => {
                    let first = (ipa >> 12) % ENTRIES;
                    for index in first..ENTRIES {
                        let page = ipa + (index - first) * PAGE_SIZE;
                        if page >= end {
                            break;
                        }
                        // SAFETY: `table` is a level-3 table frame owned by this Stage2.
                        let entry = unsafe { &mut *(table as *mut u64).add(index as usize) };
                        visit(page, Pte(entry));
                    }
                }
                None => {}
            }
            ipa = (ipa | (ENTRIES * PAGE_SIZE - 1)) + 1;
        }
        Ok(())
    }

    /// The level-3 table covering `ipa`, creating level-2/3 tables if asked.
    fn leaf_table(
        &mut self,
        ipa: u64,
        new_table: &mut Option<&mut dyn FnMut() -> Option<u64>>,
    ) -> Result<Option<u64>, WalkError> {
        let mut table = self.root;
        for level in 1..3u32 {
            let shift = 39 - 9 * level;
            let index = (ipa >> shift) % ENTRIES;
            // SAFETY: `table` is a table frame owned by this Stage2.
            let entry = unsafe { &mut *(table as *mut u64).add(index as usize) };
            if *entry & VALID == 0 {
                let Some(alloc) = new_table.as_mut() else {
                    return Ok(None);
                };
                let frame = alloc().ok_or(WalkError::NoMemory)?;
                *entry = frame | VALID | TABLE_OR_PAGE;
            }
            table = *entry & ADDR_MASK;
        }
        Ok(Some(table))
    }

    /// The machine address backing `ipa`, if it is mapped.
    pub fn translate(&mut self, ipa: u64) -> Option<u64> {
        let mut out = None;
        self.walk(ipa, ipa + 1, None, &mut |_, pte| out = pte.frame()).ok()?;
        out.map(|frame| frame | (ipa & (PAGE_SIZE - 1)))
    }

    /// Unmaps everything: `free` receives each mapped frame, then each table
    /// frame (root included). The VM's TLB entries are invalidated.
    pub fn destroy(mut self, free: &mut dyn FnMut(u64)) {
        let _ = self.walk(0, IPA_LIMIT, None, &mut |_, mut pte| {
            if let Some(frame) = pte.frame() {
                free(frame);
                pte.clear();
            }
        });
        free_tables(self.root, 1, free);
        self.flush_tlb();
    }

    /// Invalidates all of this VM's stage-1 and stage-2 TLB entries on every CPU.
    pub fn flush_tlb(&self) {
        // SAFETY: TLB maintenance for this VM's VMID; VTTBR_EL2 is restored after.
        unsafe {
            let saved: u64;
            asm!("mrs {0}, vttbr_el2", out(reg) saved);
            VTTBR_EL2.set(self.vttbr());
            asm!("isb", "tlbi vmalls12e1is", "dsb ish", "isb");
            VTTBR_EL2.set(saved);
            asm!("isb");
        }
    }
}

/// Invalidates the stage-1 TLB entries of the VM whose VTTBR_EL2 is loaded,
/// on this CPU only: needed when another vCPU of the same VM ran here since
/// this one did, because their entries share the VMID (as KVM does on
/// vcpu_load).
pub fn flush_local_guest_tlb() {
    // SAFETY: TLB maintenance only; no memory is touched.
    unsafe { asm!("isb", "tlbi vmalle1", "dsb nsh", "isb") };
}

fn free_tables(table: u64, level: u32, free: &mut dyn FnMut(u64)) {
    if level < 3 {
        for index in 0..ENTRIES as usize {
            // SAFETY: `table` is a table frame of a Stage2 being destroyed.
            let entry = unsafe { *(table as *const u64).add(index) };
            if entry & VALID != 0 {
                free_tables(entry & ADDR_MASK, level + 1, free);
            }
        }
    }
    free(table);
}
