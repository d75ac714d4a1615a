//! The ordering the monitor's page replication relies on (`mm::replica`
//! in the monitor), as a model that loom checks in every interleaving.
//!
//! One guest page, two nodes with a stage-2 root each. A CPU's access goes
//! through its node's descriptor and TLB: it holds the TLB's read side for
//! the whole translate-and-access, and a TLB invalidation takes the write
//! side, so it completes only after every access through the old
//! descriptor did, which is what `TLBI ...IS; DSB ISH` guarantees. The
//! space lock is the VM's space lock, held by the replicator and by the
//! fault handler.
//!
//! Replicate: under the lock, the master is mapped read-only in every root
//! and the replica node's root broken, both roots invalidated, then the
//! master is copied and the replica mapped read-only. Collapse (a write
//! fault on a replicated page): under the lock, every root broken and
//! invalidated, the replica freed, the master mapped writable. The checks:
//! a read of the replica always equals the master (no divergence, no read
//! of a freed copy) and no write is lost.

/// Descriptor states of the model.
pub const INVALID: u8 = 0;
/// The master, read-only (replicated, or watched).
pub const MASTER_RO: u8 = 1;
/// The master, writable.
pub const MASTER_RW: u8 = 2;
/// This node's replica, read-only.
pub const REPLICA: u8 = 3;

/// `RUSTFLAGS="--cfg loom" cargo test -p numa --release --lib loom_tests`
/// (run by `cargo xtask test`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
    use loom::sync::{Arc, Mutex, RwLock};
    use loom::thread;

    /// What a freed replica frame holds (the allocator may reuse it).
    const FREED: u64 = u64::MAX;

    struct Page {
        /// The pmap's view: is the page replicated?
        space: Mutex<bool>,
        map: [AtomicU8; 2],
        tlb: [RwLock<()>; 2],
        master: AtomicU64,
        replica: AtomicU64,
    }

    impl Page {
        fn new() -> Self {
            Page {
                space: Mutex::new(false),
                map: [AtomicU8::new(MASTER_RW), AtomicU8::new(MASTER_RW)],
                tlb: [RwLock::new(()), RwLock::new(())],
                master: AtomicU64::new(0),
                replica: AtomicU64::new(FREED),
            }
        }

        /// TLBI + DSB on every root: waits out accesses in flight.
        fn invalidate(&self) {
            for tlb in &self.tlb {
                drop(tlb.write().unwrap());
            }
        }

        /// A guest access from `node`: the value read, or written.
        fn access(&self, node: usize, write: Option<u64>) -> u64 {
            loop {
                {
                    let _walk = self.tlb[node].read().unwrap();
                    match (self.map[node].load(SeqCst), write) {
                        (MASTER_RW, Some(v)) => {
                            self.master.store(v, SeqCst);
                            return v;
                        }
                        (MASTER_RW | MASTER_RO, None) => return self.master.load(SeqCst),
                        (REPLICA, None) => {
                            let v = self.replica.load(SeqCst);
                            assert_eq!(v, self.master.load(SeqCst), "a replica diverged from its master");
                            return v;
                        }
                        _ => {}
                    }
                }
                self.fault(write.is_some());
            }
        }

        /// The monitor's fault handler (`mm::fault` -> `VmSpace::write_fault`).
        fn fault(&self, write: bool) {
            let mut replicated = self.space.lock().unwrap();
            if write && *replicated {
                self.map.iter().for_each(|m| m.store(INVALID, SeqCst));
                self.invalidate();
                self.replica.store(FREED, SeqCst);
                *replicated = false;
                self.map.iter().for_each(|m| m.store(MASTER_RW, SeqCst));
            }
            // Otherwise the fault raced with a change: retry.
        }

        /// The placement loop (`VmSpace::replicate`), copying to node 1.
        fn replicate(&self) {
            let mut replicated = self.space.lock().unwrap();
            if *replicated {
                return;
            }
            self.map[0].store(MASTER_RO, SeqCst);
            self.map[1].store(INVALID, SeqCst);
            self.invalidate();
            self.replica.store(self.master.load(SeqCst), SeqCst);
            *replicated = true;
            self.map[1].store(REPLICA, SeqCst);
        }
    }

    #[test]
    fn write_racing_replication_is_never_lost() {
        loom::model(|| {
            let page = Arc::new(Page::new());
            let writer = {
                let page = page.clone();
                thread::spawn(move || page.access(0, Some(7)))
            };
            let reader = {
                let page = page.clone();
                thread::spawn(move || page.access(1, None))
            };
            page.replicate();
            writer.join().unwrap();
            let read = reader.join().unwrap();
            assert!(read == 0 || read == 7, "the reader saw {read}");
            assert_eq!(page.master.load(SeqCst), 7, "the write was lost");
            if *page.space.lock().unwrap() {
                assert_eq!(page.replica.load(SeqCst), 7, "the replica misses the write");
            }
            // After the writer, node 1 reads the written value.
            assert_eq!(page.access(1, None), 7);
        });
    }

    #[test]
    fn readers_after_a_collapse_see_the_write() {
        loom::model(|| {
            let page = Arc::new(Page::new());
            page.replicate();
            let writer = {
                let page = page.clone();
                thread::spawn(move || page.access(1, Some(9)))
            };
            let read = page.access(0, None);
            writer.join().unwrap();
            assert!(read == 0 || read == 9);
            assert_eq!(page.access(0, None), 9);
            assert_eq!(page.access(1, None), 9);
            assert!(!*page.space.lock().unwrap(), "a written page stays collapsed");
        });
    }
}
