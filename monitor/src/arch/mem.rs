//! Access to machine memory, which the monitor sees identity-mapped.

use core::arch::asm;
use tock_registers::{register_bitfields, LocalRegisterCopy};

register_bitfields! {u64,
    /// CTR_EL0, the Cache Type Register: the smallest
    /// data and instruction cache lines, log2 of their size in words.
    Ctr [
        DminLine OFFSET(16) NUMBITS(4) [],
        IminLine OFFSET(0) NUMBITS(4) []
    ]
}

/// Cache line size the maintenance loops step by (the architectural minimum
/// is read from CTR_EL0 on real hardware; 64 bytes is what Arm cores use).
const LINE: u64 = 64;

/// A mutable view of machine memory `[pa, pa + len)`.
///
/// # Safety
/// The range must be RAM the caller owns (allocated frames or a reserved
/// boot region) and not aliased by another live reference.
pub unsafe fn slice_mut(pa: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: the caller guarantees ownership; RAM is identity-mapped.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len) }
}

/// A read-only view of machine memory `[pa, pa + len)`.
///
/// # Safety
/// The range must be mapped RAM that nobody writes while the view lives.
pub unsafe fn slice(pa: u64, len: usize) -> &'static [u8] {
    // SAFETY: as above.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// Whether two 4 KiB frames hold the same bytes, read eight bytes at a
/// time: slice `==` on bytes is `memcmp`, which compiler_builtins does a
/// byte at a time, 4096 loads per frame. Under QEMU with the ccNUMA plugin
/// every load is a callback, and `mm::merge` compares thousands of frames
/// a round with the VM's space lock held: byte loads made such a round
/// take over a second of wall time.
///
/// # Safety
/// Both must be mapped RAM frames that nobody writes during the call.
pub unsafe fn frames_equal(a: u64, b: u64) -> bool {
    let (a, b) = (a as *const u64, b as *const u64);
    // Volatile loads: one `ldr` each, neither merged back into `memcmp`
    // nor moved through vector registers by way of the stack.
    (0..512).step_by(8).all(|i| {
        (i..i + 8).fold(0, |diff, w| {
            // SAFETY: the caller's contract; RAM is identity mapped and
            // `w` < 512 words, inside both frames.
            diff | unsafe { a.add(w).read_volatile() ^ b.add(w).read_volatile() }
        }) == 0
    })
}

/// Fills one 4 KiB frame with zeroes, a cache block at a time with DC ZVA
/// (one instruction per block, where a store loop needs dozens).
pub fn zero_frame(pa: u64) {
    let block = zva_block_size();
    if block == 0 {
        // SAFETY: frames handed out by the allocators are RAM owned by the caller.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, 4096) };
        return;
    }
    let mut at = pa;
    while at < pa + 4096 {
        // SAFETY: as above; `at` stays inside the frame (block divides 4096).
        unsafe { asm!("dc zva, {0}", in(reg) at) };
        at += block;
    }
}

/// DC ZVA's block size in bytes, or 0 where DC ZVA is prohibited.
fn zva_block_size() -> u64 {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {0}, dczid_el0", out(reg) dczid) };
    if dczid & (1 << 4) != 0 {
        0
    } else {
        4 << (dczid & 0xf)
    }
}

/// Cleans data caches to the point of coherency and invalidates the
/// instruction cache for `[pa, pa + len)`, so a guest starting with its MMU
/// and caches off sees what the monitor wrote.
pub fn clean_for_guest(pa: u64, len: u64) {
    let mut line = pa & !(LINE - 1);
    while line < pa + len {
        // SAFETY: cache maintenance by address on mapped RAM has no other effect.
        unsafe { asm!("dc cvac, {0}", "ic ivau, {0}", in(reg) line) };
        line += LINE;
    }
    // SAFETY: barriers only.
    unsafe { asm!("dsb ish", "isb") };
}

/// Machine memory `[pa, pa + 8 * words)` as zeroed atomic words that live
/// for the rest of the run (the memmap's per-frame records).
///
/// # Safety
/// The range must be RAM that nothing else uses, ever.
pub unsafe fn atomic_words(pa: u64, words: usize) -> &'static [core::sync::atomic::AtomicU64] {
    // SAFETY: the caller gives the range away for good; zero is a valid
    // AtomicU64, and the pointer is 8-byte aligned (frame aligned).
    unsafe {
        core::ptr::write_bytes(pa as *mut u64, 0, words);
        core::slice::from_raw_parts(pa as *const core::sync::atomic::AtomicU64, words)
    }
}

/// Reads a u32 of machine memory that another agent (the ccNUMA plugin,
/// through QEMU's host mapping) writes concurrently.
pub fn read_u32_shared(pa: u64) -> u32 {
    // SAFETY: callers pass addresses inside a reserved, mapped region
    // (the counter region); a volatile read of an aligned u32 is atomic.
    unsafe { core::ptr::read_volatile((pa & !3) as *const u32) }
}

/// Writes a u32 of such shared memory.
pub fn write_u32_shared(pa: u64, value: u32) {
    // SAFETY: as for read_u32_shared.
    unsafe { core::ptr::write_volatile((pa & !3) as *mut u32, value) }
}

/// Reads a u64 of such shared memory (aligned: atomic).
pub fn read_u64_shared(pa: u64) -> u64 {
    // SAFETY: as for read_u32_shared.
    unsafe { core::ptr::read_volatile((pa & !7) as *const u64) }
}

/// Writes a u64 of such shared memory.
pub fn write_u64_shared(pa: u64, value: u64) {
    // SAFETY: as for read_u32_shared.
    unsafe { core::ptr::write_volatile((pa & !7) as *mut u64, value) }
}

/// A full barrier between memory accesses of this CPU and another agent's
/// (a guest vCPU on another CPU, a device): `dmb ish`.
pub fn barrier() {
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::ISH);
}

/// Copies one 4 KiB frame of machine memory.
///
/// # Safety
/// `dst` must be a RAM frame the caller owns and `src` mapped memory that
/// nobody writes meanwhile; the two must not overlap.
pub unsafe fn copy_frame(dst: u64, src: u64) {
    // SAFETY: the caller's contract; RAM is identity mapped.
    unsafe { core::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, 4096) };
}

/// Makes instructions written to `[pa, pa + len)` visible to instruction
/// fetches of every CPU in the inner-shareable domain, per the Arm ARM's
/// sequence for self-modifying code (its "Concurrent modification and
/// execution of instructions" and cache-maintenance rules): `DC CVAU` every data-cache line to the point
/// of unification, `DSB ISH`, `IC IVAU` every instruction-cache line (a
/// broadcast operation), `DSB ISH`, and an `ISB` on this CPU. Another CPU
/// that will execute the bytes must not have fetched them before, or must
/// execute its own ISB (every CPU moving to a node root does, in
/// `mmu::switch_to`).
pub fn sync_instructions(pa: u64, len: u64) {
    // SAFETY: reading CTR_EL0 has no side effects.
    let ctr: u64 = unsafe {
        let v;
        asm!("mrs {0}, ctr_el0", out(reg) v);
        v
    };
    let ctr: LocalRegisterCopy<u64, Ctr::Register> = LocalRegisterCopy::new(ctr);
    let dline = 4u64 << ctr.read(Ctr::DminLine);
    let iline = 4u64 << ctr.read(Ctr::IminLine);
    let mut line = pa & !(dline - 1);
    while line < pa + len {
        // SAFETY: cache maintenance by address on mapped RAM has no other effect.
        unsafe { asm!("dc cvau, {0}", in(reg) line) };
        line += dline;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb ish") };
    let mut line = pa & !(iline - 1);
    while line < pa + len {
        // SAFETY: as above.
        unsafe { asm!("ic ivau, {0}", in(reg) line) };
        line += iline;
    }
    // SAFETY: barriers only.
    unsafe { asm!("dsb ish", "isb") };
}
