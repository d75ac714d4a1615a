//! Affinity values: MPIDR_EL1 and GICD_IROUTER<n> share the field layout
//! Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0].

/// The affinity fields of an MPIDR_EL1 or GICD_IROUTER<n> value.
pub const AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// GICD_IROUTER<n>.Interrupt_Routing_Mode: 1 = any participating PE.
pub const GICD_IROUTER_IRM: u64 = 1 << 31;

/// The bits of GICD_IROUTER<n> that hold state.
pub const GICD_IROUTER_MASK: u64 = AFFINITY_MASK | GICD_IROUTER_IRM;

/// The affinity of an MPIDR_EL1 or GICD_IROUTER<n> value.
pub fn affinity(value: u64) -> u64 {
    value & AFFINITY_MASK
}

/// The 32-bit Aff3.Aff2.Aff1.Aff0 form used by GICR_TYPER.Affinity_Value.
pub fn affinity32(mpidr: u64) -> u32 {
    (((mpidr >> 8) & 0xFF00_0000) | (mpidr & 0xFF_FFFF)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing() {
        let mpidr = 0x8000_0000 | (0x12 << 32) | (0x34 << 16) | (0x56 << 8) | 0x78;
        assert_eq!(affinity(mpidr), 0x12_0034_5678);
        assert_eq!(affinity32(mpidr), 0x1234_5678);
    }
}
