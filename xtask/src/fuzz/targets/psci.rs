//! PSCI call decoding (`vdev::psci`, what the monitor runs on every guest
//! HVC/SMC). Checked against DEN0022's calling convention: only the low
//! 32 bits of x0 name the function, the SMC64 bit selects the convention
//! and not the function for the calls that have both (CPU_SUSPEND, CPU_ON,
//! AFFINITY_INFO; the others are SMC32 only and their SMC64 IDs unknown),
//! arguments reach the call unchanged (CPU_ON's
//! 64-bit MPIDR, entry and context; PSCI_FEATURES's 32-bit function ID),
//! PSCI_FEATURES says SUCCESS exactly for the functions that decode to a
//! call, and an unknown function keeps its ID for the log.

use super::Target;
use crate::fuzz::input::Bytes;
use vdev::psci::{self, Call, SMC64, SUCCESS};

pub const TARGET: Target =
    Target { name: "psci", about: "PSCI function ID and argument decoding", max_len: 64, dict: &[], seeds, run };

fn seeds() -> Vec<Vec<u8>> {
    [psci::PSCI_VERSION, psci::CPU_ON | SMC64, psci::PSCI_FEATURES, psci::SYSTEM_RESET, 0xC400_0003, 0x8600_0000]
        .iter()
        .map(|f| {
            let mut v = u64::from(*f).to_le_bytes().to_vec();
            v.extend_from_slice(&[0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0x40, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
            v
        })
        .collect()
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let x = [b.u64(), b.u64(), b.u64(), b.u64()];
    let call = psci::decode(x);
    let function = x[0] as u32;
    assert_eq!(psci::decode([u64::from(function) | (b.u64() << 32), x[1], x[2], x[3]]), call, "x0's top half");
    let other = psci::decode([u64::from(function ^ SMC64), x[1], x[2], x[3]]);
    let both = matches!(call, Call::CpuSuspend | Call::CpuOn { .. } | Call::AffinityInfo { .. });
    match (call, other) {
        (Call::Unknown(a), Call::Unknown(b)) => assert_eq!(a ^ SMC64, b, "unknown keeps its ID"),
        (a, b) if both => assert_eq!(a, b, "the SMC64 bit changed the call"),
        (_, Call::Unknown(_)) if function & SMC64 == 0 => {}
        (Call::Unknown(_), _) => {}
        (a, b) => panic!("{a:?} / {b:?}: an SMC32-only call decoded in both conventions"),
    }
    assert_eq!(psci::features(function) == SUCCESS, !matches!(call, Call::Unknown(_)), "PSCI_FEATURES({function:#x})");
    match call {
        Call::CpuOn { target, entry, context } => {
            assert_eq!([target, entry, context], [x[1], x[2], x[3]], "CPU_ON args")
        }
        Call::AffinityInfo { target } => assert_eq!(target, x[1], "AFFINITY_INFO target"),
        Call::Features(f) => assert_eq!(f, x[1] as u32, "PSCI_FEATURES argument"),
        Call::Unknown(f) => assert_eq!(f, function, "unknown function ID"),
        _ => {}
    }
    let n = match call {
        Call::Version => 0,
        Call::Features(f) => 1 + u32::from(psci::features(f) == SUCCESS),
        Call::MigrateInfoType => 3,
        Call::CpuSuspend => 4,
        Call::CpuOn { .. } => 5,
        Call::CpuOff => 6,
        Call::AffinityInfo { .. } => 7,
        Call::SystemOff => 8,
        Call::SystemReset => 9,
        Call::Unknown(_) => 10,
    };
    1 << (n + 11 * u32::from(function & SMC64 != 0))
}
