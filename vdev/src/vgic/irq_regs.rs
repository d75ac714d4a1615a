//! The per-interrupt registers shared by the distributor and the
//! redistributor's SGI_base frame: the same offsets, addressed by INTID
//! (GICD_IGROUPR<n> .. GICD_ICACTIVER<n>, GICD_IPRIORITYR<n>, GICD_ICFGR<n>
//! and their GICR_*0 counterparts). INTIDs outside the bank behind the
//! frame are RAZ/WI (e.g. the SGI/PPI words of the distributor when
//! affinity routing is enabled).

use super::irq_bank::{IrqBank, SGI_LIMIT};
use crate::mmio::MmioError;

/// The 1-bit-per-INTID registers, in offset order from 0x080.
#[allow(clippy::upper_case_acronyms)] // the architecture's register names
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitReg {
    IGROUPR,
    ISENABLER,
    ICENABLER,
    ISPENDR,
    ICPENDR,
    ISACTIVER,
    ICACTIVER,
}

const BIT_REGS: [BitReg; 7] = [
    BitReg::IGROUPR,
    BitReg::ISENABLER,
    BitReg::ICENABLER,
    BitReg::ISPENDR,
    BitReg::ICPENDR,
    BitReg::ISACTIVER,
    BitReg::ICACTIVER,
];

/// A decoded per-interrupt register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqReg {
    /// A bit register and the first of the 32 INTIDs it covers.
    Bits(BitReg, u32),
    /// IPRIORITYR: the INTID of the byte accessed first.
    Priority(u32),
    /// ICFGR: the first of the 16 INTIDs it covers.
    Icfgr(u32),
}

/// Decodes an offset in the shared layout (0x080..0x800 and 0xC00..0xD00).
pub fn decode(offset: u64) -> Option<IrqReg> {
    match offset {
        0x080..=0x3FF => {
            let kind = BIT_REGS[((offset - 0x080) / 0x80) as usize];
            Some(IrqReg::Bits(kind, ((offset & 0x7F) / 4) as u32 * 32))
        }
        0x400..=0x7FF => Some(IrqReg::Priority((offset - 0x400) as u32)),
        0xC00..=0xCFF => Some(IrqReg::Icfgr(((offset - 0xC00) / 4) as u32 * 16)),
        _ => None,
    }
}

fn need(size: u8, allowed: &[u8]) -> Result<(), MmioError> {
    if allowed.contains(&size) {
        Ok(())
    } else {
        Err(MmioError::BadWidth)
    }
}

/// Reads `reg` with an access of `size` bytes (already checked aligned).
pub fn read(bank: &IrqBank, reg: IrqReg, size: u8) -> Result<u32, MmioError> {
    match reg {
        IrqReg::Bits(kind, first) => {
            need(size, &[4])?;
            let Some(w) = bank.word(first) else {
                return Ok(0);
            };
            let bits = match kind {
                BitReg::IGROUPR => w.group,
                BitReg::ISENABLER | BitReg::ICENABLER => w.enable,
                BitReg::ISPENDR | BitReg::ICPENDR => w.pending_state(),
                BitReg::ISACTIVER | BitReg::ICACTIVER => w.active | w.in_flight,
            };
            Ok(bits & IrqBank::valid_mask(first))
        }
        IrqReg::Priority(intid) => {
            need(size, &[1, 4])?;
            let mut value = 0;
            for i in 0..u32::from(size) {
                value |= u32::from(bank.priority(intid + i).unwrap_or(0)) << (8 * i);
            }
            Ok(value)
        }
        IrqReg::Icfgr(first) => {
            need(size, &[4])?;
            let mut value = 0;
            for k in 0..16 {
                let intid = first + k;
                let edge =
                    bank.contains(intid) && bank.word(intid & !31).is_some_and(|w| w.edge & (1 << (intid % 32)) != 0);
                if edge {
                    value |= 2 << (2 * k);
                }
            }
            Ok(value)
        }
    }
}

/// Writes `reg` with an access of `size` bytes (already checked aligned).
pub fn write(bank: &mut IrqBank, reg: IrqReg, size: u8, value: u32) -> Result<(), MmioError> {
    match reg {
        IrqReg::Bits(kind, first) => {
            need(size, &[4])?;
            let value = value & IrqBank::valid_mask(first);
            let Some(w) = bank.word_mut(first) else {
                return Ok(());
            };
            match kind {
                BitReg::IGROUPR => w.group = value,
                BitReg::ISENABLER => w.enable |= value,
                BitReg::ICENABLER => w.enable &= !value,
                BitReg::ISPENDR => w.pending |= value,
                BitReg::ICPENDR => w.pending &= !value,
                BitReg::ISACTIVER => w.active |= value,
                BitReg::ICACTIVER => w.active &= !value,
            }
        }
        IrqReg::Priority(intid) => {
            need(size, &[1, 4])?;
            for i in 0..u32::from(size) {
                bank.set_priority(intid + i, (value >> (8 * i)) as u8);
            }
        }
        IrqReg::Icfgr(first) => {
            need(size, &[4])?;
            for k in 0..16 {
                let intid = first + k;
                // SGIs are always edge-triggered.
                if intid < SGI_LIMIT || !bank.contains(intid) {
                    continue;
                }
                let bit = 1 << (intid % 32);
                if let Some(w) = bank.word_mut(intid & !31) {
                    if value & (2 << (2 * k)) != 0 {
                        w.edge |= bit;
                    } else {
                        w.edge &= !bit;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_layout() {
        assert_eq!(decode(0x080), Some(IrqReg::Bits(BitReg::IGROUPR, 0)));
        assert_eq!(decode(0x104), Some(IrqReg::Bits(BitReg::ISENABLER, 32)));
        assert_eq!(decode(0x3FC), Some(IrqReg::Bits(BitReg::ICACTIVER, 992)));
        assert_eq!(decode(0x421), Some(IrqReg::Priority(33)));
        assert_eq!(decode(0xC04), Some(IrqReg::Icfgr(16)));
        assert_eq!(decode(0xC08), Some(IrqReg::Icfgr(32)));
        assert_eq!(decode(0x800), None);
        assert_eq!(decode(0x07C), None);
    }

    #[test]
    fn icfgr_sgis_fixed_ppis_programmable() {
        let mut b = IrqBank::new(0, 32);
        assert_eq!(read(&b, IrqReg::Icfgr(0), 4), Ok(0xAAAA_AAAA));
        write(&mut b, IrqReg::Icfgr(0), 4, 0).unwrap();
        assert_eq!(read(&b, IrqReg::Icfgr(0), 4), Ok(0xAAAA_AAAA));
        write(&mut b, IrqReg::Icfgr(16), 4, 0x0080_0000).unwrap(); // INTID 27 edge
        assert_eq!(read(&b, IrqReg::Icfgr(16), 4), Ok(0x0080_0000));
        assert_eq!(read(&b, IrqReg::Icfgr(32), 4), Ok(0));
        assert_eq!(read(&b, IrqReg::Icfgr(16), 1), Err(MmioError::BadWidth));
    }

    #[test]
    fn priorities_by_byte_and_word() {
        let mut b = IrqBank::new(32, 32);
        write(&mut b, IrqReg::Priority(32), 4, 0xA0B0C0D0).unwrap();
        write(&mut b, IrqReg::Priority(37), 1, 0x80).unwrap();
        assert_eq!(read(&b, IrqReg::Priority(32), 4), Ok(0xA0B0C0D0));
        assert_eq!(read(&b, IrqReg::Priority(34), 1), Ok(0xB0));
        assert_eq!(read(&b, IrqReg::Priority(36), 4), Ok(0x8000));
        assert_eq!(read(&b, IrqReg::Priority(0), 4), Ok(0));
        assert_eq!(read(&b, IrqReg::Priority(32), 2), Err(MmioError::BadWidth));
    }
}
