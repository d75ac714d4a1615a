//! The counter region: where the per-(page, node) miss counters live.
//!
//! With `shm=FILE` it is a shared mapping of the file that backs the last
//! node's RAM (`memory-backend-file,share=on`), at the offset the layout in
//! `numa::counters` puts it, so the guest-side reader (the monitor) sees the
//! counters in machine memory. Without it, a private anonymous mapping of the
//! same layout (the report still works; nobody in the guest can read it).

use crate::counters::{off, CounterLayout, Header, HEADER_SIZE, QUEUE_ENTRIES, QUEUE_OFFSET, RESET_POLL_MISSES};
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::Mutex;

pub struct Region {
    base: *mut u8,
    pub layout: CounterLayout,
    reset_lock: Mutex<()>,
}

// SAFETY: the mapping lives as long as the process; every access to it after
// `open` goes through atomics (or through `reset`, serialised by the lock).
unsafe impl Sync for Region {}
unsafe impl Send for Region {}

impl Region {
    /// Map the region (from `file` at `file_offset`, or anonymous), zero it
    /// and write the header.
    pub fn open(layout: CounterLayout, file: Option<&str>, file_offset: u64, line: u32) -> Result<Self, String> {
        let len = layout.region_size as usize;
        let base = match file {
            Some(path) => {
                let cpath = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
                // SAFETY: plain libc calls on a NUL-terminated path; the fd is
                // closed once mapped (the mapping keeps the file alive).
                unsafe {
                    let fd = libc::open(cpath.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(format!("open {path}: {}", std::io::Error::last_os_error()));
                    }
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::fstat(fd, &mut st) != 0 || (st.st_size as u64) < file_offset + len as u64 {
                        libc::close(fd);
                        return Err(format!(
                            "{path} is smaller than the counter region end ({:#x}): does it back the last node?",
                            file_offset + len as u64
                        ));
                    }
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd,
                        file_offset as libc::off_t,
                    );
                    libc::close(fd);
                    p
                }
            }
            // SAFETY: anonymous private mapping, no aliasing.
            None => unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            },
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap counter region: {}", std::io::Error::last_os_error()));
        }
        let base = base as *mut u8;
        // SAFETY: `base` maps `len` writable bytes; no vCPU runs yet.
        unsafe {
            std::ptr::write_bytes(base, 0, len);
            let hdr = std::slice::from_raw_parts_mut(base, Header::ENCODED_LEN);
            layout.header(line).encode(hdr);
        }
        Ok(Self { base, layout, reset_lock: Mutex::new(()) })
    }

    fn counter(&self, idx: u64) -> &AtomicU32 {
        // SAFETY: callers pass idx < counter_count(); the array lies inside
        // the mapping and is 4-byte aligned (HEADER_SIZE is 4096).
        unsafe { &*(self.base.add((HEADER_SIZE + idx * 4) as usize) as *const AtomicU32) }
    }

    fn u32_at(&self, o: usize) -> &AtomicU32 {
        // SAFETY: header offsets are inside the first page and aligned.
        unsafe { &*(self.base.add(o) as *const AtomicU32) }
    }

    fn u64_at(&self, o: usize) -> &AtomicU64 {
        // SAFETY: as above, 8-byte aligned offsets.
        unsafe { &*(self.base.add(o) as *const AtomicU64) }
    }

    /// Count one miss on page `pfn` by a CPU of `node` (saturating); a
    /// `remote` miss that takes the count to the reader's trigger queues
    /// the page as hot (`numa::counters`, "Hot-page queue").
    #[inline]
    pub fn count(&self, pfn: u64, node: u32, remote: bool) {
        if let Some(i) = self.layout.counter_index(pfn, node) {
            let c = self.counter(i);
            let old = c.fetch_add(1, Relaxed);
            if old == u32::MAX {
                c.store(u32::MAX, Relaxed);
            } else if remote && old + 1 == self.u32_at(off::TRIGGER).load(Relaxed) {
                self.push_hot(pfn);
            }
        }
    }

    /// Pushes `pfn` into the hot-page queue, or counts a drop if it is full.
    fn push_hot(&self, pfn: u64) {
        let head = self.u64_at(off::QUEUE_HEAD);
        let mut n = head.load(Relaxed);
        loop {
            let tail = self.u64_at(off::QUEUE_TAIL).load(Acquire);
            if n.wrapping_sub(tail) >= QUEUE_ENTRIES as u64 {
                self.u64_at(off::QUEUE_DROPPED).fetch_add(1, Relaxed);
                return;
            }
            match head.compare_exchange_weak(n, n + 1, AcqRel, Relaxed) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        self.u64_at(self.layout.queue_entry_offset(n) as usize).store(pfn + 1, Release);
    }

    /// Called every [`RESET_POLL_MISSES`] misses of a CPU (and at flushes):
    /// publish the miss total and serve a pending whole-array reset.
    pub fn poll(&self, new_misses: u64) {
        let total = self.u64_at(off::MISSES_TOTAL);
        total.fetch_add(new_misses, Relaxed);
        let req = self.u32_at(off::RESET_REQUEST).load(Relaxed);
        if req == self.u32_at(off::RESET_DONE).load(Relaxed) {
            return;
        }
        let Ok(_g) = self.reset_lock.try_lock() else {
            return;
        };
        for i in 0..self.layout.counter_count() {
            self.counter(i).store(0, Relaxed);
        }
        total.store(0, Relaxed);
        self.u32_at(off::RESET_DONE).store(req, std::sync::atomic::Ordering::Release);
    }

    /// The u64 at byte `offset` of the header page (other tables the
    /// monitor publishes there, e.g. `numa::code_table`).
    pub fn header_u64(&self, offset: usize) -> u64 {
        if offset + 8 > QUEUE_OFFSET as usize {
            return 0;
        }
        self.u64_at(offset).load(Acquire)
    }

    /// Current counters, page-major.
    pub fn counters(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.layout.counter_count()).map(|i| self.counter(i).load(Relaxed))
    }
}

pub const POLL_MASK: u64 = RESET_POLL_MISSES - 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{off, CounterLayout, Header};
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn private_region_counts_saturates_and_resets() {
        let g = 1u64 << 30;
        let l = CounterLayout::for_machine(g, 3 * g, 2).unwrap();
        let r = Region::open(l, None, 0, 64).unwrap();
        // SAFETY (test): reading the header bytes of our own mapping.
        let hdr = unsafe { std::slice::from_raw_parts(r.base, Header::ENCODED_LEN) };
        assert_eq!(l.check(&Header::decode(hdr).unwrap()), Ok(()));
        r.count(0x40001, 1, false);
        r.count(0x40001, 1, false);
        r.count(0x3ffff, 0, false); // below RAM: ignored
        let i = l.counter_index(0x40001, 1).unwrap();
        assert_eq!(r.counters().nth(i as usize), Some(2));
        assert_eq!(r.counters().map(u64::from).sum::<u64>(), 2);
        r.counter(0).store(u32::MAX, Relaxed);
        r.count(0x40000, 0, false);
        assert_eq!(r.counter(0).load(Relaxed), u32::MAX);
        // The reader asks for a whole-array reset; the next poll serves it.
        r.u32_at(off::RESET_REQUEST).store(5, Relaxed);
        r.poll(4096);
        assert_eq!(r.u32_at(off::RESET_DONE).load(Relaxed), 5);
        assert_eq!(r.counters().map(u64::from).sum::<u64>(), 0);
        assert_eq!(r.u64_at(off::MISSES_TOTAL).load(Relaxed), 0);
        r.poll(4096);
        assert_eq!(r.u64_at(off::MISSES_TOTAL).load(Relaxed), 4096);
    }

    #[test]
    fn remote_pages_reaching_the_trigger_are_queued_once() {
        let g = 1u64 << 30;
        let l = CounterLayout::for_machine(g, 3 * g, 2).unwrap();
        let r = Region::open(l, None, 0, 64).unwrap();
        let entry = |n: u64| r.u64_at(l.queue_entry_offset(n) as usize).load(Relaxed);
        let head = || r.u64_at(off::QUEUE_HEAD).load(Relaxed);
        // Trigger 0 (the reader did not ask): nothing is queued.
        for _ in 0..10 {
            r.count(0x40005, 1, true);
        }
        assert_eq!(head(), 0);
        r.u32_at(off::TRIGGER).store(3, Relaxed);
        for _ in 0..3 {
            r.count(0x40009, 0, false); // local misses never queue
        }
        for _ in 0..6 {
            r.count(0x40007, 1, true);
        }
        assert_eq!((head(), entry(0)), (1, 0x40008));
        // A full ring drops and says so.
        r.u64_at(off::QUEUE_TAIL).store(1, Relaxed);
        r.u64_at(off::QUEUE_HEAD).store(1 + QUEUE_ENTRIES as u64, Relaxed);
        for _ in 0..3 {
            r.count(0x40100, 1, true);
        }
        assert_eq!(r.u64_at(off::QUEUE_DROPPED).load(Relaxed), 1);
    }
}
