//! ICC_SGI1R_EL1: a PE's request to send a Group 1 SGI.

use super::affinity::affinity;

/// The fields of an ICC_SGI1R_EL1 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sgi1r {
    /// INTID, bits [27:24].
    pub intid: u32,
    /// TargetList, bits [15:0]: Aff0 values RS*16 + n for each set bit n.
    pub target_list: u16,
    /// Aff1 [23:16], Aff2 [39:32], Aff3 [55:48] of the targets.
    pub aff1: u8,
    pub aff2: u8,
    pub aff3: u8,
    /// Interrupt_Routing_Mode, bit [40]: 1 = every PE except the sender.
    pub irm: bool,
    /// Range selector, bits [47:44].
    pub rs: u8,
}

impl Sgi1r {
    pub fn decode(value: u64) -> Self {
        Self {
            intid: ((value >> 24) & 0xF) as u32,
            target_list: value as u16,
            aff1: (value >> 16) as u8,
            aff2: (value >> 32) as u8,
            aff3: (value >> 48) as u8,
            irm: value & (1 << 40) != 0,
            rs: ((value >> 44) & 0xF) as u8,
        }
    }

    /// Whether the PE with this MPIDR is in the target list (IRM == 0).
    pub fn targets(&self, mpidr: u64) -> bool {
        let aff = affinity(mpidr);
        let cluster = (u64::from(self.aff3) << 32) | (u64::from(self.aff2) << 16) | (u64::from(self.aff1) << 8);
        if aff & !0xFF != cluster {
            return false;
        }
        let aff0 = (aff & 0xFF) as u32;
        let base = u32::from(self.rs) * 16;
        aff0 >= base && aff0 < base + 16 && self.target_list & (1 << (aff0 - base)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_target() {
        // What Linux's gic_send_sgi writes: cluster Aff1=1, CPUs Aff0 0 and 2, SGI 3.
        let v = (3 << 24) | (1 << 16) | 0b101;
        let s = Sgi1r::decode(v);
        assert_eq!((s.intid, s.target_list, s.aff1, s.irm), (3, 0b101, 1, false));
        assert!(s.targets(0x8000_0100));
        assert!(s.targets(0x102));
        assert!(!s.targets(0x101));
        assert!(!s.targets(0x000));
        // Range selector 1 covers Aff0 16..31.
        let s = Sgi1r::decode((1 << 44) | 1);
        assert!(s.targets(16) && !s.targets(0));
        // Aff2/Aff3 must match.
        let s = Sgi1r::decode((7 << 48) | (5 << 32) | 1);
        assert!(s.targets((7 << 32) | (5 << 16)));
        assert!(!s.targets(5 << 16));
        assert!(Sgi1r::decode(1 << 40).irm);
    }
}
