//! A node's own EL2 root: the boot root's translation with the monitor's
//! code pages remapped to the node's copy of them, at the same virtual
//! addresses.
//!
//! The boot root maps RAM with 1 GiB blocks. The GiB holding the code is
//! split into a level-2 table of 2 MiB blocks, and each 2 MiB block holding
//! code into a level-3 table of 4 KiB pages (VMSAv8-64, 4 KiB granule:
//! level 1 resolves VA[38:30], level 2 VA[29:21], level 3 VA[20:12]). Every
//! split entry keeps its block's attributes and maps the same physical
//! address, so data, bss, stacks, heap, RAM and devices translate exactly as
//! in the boot root; only the code pages point elsewhere, read-only.

use super::mmu::{boot_entries, ENTRIES, VALID_BLOCK};
use aarch64_cpu::asm::barrier;

/// Bytes one level-1 entry maps.
const L1_SPAN: u64 = 1 << 30;
/// Bytes one level-2 entry maps.
const L2_SPAN: u64 = 2 << 20;
/// Bytes one level-3 entry maps (the translation granule).
pub const PAGE: u64 = 4 << 10;

/// Descriptor type bits [1:0] (VMSAv8-64 translation table descriptors).
const TYPE_MASK: u64 = 0b11;
/// A table descriptor at levels 0-2.
const VALID_TABLE: u64 = 0b11;
/// A page descriptor at level 3 (same encoding as a table descriptor).
const VALID_PAGE: u64 = 0b11;
/// Output address bits [47:12] of a block, page or table descriptor.
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
/// AP[2] (bit 7): read-only at EL2.
const AP_READ_ONLY: u64 = 1 << 7;
/// AP[1] (bit 6) is RES1 in the EL2 regime, which has no unprivileged
/// level (KVM's nVHE hyp tables set it on every leaf too).
const AP_EL2_RES1: u64 = 1 << 6;

/// A 4 KiB translation table in an identity-mapped frame.
struct Table(&'static mut [u64; ENTRIES]);

impl Table {
    /// # Safety
    /// `pa` must be a zeroed, 4 KiB-aligned RAM frame the caller owns for good.
    unsafe fn at(pa: u64) -> Self {
        // SAFETY: the caller's contract; RAM is identity mapped.
        Table(unsafe { &mut *(pa as *mut [u64; ENTRIES]) })
    }

    fn pa(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

/// Index of `va`'s entry in a table whose entries each map `span` bytes.
fn index(va: u64, span: u64) -> usize {
    ((va / span) % ENTRIES as u64) as usize
}

/// Replaces the block in `entry` by a table of `ENTRIES` entries that map
/// the same range in pieces of `child_span` with the same attributes
/// (`child_type`: a block or a page), or returns the table it already
/// points at. None when the entry is invalid or no table frame is left.
fn split(
    entry: &mut u64,
    child_span: u64,
    child_type: u64,
    new_frame: &mut impl FnMut() -> Option<u64>,
) -> Option<Table> {
    match *entry & TYPE_MASK {
        VALID_TABLE => {
            // SAFETY: a table this builder made (from `new_frame`) just before.
            return Some(unsafe { Table::at(*entry & ADDRESS_MASK) });
        }
        VALID_BLOCK => {}
        _ => return None,
    }
    let block = *entry;
    let (base, attributes) = (block & ADDRESS_MASK, block & !ADDRESS_MASK & !TYPE_MASK);
    // SAFETY: `new_frame` hands out zeroed frames owned by the root for good.
    let table = unsafe { Table::at(new_frame()?) };
    for (i, e) in table.0.iter_mut().enumerate() {
        *e = (base + i as u64 * child_span) | attributes | child_type;
    }
    *entry = table.pa() | VALID_TABLE;
    Some(table)
}

/// Builds a root that maps code page `i` (at VA `code_va + i * PAGE`) to
/// frame `copies[i]`, read-only, and everything else as the boot root does.
/// `new_frame` gives zeroed table frames (on the node, so walks stay local).
/// Returns the root's physical address, for TTBR0_EL2; None when a frame
/// ran out or the code is not mapped by a RAM block.
pub fn build(code_va: u64, copies: &[u64], mut new_frame: impl FnMut() -> Option<u64>) -> Option<u64> {
    // SAFETY: as in `split`.
    let l1 = unsafe { Table::at(new_frame()?) };
    *l1.0 = boot_entries();
    for (i, &copy) in copies.iter().enumerate() {
        let va = code_va + i as u64 * PAGE;
        let l2 = split(&mut l1.0[index(va, L1_SPAN)], L2_SPAN, VALID_BLOCK, &mut new_frame)?;
        let l3 = split(&mut l2.0[index(va, L2_SPAN)], PAGE, VALID_PAGE, &mut new_frame)?;
        let page = &mut l3.0[index(va, PAGE)];
        *page = copy | (*page & !ADDRESS_MASK) | AP_READ_ONLY | AP_EL2_RES1;
    }
    // The tables must be visible to other CPUs' walks before they load the
    // root (table walks are coherent: TCR_EL2 makes them inner shareable
    // and write-back cacheable, so no cache cleaning is needed).
    barrier::dsb(barrier::ISH);
    Some(l1.pa())
}
