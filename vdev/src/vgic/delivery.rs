//! Interrupt sources and delivery: what the monitor drives, and which
//! interrupt a vCPU's list registers should get next.

use super::affinity::{affinity, GICD_IROUTER_IRM};
use super::irq_bank::{IrqBank, SPI_BASE};
use super::regs::GICD_CTLR_ENABLE_GRP1;
use super::sgi1r::Sgi1r;
use super::{VGic, Virq};

impl VGic {
    /// A level-sensitive SPI line changed (e.g. the PL011 line). Pending
    /// while high (level semantics); a rising edge latches it pending if
    /// the guest configured it edge-triggered. Non-SPI INTIDs are ignored.
    pub fn set_spi_level(&mut self, intid: u32, level: bool) {
        if self.spis.contains(intid) {
            self.spis.set_line(intid, level);
        } else {
            log::debug!("vgic: set_spi_level of non-SPI INTID {intid}");
        }
    }

    /// Edge-style pending for a PPI (or SGI) of one vCPU (e.g. the virtual
    /// timer, INTID 27) or an SPI (`vcpu` is then ignored).
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) {
        if intid < SPI_BASE {
            if let Some(cpu) = self.cpus.get_mut(vcpu) {
                cpu.bank.set_pending(intid);
            }
        } else {
            self.spis.set_pending(intid);
        }
    }

    /// A guest write of ICC_SGI1R_EL1 by vCPU `source` (value as written:
    /// TargetList, Aff1/2/3, RS, IRM, INTID); marks the SGI pending on each
    /// target vCPU and returns the bitmask of target vCPU indexes (indexes
    /// above 63 are marked pending but not reported).
    pub fn write_sgi1r(&mut self, source: usize, value: u64) -> u64 {
        let sgi = Sgi1r::decode(value);
        let mut targets = 0u64;
        for (i, cpu) in self.cpus.iter_mut().enumerate() {
            let hit = if sgi.irm { i != source } else { sgi.targets(cpu.mpidr) };
            if hit {
                cpu.bank.set_pending(sgi.intid);
                if i < 64 {
                    targets |= 1 << i;
                }
            }
        }
        targets
    }

    /// Whether SPI `intid` is routed to a vCPU with affinity `mpidr`.
    fn routed(&self, intid: u32, mpidr: u64) -> bool {
        let route = self.irouter.get((intid - SPI_BASE) as usize).copied().unwrap_or(0);
        route & GICD_IROUTER_IRM != 0 || affinity(route) == mpidr
    }

    /// The best deliverable interrupt for `vcpu`: (priority, INTID).
    fn best(&self, vcpu: usize) -> Option<(u8, u32)> {
        if self.ctlr & GICD_CTLR_ENABLE_GRP1 == 0 {
            return None;
        }
        let cpu = self.cpus.get(vcpu)?;
        let private = cpu.bank.best(|_| true);
        let shared = self.spis.best(|intid| self.routed(intid, cpu.mpidr));
        match (private, shared) {
            (Some(p), Some(s)) => Some(p.min(s)),
            (p, s) => p.or(s),
        }
    }

    /// The next interrupt to place in a list register of `vcpu`: the
    /// highest priority (lowest value, then lowest INTID) interrupt that is
    /// pending, enabled, Group 1 with GICD_CTLR.EnableGrp1 set, routed to
    /// this vCPU (SGI/PPI: its own; SPI: GICD_IROUTER affinity equals the
    /// vCPU's MPIDR, or IRM=1) and neither active nor already in flight.
    /// Marks it in flight on that vCPU and clears its pending latch (level
    /// lines stay asserted).
    pub fn take_pending(&mut self, vcpu: usize) -> Option<Virq> {
        let (priority, intid) = self.best(vcpu)?;
        if intid < SPI_BASE {
            self.cpus[vcpu].bank.take(intid);
        } else {
            self.spis.take(intid);
            self.spi_owner[(intid - SPI_BASE) as usize] = vcpu;
        }
        Some(Virq { intid, priority })
    }

    /// The bank that holds `intid` for `vcpu`: the vCPU's own for an SGI
    /// or PPI; for an SPI the distributor's, only while it is in flight on
    /// this vCPU (another vCPU may have it, or nobody).
    fn held(&self, vcpu: usize, intid: u32) -> Option<&IrqBank> {
        if intid < SPI_BASE {
            self.cpus.get(vcpu).map(|cpu| &cpu.bank)
        } else {
            let owner = self.spi_owner.get((intid - SPI_BASE) as usize);
            (owner == Some(&vcpu) && self.spis.is_in_flight(intid)).then_some(&self.spis)
        }
    }

    fn held_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqBank> {
        self.held(vcpu, intid)?;
        Some(if intid < SPI_BASE { &mut self.cpus[vcpu].bank } else { &mut self.spis })
    }

    /// Has `intid`, in flight on `vcpu`, become pending again since it was
    /// placed in a list register (a timer that expired again or an SGI sent
    /// again while the guest still handles the first)? Level lines do not
    /// count: [`VGic::complete`] re-pends them.
    pub fn is_pending_again(&self, vcpu: usize, intid: u32) -> bool {
        self.held(vcpu, intid).is_some_and(|bank| bank.is_pending_again(intid))
    }

    /// Moves such a second pending state into the list register that holds
    /// `intid`: clears the latch and returns true, and the caller marks the
    /// list register pending as well as active. The guest then takes the
    /// interrupt again as soon as it deactivates the first, without an exit
    /// (which a guest spinning in EL0 with its timer masked would never make).
    pub fn take_again(&mut self, vcpu: usize, intid: u32) -> bool {
        match self.held_mut(vcpu, intid) {
            Some(bank) if bank.is_pending_again(intid) => {
                bank.clear_latch(intid);
                true
            }
            _ => false,
        }
    }

    /// The guest finished `intid` on `vcpu` (its list register went
    /// invalid): no longer in flight; a level line still high makes it
    /// pending again. Ignored if `intid` is not in flight on `vcpu`.
    pub fn complete(&mut self, vcpu: usize, intid: u32) {
        if let Some(bank) = self.held_mut(vcpu, intid) {
            bank.complete(intid);
        }
    }

    /// `intid` comes back from a list register of `vcpu` without the guest
    /// having taken it (the vCPU powered off or was reset): it is no longer
    /// in flight and is pending again. A level-sensitive SPI needs no latch:
    /// its line says whether it is still pending. Ignored if `intid` is not
    /// in flight on `vcpu`.
    pub fn give_back(&mut self, vcpu: usize, intid: u32) {
        let Some(bank) = self.held_mut(vcpu, intid).filter(|bank| bank.is_in_flight(intid)) else {
            return;
        };
        bank.complete(intid);
        if intid < SPI_BASE || bank.is_edge(intid) {
            bank.set_pending(intid);
        }
    }

    /// True if [`VGic::take_pending`] would return something (for WFI
    /// decisions), without changing state.
    pub fn has_pending(&self, vcpu: usize) -> bool {
        self.best(vcpu).is_some()
    }
}
