//! ESR_EL2: the syndrome of an exception taken to EL2 (Arm ARM D17.2.37).

/// Exception classes the monitor handles.
pub mod ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const WFX: u64 = 0x01;
    pub const FP_ASIMD: u64 = 0x07;
    pub const HVC64: u64 = 0x16;
    pub const SMC64: u64 = 0x17;
    pub const SYSREG: u64 = 0x18;
    pub const SVE: u64 = 0x19;
    pub const SME: u64 = 0x1d;
    pub const IABT_LOWER: u64 = 0x20;
    pub const IABT_CURRENT: u64 = 0x21;
    pub const DABT_LOWER: u64 = 0x24;
    pub const DABT_CURRENT: u64 = 0x25;
    pub const SERROR: u64 = 0x2f;
}

/// A raw ESR value with accessors for the fields the monitor decodes.
#[derive(Clone, Copy, Debug)]
pub struct Esr(pub u64);

impl Esr {
    pub fn class(self) -> u64 {
        (self.0 >> 26) & 0x3f
    }
    pub fn iss(self) -> u64 {
        self.0 & 0x1ff_ffff
    }
    pub fn class_name(self) -> &'static str {
        match self.class() {
            ec::UNKNOWN => "unknown",
            ec::WFX => "WFI/WFE",
            ec::FP_ASIMD => "FP/SIMD",
            ec::HVC64 => "HVC",
            ec::SMC64 => "SMC",
            ec::SYSREG => "MSR/MRS",
            ec::SVE => "SVE",
            ec::SME => "SME",
            ec::IABT_LOWER => "instruction abort (lower EL)",
            ec::IABT_CURRENT => "instruction abort (EL2)",
            ec::DABT_LOWER => "data abort (lower EL)",
            ec::DABT_CURRENT => "data abort (EL2)",
            ec::SERROR => "SError",
            _ => "other",
        }
    }

    /// The decoded syndrome of a data abort, if the hardware provided one (ISV).
    pub fn data_abort(self) -> Option<DataAbort> {
        let iss = self.iss();
        if iss & (1 << 24) == 0 {
            return None;
        }
        Some(DataAbort {
            size: 1 << ((iss >> 22) & 3),
            sign_extend: iss & (1 << 21) != 0,
            reg: ((iss >> 16) & 0x1f) as usize,
            reg64: iss & (1 << 15) != 0,
            write: iss & (1 << 6) != 0,
        })
    }

    /// DFSC/IFSC status code of an abort.
    pub fn fault_status(self) -> u64 {
        self.iss() & 0x3f
    }

    /// A plain WFI (not WFE, WFIT or WFET): the only form that waits for
    /// an interrupt with no deadline of its own.
    pub fn is_plain_wfi(self) -> bool {
        self.iss() & 0b11 == 0
    }

    /// The trapped system register access of an EC 0x18 exception.
    pub fn sysreg(self) -> SysRegAccess {
        let iss = self.iss();
        SysRegAccess {
            op0: (iss >> 20) & 3,
            op2: (iss >> 17) & 7,
            op1: (iss >> 14) & 7,
            crn: (iss >> 10) & 0xf,
            rt: ((iss >> 5) & 0x1f) as usize,
            crm: (iss >> 1) & 0xf,
            read: iss & 1 != 0,
        }
    }
}

/// An MMIO access described by ESR_EL2.ISS when ISV is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    pub size: u8,
    pub sign_extend: bool,
    pub reg: usize,
    pub reg64: bool,
    pub write: bool,
}

/// A trapped MRS/MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub op0: u64,
    pub op1: u64,
    pub crn: u64,
    pub crm: u64,
    pub op2: u64,
    pub rt: usize,
    pub read: bool,
}

impl SysRegAccess {
    /// The (op0, op1, CRn, CRm, op2) encoding packed for matching.
    pub const fn encoding(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
        (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
    }
    pub fn id(&self) -> u64 {
        Self::encoding(self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

/// Syndromes the monitor builds to inject exceptions into a guest.
pub mod inject {
    use super::ec;
    const IL: u64 = 1 << 25;
    /// DFSC/IFSC: synchronous external abort, not on a translation table walk.
    const SEA: u64 = 0x10;

    /// A synchronous external abort on a data access; `from_el0` picks EC.
    pub fn data_sea(from_el0: bool, write: bool) -> u64 {
        let class = if from_el0 { ec::DABT_LOWER } else { ec::DABT_CURRENT };
        (class << 26) | IL | ((write as u64) << 6) | SEA
    }
    /// A synchronous external abort on an instruction fetch.
    pub fn instruction_sea(from_el0: bool) -> u64 {
        let class = if from_el0 { ec::IABT_LOWER } else { ec::IABT_CURRENT };
        (class << 26) | IL | SEA
    }
    /// An undefined instruction.
    pub fn undefined() -> u64 {
        (ec::UNKNOWN << 26) | IL
    }
}
