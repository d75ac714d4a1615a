//! Register-level details: identification, widths, reserved space.

use super::*;
use crate::mmio::MmioError;
use crate::vgic::regs::*;

#[test]
fn identification() {
    let mut gic = VGic::new(&MPIDRS, 40);
    assert_eq!(gic.spis(), 64);
    let typer = gicd_r(&mut gic, GICD_TYPER);
    assert_eq!(typer & 0x1F, 2, "ITLinesNumber: INTIDs up to 95");
    assert_eq!(typer >> 5 & 7, 1, "CPUNumber");
    assert_eq!(typer >> 19 & 0x1F, 9, "IDbits");
    assert_eq!(typer & (1 << 17 | 1 << 16 | 1 << 8 | 1 << 10), 0, "no LPIS, MBIS, ESPI, SecurityExtn");
    assert_eq!(gicd_r(&mut gic, GICD_IIDR) & 0xFFF, 0x43B);
    assert_eq!(gicd_r(&mut gic, GICD_PIDR2), 0x3B);
    assert_eq!(rd_r(&mut gic, 1, GICR_PIDR2), 0x3B);
    assert_eq!(rd_r(&mut gic, 1, GICR_IIDR), gicd_r(&mut gic, GICD_IIDR));
    assert_eq!(gicd_r(&mut gic, GICD_CTLR), GICD_CTLR_ARE | GICD_CTLR_DS);
    gicd_w(&mut gic, GICD_CTLR, 0);
    assert_eq!(gicd_r(&mut gic, GICD_CTLR), GICD_CTLR_ARE | GICD_CTLR_DS, "ARE and DS are RAO/WI");
}

#[test]
fn gicr_typer_fields() {
    let mpidrs = [0x8000_0000 | (3 << 32) | (2 << 16) | (1 << 8), 0x0001_0203];
    let mut gic = VGic::new(&mpidrs, 32);
    let t0 = rd_r64(&mut gic, 0, GICR_TYPER);
    let t1 = rd_r64(&mut gic, 1, GICR_TYPER);
    assert_eq!(t0 >> 32, 0x0302_0100);
    assert_eq!(t1 >> 32, 0x0001_0203);
    assert_eq!(t0 >> 8 & 0xFFFF, 0);
    assert_eq!(t1 >> 8 & 0xFFFF, 1);
    assert_eq!(t0 & GICR_TYPER_LAST, 0);
    assert_ne!(t1 & GICR_TYPER_LAST, 0);
    assert_eq!(t1 & 0xFF & !GICR_TYPER_LAST, 0, "no PLPIS, VLPIS, DirectLPI, ...");
    // 32-bit halves.
    assert_eq!(u64::from(rd_r(&mut gic, 1, GICR_TYPER)), t1 & 0xFFFF_FFFF);
    assert_eq!(u64::from(rd_r(&mut gic, 1, GICR_TYPER + 4)), t1 >> 32);
}

#[test]
fn waker_sleep_handshake() {
    let mut gic = VGic::new(&MPIDRS, 32);
    let asleep = GICR_WAKER_PROCESSOR_SLEEP | GICR_WAKER_CHILDREN_ASLEEP;
    assert_eq!(rd_r(&mut gic, 0, GICR_WAKER), asleep);
    rd_w(&mut gic, 0, GICR_WAKER, 0);
    assert_eq!(rd_r(&mut gic, 0, GICR_WAKER), 0);
    assert_eq!(rd_r(&mut gic, 1, GICR_WAKER), asleep, "per vCPU");
    rd_w(&mut gic, 0, GICR_WAKER, GICR_WAKER_PROCESSOR_SLEEP);
    assert_eq!(rd_r(&mut gic, 0, GICR_WAKER), asleep);
}

#[test]
fn irouter_halves_and_masking() {
    let mut gic = VGic::new(&MPIDRS, 32);
    let off = GICD_IROUTER + 40 * 8;
    gicd_w64(&mut gic, off, u64::MAX);
    assert_eq!(gicd_r64(&mut gic, off), 0xFF_80FF_FFFF);
    gicd_w(&mut gic, off + 4, 0x12);
    gicd_w(&mut gic, off, 0x0003_0201);
    assert_eq!(gicd_r64(&mut gic, off), 0x12_0003_0201);
    assert_eq!(gicd_r(&mut gic, off + 4), 0x12);
    // IROUTER of SGIs/PPIs and of unimplemented SPIs: RAZ/WI.
    gicd_w64(&mut gic, GICD_IROUTER + 8 * 5, u64::MAX);
    assert_eq!(gicd_r64(&mut gic, GICD_IROUTER + 8 * 5), 0);
    gicd_w64(&mut gic, GICD_IROUTER + 8 * 100, u64::MAX);
    assert_eq!(gicd_r64(&mut gic, GICD_IROUTER + 8 * 100), 0);
    assert_eq!(gic.distributor().read(off, 2), Err(MmioError::BadWidth));
    assert_eq!(gic.distributor().read(off + 4, 8), Err(MmioError::BadWidth));
}

#[test]
fn distributor_private_bank_is_raz_wi() {
    let mut gic = VGic::new(&MPIDRS, 32);
    for off in [GICD_IGROUPR, GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER, GICD_IPRIORITYR, GICD_ICFGR + 4] {
        gicd_w(&mut gic, off, !0);
        assert_eq!(gicd_r(&mut gic, off), 0, "offset {off:#x}");
    }
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISENABLER0), 0);
    // ITARGETSR, IGRPMODR, NSACR, SGIR: RAZ/WI.
    for off in [GICD_ITARGETSR + 32, GICD_IGRPMODR + 4, GICD_NSACR + 8, GICD_SGIR] {
        gicd_w(&mut gic, off, !0);
        assert_eq!(gicd_r(&mut gic, off), 0);
    }
    assert_eq!(gic.distributor().read(GICD_ITARGETSR + 33, 1), Ok(0));
}

#[test]
fn redistributor_sgi_frame_extras() {
    let mut gic = VGic::new(&MPIDRS, 32);
    for off in [GICR_IGRPMODR0, GICR_NSACR, 0x0084, 0x0420, 0x0C08] {
        sgi_w(&mut gic, 0, off, !0);
        assert_eq!(sgi_r(&mut gic, 0, off), 0, "offset {off:#x}");
    }
    for off in [GICR_PROPBASER, GICR_PENDBASER] {
        gic.redistributors().write(off, 8, u64::MAX).unwrap();
        assert_eq!(rd_r64(&mut gic, 0, off), 0);
    }
    gic.redistributors().write(GICR_SGI_BASE + GICR_IPRIORITYR0 + 27, 1, 0x90).unwrap();
    assert_eq!(sgi_r(&mut gic, 0, GICR_IPRIORITYR0 + 24), 0x9000_0000);
    assert_eq!(sgi_r(&mut gic, 1, GICR_IPRIORITYR0 + 24), 0, "banked per vCPU");
    assert_eq!(gic.redistributors().read(GICR_SGI_BASE + GICR_ICENABLER0, 4), Ok(0));
}

#[test]
fn bad_offsets_and_widths() {
    let mut gic = VGic::new(&MPIDRS, 32);
    let mut d = gic.distributor();
    assert_eq!(d.read(regs::GICD_FRAME_SIZE, 4), Err(MmioError::Unmapped));
    assert_eq!(d.write(u64::MAX, 4, 0), Err(MmioError::Unmapped));
    assert_eq!(d.read(GICD_CTLR, 8), Err(MmioError::BadWidth));
    assert_eq!(d.read(GICD_CTLR + 1, 1), Err(MmioError::BadWidth));
    assert_eq!(d.read(GICD_ISENABLER + 4, 1), Err(MmioError::BadWidth));
    assert_eq!(d.write(GICD_CTLR, 2, 0), Err(MmioError::BadWidth));
    assert_eq!(d.read(GICD_TYPER, 3), Err(MmioError::BadWidth));
    assert_eq!(d.read(0x3000, 8), Ok(0), "reserved space is RAZ");
    drop(d);
    let mut r = gic.redistributors();
    assert_eq!(r.read(2 * GICR_FRAME_SIZE, 4), Err(MmioError::Unmapped));
    assert_eq!(r.read(u64::MAX - 3, 4), Err(MmioError::Unmapped));
    assert_eq!(r.read(GICR_WAKER, 8), Err(MmioError::BadWidth));
    assert_eq!(r.read(GICR_TYPER + 2, 2), Err(MmioError::BadWidth));
    assert_eq!(r.read(GICR_FRAME_SIZE - 4, 4), Ok(0));
    let mut none = VGic::new(&[], 0);
    assert_eq!(none.redistributors().read(0, 4), Err(MmioError::Unmapped));
}
