//! isoload cpu MILLIONS | isoload mem MIB PASSES
//!
//! The well-behaved VM's workloads of `cargo xtask bench isolation`, each
//! between numa-sim's region-of-interest markers:
//! - `cpu`: MILLIONS million steps of xorshift64 (registers only: no
//!   memory traffic, so only CPU time and what the monitor takes of it);
//! - `mem`: writes the first word of every page of MIB (the page's offset),
//!   then, in the region, reads the first word of every 64-byte line PASSES
//!   times: with MIB above the modelled cache every line misses.
//!
//! Prints `isoload: mode=M roi_ns=N checksum=C`: N is the region's length
//! by CLOCK_MONOTONIC (guest time, which under TCG follows the host's) and
//! C lets the host check the work was done (`bench_isolation.rs`).

#![no_std]
#![no_main]

#[path = "../sys.rs"]
#[allow(dead_code)]
mod sys;

use sys::{arg, exit, put, put_num, syscall6, write};

const SYS_CLOCK_GETTIME: usize = 113;

fn now_ns() -> u64 {
    let mut ts = [0u64; 2];
    // SAFETY: CLOCK_MONOTONIC into a valid timespec.
    unsafe { syscall6(SYS_CLOCK_GETTIME, [1, ts.as_mut_ptr() as usize, 0, 0, 0, 0]) };
    ts[0] * 1_000_000_000 + ts[1]
}

/// argv[i] as bytes (without its NUL).
fn arg_bytes(sp: *const usize, i: usize) -> &'static [u8] {
    // SAFETY: the kernel's initial stack: argc, then NUL-terminated argv strings.
    unsafe {
        if i >= *sp {
            return b"";
        }
        let p = *sp.add(1 + i) as *const u8;
        let mut n = 0;
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

fn usage() -> ! {
    write(b"usage: isoload cpu MILLIONS | isoload mem MIB PASSES\n");
    exit(2);
}

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let mode = arg_bytes(sp, 1);
    let (sum, ns) = match mode {
        b"cpu" => {
            let Some(m) = arg(sp, 2) else { usage() };
            let mut x: u64 = 88172645463325252;
            let t0 = now_ns();
            sys::roi_begin();
            for _ in 0..m * 1_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            sys::roi_end();
            (x, now_ns() - t0)
        }
        b"mem" => {
            let (Some(mib), Some(passes)) = (arg(sp, 2), arg(sp, 3)) else { usage() };
            let len = mib << 20;
            let Some(buf) = sys::mmap_anonymous(len, false) else {
                write(b"isoload: mmap failed\n");
                exit(1);
            };
            for off in (0..len).step_by(4096) {
                // SAFETY: inside the mapping.
                unsafe { buf.add(off / 8).write_volatile(off as u64) };
            }
            let mut sum = 0u64;
            let t0 = now_ns();
            sys::roi_begin();
            for _ in 0..passes {
                for line in (0..len / 8).step_by(8) {
                    // SAFETY: inside the mapping.
                    sum = sum.wrapping_add(unsafe { buf.add(line).read_volatile() });
                }
            }
            sys::roi_end();
            (sum, now_ns() - t0)
        }
        _ => usage(),
    };
    let mut out = [0u8; 96];
    let mut at = 0;
    put(&mut out, &mut at, b"isoload: mode=");
    put(&mut out, &mut at, mode);
    put(&mut out, &mut at, b" roi_ns=");
    put_num(&mut out, &mut at, ns);
    put(&mut out, &mut at, b" checksum=");
    put_num(&mut out, &mut at, sum);
    put(&mut out, &mut at, b"\n");
    write(&out[..at]);
    exit(0);
}
