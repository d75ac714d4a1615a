//! sharedscan SCENE_MIB WORKERS PASSES [PATCH_PAGES]
//!
//! A raytrace-shaped workload for page replication: one read-only
//! "scene", read by workers on every CPU, each writing its own private
//! output. The parent fills a shared anonymous mapping of SCENE_MIB
//! (word i = i * K, K odd: see [`word`]), forks WORKERS children pinned to
//! CPUs 0.. WORKERS-1, and runs three phases:
//! 1. region of interest 0 (numa-sim markers): every worker reads one word
//!    of every 64-byte line of the scene PASSES times, writing one word
//!    per line read into its private output (the scene pages become hot
//!    and read-shared);
//! 2. region of interest 1: the same again (the steady state);
//! 3. the parent rewrites the first word of PATCH_PAGES pages spread over
//!    the scene (default 16; `!word`), then every worker sums every word of
//!    the scene and prints `sharedscan: worker W: checksum C`.
//!
//! The parent prints `sharedscan: before B after A`, the sums of the scene
//! before and after the patch, which [`word`] lets a host compute too.

#![no_std]
#![no_main]

#[path = "../sys.rs"]
mod sys;

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use sys::{arg, exit, put, put_num, syscall6, write};

const SYS_CLONE: usize = 220;
const SYS_WAIT4: usize = 260;
const SIGCHLD: usize = 17;

/// The scene's word `i` (an odd multiplier: every word differs).
fn word(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fork() -> isize {
    // SAFETY: clone with SIGCHLD only and no new stack is fork.
    unsafe { syscall6(SYS_CLONE, [SIGCHLD, 0, 0, 0, 0, 0]) }
}

/// Shared counters: workers ready, done with phase 1, done with phase 2;
/// and the phase the parent lets them start.
struct Control {
    ready: AtomicU64,
    done1: AtomicU64,
    done2: AtomicU64,
    phase: AtomicU64,
}

fn wait_until(v: &AtomicU64, at_least: u64) {
    while v.load(SeqCst) < at_least {
        sys::sleep_ms(1);
    }
}

fn sum_all(scene: *const u64, words: usize) -> u64 {
    // SAFETY: inside the mapping.
    (0..words).fold(0u64, |s, i| s.wrapping_add(unsafe { scene.add(i).read_volatile() }))
}

fn print2(what: &[u8], a: u64, and: &[u8], b: u64) {
    let mut out = [0u8; 128];
    let mut at = 0;
    put(&mut out, &mut at, b"sharedscan: ");
    put(&mut out, &mut at, what);
    put_num(&mut out, &mut at, a);
    put(&mut out, &mut at, and);
    put_num(&mut out, &mut at, b);
    put(&mut out, &mut at, b"\n");
    write(&out[..at]);
}

fn worker(w: usize, scene: *const u64, words: usize, passes: usize, ctl: &Control) -> ! {
    if !sys::pin(w) {
        write(b"sharedscan: sched_setaffinity failed\n");
        exit(1);
    }
    let lines = words / 8;
    let Some(out) = sys::mmap_anonymous(lines * 8, false) else {
        write(b"sharedscan: mmap failed\n");
        exit(1);
    };
    ctl.ready.fetch_add(1, SeqCst);
    for (phase, done) in [(1, &ctl.done1), (2, &ctl.done2)] {
        wait_until(&ctl.phase, phase);
        for pass in 0..passes {
            for line in 0..lines {
                // SAFETY: inside the scene and the private output.
                unsafe {
                    let v = scene.add(line * 8).read_volatile();
                    out.add(line).write_volatile(v ^ pass as u64);
                }
            }
        }
        done.fetch_add(1, SeqCst);
    }
    wait_until(&ctl.phase, 3);
    print2(b"worker ", w as u64, b": checksum ", sum_all(scene, words));
    exit(0);
}

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let arg = |i| arg(sp, i);
    let (Some(mib), Some(workers), Some(passes)) = (arg(1), arg(2), arg(3)) else {
        write(b"usage: sharedscan SCENE_MIB WORKERS PASSES [PATCH_PAGES]\n");
        exit(2);
    };
    let patch = arg(4).unwrap_or(16);
    let words = (mib << 20) / 8;
    let (Some(scene), Some(ctl)) = (sys::mmap_anonymous(mib << 20, true), sys::mmap_anonymous(4096, true)) else {
        write(b"sharedscan: mmap failed\n");
        exit(1);
    };
    // SAFETY: a fresh zeroed shared page; the atomics are its only users.
    let ctl = unsafe { &*(ctl as *const Control) };
    for i in 0..words {
        // SAFETY: inside the mapping.
        unsafe { scene.add(i).write_volatile(word(i)) };
    }
    for w in 0..workers {
        match fork() {
            0 => worker(w, scene, words, passes, ctl),
            pid if pid < 0 => {
                write(b"sharedscan: fork failed\n");
                exit(1);
            }
            _ => {}
        }
    }
    let n = workers as u64;
    wait_until(&ctl.ready, n);
    for (phase, done) in [(1, &ctl.done1), (2, &ctl.done2)] {
        sys::roi_begin();
        ctl.phase.store(phase, SeqCst);
        wait_until(done, n);
        sys::roi_end();
    }
    let before = sum_all(scene, words);
    let pages = words / 512;
    for k in 0..patch.min(pages) {
        let i = k * (pages / patch.min(pages)) * 512;
        // SAFETY: inside the mapping.
        unsafe { scene.add(i).write_volatile(!word(i)) };
    }
    ctl.phase.store(3, SeqCst);
    for _ in 0..workers {
        let mut status = 0i32;
        // SAFETY: waits for any child; status is a valid int.
        unsafe { syscall6(SYS_WAIT4, [usize::MAX, &mut status as *mut i32 as usize, 0, 0, 0, 0]) };
    }
    print2(b"before ", before, b" after ", sum_all(scene, words));
    exit(0);
}
