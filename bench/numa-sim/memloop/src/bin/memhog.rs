//! memhog MIB
//!
//! The memory hog of `cargo xtask bench isolation`: forever, maps MIB of
//! anonymous memory, writes one word of every 64-byte line (so every page
//! is allocated and every line misses), unmaps it and prints `memhog:
//! round N`. No region-of-interest markers: those belong to the
//! well-behaved VM.

#![no_std]
#![no_main]

#[path = "../sys.rs"]
#[allow(dead_code)]
mod sys;

use sys::{arg, exit, put, put_num, syscall6, write};

const SYS_MUNMAP: usize = 215;

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let Some(mib) = arg(sp, 1) else {
        write(b"usage: memhog MIB\n");
        exit(2);
    };
    let len = mib << 20;
    let mut round = 0u64;
    loop {
        let Some(buf) = sys::mmap_anonymous(len, false) else {
            write(b"memhog: mmap failed\n");
            exit(1);
        };
        for line in (0..len / 8).step_by(8) {
            // SAFETY: inside the mapping.
            unsafe { buf.add(line).write_volatile(round) };
        }
        // SAFETY: unmapping the mapping made above, no longer used.
        unsafe { syscall6(SYS_MUNMAP, [buf as usize, len, 0, 0, 0, 0]) };
        round += 1;
        let mut out = [0u8; 48];
        let mut at = 0;
        put(&mut out, &mut at, b"memhog: round ");
        put_num(&mut out, &mut at, round);
        put(&mut out, &mut at, b"\n");
        write(&out[..at]);
    }
}
