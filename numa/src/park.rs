//! Where one vCPU is, for the scheduler: active on a CPU (queued or
//! running) or parked off every CPU, and the wake-up protocol between the
//! vCPU that parks and whoever kicks it.
//!
//! A lost wake-up is the danger: the vCPU finds no pending interrupt, and
//! before it parks another CPU makes one pending and kicks it. The kick then
//! finds the vCPU active and only sets `wake`; [`ParkSlot::park`] refuses
//! while `wake` is set. The vCPU calls [`ParkSlot::clear_wake`] *before* it
//! looks for work, so a kick is either seen by that look or stops the park.
//! The loom test at the end checks exactly that.

use crate::sync::Mutex;

/// What a kick did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kick<T> {
    /// The vCPU is active on this CPU: interrupt it so it looks again.
    Interrupt(usize),
    /// The vCPU was parked and is now active on `cpu`.
    Unparked {
        /// What was parked: queue it on `cpu`.
        item: T,
        /// The CPU `choose` picked.
        cpu: usize,
        /// When it parked in WFI (0: it was powered off).
        idle_since: u64,
    },
    /// A timer kick for a deadline the vCPU no longer sleeps on.
    Stale,
}

enum Place<T> {
    Active(usize),
    Parked(T),
}

struct Inner<T> {
    place: Place<T>,
    wake: bool,
    deadline: Option<u64>,
    idle_since: u64,
}

/// One vCPU's place; `T` is what the scheduler moves (the vCPU's task).
pub struct ParkSlot<T> {
    inner: Mutex<Inner<T>>,
}

/// No CPU yet: a kick before the vCPU is handed out interrupts no one.
pub const NO_CPU: usize = usize::MAX;

impl<T> Default for ParkSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ParkSlot<T> {
    /// An active slot on no CPU yet.
    pub fn new() -> Self {
        Self { inner: Mutex::new(Inner { place: Place::Active(NO_CPU), wake: false, deadline: None, idle_since: 0 }) }
    }

    /// The vCPU is queued on or runs on `cpu`.
    pub fn set_active(&self, cpu: usize) {
        self.inner.lock().place = Place::Active(cpu);
    }

    /// Parks a vCPU that was never active (a secondary vCPU before CPU_ON).
    pub fn park_new(&self, item: T) {
        self.inner.lock().place = Place::Parked(item);
    }

    /// Forgets earlier kicks: the vCPU is about to look for work.
    pub fn clear_wake(&self) {
        self.inner.lock().wake = false;
    }

    /// Parks `item` (its context saved) until a kick, or a timer kick for
    /// `deadline`. `idle_since` is recorded for the kicker (0: powered off).
    /// Gives `item` back if a kick came since [`ParkSlot::clear_wake`]: it
    /// must run again.
    pub fn park(&self, item: T, deadline: Option<u64>, idle_since: u64) -> Result<(), T> {
        let mut inner = self.inner.lock();
        if inner.wake {
            inner.wake = false;
            return Err(item);
        }
        inner.place = Place::Parked(item);
        inner.deadline = deadline;
        inner.idle_since = idle_since;
        Ok(())
    }

    /// Kicks the vCPU. `timer`: a deadline that expired (only wakes a vCPU
    /// that still sleeps on it). `choose` picks the CPU for an unparked item.
    pub fn kick(&self, timer: Option<u64>, choose: impl FnOnce(&T) -> usize) -> Kick<T> {
        let mut inner = self.inner.lock();
        match &inner.place {
            Place::Active(_) if timer.is_some() => Kick::Stale,
            Place::Active(cpu) => {
                let cpu = *cpu;
                inner.wake = true;
                Kick::Interrupt(cpu)
            }
            Place::Parked(_) if timer.is_some() && inner.deadline != timer => Kick::Stale,
            Place::Parked(item) => {
                let cpu = choose(item);
                let Place::Parked(item) = core::mem::replace(&mut inner.place, Place::Active(cpu)) else {
                    unreachable!("matched Parked above")
                };
                inner.deadline = None;
                let idle_since = core::mem::take(&mut inner.idle_since);
                Kick::Unparked { item, cpu, idle_since }
            }
        }
    }

    /// Is the vCPU parked?
    pub fn is_parked(&self) -> bool {
        matches!(self.inner.lock().place, Place::Parked(_))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn kick_interrupts_active_and_stops_the_next_park() {
        let slot = ParkSlot::new();
        slot.set_active(3);
        assert_eq!(slot.kick(None, |_: &u32| 0), Kick::Interrupt(3));
        assert_eq!(slot.park(7, None, 1), Err(7));
        assert_eq!(slot.park(7, None, 1), Ok(()), "a refused park consumes the wake");
    }

    #[test]
    fn clear_wake_forgets_earlier_kicks() {
        let slot = ParkSlot::new();
        slot.set_active(0);
        slot.kick(None, |_: &u32| 0);
        slot.clear_wake();
        assert_eq!(slot.park(1, None, 0), Ok(()));
        assert!(slot.is_parked());
    }

    #[test]
    fn kick_unparks_onto_the_chosen_cpu() {
        let slot = ParkSlot::new();
        slot.park(9u32, Some(100), 42).unwrap();
        assert_eq!(slot.kick(None, |&i| i as usize + 1), Kick::Unparked { item: 9, cpu: 10, idle_since: 42 });
        assert!(!slot.is_parked());
        assert_eq!(slot.kick(None, |_| 0), Kick::Interrupt(10));
    }

    #[test]
    fn timer_kicks_only_wake_their_own_deadline() {
        let slot = ParkSlot::new();
        slot.park(1u32, Some(100), 5).unwrap();
        assert_eq!(slot.kick(Some(90), |_| 0), Kick::Stale);
        assert!(slot.is_parked());
        assert_eq!(slot.kick(Some(100), |_| 2), Kick::Unparked { item: 1, cpu: 2, idle_since: 5 });
        assert_eq!(slot.kick(Some(100), |_| 2), Kick::Stale, "an active vCPU ignores timer kicks");
    }

    #[test]
    fn new_vcpus_park_until_kicked() {
        let slot = ParkSlot::new();
        assert_eq!(slot.kick(None, |_: &u8| 0), Kick::Interrupt(NO_CPU));
        slot.park_new(4u8);
        assert_eq!(slot.kick(None, |_| 1), Kick::Unparked { item: 4, cpu: 1, idle_since: 0 });
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p numa --release park` (run by
/// `cargo xtask test`): every interleaving of a vCPU going idle and a CPU
/// making an interrupt pending for it and kicking it.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let slot = Arc::new(ParkSlot::new());
            let pending = Arc::new(AtomicBool::new(false));
            slot.set_active(0);
            let kicker = {
                let (slot, pending) = (slot.clone(), pending.clone());
                thread::spawn(move || {
                    pending.store(true, SeqCst);
                    match slot.kick(None, |_| 1) {
                        Kick::Unparked { item, .. } => Some(item),
                        _ => None,
                    }
                })
            };
            // The vCPU: WFI with nothing pending parks it.
            slot.clear_wake();
            let parked = !pending.load(SeqCst) && slot.park(7u32, None, 1).is_ok();
            let woken = kicker.join().unwrap();
            // Whatever the interleaving, the vCPU does not stay parked.
            assert!(!slot.is_parked(), "lost wake-up: parked after the interrupt became pending");
            assert_eq!(parked, woken == Some(7), "the kick unparks exactly the parked vCPU");
        });
    }

    #[test]
    fn timer_and_interrupt_kicks_race() {
        loom::model(|| {
            let slot = Arc::new(ParkSlot::new());
            slot.park(5u32, Some(10), 1).unwrap();
            let timer = {
                let slot = slot.clone();
                thread::spawn(move || matches!(slot.kick(Some(10), |_| 0), Kick::Unparked { .. }))
            };
            let by_irq = matches!(slot.kick(None, |_| 1), Kick::Unparked { .. });
            let by_timer = timer.join().unwrap();
            assert!(by_irq ^ by_timer, "exactly one kick unparks the vCPU");
            assert!(!slot.is_parked());
        });
    }
}
