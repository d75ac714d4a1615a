//! MMIO access to a device's register file.
//!
//! The monitor decodes a guest data abort into (offset from the device base,
//! access size, value) and hands it to a [`MmioDevice`]. Everything here is
//! guest-controlled: a malformed access is answered with an [`MmioError`],
//! never a panic; the monitor decides what the guest sees (usually an
//! external abort or RAZ/WI).

/// Why an MMIO access could not be performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// The offset is not a register of this device (outside its frame, or
    /// not a register inside a frame that has no reserved RAZ/WI space).
    Unmapped,
    /// The access size (or its alignment) is not allowed for this register.
    BadWidth,
}

/// A device register file seen through MMIO. `offset` is from the device's
/// base, `size` in bytes (1, 2, 4, 8).
pub trait MmioDevice {
    /// A guest load of `size` bytes at `offset`; the value is zero-extended.
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError>;
    /// A guest store of the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError>;
}

/// Sizes an access may have at all.
pub(crate) fn valid_size(size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8)
}

/// A mask covering `size` bytes (size must be 1, 2, 4 or 8).
pub(crate) fn size_mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (u32::from(s) * 8)) - 1,
    }
}

/// Checks that `size` is a valid, naturally aligned access width.
pub(crate) fn check_aligned(offset: u64, size: u8) -> Result<(), MmioError> {
    if valid_size(size) && offset.is_multiple_of(u64::from(size)) {
        Ok(())
    } else {
        Err(MmioError::BadWidth)
    }
}

/// The position of an access inside a 32-bit register: the register's
/// offset, the bit shift of the accessed bytes and their mask (already
/// shifted). Used by devices whose 32-bit registers allow narrower accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lane {
    pub reg: u64,
    pub shift: u32,
    pub mask: u32,
}

/// Splits a naturally aligned access of at most 4 bytes into its 32-bit
/// register and byte lane.
pub(crate) fn lane32(offset: u64, size: u8) -> Result<Lane, MmioError> {
    check_aligned(offset, size)?;
    if size > 4 {
        return Err(MmioError::BadWidth);
    }
    let shift = ((offset & 3) * 8) as u32;
    let mask = (size_mask(size) as u32) << shift;
    Ok(Lane { reg: offset & !3, shift, mask })
}

/// Reads a 64-bit register that also allows 32-bit accesses to either
/// half; `offset` is the access offset from the register's base.
pub(crate) fn read_wide(reg: u64, offset: u64, size: u8) -> Result<u64, MmioError> {
    match (offset, size) {
        (0, 8) => Ok(reg),
        (0, 4) => Ok(reg & 0xFFFF_FFFF),
        (4, 4) => Ok(reg >> 32),
        _ => Err(MmioError::BadWidth),
    }
}

/// The new value of a 64-bit register that also allows 32-bit accesses to
/// either half, after a write of `value` at `offset` from its base.
pub(crate) fn write_wide(reg: u64, offset: u64, size: u8, value: u64) -> Result<u64, MmioError> {
    match (offset, size) {
        (0, 8) => Ok(value),
        (0, 4) => Ok((reg & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF)),
        (4, 4) => Ok((reg & 0xFFFF_FFFF) | (value << 32)),
        _ => Err(MmioError::BadWidth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes() {
        assert_eq!(lane32(0x18, 4), Ok(Lane { reg: 0x18, shift: 0, mask: u32::MAX }));
        assert_eq!(lane32(0x19, 1), Ok(Lane { reg: 0x18, shift: 8, mask: 0xff00 }));
        assert_eq!(lane32(0x1a, 2), Ok(Lane { reg: 0x18, shift: 16, mask: 0xffff_0000 }));
        assert_eq!(lane32(0x19, 2), Err(MmioError::BadWidth));
        assert_eq!(lane32(0x18, 8), Err(MmioError::BadWidth));
        assert_eq!(lane32(0x18, 3), Err(MmioError::BadWidth));
        assert_eq!(size_mask(8), u64::MAX);
        assert_eq!(size_mask(2), 0xffff);
    }

    #[test]
    fn wide_registers() {
        assert_eq!(read_wide(0x1122_3344_5566_7788, 0, 8), Ok(0x1122_3344_5566_7788));
        assert_eq!(read_wide(0x1122_3344_5566_7788, 0, 4), Ok(0x5566_7788));
        assert_eq!(read_wide(0x1122_3344_5566_7788, 4, 4), Ok(0x1122_3344));
        assert_eq!(read_wide(0, 4, 8), Err(MmioError::BadWidth));
        assert_eq!(read_wide(0, 0, 2), Err(MmioError::BadWidth));
        assert_eq!(write_wide(0x1122_3344_5566_7788, 4, 4, 0xAABB_CCDD_0000_0001), Ok(0x0000_0001_5566_7788));
        assert_eq!(write_wide(0x1122_3344_5566_7788, 0, 4, 9), Ok(0x1122_3344_0000_0009));
        assert_eq!(write_wide(1, 0, 8, 2), Ok(2));
    }
}
