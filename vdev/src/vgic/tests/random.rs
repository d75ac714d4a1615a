//! Random guest and monitor input never panics, and has_pending agrees
//! with take_pending.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    DistRead(u64, u8),
    DistWrite(u64, u8, u64),
    RedistRead(u64, u8),
    RedistWrite(u64, u8, u64),
    Level(u32, bool),
    Pending(usize, u32),
    Sgi(usize, u64),
    Take(usize),
    Complete(usize, u32),
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(4), Just(8), any::<u8>()]
}

fn gicd_offset() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..0x1000, 0x6000u64..0x6400, 0xFFC0u64..0x10010, any::<u64>()]
}

fn gicr_offset() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..0x100, 0x10000u64..0x10E10, 0x20000u64..0x20100, 0x30000u64..0x30E10, any::<u64>()]
}

fn intid() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..100, any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    let vcpu = prop_oneof![0usize..3, any::<usize>()];
    prop_oneof![
        (gicd_offset(), size()).prop_map(|(o, s)| Op::DistRead(o, s)),
        (gicd_offset(), size(), any::<u64>()).prop_map(|(o, s, v)| Op::DistWrite(o, s, v)),
        (gicr_offset(), size()).prop_map(|(o, s)| Op::RedistRead(o, s)),
        (gicr_offset(), size(), any::<u64>()).prop_map(|(o, s, v)| Op::RedistWrite(o, s, v)),
        (intid(), any::<bool>()).prop_map(|(i, l)| Op::Level(i, l)),
        (vcpu.clone(), intid()).prop_map(|(c, i)| Op::Pending(c, i)),
        (vcpu.clone(), any::<u64>()).prop_map(|(c, v)| Op::Sgi(c, v)),
        vcpu.clone().prop_map(Op::Take),
        (vcpu, intid()).prop_map(|(c, i)| Op::Complete(c, i)),
    ]
}

fn fits(value: u64, size: u8) -> bool {
    size == 8 || value >> (u32::from(size) * 8) == 0
}

proptest! {
    #[test]
    fn random_input_never_panics(spis in 0u32..1100, ops in proptest::collection::vec(op(), 0..300)) {
        let mut gic = VGic::new(&MPIDRS, spis);
        // Let something be deliverable now and then.
        gicd_w(&mut gic, regs::GICD_CTLR, 2);
        let mut in_flight = alloc::vec::Vec::new();
        for op in ops {
            match op {
                Op::DistRead(o, s) => {
                    if let Ok(v) = gic.distributor().read(o, s) {
                        prop_assert!(fits(v, s));
                    }
                }
                Op::DistWrite(o, s, v) => { let _ = gic.distributor().write(o, s, v); }
                Op::RedistRead(o, s) => {
                    if let Ok(v) = gic.redistributors().read(o, s) {
                        prop_assert!(fits(v, s));
                    }
                }
                Op::RedistWrite(o, s, v) => { let _ = gic.redistributors().write(o, s, v); }
                Op::Level(i, l) => gic.set_spi_level(i, l),
                Op::Pending(c, i) => gic.set_pending(c, i),
                Op::Sgi(c, v) => {
                    let mask = gic.write_sgi1r(c, v);
                    prop_assert_eq!(mask & !0b11, 0);
                }
                Op::Take(c) => {
                    let expected = gic.has_pending(c);
                    let got = gic.take_pending(c);
                    prop_assert_eq!(expected, got.is_some());
                    if let Some(v) = got {
                        prop_assert!(v.intid < 1020);
                        prop_assert!(!in_flight.contains(&(c, v.intid)));
                        in_flight.push((c, v.intid));
                    }
                }
                Op::Complete(c, i) => {
                    gic.complete(c, i);
                    in_flight.retain(|&x| x != (c, i));
                }
            }
        }
    }
}
