//! PSCI for guests (Arm DEN0022, version 1.1): the decode of a call's
//! registers into what the guest asks for, and the answers that need no VM
//! state. The monitor (`monitor/src/exit/psci.rs`) decodes each HVC/SMC here
//! and acts on the VM's power states. Everything here is guest-controlled:
//! any register values decode to some [`Call`] ([`Call::Unknown`] for what
//! is not implemented), never a panic.

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const CPU_SUSPEND: u32 = 0x8400_0001;
pub const CPU_OFF: u32 = 0x8400_0002;
pub const CPU_ON: u32 = 0x8400_0003;
pub const AFFINITY_INFO: u32 = 0x8400_0004;
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000a;
/// Set in the function ID of the SMC64 variants.
pub const SMC64: u32 = 0x4000_0000;

pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const ALREADY_ON: i64 = -4;
pub const ON_PENDING: i64 = -5;
/// PSCI 1.1.
pub const VERSION_1_1: i64 = 0x1_0001;
/// MIGRATE_INFO_TYPE: no trusted OS that needs migration.
pub const NO_TRUSTED_OS: i64 = 2;
/// AFFINITY_INFO states.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
pub const AFFINITY_ON_PENDING: i64 = 2;

/// A decoded PSCI call. The function ID is the low 32 bits of x0. The
/// calls that take an address or an MPIDR (CPU_SUSPEND, CPU_ON,
/// AFFINITY_INFO) exist in both conventions; the others only as SMC32
/// (DEN0022 5.1): their SMC64 IDs are unknown, as under KVM, so a random
/// 0xc400_0009 does not reset the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Version,
    /// PSCI_FEATURES of this function ID (x1's low 32 bits).
    Features(u32),
    MigrateInfoType,
    /// A suspend that loses no state: answered SUCCESS (Linux only uses it
    /// with idle states from the DTB, which guests do not get).
    CpuSuspend,
    /// Start the vCPU whose MPIDR is `target` at `entry` with x0 = `context`.
    CpuOn {
        target: u64,
        entry: u64,
        context: u64,
    },
    CpuOff,
    AffinityInfo {
        target: u64,
    },
    SystemOff,
    SystemReset,
    /// Anything else: answered NOT_SUPPORTED. Holds the function ID.
    Unknown(u32),
}

/// Decodes the call in `x` (x0..x3 of the calling vCPU).
pub fn decode(x: [u64; 4]) -> Call {
    let (function, arg1, arg2, arg3) = (x[0] as u32, x[1], x[2], x[3]);
    match function_of(function) {
        Some(PSCI_VERSION) => Call::Version,
        Some(PSCI_FEATURES) => Call::Features(arg1 as u32),
        Some(MIGRATE_INFO_TYPE) => Call::MigrateInfoType,
        Some(CPU_SUSPEND) => Call::CpuSuspend,
        Some(CPU_ON) => Call::CpuOn { target: arg1, entry: arg2, context: arg3 },
        Some(CPU_OFF) => Call::CpuOff,
        Some(AFFINITY_INFO) => Call::AffinityInfo { target: arg1 },
        Some(SYSTEM_OFF) => Call::SystemOff,
        Some(SYSTEM_RESET) => Call::SystemReset,
        _ => Call::Unknown(function),
    }
}

/// The SMC32 ID of a function this implements, from either convention
/// where both exist.
fn function_of(id: u32) -> Option<u32> {
    let both = [CPU_SUSPEND, CPU_ON, AFFINITY_INFO];
    let only32 = [PSCI_VERSION, PSCI_FEATURES, MIGRATE_INFO_TYPE, CPU_OFF, SYSTEM_OFF, SYSTEM_RESET];
    if only32.contains(&id) || both.contains(&id) {
        Some(id)
    } else {
        both.iter().copied().find(|&f| f | SMC64 == id)
    }
}

/// PSCI_FEATURES: SUCCESS for every function [`decode`] knows.
pub fn features(function: u32) -> i64 {
    match function_of(function) {
        Some(_) => SUCCESS,
        None => NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_linux_calls() {
        assert_eq!(decode([u64::from(PSCI_VERSION), 9, 9, 9]), Call::Version);
        assert_eq!(
            decode([u64::from(CPU_ON | SMC64), 0x101, 0x4008_0000, 7]),
            Call::CpuOn { target: 0x101, entry: 0x4008_0000, context: 7 }
        );
        assert_eq!(decode([0xffff_ffff_0000_0000 | u64::from(CPU_OFF), 0, 0, 0]), Call::CpuOff);
        assert_eq!(decode([u64::from(PSCI_FEATURES), 0x1_8400_0003, 0, 0]), Call::Features(CPU_ON));
        assert_eq!(decode([0x8400_0005, 0, 0, 0]), Call::Unknown(0x8400_0005));
        assert_eq!(features(CPU_ON | SMC64), SUCCESS);
        assert_eq!(features(0x8400_0005), NOT_SUPPORTED);
        // SMC32-only functions have no SMC64 form.
        for f in [SYSTEM_RESET, SYSTEM_OFF, CPU_OFF, PSCI_VERSION] {
            assert_eq!(decode([u64::from(f | SMC64), 0, 0, 0]), Call::Unknown(f | SMC64));
            assert_eq!(features(f | SMC64), NOT_SUPPORTED);
        }
        assert_eq!(decode([u64::from(AFFINITY_INFO | SMC64), 0x100, 0, 0]), Call::AffinityInfo { target: 0x100 });
    }
}
