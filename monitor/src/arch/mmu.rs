//! EL2 stage-1 translation: the monitor runs identity-mapped, with 1 GiB
//! blocks. The first GiB of the QEMU `virt` map (GIC, UART, ...) is device
//! memory; each GiB that holds RAM is normal write-back memory.
//!
//! That table (`EL2_L1`, the *boot root*) is what every CPU turns its MMU
//! on with. Each node with CPUs then gets a root of its own
//! (`el2_node.rs`): the same entries, except that the pages of the
//! monitor's text and read-only data map to the node's copy, read-only;
//! its CPUs move to it ([`switch_to`]). A CPU of a node without one stays
//! on the boot root. Roots are complete before any CPU but the boot CPU
//! uses one, and never change afterwards.

use aarch64_cpu::{
    asm::barrier,
    registers::{ReadWriteable, Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2},
};
use core::arch::asm;

const GIB: u64 = 1 << 30;
/// Descriptors per table (4 KiB granule).
pub(super) const ENTRIES: usize = 512;

// Block descriptor bits (Arm ARM D8.3).
pub(super) const VALID_BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

static mut EL2_L1: Table = Table([0; ENTRIES]);

/// The boot root's level-1 entries, as they are now. Node roots start as a
/// copy, so they are built after the last [`map_ram`].
pub(super) fn boot_entries() -> [u64; ENTRIES] {
    // SAFETY: the table is only written by the boot CPU before secondaries
    // start; this copy is taken on the boot CPU too.
    unsafe { (*(&raw const EL2_L1)).0 }
}

/// Physical address of the boot root (identity mapped).
pub fn boot_root() -> u64 {
    &raw const EL2_L1 as u64
}

/// The boot CPU's first table: device memory below 1 GiB and normal memory
/// for the GiB blocks holding `addresses` (the monitor image and the host
/// DTB), enough to parse the DTB with caches on (with the MMU off every
/// access is Device memory and unaligned accesses fault).
pub fn build_boot(addresses: &[u64]) {
    // SAFETY: only the boot CPU runs this, before any CPU uses the table.
    let table = unsafe { &mut *(&raw mut EL2_L1) };
    table.0[0] = VALID_BLOCK | ATTR_DEVICE | AF | XN;
    for &pa in addresses {
        map_ram(pa, pa + 1);
    }
}

/// Maps the GiB blocks covering machine RAM `[start, end)` as normal memory.
/// Runs on the boot CPU before the secondary CPUs start; adding valid
/// entries needs no TLB maintenance.
pub fn map_ram(start: u64, end: u64) {
    // SAFETY: only the boot CPU writes the table, and only invalid entries
    // become valid, so no CPU can hold a conflicting translation.
    let table = unsafe { &mut *(&raw mut EL2_L1) };
    let mut gib = start / GIB;
    while gib * GIB < end && (gib as usize) < ENTRIES {
        table.0[gib as usize] = (gib * GIB) | VALID_BLOCK | ATTR_NORMAL | SH_INNER | AF;
        gib += 1;
    }
    barrier::dsb(barrier::ISHST);
}

/// Turns the MMU and caches on for EL2 on the calling CPU, with the boot root.
pub fn enable() {
    MAIR_EL2.write(
        MAIR_EL2::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck
            + MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc,
    );
    TCR_EL2.write(
        TCR_EL2::T0SZ.val(25)
            + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::SH0::Inner
            + TCR_EL2::TG0::KiB_4
            + TCR_EL2::PS::Bits_40,
    );
    TTBR0_EL2.set(boot_root());
    barrier::dsb(barrier::ISH);
    // SAFETY: invalidates stale EL2 translations before turning the MMU on.
    unsafe { asm!("tlbi alle2", "dsb ish", "isb") };
    SCTLR_EL2.modify(SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable);
    barrier::isb(barrier::SY);
}

/// A pointer to the device registers at machine address `[pa, pa + size)`
/// for a driver: the first GiB, where the `virt` machine's devices are, is
/// mapped device-nGnRE by [`build_boot`], identity, so the pointer is `pa`
/// itself. None for a range outside it (it would be normal memory here).
pub fn device_registers(pa: u64, size: u64) -> Option<core::ptr::NonNull<u8>> {
    let end = pa.checked_add(size)?;
    if end > GIB {
        return None;
    }
    core::ptr::NonNull::new(pa as *mut u8)
}

/// Moves the calling CPU, MMU on, to `root`: a root that maps every
/// address the CPU is using to the same contents as the current one (the
/// node roots differ from the boot root only in which frames hold the
/// identical code pages). No break-before-make is needed for a TTBR write
/// (the Arm ARM's break-before-make rule is for changing a live
/// descriptor); until the TLBI, old and new translations may both be
/// used, which is harmless when they point at identical bytes. Then
/// `TLBI ALLE2` drops the old translations and `IC IALLU` the instruction
/// cache's lines fetched through them (the contents are the same, so this
/// keeps no stale alias around rather than fixing wrong code), and the ISB
/// makes the CPU fetch the following instructions anew.
pub fn switch_to(root: u64) {
    TTBR0_EL2.set(root);
    barrier::isb(barrier::SY);
    // SAFETY: TLB and instruction-cache maintenance of this CPU only.
    unsafe { asm!("tlbi alle2", "dsb ish", "ic iallu", "dsb ish", "isb") };
}
