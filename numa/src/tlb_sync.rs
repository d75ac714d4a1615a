//! Which CPUs must drop a VM's TLB entries before they next run it, so
//! that break-before-make need not broadcast when no other CPU runs the VM
//! right now (KVM on x86 does the same with its remote TLB flush requests:
//! `kvm_make_all_cpus_request` marks every vCPU and interrupts only those
//! in guest mode).
//!
//! Under QEMU's TCG a broadcast TLB invalidation stops every vCPU of the
//! machine, so with many small VMs (one vCPU each, on a CPU at a time) a
//! broadcast per copy-on-write break made booting 64 VMs crawl. A CPU that
//! changes a VM's descriptors invalidates its own TLB, marks every other
//! CPU *stale* for the VM and broadcasts only if another CPU has the VM
//! loaded; a CPU loading the VM takes its stale mark and flushes the VM's
//! entries locally first. The two sides' read-modify-writes are
//! sequentially consistent, so at least one of them sees the other (a
//! Dekker pair): a CPU either flushes when it loads the VM or was loaded
//! when the changer looked and gets the broadcast. The loom model
//! (`loom_tests`) checks every interleaving.
//!
//! CPUs are bits of a u64: at most 64.

use crate::sync::{AtomicU64, Ordering::SeqCst};

/// The most CPUs the masks hold.
pub const MAX_CPUS: usize = 64;

fn bit(cpu: usize) -> u64 {
    1 << (cpu % MAX_CPUS)
}

/// One VM's TLB bookkeeping.
pub struct TlbSync {
    /// CPUs with one of the VM's vCPUs loaded (between [`load`] and
    /// [`unload`]).
    ///
    /// [`load`]: TlbSync::load
    /// [`unload`]: TlbSync::unload
    loaded: AtomicU64,
    /// CPUs that may hold entries older than a change: they flush the
    /// VM's entries before they next run it.
    stale: AtomicU64,
}

impl TlbSync {
    /// No CPU runs the VM and none is stale.
    pub fn new() -> Self {
        Self { loaded: AtomicU64::new(0), stale: AtomicU64::new(0) }
    }

    /// CPU `cpu` loads one of the VM's vCPUs. True: it must first flush
    /// the VM's TLB entries (all stages) on itself.
    pub fn load(&self, cpu: usize) -> bool {
        self.loaded.fetch_or(bit(cpu), SeqCst);
        self.stale.fetch_and(!bit(cpu), SeqCst) & bit(cpu) != 0
    }

    /// CPU `cpu` put the vCPU away.
    pub fn unload(&self, cpu: usize) {
        self.loaded.fetch_and(!bit(cpu), SeqCst);
    }

    /// CPU `me` changed the VM's descriptors (the invalid half of
    /// break-before-make is visible) and invalidates its own TLB: every
    /// other CPU is marked stale. True: another CPU has the VM loaded, so
    /// the invalidation must be broadcast.
    pub fn changed(&self, me: usize) -> bool {
        self.stale.fetch_or(!bit(me), SeqCst);
        self.loaded.load(SeqCst) & !bit(me) != 0
    }
}

impl Default for TlbSync {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(loom))]
    #[test]
    fn broadcast_only_while_another_cpu_runs_the_vm() {
        let t = TlbSync::new();
        assert!(!t.load(1), "nothing changed yet");
        // CPU 1 runs it: a change on CPU 0 broadcasts.
        assert!(t.changed(0));
        t.unload(1);
        // Nobody else runs it: no broadcast, and CPU 1 (like every other
        // CPU) flushes when it loads the VM next, once.
        assert!(!t.changed(0));
        assert!(t.load(1));
        t.unload(1);
        assert!(!t.load(1));
        t.unload(1);
        // The changer itself is never marked.
        let t = TlbSync::new();
        t.changed(2);
        assert!(!t.load(2));
        assert!(t.load(3));
    }

    #[cfg(loom)]
    mod loom_tests {
        use super::super::TlbSync;
        use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use loom::sync::Arc;
        use loom::thread;

        /// A change on CPU 0 races with CPU 1 loading and running the VM.
        /// Whenever CPU 1 runs after the change was complete (the changer
        /// returned from its invalidation), it flushed on load or the
        /// changer broadcast.
        #[test]
        fn a_cpu_that_runs_after_a_change_never_keeps_old_entries() {
            loom::model(|| {
                let t = Arc::new(TlbSync::new());
                let done = Arc::new(AtomicBool::new(false));
                let (t1, done1) = (t.clone(), done.clone());
                let loader = thread::spawn(move || {
                    let flushed = t1.load(1);
                    let after_change = done1.load(SeqCst);
                    t1.unload(1);
                    (flushed, after_change)
                });
                let broadcast = t.changed(0);
                done.store(true, SeqCst);
                let (flushed, after_change) = loader.join().unwrap();
                assert!(!after_change || flushed || broadcast);
            });
        }
    }
}
