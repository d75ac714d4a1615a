//! take_pending / complete semantics beyond the boot scenario.

use super::linux_boot::booted;
use super::*;
use crate::vgic::regs::*;

#[test]
fn highest_priority_first_then_lowest_intid() {
    let mut gic = booted();
    gicd_w(&mut gic, GICD_ISENABLER + 4, !0);
    gic.distributor().write(GICD_IPRIORITYR + 40, 1, 0x80).unwrap();
    gic.set_pending(0, 27);
    gic.set_spi_level(34, true);
    gic.set_spi_level(33, true);
    gic.set_pending(0, 40);
    let order: alloc::vec::Vec<_> = core::iter::from_fn(|| gic.take_pending(0)).collect();
    assert_eq!(
        order,
        [
            Virq { intid: 40, priority: 0x80 },
            Virq { intid: 27, priority: 0xA0 },
            Virq { intid: 33, priority: 0xA0 },
            Virq { intid: 34, priority: 0xA0 },
        ]
    );
}

#[test]
fn group_enable_and_group_bits_gate_delivery() {
    let mut gic = booted();
    gic.set_pending(0, 27);
    gicd_w(&mut gic, GICD_CTLR, GICD_CTLR_ENABLE_GRP0);
    assert!(!gic.has_pending(0));
    gicd_w(&mut gic, GICD_CTLR, GICD_CTLR_ENABLE_GRP1);
    assert!(gic.has_pending(0));
    sgi_w(&mut gic, 0, GICR_IGROUPR0, !(1 << 27));
    assert!(!gic.has_pending(0), "Group 0 interrupts are not delivered");
    sgi_w(&mut gic, 0, GICR_IGROUPR0, !0);
    sgi_w(&mut gic, 0, GICR_ICENABLER0, 1 << 27);
    assert!(!gic.has_pending(0));
    assert_eq!(sgi_r(&mut gic, 0, GICR_ISPENDR0), 1 << 27, "still pending while disabled");
    sgi_w(&mut gic, 0, GICR_ISENABLER0, 1 << 27);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(27));
}

#[test]
fn software_pending_and_active() {
    let mut gic = booted();
    // ISPENDR latches even a level interrupt whose line is low.
    gicd_w(&mut gic, GICD_ISPENDR + 4, 1 << 1);
    assert!(gic.has_pending(0));
    gicd_w(&mut gic, GICD_ICPENDR + 4, 1 << 1);
    assert!(!gic.has_pending(0));
    // ICPENDR cannot clear a level line that is high.
    gic.set_spi_level(33, true);
    gicd_w(&mut gic, GICD_ICPENDR + 4, 1 << 1);
    assert!(gic.has_pending(0));
    // An active interrupt is not signalled again until deactivated.
    gicd_w(&mut gic, GICD_ISACTIVER + 4, 1 << 1);
    assert!(!gic.has_pending(0));
    assert_eq!(gicd_r(&mut gic, GICD_ISACTIVER + 4), 1 << 1);
    gicd_w(&mut gic, GICD_ICACTIVER + 4, 1 << 1);
    assert!(gic.has_pending(0));
}

#[test]
fn edge_spi_latches_on_rising_edge() {
    let mut gic = booted();
    let cfg = gicd_r(&mut gic, GICD_ICFGR + 8);
    gicd_w(&mut gic, GICD_ICFGR + 8, cfg | 2 << 2); // INTID 33 edge
    assert_eq!(gicd_r(&mut gic, GICD_ICFGR + 8), 2 << 2);
    gic.set_spi_level(33, true);
    gic.set_spi_level(33, false);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(33));
    gic.complete(0, 33);
    assert!(!gic.has_pending(0), "an edge is delivered once");
    // Edge-style set_pending on an SPI ignores the vCPU argument.
    gic.set_pending(1, 33);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(33));
}

#[test]
fn given_back_interrupts_are_pending_again_and_not_stuck_in_flight() {
    let mut gic = booted();
    gicd_w(&mut gic, GICD_ISENABLER + 4, !0);
    let cfg = gicd_r(&mut gic, GICD_ICFGR + 8);
    gicd_w(&mut gic, GICD_ICFGR + 8, cfg | 2 << 2); // INTID 33 edge, 34 level
    gic.set_pending(0, 27);
    gic.set_spi_level(33, true);
    gic.set_spi_level(34, true);
    let taken: alloc::vec::Vec<u32> = core::iter::from_fn(|| gic.take_pending(0)).map(|v| v.intid).collect();
    assert_eq!(taken, [27, 33, 34]);
    // Giving back on the wrong vCPU changes nothing.
    gic.give_back(1, 27);
    gic.give_back(1, 33);
    assert_eq!(gic.take_pending(0), None);
    // The level line dropped while INTID 34 sat in a list register: it is
    // no longer pending; the PPI and the edge SPI are.
    gic.set_spi_level(34, false);
    [27, 33, 34].into_iter().for_each(|intid| gic.give_back(0, intid));
    let again: alloc::vec::Vec<u32> = core::iter::from_fn(|| gic.take_pending(0)).map(|v| v.intid).collect();
    assert_eq!(again, [27, 33]);
    // A level SPI whose line is still high comes back through its line.
    gic.set_spi_level(34, true);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(34));
    gic.give_back(0, 34);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(34));
    gic.complete(0, 34);
    gic.set_spi_level(34, false);
    gic.complete(0, 27);
    gic.complete(0, 33);
    assert_eq!(gic.take_pending(0), None, "each given-back interrupt is delivered once more, no more");
    gic.give_back(0, 27);
    assert_eq!(gic.take_pending(0), None, "giving back what is not in flight changes nothing");
}

#[test]
fn an_interrupt_pending_again_while_in_flight_is_handed_over_once() {
    let mut gic = booted();
    gicd_w(&mut gic, GICD_ISENABLER + 4, !0);
    gic.set_pending(0, 27);
    gic.set_spi_level(34, true);
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(27));
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(34));
    // The timer expires again while the guest still handles the first.
    gic.set_pending(0, 27);
    assert!(!gic.has_pending(0), "in flight: not a second list register");
    assert!(gic.is_pending_again(0, 27));
    assert!(!gic.is_pending_again(1, 27), "another vCPU's PPI 27 is its own");
    assert!(!gic.is_pending_again(0, 34), "a level line is not a second edge");
    assert!(!gic.take_again(1, 34), "an SPI in flight elsewhere is not this vCPU's");
    assert!(gic.take_again(0, 27));
    assert!(!gic.take_again(0, 27), "handed over once");
    // Its list register now carries it: completion does not deliver it again.
    gic.complete(0, 27);
    assert_eq!(gic.take_pending(0), None);
    // Nothing in flight, nothing to take again.
    gic.set_pending(0, 27);
    assert!(!gic.take_again(0, 30));
    assert_eq!(gic.take_pending(0).map(|v| v.intid), Some(27));
}

#[test]
fn out_of_range_inputs_are_ignored() {
    let mut gic = booted();
    gic.set_pending(7, 27);
    gic.set_pending(0, 5000);
    gic.set_spi_level(27, true);
    gic.set_spi_level(96, true);
    gic.set_spi_level(u32::MAX, true);
    gic.complete(9, 27);
    gic.complete(0, u32::MAX);
    assert_eq!(gic.take_pending(2), None);
    assert!(!gic.has_pending(usize::MAX));
    assert!(!gic.has_pending(0) && !gic.has_pending(1));
    assert_eq!(gic.write_sgi1r(5, (1 << 40) | 1), 0b11);
}

#[test]
fn many_vcpus_and_spi_limits() {
    let mpidrs: alloc::vec::Vec<u64> = (0..70).map(|i| ((i / 16) << 8) | (i % 16)).collect();
    let mut gic = VGic::new(&mpidrs, 2000);
    assert_eq!(gic.spis(), 992);
    assert_eq!(gicd_r(&mut gic, GICD_TYPER) & 0x1F, 31);
    assert_eq!(gicd_r(&mut gic, GICD_TYPER) >> 5 & 7, 7);
    // INTIDs 1020..1023 do not exist.
    gicd_w(&mut gic, GICD_ISENABLER + 4 * 31, !0);
    assert_eq!(gicd_r(&mut gic, GICD_ISENABLER + 4 * 31), 0x0FFF_FFFF);
    // SGI to everyone but 0: targets above 63 are pending but not reported.
    assert_eq!(gic.write_sgi1r(0, 1 << 40), !1u64);
    assert_eq!(sgi_r(&mut gic, 69, GICR_ISPENDR0), 1);
    // Cluster 4 (Aff1 = 4), Aff0 2 and 5: vCPUs 66 and 69.
    assert_eq!(gic.write_sgi1r(0, (4 << 16) | 0b100100 | (2 << 24)), 0);
    assert_eq!(sgi_r(&mut gic, 66, GICR_ISPENDR0), 0b101);
    assert_eq!(sgi_r(&mut gic, 67, GICR_ISPENDR0), 0b001);
    assert_eq!(rd_r64(&mut gic, 69, GICR_TYPER) >> 32, 0x405);
}
