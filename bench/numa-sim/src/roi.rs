//! Regions of interest: what happened between a workload's begin and end
//! markers (`disco-mark`), one open region per VM at a time.
//!
//! Why per VM: several VMs that run the same workload at once (Disco's
//! Fig. 7: eight VMs of one vCPU) each mark their own region, and the
//! regions overlap. A marker belongs to the VM whose VMID the marking CPU
//! has loaded (`vm_time.rs`; every stage-2 root of a VM carries the same
//! VMID, so a VM's vCPUs on different nodes agree); natively, outside any
//! VM, all markers share one key. A begin replaces the open region of its
//! key, an end closes only its key's: an end in VM b leaves VM a's region
//! open.
//!
//! Pure bookkeeping: the caller passes the snapshots.

use crate::report::{CpuStats, Roi};
use crate::vm_time::VmTimes;

/// A region opened and not yet closed.
struct Open {
    vcpu: u32,
    cpus: Vec<CpuStats>,
    /// The VM it belongs to and that VM's times at the begin.
    vm: Option<(u16, VmTimes)>,
}

/// Open regions, by VM, and the finished ones in the order they ended.
#[derive(Default)]
pub struct Regions {
    open: Vec<Open>,
    done: Vec<Roi>,
}

impl Regions {
    /// A begin marker on `vcpu`, with every CPU's counters now and the VM
    /// the CPU runs (its id and times) if any.
    pub fn begin(&mut self, vcpu: u32, cpus: Vec<CpuStats>, vm: Option<(u16, VmTimes)>) {
        let key = vm.map(|(id, _)| id);
        self.open.retain(|o| o.vm.map(|(id, _)| id) != key);
        self.open.push(Open { vcpu, cpus, vm });
    }

    /// An end marker: closes the open region of the same VM, if there is one.
    pub fn end(&mut self, vcpu: u32, cpus: Vec<CpuStats>, vm: Option<(u16, VmTimes)>) {
        let key = vm.map(|(id, _)| id);
        let Some(at) = self.open.iter().position(|o| o.vm.map(|(id, _)| id) == key) else { return };
        let o = self.open.swap_remove(at);
        let deltas = cpus.iter().zip(&o.cpus).map(|(a, b)| a.since(b)).collect();
        let vm = match (o.vm, vm) {
            (Some((id, t0)), Some((_, t1))) => Some((id, t1.since(&t0))),
            _ => None,
        };
        self.done.push(Roi { begin_vcpu: o.vcpu, end_vcpu: vcpu, cpus: deltas, vm });
    }

    /// The finished regions, in the order they ended.
    pub fn finished(&self) -> &[Roi] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(insns: u64) -> Vec<CpuStats> {
        vec![CpuStats { insns, ..CpuStats::default() }]
    }

    fn vm(id: u16, run_ps: u64) -> Option<(u16, VmTimes)> {
        Some((id, VmTimes { run_ps, ..VmTimes::default() }))
    }

    #[test]
    fn overlapping_regions_of_two_vms_each_close_their_own() {
        let mut r = Regions::default();
        r.begin(0, cpus(100), vm(1, 10));
        r.begin(1, cpus(150), vm(2, 20));
        r.end(1, cpus(400), vm(2, 70));
        r.end(0, cpus(1000), vm(1, 510));
        let done = r.finished();
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].begin_vcpu, done[0].end_vcpu, done[0].cpus[0].insns), (1, 1, 250));
        assert_eq!(done[0].vm.map(|(id, t)| (id, t.run_ps)), Some((2, 50)));
        assert_eq!((done[1].cpus[0].insns, done[1].vm.map(|(id, t)| (id, t.run_ps))), (900, Some((1, 500))));
    }

    #[test]
    fn an_end_in_another_vm_or_outside_closes_nothing() {
        let mut r = Regions::default();
        r.begin(0, cpus(0), vm(1, 0));
        r.end(1, cpus(10), vm(2, 5));
        r.end(1, cpus(10), None);
        assert!(r.finished().is_empty());
        r.end(0, cpus(30), vm(1, 7));
        assert_eq!(r.finished().len(), 1);
    }

    #[test]
    fn natively_one_region_at_a_time_and_a_second_begin_restarts_it() {
        let mut r = Regions::default();
        r.begin(0, cpus(5), None);
        r.begin(2, cpus(50), None);
        r.end(3, cpus(80), None);
        r.end(3, cpus(90), None);
        let done = r.finished();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].begin_vcpu, done[0].end_vcpu, done[0].cpus[0].insns, done[0].vm), (2, 3, 30, None));
    }
}
