//! EL2 stage-1 translation: the monitor runs identity-mapped, with 1 GiB
//! blocks. The first GiB of the QEMU `virt` map (GIC, UART, ...) is device
//! memory; each GiB that holds RAM is normal write-back memory.

use aarch64_cpu::{
    asm::barrier,
    registers::{ReadWriteable, Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2},
};
use core::arch::asm;

const GIB: u64 = 1 << 30;
const ENTRIES: usize = 512;

// Block descriptor bits (Arm ARM D8.3).
const VALID_BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

static mut EL2_L1: Table = Table([0; ENTRIES]);

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

/// Turns the MMU and caches on for EL2 on the calling CPU.
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
    TTBR0_EL2.set(&raw const EL2_L1 as u64);
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
