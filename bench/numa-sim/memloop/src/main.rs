//! memloop SIZE_MIB PASSES [CPU|-] [WAIT_MS] [HOT_MIB]
//!
//! Maps SIZE_MIB of anonymous memory and writes every page (first touch:
//! Linux places the pages by the process's memory policy, e.g. `numactl
//! --membind`). If CPU is given it then moves itself to that CPU (the
//! AutoNUMA scenario: memory left behind on the old node). It prints
//! `memloop: touched` and, with WAIT_MS, sleeps that long (time for the
//! caller to move it, e.g. to move its VM to another node). Between the
//! numa-sim markers `HINT #0x7a` and `HINT #0x7b` it reads one word of every
//! 64-byte line of the first HOT_MIB (default: all) of the buffer, PASSES
//! times: a buffer larger than the modelled cache misses on every line,
//! and the rest of the buffer stays cold. Prints a checksum and exits.
//!
//! Why `unsafe` outside the monitor's `arch/`: this is a guest program
//! built for `aarch64-unknown-none` (no cross C toolchain or libc on the
//! build machine), so it makes raw Linux system calls and reads argv from
//! the initial stack itself.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

global_asm!(
    ".globl _start",
    "_start:",
    "mov x0, sp",
    "bl memloop_main",
    "brk #0",
);

/// System call `n` with arguments `a`; returns x0 (negative errno on error).
///
/// # Safety
/// The arguments must be valid for call `n` (buffers readable or writable
/// for their lengths).
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: a raw Linux system call; the caller passes valid arguments.
    unsafe {
        asm!("svc #0", in("x8") n, inlateout("x0") a[0] => ret, in("x1") a[1], in("x2") a[2],
             in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    ret
}

const SYS_WRITE: usize = 64;
const SYS_EXIT_GROUP: usize = 94;
const SYS_SCHED_SETAFFINITY: usize = 122;
const SYS_MMAP: usize = 222;
const SYS_NANOSLEEP: usize = 101;

fn write(s: &[u8]) {
    // SAFETY: writes a valid buffer to stdout.
    unsafe { syscall6(SYS_WRITE, [1, s.as_ptr() as usize, s.len(), 0, 0, 0]) };
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group never returns.
    unsafe { syscall6(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]) };
    loop {}
}

fn parse(s: *const u8) -> Option<usize> {
    let mut v = 0usize;
    let mut i = 0;
    // SAFETY: argv strings are NUL-terminated.
    while let c @ b'0'..=b'9' = unsafe { *s.add(i) } {
        v = v * 10 + (c - b'0') as usize;
        i += 1;
    }
    (i > 0).then_some(v)
}

fn put_num(buf: &mut [u8], at: &mut usize, mut v: u64) {
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

fn put(buf: &mut [u8], at: &mut usize, s: &[u8]) {
    buf[*at..*at + s.len()].copy_from_slice(s);
    *at += s.len();
}

#[no_mangle]
extern "C" fn memloop_main(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argv pointers.
    let argc = unsafe { *sp };
    let arg = |i: usize| {
        // SAFETY: i < argc, so sp[1 + i] is an argv pointer.
        (i < argc).then(|| parse(unsafe { *sp.add(1 + i) } as *const u8)).flatten()
    };
    let (Some(mib), Some(passes)) = (arg(1), arg(2)) else {
        write(b"usage: memloop SIZE_MIB PASSES [CPU|-] [WAIT_MS] [HOT_MIB]\n");
        exit(2);
    };
    let len = mib << 20;
    // SAFETY: anonymous private mapping (PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS).
    let p = unsafe { syscall6(SYS_MMAP, [0, len, 3, 0x22, usize::MAX, 0]) };
    if p < 0 {
        write(b"memloop: mmap failed\n");
        exit(1);
    }
    let buf = p as *mut u64;
    for off in (0..len).step_by(4096) {
        // SAFETY: inside the mapping.
        unsafe { buf.add(off / 8).write_volatile(off as u64) };
    }
    if let Some(cpu) = arg(3) {
        let mask: [u64; 16] = core::array::from_fn(|w| if w == cpu / 64 { 1 << (cpu % 64) } else { 0 });
        // SAFETY: a valid cpu mask of 128 bytes for this thread.
        let r = unsafe { syscall6(SYS_SCHED_SETAFFINITY, [0, 128, mask.as_ptr() as usize, 0, 0, 0]) };
        if r < 0 {
            write(b"memloop: sched_setaffinity failed\n");
            exit(1);
        }
    }
    write(b"memloop: touched\n");
    if let Some(ms) = arg(4) {
        let ts: [u64; 2] = [(ms / 1000) as u64, (ms % 1000) as u64 * 1_000_000];
        // SAFETY: a valid timespec; no remainder wanted.
        unsafe { syscall6(SYS_NANOSLEEP, [ts.as_ptr() as usize, 0, 0, 0, 0, 0]) };
    }
    let hot = arg(5).map_or(len, |h| (h << 20).min(len));
    let mut sum = 0u64;
    // SAFETY: HINT #0x7a is a NOP architecturally; numa-sim treats it as a marker.
    unsafe { asm!("hint #0x7a", options(nostack, preserves_flags)) };
    for _ in 0..passes {
        for line in (0..hot / 8).step_by(8) {
            // SAFETY: inside the mapping.
            sum = sum.wrapping_add(unsafe { buf.add(line).read_volatile() });
        }
    }
    // SAFETY: as above, the end marker.
    unsafe { asm!("hint #0x7b", options(nostack, preserves_flags)) };
    let mut out = [0u8; 96];
    let mut at = 0;
    put(&mut out, &mut at, b"memloop: ");
    put_num(&mut out, &mut at, mib as u64);
    put(&mut out, &mut at, b" MiB x ");
    put_num(&mut out, &mut at, passes as u64);
    put(&mut out, &mut at, b" passes, checksum ");
    put_num(&mut out, &mut at, sum);
    put(&mut out, &mut at, b"\n");
    write(&out[..at]);
    exit(0);
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(b"memloop: panic\n");
    exit(101);
}
