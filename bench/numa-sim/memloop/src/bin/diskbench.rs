//! diskbench MIB OPS: 4 KiB direct I/O on the guest's first disk,
//! `/dev/vda`, for `cargo xtask bench io` (issue 13, item 8).
//!
//! Four phases, each timed with CLOCK_MONOTONIC, one request in flight
//! (O_DIRECT, so every request reaches the device; queue depth 1):
//! 1. seq-write: every 4 KiB block of the first MIB MiB in order, then
//!    fsync (a virtio-blk flush);
//! 2. seq-read: the same blocks in order;
//! 3. rand-write: OPS blocks drawn from the same range (xorshift), then
//!    fsync;
//! 4. rand-read: OPS blocks drawn again.
//!
//! Block b always holds words b * 512 + k (k = 0..511), so every read
//! checks that it got the block it asked for. Each phase prints
//! `diskbench: phase=NAME ops=N bytes=B ns=T errors=E` (errors: failed
//! requests and blocks read with the wrong contents).

#![no_std]
#![no_main]

// Not every helper of the shared module is used here.
#[allow(dead_code)]
#[path = "../sys.rs"]
mod sys;

use sys::{arg, exit, put, put_num, syscall6, write};

const SYS_OPENAT: usize = 56;
const SYS_PREAD64: usize = 67;
const SYS_PWRITE64: usize = 68;
const SYS_FSYNC: usize = 82;
const SYS_CLOCK_GETTIME: usize = 113;
const AT_FDCWD: usize = -100isize as usize;
const O_RDWR: usize = 2;
/// arm64's O_DIRECT.
const O_DIRECT: usize = 0o200000;
const CLOCK_MONOTONIC: usize = 1;
const BLOCK: usize = 4096;
const WORDS: usize = BLOCK / 8;

fn now_ns() -> u64 {
    let mut ts = [0u64; 2];
    // SAFETY: a valid timespec to fill.
    unsafe { syscall6(SYS_CLOCK_GETTIME, [CLOCK_MONOTONIC, ts.as_mut_ptr() as usize, 0, 0, 0, 0]) };
    ts[0] * 1_000_000_000 + ts[1]
}

fn fill(buf: *mut u64, block: u64) {
    for k in 0..WORDS {
        // SAFETY: inside the one-block buffer.
        unsafe { buf.add(k).write_volatile(block * WORDS as u64 + k as u64) };
    }
}

fn holds(buf: *const u64, block: u64) -> bool {
    // SAFETY: inside the one-block buffer.
    (0..WORDS).all(|k| unsafe { buf.add(k).read_volatile() } == block * WORDS as u64 + k as u64)
}

/// One 4 KiB request at `block`; true if all of it was done.
fn io(fd: usize, buf: *mut u64, block: u64, writing: bool) -> bool {
    let call = if writing { SYS_PWRITE64 } else { SYS_PREAD64 };
    // SAFETY: the buffer is one page, page-aligned (O_DIRECT's rule).
    let n = unsafe { syscall6(call, [fd, buf as usize, BLOCK, block as usize * BLOCK, 0, 0]) };
    n == BLOCK as isize
}

fn report(phase: &[u8], ops: u64, ns: u64, errors: u64) {
    let mut out = [0u8; 160];
    let mut at = 0;
    put(&mut out, &mut at, b"diskbench: phase=");
    put(&mut out, &mut at, phase);
    put(&mut out, &mut at, b" ops=");
    put_num(&mut out, &mut at, ops);
    put(&mut out, &mut at, b" bytes=");
    put_num(&mut out, &mut at, ops * BLOCK as u64);
    put(&mut out, &mut at, b" ns=");
    put_num(&mut out, &mut at, ns);
    put(&mut out, &mut at, b" errors=");
    put_num(&mut out, &mut at, errors);
    put(&mut out, &mut at, b"\n");
    write(&out[..at]);
}

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let (Some(mib), Some(ops)) = (arg(sp, 1), arg(sp, 2)) else {
        write(b"usage: diskbench MIB OPS\n");
        exit(2);
    };
    let blocks = (mib as u64) << 8;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { syscall6(SYS_OPENAT, [AT_FDCWD, b"/dev/vda\0".as_ptr() as usize, O_RDWR | O_DIRECT, 0, 0, 0]) };
    let Some(buf) = sys::mmap_anonymous(BLOCK, false) else {
        write(b"diskbench: mmap failed\n");
        exit(1);
    };
    if fd < 0 || blocks == 0 {
        write(b"diskbench: cannot open /dev/vda for direct I/O (or MIB is 0)\n");
        exit(1);
    }
    let fd = fd as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % blocks
    };
    for (phase, writing, random_order) in [
        (&b"seq-write"[..], true, false),
        (b"seq-read", false, false),
        (b"rand-write", true, true),
        (b"rand-read", false, true),
    ] {
        let n = if random_order { ops as u64 } else { blocks };
        let mut errors = 0;
        let t0 = now_ns();
        for i in 0..n {
            let block = if random_order { random() } else { i };
            if writing {
                fill(buf, block);
            }
            if !io(fd, buf, block, writing) || (!writing && !holds(buf, block)) {
                errors += 1;
            }
        }
        // SAFETY: fsync of our descriptor.
        if writing && unsafe { syscall6(SYS_FSYNC, [fd, 0, 0, 0, 0, 0]) } != 0 {
            errors += 1;
        }
        report(phase, n, now_ns() - t0, errors);
    }
    exit(0);
}
