//! The virtual GICv3 (`vdev::vgic`): distributor and redistributor MMIO,
//! ICC_SGI1R_EL1 writes and interrupt delivery, driven by a program read
//! from the input. Checked against the architecture (GICv3 spec), not the
//! model's own code: accesses outside a frame are Unmapped and misaligned
//! ones BadWidth; GICD reads have no side effects; after a write the
//! register reads back as the architecture allows (set/clear-enable,
//! groups, priorities with 4 to 8 implemented bits, ICFGR, IROUTER's
//! affinity and IRM fields); GICR_TYPER names the vCPU's affinity and
//! number and only the last frame is Last; an SGI1R write targets exactly
//! the vCPUs its fields name and leaves the SGI pending on each; an
//! interrupt offered for delivery is enabled, Group 1 and carries its
//! programmed priority.

use super::Target;
use crate::fuzz::input::Bytes;
use vdev::mmio::{MmioDevice, MmioError};
use vdev::vgic::{affinity, affinity32, regs::*, VGic, GICR_FRAME_SIZE, SPI_BASE};

pub const TARGET: Target = Target {
    name: "vgic",
    about: "vGICv3 distributor, redistributors, SGI1R and delivery",
    max_len: 1024,
    dict: &[],
    seeds,
    run,
};

fn seeds() -> Vec<Vec<u8>> {
    // vCPU layout, SPI count, then: enable Group 1, SPI 33 enabled and
    // pending, take it; an SGI to vCPU 1; a redistributor priority.
    vec![
        vec![2, 1, 0, 0, 0x10, 1, 0, 0, 0, 0x13, 2, 0, 0, 0, 0, 4, 0x03, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0],
        vec![0, 3, 0, 0, 0x1a, 7, 0, 0, 0, 4, 0x02, 0, 0, 1, 0, 0, 0, 0, 2, 1, 6, 0x20, 0, 0, 0],
    ]
}

/// The vCPUs' MPIDRs in one of three layouts.
fn mpidrs(layout: u8, n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| match layout % 3 {
            0 => i,
            1 => ((i / 16) << 8) | (i % 16),
            _ => ((i / 4) << 16) | ((i / 2 % 2) << 8) | (i % 2) | 0x8000_0000,
        })
        .collect()
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let layout = b.u8();
    let many = b.u8() & 0x80 != 0;
    let n = 1 + b.below(if many { 64 } else { 8 });
    let spis = u32::from(b.u16()) % 1024;
    let ids = mpidrs(layout, n);
    let mut gic = VGic::new(&ids, spis);
    let mut features = 0u64;
    let mut ops = 0;
    while !b.is_empty() && ops < 256 {
        ops += 1;
        let op = b.below(8);
        features |= 1
            << (op as u32 * 7
                + match op {
                    0 => dist_write(&mut gic, &mut b),
                    1 => dist_read(&mut gic, &mut b),
                    2 => redist_write(&mut gic, &mut b),
                    3 => redist_read(&mut gic, &ids, &mut b),
                    4 => sgi1r(&mut gic, &ids, &mut b),
                    5 => {
                        let intid = u32::from(b.u16()) % 1100;
                        gic.set_spi_level(intid, b.u8() & 1 != 0);
                        0
                    }
                    6 => {
                        let (vcpu, intid) = (b.below(n + 1), u32::from(b.u16()) % 1100);
                        gic.set_pending(vcpu, intid);
                        0
                    }
                    _ => deliver(&mut gic, n, &mut b),
                });
    }
    features
}

fn size(b: &mut Bytes) -> u8 {
    [4, 4, 1, 2, 8, 3][b.below(6)]
}

/// The bits of the GICD register word for INTIDs `first..first + 32` that
/// name implemented SPIs (SGIs and PPIs are the redistributors' with
/// affinity routing; INTIDs 1020.. are special).
fn spi_mask(gic: &VGic, first: u32) -> u32 {
    let end = (SPI_BASE + gic.spis()).min(1020);
    (0..32).filter(|i| first + i >= SPI_BASE && first + i < end).fold(0, |m, i| m | 1 << i)
}

/// A priority field reads back as the value under a mask of its top 4 to
/// 8 bits.
fn priority_ok(written: u8, read: u8) -> bool {
    (0..=4).any(|low| read == written & (0xFFu8 << low))
}

/// Checks the common rules of an access and returns its feature class.
fn classify(r: Result<(), MmioError>, offset: u64, size: u8, frame: u64) -> Option<u32> {
    let aligned = matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(u64::from(size));
    match r {
        Err(MmioError::Unmapped) => {
            assert!(offset >= frame, "Unmapped at {offset:#x} inside the frame");
            Some(1)
        }
        Err(MmioError::BadWidth) => {
            assert!(offset < frame, "BadWidth at {offset:#x}, outside the frame: should be Unmapped");
            Some(2)
        }
        Ok(()) => {
            assert!(offset < frame && aligned, "access at {offset:#x} size {size} accepted");
            None
        }
    }
}

fn dist_write(gic: &mut VGic, b: &mut Bytes) -> u32 {
    let (kind, word) = (b.below(11), u64::from(b.u8() % 32));
    let (offset, size) = match kind {
        0 => (GICD_CTLR, 4),
        1 => (GICD_IGROUPR + 4 * word, 4),
        2 => (GICD_ISENABLER + 4 * word, 4),
        3 => (GICD_ICENABLER + 4 * word, 4),
        4 => (GICD_ISPENDR + 4 * word, 4),
        5 => (GICD_ISACTIVER + 4 * word, 4),
        6 => (GICD_IPRIORITYR + u64::from(b.u16() % 1024), [1, 4][b.below(2)]),
        7 => (GICD_ICFGR + 4 * (u64::from(b.u8()) % 64), 4),
        8 => (GICD_IROUTER + 8 * u64::from(b.u16() % 1024), 8),
        9 => (GICD_TYPER + 4 * u64::from(b.u8() % 3), 4),
        _ => (u64::from(b.u32()) % 0x11000, size(b)),
    };
    let (offset, size) = if b.u8() & 0x0f == 0 { (offset + 4, 4) } else { (offset, size) };
    let value = b.u64();
    let before = gic.distributor().read(offset & !3, 4).ok();
    let r = gic.distributor().write(offset, size, value);
    if let Some(class) = classify(r, offset, size, GICD_FRAME_SIZE) {
        return class;
    }
    let v = value as u32;
    let mut d = gic.distributor();
    let read = |d: &mut dyn MmioDevice, off: u64, size: u8| d.read(off, size).expect("read of a written register");
    match offset {
        GICD_CTLR => {
            let ctlr = read(&mut d, GICD_CTLR, 4) as u32;
            assert_eq!(ctlr & 3, v & 3, "GICD_CTLR enables");
            assert_eq!(ctlr & (GICD_CTLR_ARE | GICD_CTLR_DS), GICD_CTLR_ARE | GICD_CTLR_DS, "ARE and DS are RAO");
            assert_eq!(ctlr & GICD_CTLR_RWP, 0, "RWP");
        }
        GICD_TYPER | GICD_IIDR | GICD_TYPER2 => {
            assert_eq!(Some(read(&mut d, offset, 4)), before, "read-only {offset:#x} changed");
        }
        o if (GICD_IGROUPR..GICD_IPRIORITYR).contains(&o) && size == 4 => {
            drop(d);
            let first = ((o & 0x7f) / 4) as u32 * 32;
            let mask = spi_mask(gic, first);
            let mut d = gic.distributor();
            let bank = o & !0x7f;
            let now = read(&mut d, o, 4) as u32;
            assert_eq!(now & !mask, 0, "GICD {o:#x}: bits of unimplemented INTIDs read as one");
            // The set and clear views of one state read alike.
            let twin = if bank % 0x100 == 0 { o + 0x80 } else { o - 0x80 };
            if bank != GICD_IGROUPR {
                assert_eq!(read(&mut d, twin, 4) as u32, now, "GICD {o:#x} and {twin:#x} differ");
            }
            match bank {
                GICD_IGROUPR => assert_eq!(now, v & mask, "IGROUPR"),
                GICD_ISENABLER | GICD_ISPENDR | GICD_ISACTIVER => {
                    assert_eq!(now & v & mask, v & mask, "GICD {bank:#x}: set bits did not stick")
                }
                GICD_ICENABLER => assert_eq!(now & v & mask, 0, "ICENABLER: cleared bits still set"),
                _ => {}
            }
        }
        o if (GICD_IPRIORITYR..GICD_ITARGETSR).contains(&o) => {
            drop(d);
            let now = gic.distributor().read(o, size).expect("IPRIORITYR") as u32;
            for k in 0..u32::from(size) {
                let intid = (o - GICD_IPRIORITYR) as u32 + k;
                let (w, r) = ((v >> (8 * k)) as u8, (now >> (8 * k)) as u8);
                if spi_mask(gic, intid & !31) & (1 << (intid % 32)) != 0 {
                    assert!(priority_ok(w, r), "INTID {intid}: priority {w:#x} reads {r:#x}");
                } else {
                    assert_eq!(r, 0, "INTID {intid} is not implemented: priority RAZ");
                }
            }
        }
        o if (GICD_ICFGR..GICD_IGRPMODR).contains(&o) && size == 4 => {
            let now = read(&mut d, o, 4) as u32;
            drop(d);
            assert_eq!(now & 0x5555_5555, 0, "ICFGR: odd bits are RES0");
            for k in 0..16 {
                let intid = (o - GICD_ICFGR) as u32 / 4 * 16 + k;
                let edge = now & (2 << (2 * k)) != 0;
                if spi_mask(gic, intid & !31) & (1 << (intid % 32)) != 0 {
                    assert_eq!(edge, v & (2 << (2 * k)) != 0, "ICFGR INTID {intid}");
                }
            }
        }
        o if (GICD_IROUTER..GICD_IROUTER + 8 * 1020).contains(&o) && size == 8 => {
            let now = read(&mut d, o, 8);
            drop(d);
            let intid = ((o - GICD_IROUTER) / 8) as u32;
            assert_eq!(now & !0xFF_80FF_FFFF, 0, "IROUTER {intid}: RES0 bits set");
            if spi_mask(gic, intid & !31) & (1 << (intid % 32)) != 0 {
                assert_eq!(now, value & 0xFF_80FF_FFFF, "IROUTER {intid}");
            } else {
                assert_eq!(now, 0, "IROUTER {intid} of an unimplemented SPI");
            }
        }
        _ => {}
    }
    0
}

fn dist_read(gic: &mut VGic, b: &mut Bytes) -> u32 {
    let (offset, size) = (u64::from(b.u32()) % 0x11000, size(b));
    let first = gic.distributor().read(offset, size);
    if let Some(class) = classify(first.map(|_| ()), offset, size, GICD_FRAME_SIZE) {
        return class;
    }
    assert_eq!(gic.distributor().read(offset, size), first, "GICD read at {offset:#x} has side effects");
    if offset == GICD_TYPER && size == 4 {
        let typer = first.unwrap_or(0) as u32;
        assert_eq!((typer & 0x1f) * 32, gic.spis(), "GICD_TYPER.ITLinesNumber");
        assert_eq!(typer & GICD_TYPER_LPIS, 0, "no LPIs");
    }
    3
}

fn redist_write(gic: &mut VGic, b: &mut Bytes) -> u32 {
    let frames = gic.vcpus() as u64 + 1;
    let cpu = u64::from(b.u8()) % frames;
    let (kind, reg) = (b.below(9), u64::from(b.u8()));
    let base = cpu * GICR_FRAME_SIZE + GICR_SGI_BASE;
    let (offset, size) = match kind {
        0 => (cpu * GICR_FRAME_SIZE + GICR_WAKER, 4),
        1 => (base + GICR_ISENABLER0, 4),
        2 => (base + GICR_ICENABLER0, 4),
        3 => (base + GICR_IGROUPR0, 4),
        4 => (base + GICR_IPRIORITYR0 + reg % 32, [1, 4][b.below(2)]),
        5 => (base + GICR_ICFGR0 + 4 * (reg % 2), 4),
        6 => (base + GICR_ISACTIVER0, 4),
        7 => (cpu * GICR_FRAME_SIZE + GICR_TYPER, [4, 8][b.below(2)]),
        _ => (cpu * GICR_FRAME_SIZE + u64::from(b.u32()) % GICR_FRAME_SIZE, size(b)),
    };
    let value = b.u64();
    let frame_end = gic.vcpus() as u64 * GICR_FRAME_SIZE;
    let r = gic.redistributors().write(offset, size, value);
    if let Some(class) = classify(r, offset, size, frame_end) {
        return class;
    }
    let v = value as u32;
    let mut d = gic.redistributors();
    let mut read = |off: u64, size: u8| d.read(off, size).expect("GICR read of a written register") as u32;
    match offset - cpu * GICR_FRAME_SIZE {
        GICR_WAKER => {
            let waker = read(offset, 4);
            let sleep = v & GICR_WAKER_PROCESSOR_SLEEP;
            assert_eq!(waker & GICR_WAKER_PROCESSOR_SLEEP, sleep, "WAKER.ProcessorSleep");
            assert_eq!(waker & GICR_WAKER_CHILDREN_ASLEEP != 0, sleep != 0, "ChildrenAsleep follows ProcessorSleep");
        }
        o if o == GICR_SGI_BASE + GICR_ISENABLER0 || o == GICR_SGI_BASE + GICR_ISACTIVER0 => {
            assert_eq!(read(offset, 4) & v, v, "GICR {o:#x}: set bits did not stick");
        }
        o if o == GICR_SGI_BASE + GICR_ICENABLER0 => {
            assert_eq!(read(offset, 4) & v, 0, "GICR_ICENABLER0: cleared bits still set");
            assert_eq!(read(offset, 4), read(offset - 0x80, 4), "GICR_ISENABLER0 and ICENABLER0 differ");
        }
        o if o == GICR_SGI_BASE + GICR_IGROUPR0 => assert_eq!(read(offset, 4), v, "GICR_IGROUPR0"),
        o if (GICR_SGI_BASE + GICR_IPRIORITYR0..GICR_SGI_BASE + GICR_IPRIORITYR0 + 32).contains(&o) => {
            let now = read(offset, size);
            for k in 0..u32::from(size) {
                let (w, r) = ((v >> (8 * k)) as u8, (now >> (8 * k)) as u8);
                assert!(priority_ok(w, r), "GICR priority {w:#x} reads {r:#x}");
            }
        }
        o if o == GICR_SGI_BASE + GICR_ICFGR0 => assert_eq!(read(offset, 4), 0xAAAA_AAAA, "SGIs are edge, fixed"),
        o if o == GICR_SGI_BASE + GICR_ICFGR1 => {
            assert_eq!(read(offset, 4) & 0x5555_5555, 0, "ICFGR1: odd bits are RES0");
        }
        _ => {}
    }
    0
}

fn redist_read(gic: &mut VGic, ids: &[u64], b: &mut Bytes) -> u32 {
    let frames = gic.vcpus() as u64 + 1;
    let cpu = u64::from(b.u8()) % frames;
    let (offset, size) = if b.u8() & 1 == 0 {
        (cpu * GICR_FRAME_SIZE + GICR_TYPER, 8)
    } else {
        (cpu * GICR_FRAME_SIZE + u64::from(b.u32()) % GICR_FRAME_SIZE, size(b))
    };
    let frame_end = gic.vcpus() as u64 * GICR_FRAME_SIZE;
    let r = gic.redistributors().read(offset, size);
    if let Some(class) = classify(r.map(|_| ()), offset, size, frame_end) {
        return class;
    }
    if offset % GICR_FRAME_SIZE == GICR_TYPER && size == 8 {
        let typer = r.unwrap_or(0);
        let i = cpu as usize;
        assert_eq!((typer >> 32) as u32, affinity32(ids[i]), "GICR_TYPER.Affinity_Value of vCPU {i}");
        assert_eq!((typer >> 8) & 0xFFFF, cpu, "GICR_TYPER.Processor_Number");
        assert_eq!(typer & GICR_TYPER_LAST != 0, i + 1 == ids.len(), "GICR_TYPER.Last of vCPU {i}");
        assert_eq!(typer & GICR_TYPER_PLPIS, 0, "no LPIs");
    }
    4
}

/// Which vCPUs an SGI1R value targets, from the field layout alone.
fn sgi_targets(value: u64, source: usize, ids: &[u64]) -> u64 {
    let irm = value & (1 << 40) != 0;
    let cluster = ((value >> 48) & 0xFF) << 32 | ((value >> 32) & 0xFF) << 16 | ((value >> 16) & 0xFF) << 8;
    let rs = (value >> 44) & 0xF;
    let mut mask = 0;
    for (i, &m) in ids.iter().enumerate().take(64) {
        let a = affinity(m);
        let aff0 = a & 0xFF;
        let hit =
            if irm { i != source } else { a & !0xFF == cluster && aff0 / 16 == rs && value & (1 << (aff0 % 16)) != 0 };
        if hit {
            mask |= 1 << i;
        }
    }
    mask
}

fn sgi1r(gic: &mut VGic, ids: &[u64], b: &mut Bytes) -> u32 {
    let source = b.below(ids.len());
    let mut value = b.u64();
    if b.u8() & 1 == 0 {
        // Name a real vCPU's cluster, as Linux does.
        let a = affinity(ids[b.below(ids.len())]);
        value = (value & 0xFFFF_0F00_FF00_FFFF & !(0xFF << 48) & !(1 << 40))
            | ((a >> 32) << 48)
            | (((a >> 16) & 0xFF) << 32)
            | (((a >> 8) & 0xFF) << 16)
            | ((a & 0xFF) / 16) << 44;
    }
    let got = gic.write_sgi1r(source, value);
    let want = sgi_targets(value, source, ids);
    assert_eq!(got, want, "SGI1R {value:#x} from vCPU {source}: targets");
    let intid = (value >> 24) & 0xF;
    for i in (0..ids.len().min(64)).filter(|i| want & (1 << i) != 0) {
        let off = i as u64 * GICR_FRAME_SIZE + GICR_SGI_BASE;
        let mut r = gic.redistributors();
        let pending = r.read(off + GICR_ISPENDR0, 4).expect("GICR_ISPENDR0") as u32;
        let active = r.read(off + GICR_ISACTIVER0, 4).expect("GICR_ISACTIVER0") as u32;
        assert!((pending | active) & (1 << intid) != 0, "SGI {intid} not pending on target vCPU {i}");
    }
    5 + u32::from(want != 0)
}

fn deliver(gic: &mut VGic, n: usize, b: &mut Bytes) -> u32 {
    let vcpu = b.below(n);
    let Some(virq) = gic.take_pending(vcpu) else {
        return 0;
    };
    let (intid, word) = (virq.intid, u64::from(virq.intid / 32) * 4);
    assert!(intid < 1020, "special INTID {intid} delivered");
    let (enable, group, prio) = if intid < SPI_BASE {
        let off = vcpu as u64 * GICR_FRAME_SIZE + GICR_SGI_BASE;
        let mut r = gic.redistributors();
        let p = r.read(off + GICR_IPRIORITYR0 + u64::from(intid), 1);
        (r.read(off + GICR_ISENABLER0, 4), r.read(off + GICR_IGROUPR0, 4), p)
    } else {
        let mut d = gic.distributor();
        let ctlr = d.read(GICD_CTLR, 4).expect("GICD_CTLR") as u32;
        assert!(ctlr & GICD_CTLR_ENABLE_GRP1 != 0, "SPI {intid} delivered with Group 1 disabled");
        let p = d.read(GICD_IPRIORITYR + u64::from(intid), 1);
        (d.read(GICD_ISENABLER + word, 4), d.read(GICD_IGROUPR + word, 4), p)
    };
    let bit = 1u64 << (intid % 32);
    assert!(enable.expect("ISENABLER") & bit != 0, "INTID {intid} delivered while disabled");
    assert!(group.expect("IGROUPR") & bit != 0, "INTID {intid} delivered from Group 0");
    assert_eq!(prio.expect("IPRIORITYR"), u64::from(virq.priority), "INTID {intid}: priority");
    if b.u8() & 1 == 0 {
        gic.complete(vcpu, intid);
    }
    6
}
