//! The guest's view of the ID registers (trapped by HCR_EL2.TID3).
//!
//! Guests see the machine's CPU features except those whose state or
//! controls the monitor does not virtualize: SVE and SME (their wide
//! registers are not switched), MTE, AMU, MPAM, NMI, GCS, the PMU,
//! statistical profiling, trace and branch records.

use core::arch::asm;

/// Bit ranges hidden from guests, per (CRm, op2) of the ID space.
const HIDDEN: &[(u64, u64, u64)] = &[
    // ID_AA64PFR0_EL1: SVE [35:32], MPAM [43:40], AMU [47:44]
    (4, 0, 0xf << 32 | 0xf << 40 | 0xf << 44),
    // ID_AA64PFR1_EL1: MTE [11:8], MPAM_frac [19:16], SME [27:24], NMI [39:36], GCS [47:44]
    (4, 1, 0xf << 8 | 0xf << 16 | 0xf << 24 | 0xf << 36 | 0xf << 44),
    // ID_AA64DFR0_EL1: TraceVer [7:4], PMUVer [11:8], PMSS [19:16],
    // PMSVer [35:32], TraceFilt [43:40], TraceBuffer [47:44], MTPMU [51:48],
    // BRBE [55:52], ExtTrcBuff [59:56], HPMN0 [63:60]: no PMU, statistical
    // profiling, trace or branch records. Breakpoints and watchpoints stay.
    (5, 0, 0xf << 4 | 0xf << 8 | 0xf << 16 | 0xf << 32 | 0xfff << 40 | 0xfff << 52),
    // ID_AA64ZFR0_EL1, ID_AA64SMFR0_EL1: all
    (4, 4, u64::MAX),
    (4, 5, u64::MAX),
];

macro_rules! read_id_space {
    ($crm:expr, $op2:expr; $($c:literal: $($o:literal)*;)*) => {
        match ($crm, $op2) {
            $($(($c, $o) => {
                let value: u64;
                // SAFETY: reads of the ID register space have no side effects;
                // reserved encodings in it read as zero.
                unsafe { asm!(concat!("mrs {0}, S3_0_C0_C", $c, "_", $o), out(reg) value) };
                value
            })*)*
            _ => 0,
        }
    };
}

/// Is (op0, op1, CRn, CRm) in the feature ID space that TID3 traps?
pub fn is_id_space(op0: u64, op1: u64, crn: u64, crm: u64) -> bool {
    op0 == 3 && op1 == 0 && crn == 0 && (1..=7).contains(&crm)
}

/// The value a guest reads from ID register (CRm, op2).
pub fn guest_value(crm: u64, op2: u64) -> u64 {
    let raw = read_id_space!(crm, op2;
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    );
    HIDDEN.iter().filter(|(c, o, _)| (*c, *o) == (crm, op2)).fold(raw, |value, (_, _, mask)| value & !mask)
}
