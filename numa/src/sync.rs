//! The lock the per-vCPU and per-CPU scheduler structures use: a spinlock
//! in the monitor, loom's model of a mutex under `--cfg loom`, so the same
//! code is model-checked on the host. The atomics the free rings, the
//! memmap entries and the per-node counters use come from here for the
//! same reason.

#[cfg(not(loom))]
pub use spin::Mutex;

#[cfg(loom)]
pub use loom_mutex::Mutex;

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
mod loom_mutex {
    /// loom's mutex with spin's signature (`lock` cannot fail).
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }
}
