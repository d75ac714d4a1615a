//! A guest's RAM for the virtio targets: a [`VecMemory`] that records
//! every access a device makes, so a target can check that a device
//! wrote only where the driver let it (used rings, device-writable
//! buffers) and that a failed access put the device into NEEDS_RESET.

use std::cell::Cell;
use vdev::mem::{GuestMemory, MemError, VecMemory};
use vdev::virtio::queue::{SplitQueue, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

pub const MEM_BASE: u64 = 0x4000_0000;
/// 64 KiB: every 16-bit offset from the input is an address inside it.
pub const MEM_SIZE: usize = 0x1_0000;

pub struct Watched {
    pub mem: VecMemory,
    /// Accesses that failed (outside guest RAM).
    pub failed: Cell<u64>,
    pub accesses: Cell<u64>,
    /// Successful writes since the last [`Watched::take_writes`].
    pub writes: Vec<(u64, u64)>,
    /// Pages a device discarded (a balloon's): (address, pages).
    pub discards: Vec<(u64, u64)>,
}

impl Watched {
    pub fn new() -> Self {
        Self {
            mem: VecMemory::new(MEM_BASE, MEM_SIZE),
            failed: Cell::new(0),
            accesses: Cell::new(0),
            writes: Vec::new(),
            discards: Vec::new(),
        }
    }

    /// The driver (the fuzz program) writes guest RAM: not recorded.
    pub fn poke(&mut self, offset: u16, data: &[u8]) {
        let start = usize::from(offset);
        let end = (start + data.len()).min(MEM_SIZE);
        self.mem.bytes[start..end].copy_from_slice(&data[..end - start]);
    }

    pub fn peek_u16(&self, gpa: u64) -> Option<u16> {
        self.mem.read_u16(gpa).ok()
    }

    fn note<T>(&self, r: Result<T, MemError>) -> Result<T, MemError> {
        self.accesses.set(self.accesses.get() + 1);
        if r.is_err() {
            self.failed.set(self.failed.get() + 1);
        }
        r
    }
}

impl GuestMemory for Watched {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.note(self.mem.read(gpa, buf))
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.mem.write(gpa, data);
        if r.is_ok() {
            self.writes.push((gpa, data.len() as u64));
        }
        self.note(r)
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.note(self.mem.check_range(gpa, len))
    }
    /// Only whole pages inside RAM may be discarded (the monitor frees
    /// their frames).
    fn discard(&mut self, gpa: u64, pages: u64) -> u64 {
        let len = pages.checked_mul(4096).expect("page count overflows");
        assert!(gpa % 4096 == 0 && pages > 0, "discard of {gpa:#x}+{pages} pages: not whole pages");
        assert!(self.mem.check_range(gpa, len).is_ok(), "discard of {gpa:#x}+{len:#x}: outside guest RAM");
        self.discards.push((gpa, pages));
        self.mem.discard(gpa, pages)
    }
}

/// Where a device may write for `q` as the guest set it up now: the used
/// ring, and every device-writable buffer of its descriptor table and of
/// the indirect tables it names.
pub fn writable_ranges(mem: &VecMemory, q: &SplitQueue, out: &mut Vec<(u64, u64)>) {
    let n = u64::from(q.size());
    out.push((q.used_ring(), 6 + 8 * n));
    let desc = |table: u64, i: u64| -> Option<(u64, u32, u16)> {
        let at = table.checked_add(16 * i)?;
        Some((mem.read_u64(at).ok()?, mem.read_u32(at + 8).ok()?, mem.read_u16(at + 12).ok()?))
    };
    for i in 0..n {
        let Some((addr, len, flags)) = desc(q.desc_table(), i) else { break };
        if flags & VIRTQ_DESC_F_WRITE != 0 {
            out.push((addr, u64::from(len)));
        }
        if flags & VIRTQ_DESC_F_INDIRECT != 0 && flags & VIRTQ_DESC_F_NEXT == 0 {
            for k in 0..u64::from(len / 16).min(2048) {
                match desc(addr, k) {
                    Some((a, l, f)) if f & VIRTQ_DESC_F_WRITE != 0 => out.push((a, u64::from(l))),
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }
}

/// Panics on a device write outside every range in `allowed`.
pub fn check_writes(writes: &[(u64, u64)], allowed: &[(u64, u64)]) {
    for &(gpa, len) in writes {
        let inside = allowed.iter().any(|&(a, l)| gpa >= a && gpa.saturating_add(len) <= a.saturating_add(l));
        assert!(inside, "device wrote {gpa:#x}+{len:#x}: not a used ring or a device-writable buffer");
    }
}
