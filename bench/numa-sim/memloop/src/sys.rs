//! What the no-libc guest programs of this crate share: the entry point
//! (`_start` calls the program's `program_main` with the initial stack),
//! raw Linux system calls, argument parsing and number formatting.
//!
//! Why `unsafe` here: these are guest programs built for
//! `aarch64-unknown-none` (no cross C toolchain or libc on the build
//! machine), so they make raw system calls and read argv from the initial
//! stack themselves.

use core::arch::{asm, global_asm};

global_asm!(".globl _start", "_start:", "mov x0, sp", "bl program_main", "brk #0",);

/// System call `n` with arguments `a`; returns x0 (negative errno on error).
///
/// # Safety
/// The arguments must be valid for call `n` (buffers readable or writable
/// for their lengths).
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: a raw Linux system call; the caller passes valid arguments.
    unsafe {
        asm!("svc #0", in("x8") n, inlateout("x0") a[0] => ret, in("x1") a[1], in("x2") a[2],
             in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    ret
}

pub const SYS_WRITE: usize = 64;
pub const SYS_EXIT_GROUP: usize = 94;
pub const SYS_SCHED_SETAFFINITY: usize = 122;
pub const SYS_MMAP: usize = 222;
pub const SYS_NANOSLEEP: usize = 101;

pub fn write(s: &[u8]) {
    // SAFETY: writes a valid buffer to stdout.
    unsafe { syscall6(SYS_WRITE, [1, s.as_ptr() as usize, s.len(), 0, 0, 0]) };
}

pub fn exit(code: usize) -> ! {
    // SAFETY: exit_group never returns.
    unsafe { syscall6(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]) };
    loop {}
}

pub fn parse(s: *const u8) -> Option<usize> {
    let mut v = 0usize;
    let mut i = 0;
    // SAFETY: argv strings are NUL-terminated.
    while let c @ b'0'..=b'9' = unsafe { *s.add(i) } {
        v = v * 10 + (c - b'0') as usize;
        i += 1;
    }
    (i > 0).then_some(v)
}

pub fn put_num(buf: &mut [u8], at: &mut usize, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for k in (0..n).rev() {
        buf[*at] = tmp[k];
        *at += 1;
    }
}

pub fn put(buf: &mut [u8], at: &mut usize, s: &[u8]) {
    buf[*at..*at + s.len()].copy_from_slice(s);
    *at += s.len();
}

/// Argument `i` of the initial stack `sp` as a decimal number (None: absent
/// or not a number).
pub fn arg(sp: *const usize, i: usize) -> Option<usize> {
    // SAFETY: the kernel's initial stack: argc, then argv pointers.
    let argc = unsafe { *sp };
    // SAFETY: i < argc, so sp[1 + i] is an argv pointer.
    (i < argc).then(|| parse(unsafe { *sp.add(1 + i) } as *const u8)).flatten()
}

/// A new anonymous read-write mapping of `len` bytes, shared with the
/// children a later fork makes (`shared`) or private.
pub fn mmap_anonymous(len: usize, shared: bool) -> Option<*mut u64> {
    let flags = if shared { 0x21 } else { 0x22 }; // MAP_ANONYMOUS | MAP_SHARED / MAP_PRIVATE
                                                  // SAFETY: a new mapping (PROT_READ | PROT_WRITE); no memory of ours changes.
    let p = unsafe { syscall6(SYS_MMAP, [0, len, 3, flags, usize::MAX, 0]) };
    (p >= 0).then_some(p as *mut u64)
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> bool {
    let mask: [u64; 16] = core::array::from_fn(|w| if w == cpu / 64 { 1 << (cpu % 64) } else { 0 });
    // SAFETY: a valid cpu mask of 128 bytes for this thread.
    unsafe { syscall6(SYS_SCHED_SETAFFINITY, [0, 128, mask.as_ptr() as usize, 0, 0, 0]) >= 0 }
}

/// Sleeps `ms` milliseconds.
pub fn sleep_ms(ms: usize) {
    let ts: [u64; 2] = [(ms / 1000) as u64, (ms % 1000) as u64 * 1_000_000];
    // SAFETY: a valid timespec; no remainder wanted.
    unsafe { syscall6(SYS_NANOSLEEP, [ts.as_ptr() as usize, 0, 0, 0, 0, 0]) };
}

/// numa-sim's region-of-interest markers (NOPs on hardware).
pub fn roi_begin() {
    // SAFETY: HINT #0x7a is a NOP architecturally; numa-sim treats it as a marker.
    unsafe { asm!("hint #0x7a", options(nostack, preserves_flags)) };
}

pub fn roi_end() {
    // SAFETY: as roi_begin, the end marker.
    unsafe { asm!("hint #0x7b", options(nostack, preserves_flags)) };
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(b"panic\n");
    exit(101);
}
