//! Replays what Linux 6.1's irq-gic-v3.c does at boot, then checks that
//! the resulting state delivers interrupts as expected.

use super::*;
use crate::vgic::regs::*;

const GICD_INT_DEF_PRI_X4: u32 = 0xA0A0_A0A0;

/// gic_mpidr_to_affinity.
fn mpidr_to_affinity(mpidr: u64) -> u64 {
    ((mpidr >> 32 & 0xFF) << 32) | (mpidr & 0xFF_FFFF)
}

/// gic_init_bases up to gic_dist_init, on the boot CPU. Returns GIC_LINE_NR.
fn probe_and_dist_init(gic: &mut VGic, boot_mpidr: u64) -> u32 {
    // gic_validate_dist_version.
    assert_eq!(gicd_r(gic, GICD_PIDR2) & 0xF0, 0x30);
    let typer = gicd_r(gic, GICD_TYPER);
    assert_eq!(typer & GICD_TYPER_LPIS, 0, "no LPIs");
    assert_eq!((typer >> 19 & 0x1F) + 1, 10, "IDbits");
    assert_eq!(typer & (1 << 8), 0, "no ESPI");
    assert_eq!(typer & (1 << 16), 0, "no MBIS");
    assert_eq!(gicd_r(gic, GICD_TYPER2), 0);
    let _iidr = gicd_r(gic, GICD_IIDR);
    let line_nr = (((typer & 0x1F) + 1) * 32).min(1020);

    // gic_dist_init.
    gicd_w(gic, GICD_CTLR, 0);
    assert_eq!(gicd_r(gic, GICD_CTLR) & GICD_CTLR_RWP, 0);
    for i in (32..line_nr).step_by(32) {
        gicd_w(gic, GICD_IGROUPR + u64::from(i / 8), !0);
    }
    // gic_dist_config.
    for i in (32..line_nr).step_by(16) {
        gicd_w(gic, GICD_ICFGR + u64::from(i / 4), 0);
    }
    for i in (32..line_nr).step_by(4) {
        gicd_w(gic, GICD_IPRIORITYR + u64::from(i), GICD_INT_DEF_PRI_X4);
    }
    for i in (32..line_nr).step_by(32) {
        gicd_w(gic, GICD_ICACTIVER + u64::from(i / 8), !0);
        gicd_w(gic, GICD_ICENABLER + u64::from(i / 8), !0);
    }
    assert_eq!(gicd_r(gic, GICD_CTLR) & GICD_CTLR_RWP, 0);
    // ARE_NS | EnableGrp1A | EnableGrp1 in Linux's naming.
    gicd_w(gic, GICD_CTLR, (1 << 4) | (1 << 1) | 1);
    let affinity = mpidr_to_affinity(boot_mpidr);
    for i in 32..line_nr {
        gicd_w64(gic, GICD_IROUTER + u64::from(i) * 8, affinity);
    }
    line_nr
}

/// gic_iterate_rdists + __gic_populate_rdist: the frame index whose
/// GICR_TYPER affinity matches `mpidr`.
fn populate_rdist(gic: &mut VGic, mpidr: u64) -> u64 {
    assert_eq!(rd_r(gic, 0, GICR_PIDR2) & 0xF0, 0x30);
    let aff = ((mpidr >> 32 & 0xFF) << 24) | (mpidr & 0xFF_FFFF);
    let mut frame = 0;
    loop {
        let typer = rd_r64(gic, frame, GICR_TYPER);
        assert_eq!(typer & GICR_TYPER_PLPIS, 0);
        if typer >> 32 == aff {
            return frame;
        }
        assert_eq!(typer & GICR_TYPER_LAST, 0, "ran off the last redistributor");
        frame += 1;
    }
}

/// gic_cpu_init on the CPU with this MPIDR. Returns its frame index.
fn cpu_init(gic: &mut VGic, mpidr: u64) -> u64 {
    let cpu = populate_rdist(gic, mpidr);
    // gic_enable_redist(true).
    let waker = rd_r(gic, cpu, GICR_WAKER);
    rd_w(gic, cpu, GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    let mut spins = 0;
    while rd_r(gic, cpu, GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP != 0 {
        spins += 1;
        assert!(spins < 10, "redistributor failed to wakeup");
    }
    // SGIs/PPIs in Group 1, then gic_cpu_config.
    sgi_w(gic, cpu, GICR_IGROUPR0, !0);
    sgi_w(gic, cpu, GICR_ICACTIVER0, !0);
    sgi_w(gic, cpu, GICR_ICENABLER0, !0);
    for i in (0..32).step_by(4) {
        sgi_w(gic, cpu, GICR_IPRIORITYR0 + i, GICD_INT_DEF_PRI_X4);
    }
    assert_eq!(rd_r(gic, cpu, GICR_CTLR) & (1 << 3), 0, "GICR_CTLR.RWP");
    // The IPIs (SGIs 0..7) are enabled as per-CPU interrupts.
    sgi_w(gic, cpu, GICR_ISENABLER0, 0xFF);
    cpu
}

/// gic_configure_irq: read-modify-write of the ICFGR bit pair.
fn configure(cfg: u32, intid: u32, edge: bool) -> u32 {
    let mask = 2 << ((intid % 16) * 2);
    if edge {
        cfg | mask
    } else {
        cfg & !mask
    }
}

/// arch_timer: enable_percpu_irq(27, IRQ_TYPE_LEVEL_HIGH) on a CPU.
fn enable_timer_ppi(gic: &mut VGic, cpu: u64) {
    let cfg = sgi_r(gic, cpu, GICR_ICFGR1);
    sgi_w(gic, cpu, GICR_ICFGR1, configure(cfg, 27, false));
    sgi_w(gic, cpu, GICR_ISENABLER0, 1 << 27);
}

/// request_irq of the PL011's SPI: set type, affinity, unmask.
fn enable_spi(gic: &mut VGic, intid: u32, target_mpidr: u64) {
    let off = GICD_ICFGR + u64::from(intid / 16) * 4;
    let cfg = gicd_r(gic, off);
    gicd_w(gic, off, configure(cfg, intid, false));
    gicd_w64(gic, GICD_IROUTER + u64::from(intid) * 8, mpidr_to_affinity(target_mpidr));
    gicd_w(gic, GICD_ISENABLER + u64::from(intid / 32) * 4, 1 << (intid % 32));
}

/// A 2-vCPU VM after Linux has brought up the GIC on both CPUs, enabled
/// the timer PPI everywhere and the UART's SPI 33 on CPU 0.
pub fn booted() -> VGic {
    let mut gic = VGic::new(&MPIDRS, 64);
    let line_nr = probe_and_dist_init(&mut gic, MPIDRS[0]);
    assert_eq!(line_nr, 96);
    assert_eq!(cpu_init(&mut gic, MPIDRS[0]), 0);
    enable_timer_ppi(&mut gic, 0);
    enable_spi(&mut gic, 33, MPIDRS[0]);
    assert_eq!(cpu_init(&mut gic, MPIDRS[1]), 1);
    enable_timer_ppi(&mut gic, 1);
    gic
}

#[test]
fn boot_sequence_leaves_expected_state() {
    let mut gic = booted();
    assert_eq!(
        gicd_r(&mut gic, GICD_CTLR),
        GICD_CTLR_ENABLE_GRP0 | GICD_CTLR_ENABLE_GRP1 | GICD_CTLR_ARE | GICD_CTLR_DS
    );
    assert_eq!(gicd_r(&mut gic, GICD_ISENABLER + 4), 1 << 1);
    assert_eq!(gicd_r(&mut gic, GICD_IGROUPR + 4), !0);
    assert_eq!(gicd_r(&mut gic, GICD_IGROUPR), 0, "SGI/PPI bank RAZ with ARE");
    assert_eq!(gicd_r64(&mut gic, GICD_IROUTER + 33 * 8), 0);
    for cpu in 0..2 {
        assert_eq!(rd_r(&mut gic, cpu, GICR_WAKER), 0);
        assert_eq!(sgi_r(&mut gic, cpu, GICR_ISENABLER0), 0xFF | 1 << 27);
        assert_eq!(sgi_r(&mut gic, cpu, GICR_IGROUPR0), !0);
        assert_eq!(sgi_r(&mut gic, cpu, GICR_IPRIORITYR0 + 24), GICD_INT_DEF_PRI_X4);
        assert_eq!(sgi_r(&mut gic, cpu, GICR_ICFGR0), 0xAAAA_AAAA);
        assert_eq!(sgi_r(&mut gic, cpu, GICR_ICFGR1), 0);
    }
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
}

#[test]
fn timer_ppi_take_and_complete() {
    let mut gic = booted();
    gic.set_pending(0, 27);
    assert!(gic.has_pending(0));
    assert!(!gic.has_pending(1), "PPIs are private");
    assert_eq!(gic.take_pending(0), Some(Virq { intid: 27, priority: 0xA0 }));
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISACTIVER0), 1 << 27, "in flight reads as active");
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISPENDR0), 0);
    assert_eq!(gic.take_pending(0), None, "in flight");
    // The timer fires again while the first is in flight: held until done.
    gic.set_pending(0, 27);
    assert_eq!(gic.take_pending(0), None);
    gic.complete(0, 27);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(27));
    gic.complete(0, 27);
    assert_eq!(gic.take_pending(0), None);
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISACTIVER0), 0);
}

#[test]
fn uart_spi_level_re_pends_after_complete() {
    let mut gic = booted();
    gic.set_spi_level(33, true);
    assert_eq!(gicd_r(&mut gic, GICD_ISPENDR + 4), 1 << 1);
    assert!(!gic.has_pending(1), "routed to vCPU 0");
    assert_eq!(gic.take_pending(0), Some(Virq { intid: 33, priority: 0xA0 }));
    assert_eq!(gic.take_pending(0), None);
    // Guest EOIs but the line is still high: pending again.
    gic.complete(0, 33);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(33));
    // The guest drains the UART: line drops, then completes.
    gic.set_spi_level(33, false);
    gic.complete(0, 33);
    assert_eq!(gic.take_pending(0), None);
    assert_eq!(gicd_r(&mut gic, GICD_ISPENDR + 4), 0);
    // A level interrupt whose line dropped before being taken is gone.
    gic.set_spi_level(33, true);
    gic.set_spi_level(33, false);
    assert!(!gic.has_pending(0));
}

#[test]
fn ipis_through_sgi1r() {
    let mut gic = booted();
    // gic_send_sgi from CPU 0 to CPU 1: cluster 0, TargetList bit 1, SGI 1.
    let targets = gic.write_sgi1r(0, (1 << 24) | 0b10);
    assert_eq!(targets, 0b10);
    assert!(!gic.has_pending(0));
    assert_eq!(gic.take_pending(1), Some(Virq { intid: 1, priority: 0xA0 }));
    gic.complete(1, 1);
    // Broadcast (IRM=1) from CPU 1 reaches everyone else.
    assert_eq!(gic.write_sgi1r(1, (1 << 40) | (2 << 24)), 0b01);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(2));
    assert_eq!(gic.take_pending(1), None);
    // A target list naming both.
    assert_eq!(gic.write_sgi1r(0, (3 << 24) | 0b11), 0b11);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(3));
    assert_eq!(gic.take_pending(1).map(|v| v.intid), Some(3));
    // A disabled SGI (8..15 are not enabled by Linux) stays pending only.
    assert_eq!(gic.write_sgi1r(0, (9 << 24) | 0b1), 0b1);
    assert!(!gic.has_pending(0));
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISPENDR0), 1 << 9);
}

#[test]
fn irouter_moves_spi_between_vcpus() {
    let mut gic = booted();
    // gic_set_affinity to CPU 1: mask, write IROUTER, unmask.
    gicd_w(&mut gic, GICD_ICENABLER + 4, 1 << 1);
    gicd_w64(&mut gic, GICD_IROUTER + 33 * 8, mpidr_to_affinity(MPIDRS[1]));
    gicd_w(&mut gic, GICD_ISENABLER + 4, 1 << 1);
    gic.set_spi_level(33, true);
    assert!(!gic.has_pending(0));
    assert_eq!(gic.take_pending(1).map(|v| v.intid), Some(33));
    // Completing on the wrong vCPU does nothing.
    gic.complete(0, 33);
    assert_eq!(gic.take_pending(1), None);
    gic.complete(1, 33);
    gic.set_spi_level(33, false);
    // IRM = 1: any vCPU may take it, but only one at a time.
    gicd_w64(&mut gic, GICD_IROUTER + 33 * 8, 1 << 31);
    gic.set_spi_level(33, true);
    assert!(gic.has_pending(0) && gic.has_pending(1));
    assert_eq!(gic.take_pending(1).map(|v| v.intid), Some(33));
    assert!(!gic.has_pending(0));
    gic.complete(1, 33);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(33));
    // Routed to an affinity no vCPU has: never delivered.
    gic.complete(0, 33);
    gicd_w64(&mut gic, GICD_IROUTER + 33 * 8, 0x7);
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
}
