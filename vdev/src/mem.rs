//! Guest memory as devices see it: reads and writes at guest-physical
//! addresses (vm-memory style), taken by devices on each call and never
//! stored.
//!
//! Every address here comes from the guest (descriptor tables, buffers), so
//! an access outside guest RAM is a [`MemError`], never a panic. The
//! monitor implements [`GuestMemory`] over a VM's stage-2 mappings; tests
//! use [`VecMemory`].

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A guest-physical range that is not (entirely) guest memory, or whose end
/// overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemError {
    pub gpa: u64,
    pub len: u64,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest range {:#x}+{:#x} is not guest memory", self.gpa, self.len)
    }
}

/// Guest RAM, byte-addressed by guest-physical address. Multi-byte
/// values are little-endian (virtio 1.x is little-endian throughout).
///
/// Implementations must not panic on any address or length: a range that
/// is not entirely guest RAM (or overflows `u64`) is a [`MemError`], and a
/// failed access changes nothing the caller can rely on.
pub trait GuestMemory {
    /// Fills `buf` from guest memory at `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` into guest memory at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError>;
    /// Whether `[gpa, gpa + len)` is entirely guest RAM a device may access
    /// (checked once per descriptor when a chain is popped, so that a bad
    /// buffer is found before any request is executed). `len == 0` checks
    /// nothing but the address's validity and may return `Ok`.
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError>;
    /// A full memory barrier between guest-memory accesses (`dmb ish` on
    /// aarch64), for the virtqueue's publication protocol: called after
    /// reading `avail.idx` (before the ring entries and descriptors) and
    /// between writing used elements and `used.idx`, and before reading
    /// `avail.flags` for interrupt suppression. The default does nothing,
    /// which is right only when the guest is not running concurrently (as in
    /// host tests).
    fn fence(&self) {}
    /// The guest gave the whole pages `[gpa, gpa + pages * 4096)` back (a
    /// balloon's free page report; `gpa` page-aligned, the range checked
    /// with [`Self::check_range`]): their contents are not needed any
    /// more, and the memory may drop what backs them, so that they read as
    /// zeros afterwards. Returns how many pages had backing that was
    /// dropped. The default keeps everything.
    fn discard(&mut self, _gpa: u64, _pages: u64) -> u64 {
        0
    }

    fn read_u16(&self, gpa: u64) -> Result<u16, MemError> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn read_u32(&self, gpa: u64) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u8(&mut self, gpa: u64, value: u8) -> Result<(), MemError> {
        self.write(gpa, &[value])
    }
    fn write_u16(&mut self, gpa: u64, value: u16) -> Result<(), MemError> {
        self.write(gpa, &value.to_le_bytes())
    }
    fn write_u32(&mut self, gpa: u64, value: u32) -> Result<(), MemError> {
        self.write(gpa, &value.to_le_bytes())
    }
    fn write_u64(&mut self, gpa: u64, value: u64) -> Result<(), MemError> {
        self.write(gpa, &value.to_le_bytes())
    }
}

/// One contiguous block of guest RAM in a `Vec`, at guest-physical `base`:
/// for tests (here and in other crates) and host-side tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl VecMemory {
    /// `size` zeroed bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self { base, bytes: vec![0; size] }
    }

    /// The byte range inside `bytes` of `[gpa, gpa + len)`, if all of it is
    /// inside this memory.
    fn span(&self, gpa: u64, len: u64) -> Result<core::ops::Range<usize>, MemError> {
        let err = MemError { gpa, len };
        let start = gpa.checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() as u64 {
            return Err(err);
        }
        Ok(start as usize..end as usize)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let span = self.span(gpa, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes[span]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let span = self.span(gpa, data.len() as u64)?;
        self.bytes[span].copy_from_slice(data);
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.span(gpa, len).map(|_| ())
    }

    /// Zeroes the pages (what a fresh frame would hold).
    fn discard(&mut self, gpa: u64, pages: u64) -> u64 {
        match self.span(gpa, pages.saturating_mul(4096)) {
            Ok(span) => {
                self.bytes[span].fill(0);
                pages
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_memory_bounds() {
        let mut m = VecMemory::new(0x1000, 0x100);
        m.write_u32(0x1000, 0xAABB_CCDD).unwrap();
        assert_eq!(m.read_u16(0x1000), Ok(0xCCDD));
        assert_eq!(m.read_u32(0x1000), Ok(0xAABB_CCDD));
        m.write_u64(0x10F8, u64::MAX).unwrap();
        assert_eq!(m.read_u64(0x10F8), Ok(u64::MAX));
        assert_eq!(m.read_u64(0x10F9), Err(MemError { gpa: 0x10F9, len: 8 }));
        assert!(m.read_u16(0xFFF).is_err());
        assert!(m.write_u8(0x1100, 0).is_err());
        assert!(m.read(u64::MAX, &mut [0; 2]).is_err());
        assert!(m.check_range(0x1000, 0x100).is_ok());
        assert!(m.check_range(0x1000, 0x101).is_err());
        assert!(m.check_range(0x1001, u64::MAX).is_err());
        assert!(m.check_range(0x1100, 0).is_ok());
        assert!(m.check_range(0x1101, 0).is_err());
    }
}
