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
//! The system-call glue is in `sys.rs` (shared with `sharedscan`).
#![no_std]
#![no_main]

mod sys;

use sys::{arg, exit, put, put_num, write};

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let arg = |i| arg(sp, i);
    let (Some(mib), Some(passes)) = (arg(1), arg(2)) else {
        write(b"usage: memloop SIZE_MIB PASSES [CPU|-] [WAIT_MS] [HOT_MIB]\n");
        exit(2);
    };
    let len = mib << 20;
    let Some(buf) = sys::mmap_anonymous(len, false) else {
        write(b"memloop: mmap failed\n");
        exit(1);
    };
    for off in (0..len).step_by(4096) {
        // SAFETY: inside the mapping.
        unsafe { buf.add(off / 8).write_volatile(off as u64) };
    }
    if let Some(cpu) = arg(3) {
        if !sys::pin(cpu) {
            write(b"memloop: sched_setaffinity failed\n");
            exit(1);
        }
    }
    write(b"memloop: touched\n");
    if let Some(ms) = arg(4) {
        sys::sleep_ms(ms);
    }
    let hot = arg(5).map_or(len, |h| (h << 20).min(len));
    let mut sum = 0u64;
    sys::roi_begin();
    for _ in 0..passes {
        for line in (0..hot / 8).step_by(8) {
            // SAFETY: inside the mapping.
            sum = sum.wrapping_add(unsafe { buf.add(line).read_volatile() });
        }
    }
    sys::roi_end();
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
