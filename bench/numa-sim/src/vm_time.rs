//! Simulated time per VM, from the monitor's writes of VTTBR_EL2.
//!
//! Why: a region of interest snapshots every CPU, so when several VMs share
//! the machine its per-CPU deltas hold everyone's work. To say what one VM
//! experienced (Xen's "antisocial VMs" test: how much slower is the
//! well-behaved VM beside hogs), the plugin must know which VM each CPU
//! runs. The monitor loads a VM's stage-2 root and VMID with `msr
//! vttbr_el2, xN` (`set_vttbr`, only when it changes; and briefly around
//! TLB maintenance for another VM). The plugin reads xN just before that
//! instruction (a register-reading callback on it alone, so the cost is
//! per switch, not per block) and calls [`VmClock::switch`]: the CPU's
//! simulated time since its last switch goes to the VM it ran until now.
//! Nothing changes in the monitor.
//!
//! Per VM this keeps:
//! - `run`: simulated time of the CPUs while they had its VMID loaded: its
//!   own instructions and misses at EL0/EL1, and the monitor's work in its
//!   exits (EL2 until the next switch). A CPU idles without a switch, but
//!   an idle CPU executes almost nothing, so that costs little.
//! - `wait`: for a VM that stopped running everywhere, the simulated time
//!   the CPU it left advanced until it ran again somewhere: the other
//!   VMs' slices it sat out. That is the wait of a runnable vCPU (the
//!   monitor requeues a preempted vCPU on its CPU); a vCPU that parked
//!   (WFI) counts its sleep the same way, so `wait` is meaningful for a
//!   VM of one vCPU that stays runnable, such as a CPU- or memory-bound
//!   loop. For a VM of several vCPUs `run` is still right (summed over
//!   CPUs), `wait` is not.
//!
//! `run + wait` is the VM's elapsed simulated time: what its vCPU went
//! through between two instants, whether it ran or waited for a CPU.
//!
//! Pure bookkeeping: the caller passes each CPU's simulated clock.

use std::collections::BTreeMap;

/// Accumulated times of one VM, ps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmTimes {
    pub run_ps: u64,
    pub wait_ps: u64,
    /// Times a CPU switched to this VM.
    pub switches: u64,
}

impl VmTimes {
    /// `self - before`, field by field.
    pub fn since(&self, before: &VmTimes) -> VmTimes {
        VmTimes {
            run_ps: self.run_ps.saturating_sub(before.run_ps),
            wait_ps: self.wait_ps.saturating_sub(before.wait_ps),
            switches: self.switches.saturating_sub(before.switches),
        }
    }

    pub fn elapsed_ps(&self) -> u64 {
        self.run_ps + self.wait_ps
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Vm {
    times: VmTimes,
    /// CPUs that have its VMID loaded now.
    running_on: u32,
    /// Where and when it last stopped running everywhere: (CPU, its clock).
    left: Option<(usize, u64)>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    vm: Option<u16>,
    /// The CPU's clock at its last switch.
    mark_ps: u64,
}

/// Which VM each CPU runs, and every VM's times.
#[derive(Debug, Default)]
pub struct VmClock {
    cpus: Vec<Slot>,
    vms: BTreeMap<u16, Vm>,
}

impl VmClock {
    pub fn new(cpus: usize) -> Self {
        VmClock { cpus: vec![Slot::default(); cpus], vms: BTreeMap::new() }
    }

    /// The VM whose VMID `cpu` has loaded (None before its first switch).
    pub fn current(&self, cpu: usize) -> Option<u16> {
        self.cpus.get(cpu)?.vm
    }

    /// `cpu` loads `vmid`; `now(c)` is CPU c's simulated clock (ps).
    pub fn switch(&mut self, cpu: usize, vmid: u16, now: impl Fn(usize) -> u64) {
        let Some(slot) = self.cpus.get(cpu).copied() else { return };
        if slot.vm == Some(vmid) {
            return;
        }
        let t = now(cpu);
        if let Some(old) = slot.vm {
            let v = self.vms.entry(old).or_default();
            v.times.run_ps += t.saturating_sub(slot.mark_ps);
            v.running_on = v.running_on.saturating_sub(1);
            if v.running_on == 0 {
                v.left = Some((cpu, t));
            }
        }
        let v = self.vms.entry(vmid).or_default();
        if v.running_on == 0 {
            if let Some((c, s)) = v.left.take() {
                v.times.wait_ps += now(c).saturating_sub(s);
            }
        }
        v.running_on += 1;
        v.times.switches += 1;
        self.cpus[cpu] = Slot { vm: Some(vmid), mark_ps: t };
    }

    /// `vmid`'s times up to now: what the CPUs running it have run since
    /// their last switch, and a wait under way, included.
    pub fn times(&self, vmid: u16, now: impl Fn(usize) -> u64) -> VmTimes {
        let Some(v) = self.vms.get(&vmid) else { return VmTimes::default() };
        let mut t = v.times;
        for (c, s) in self.cpus.iter().enumerate() {
            if s.vm == Some(vmid) {
                t.run_ps += now(c).saturating_sub(s.mark_ps);
            }
        }
        if let (0, Some((c, s))) = (v.running_on, v.left) {
            t.wait_ps += now(c).saturating_sub(s);
        }
        t
    }

    /// Every VM seen, with its times up to now.
    pub fn all(&self, now: impl Fn(usize) -> u64) -> Vec<(u16, VmTimes)> {
        self.vms.keys().map(|&id| (id, self.times(id, &now))).collect()
    }
}

/// The VMID in a VTTBR_EL2 value (bits 63:48; 8-bit VMIDs have 55:48 only
/// and the rest zero).
pub fn vmid(vttbr: u64) -> u16 {
    (vttbr >> 48) as u16
}

/// `MSR VTTBR_EL2, Xt` (op0 3, op1 4, CRn 2, CRm 1, op2 0): Some(t).
pub fn msr_vttbr_rt(insn: u32) -> Option<u32> {
    (insn & !0x1f == 0xd51c_2100).then_some(insn & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn decodes_msr_vttbr() {
        assert_eq!(msr_vttbr_rt(0xd51c_2100), Some(0));
        assert_eq!(msr_vttbr_rt(0xd51c_2108), Some(8));
        assert_eq!(msr_vttbr_rt(0xd53c_2100), None); // MRS
        assert_eq!(msr_vttbr_rt(0xd51c_2000), None); // TTBR0_EL2
        assert_eq!(vmid(0x0003_0000_4123_4000), 3);
    }

    /// Two VMs time-share CPU 0; VM 1 alone, then preempted, then back.
    #[test]
    fn run_and_wait_of_a_shared_cpu() {
        let clock = RefCell::new([0u64; 2]);
        let now = |c: usize| clock.borrow()[c];
        let mut k = VmClock::new(2);
        k.switch(0, 1, now);
        clock.borrow_mut()[0] = 100; // VM 1 ran 100
        k.switch(0, 2, now);
        clock.borrow_mut()[0] = 130; // VM 2 ran 30 while VM 1 waited
        assert_eq!(k.times(1, now), VmTimes { run_ps: 100, wait_ps: 30, switches: 1 });
        k.switch(0, 1, now);
        clock.borrow_mut()[0] = 150;
        let t = k.times(1, now);
        assert_eq!((t.run_ps, t.wait_ps, t.switches, t.elapsed_ps()), (120, 30, 2, 150));
        assert_eq!(k.times(2, now), VmTimes { run_ps: 30, wait_ps: 20, switches: 1 });
        assert_eq!(k.current(0), Some(1));
        assert_eq!(k.current(1), None);
        assert_eq!(k.all(now).len(), 2);
    }

    /// A VM briefly loaded elsewhere (TLB maintenance for it on another
    /// CPU) neither leaves nor waits; a VM resumed on another CPU waits for
    /// what the CPU it left did meanwhile.
    #[test]
    fn loaded_elsewhere_and_moved() {
        let clock = RefCell::new([0u64; 2]);
        let now = |c: usize| clock.borrow()[c];
        let mut k = VmClock::new(2);
        k.switch(0, 1, now);
        k.switch(1, 2, now);
        clock.borrow_mut()[1] = 10;
        k.switch(1, 1, now); // CPU 1 loads VM 1's VMID for a TLBI ...
        clock.borrow_mut()[1] = 11;
        k.switch(1, 2, now); // ... and restores VM 2's
        clock.borrow_mut()[0] = 50;
        assert_eq!(k.times(1, now).wait_ps, 0);
        assert_eq!(k.times(1, now).run_ps, 51);
        // VM 1 is preempted on CPU 0 by VM 3, and resumes on CPU 1.
        k.switch(0, 3, now);
        clock.borrow_mut()[0] = 80;
        clock.borrow_mut()[1] = 40;
        k.switch(1, 1, now);
        assert_eq!(k.times(1, now).wait_ps, 30);
        // A switch to the VMID already loaded changes nothing.
        k.switch(1, 1, now);
        assert_eq!(k.times(1, now).switches, 3);
        assert_eq!(
            VmTimes { run_ps: 5, wait_ps: 1, switches: 2 }.since(&VmTimes { run_ps: 2, wait_ps: 1, switches: 1 }),
            VmTimes { run_ps: 3, wait_ps: 0, switches: 1 }
        );
    }
}
