//! Statistics the monitor keeps for its users: per VM, exits by reason and
//! where its vCPUs' time went; per CPU, busy and idle time. Counters are
//! relaxed atomics bumped by the CPU that owns the event, so keeping them
//! costs no locks on the exit path.

use crate::{
    arch::{cpu, timer, MAX_CPUS},
    println,
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a vCPU exited, as counted.
#[derive(Clone, Copy)]
pub enum ExitReason {
    Wfi,
    Hypercall,
    SysReg,
    Mmio,
    FirstTouch,
    /// A page unmapped for access sampling was touched.
    Sampling,
    /// A write to a page write-protected by replication (a watch ended or
    /// replicas collapsed).
    WriteProtect,
    Irq,
    Other,
}

const REASONS: [&str; 9] =
    ["wfi", "hypercall", "sysreg", "mmio", "first-touch", "sampling", "write-protect", "irq", "other"];

/// One VM's counters.
#[derive(Default)]
pub struct VmStats {
    exits: [AtomicU64; REASONS.len()],
    /// Counter ticks its vCPUs spent in the guest.
    pub run_ticks: AtomicU64,
    /// Counter ticks its vCPUs spent waiting in WFI.
    pub idle_ticks: AtomicU64,
    /// Exceptions injected for what the guest may not do: external aborts
    /// (accesses to guest-physical addresses with nothing there) and
    /// undefined instructions (traps the monitor does not emulate).
    aborts: AtomicU64,
    undefs: AtomicU64,
    /// HVC/SMC function IDs the monitor does not implement (answered
    /// NOT_SUPPORTED).
    unknown_calls: AtomicU64,
}

/// What the guest was refused, as counted: an exception injected, or a
/// hypercall answered NOT_SUPPORTED.
#[derive(Clone, Copy)]
pub enum Injected {
    ExternalAbort,
    Undefined,
    NotSupported,
}

impl VmStats {
    pub fn exit(&self, reason: ExitReason) {
        self.exits[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts an injected exception. Returns the count so far when this
    /// occurrence is worth a log line (the 1st, 2nd, 4th, ...): a guest
    /// probing its address space must not flood the console every VM
    /// shares.
    pub fn injected(&self, what: Injected) -> Option<u64> {
        let counter = match what {
            Injected::ExternalAbort => &self.aborts,
            Injected::Undefined => &self.undefs,
            Injected::NotSupported => &self.unknown_calls,
        };
        Some(counter.fetch_add(1, Relaxed) + 1).filter(|n| n.is_power_of_two())
    }

    pub fn print(&self, name: &str, frames: &[usize]) {
        let mut exits = alloc::string::String::new();
        for (reason, count) in REASONS.iter().zip(&self.exits) {
            exits.push_str(&alloc::format!(" {reason}={}", count.load(Relaxed)));
        }
        println!(
            "stats: vm {name}: exits{exits}; vCPU run {} ms, idle {} ms; frames per node {frames:?}",
            timer::ticks_to_ms(self.run_ticks.load(Relaxed)),
            timer::ticks_to_ms(self.idle_ticks.load(Relaxed)),
        );
        let (aborts, undefs) = (self.aborts.load(Relaxed), self.undefs.load(Relaxed));
        let unknown = self.unknown_calls.load(Relaxed);
        if aborts + undefs + unknown > 0 {
            println!(
                "stats: vm {name}: injected external aborts {aborts}, undefined instructions {undefs}; \
                 unknown hypercalls {unknown}"
            );
        }
    }
}

/// Per CPU: ticks spent idle (waiting for an interrupt), and the counter
/// value at the start of the current measuring window.
static IDLE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// When each CPU started its current wait (0: not waiting).
static IDLE_SINCE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static WINDOW_START: AtomicU64 = AtomicU64::new(0);

/// Waits for an interrupt, counting the time as this CPU's idle time.
/// Returns the ticks waited.
pub fn idle_wait() -> u64 {
    let me = cpu::index();
    let start = timer::now();
    IDLE_SINCE[me].store(start, Relaxed);
    cpu::wait_for_interrupt();
    IDLE_SINCE[me].store(0, Relaxed);
    let waited = timer::now() - start;
    IDLE[me].fetch_add(waited, Relaxed);
    waited
}

/// Prints every CPU's busy and idle time since the window started, then
/// starts a new window (so a user can measure an interval by printing twice);
/// and the TLB invalidations so far.
pub fn print_cpus(cpus: usize) {
    let now = timer::now();
    let window_start = WINDOW_START.swap(now, Relaxed);
    let window = now - window_start;
    for (index, idle) in IDLE.iter().enumerate().take(cpus).filter(|&(index, _)| cpu::is_online(index)) {
        // A wait still going on counts up to now (within the window).
        let since = IDLE_SINCE[index].load(Relaxed);
        let ongoing = if since == 0 { 0 } else { now - since.max(window_start) };
        let idle = (idle.swap(0, Relaxed) + ongoing).min(window);
        println!(
            "stats: cpu {index}: busy {} ms, idle {} ms ({}% idle) over {} ms",
            timer::ticks_to_ms(window - idle),
            timer::ticks_to_ms(idle),
            idle * 100 / window.max(1),
            timer::ticks_to_ms(window)
        );
    }
    println!(
        "stats: TLB invalidations of guest mappings: {} broadcast, {} on one CPU only",
        crate::arch::stage2::BROADCASTS.load(Relaxed),
        crate::arch::stage2::LOCAL_ONLY.load(Relaxed)
    );
}
