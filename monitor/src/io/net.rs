//! The Ethernet switch between the run's VMs: one port per VM with a
//! virtio-net device (`[[vm.net]]`), keyed by VM id.
//!
//! A sender's transmitted frames (taken from its device outside the
//! device's lock) go through [`forward`]: the route is
//! `vdev::virtio::switch::route` (by destination MAC; broadcast and
//! multicast to every other port; a source MAC that is not the sending
//! port's own goes nowhere and is counted as spoofed), then each receiving
//! port copies the frame into its guest's posted receive buffers
//! ([`Port::deliver`], under the receiver's own device lock; frames wait in
//! a bounded backlog while it has none). Every frame is copied (sender's
//! buffers -> monitor -> receiver's buffers); the page-remapping path of
//! Disco's NFS is not done, so the statistics count copies only.
//!
//! A receiver's vCPUs may be parked or running on another CPU: a delivery
//! returns the vCPUs its interrupt made pending, which are recorded here
//! as owed kicks ([`take_owed`]); the dispatcher collects them after the
//! exit that sent the frames (the scheduler is above this module).
//!
//! Lock order: the switch's table is held only to route and to clone the
//! receivers' handles, never while a frame is delivered; a sender holds
//! no device lock while it forwards, so two VMs sending to each other
//! cannot deadlock.

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use spin::Mutex;
use vdev::virtio::{
    net::Mac,
    switch::{self, Route},
};

/// A VM's end of the switch.
pub trait Port: Send + Sync {
    /// Its name, for log lines.
    fn port_name(&self) -> &str;
    /// Its counters.
    fn port_stats(&self) -> &PortStats;
    /// Hands a frame to its guest (or its device's backlog); returns the
    /// vCPUs to kick (bit = vCPU index).
    fn deliver(&self, frame: Vec<u8>) -> u64;
}

/// The switch's counters of one port (the device counts what it received
/// and dropped for want of buffers).
pub struct PortStats {
    /// Frames (and bytes) the switch passed on from this port; a frame to
    /// several ports counts once.
    pub forwarded: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    /// Frames dropped because their source MAC was not the port's own.
    pub spoofed: AtomicU64,
    /// Frames dropped because no other port has their destination MAC.
    pub unknown: AtomicU64,
    /// Copies of this port's frames into receivers' memory.
    pub copies: AtomicU64,
}

impl Default for PortStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PortStats {
    pub const fn new() -> Self {
        Self {
            forwarded: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            spoofed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            copies: AtomicU64::new(0),
        }
    }
}

/// Ports by VM id, and their MACs in the same order (what `route` reads).
struct Table {
    ports: Vec<Option<Arc<dyn Port>>>,
    macs: Vec<Option<Mac>>,
}

static TABLE: Mutex<Table> = Mutex::new(Table { ports: Vec::new(), macs: Vec::new() });
/// Kicks owed to receivers: (VM id, vCPU mask).
static OWED: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());
static ANY_OWED: AtomicBool = AtomicBool::new(false);

/// Connects VM `vm` (a new boot of it replaces the old port) with `mac`.
pub fn attach(vm: usize, mac: Mac, port: Arc<dyn Port>) {
    let mut t = TABLE.lock();
    if t.ports.len() <= vm {
        t.ports.resize_with(vm + 1, || None);
        t.macs.resize(vm + 1, None);
    }
    t.ports[vm] = Some(port);
    t.macs[vm] = Some(mac);
}

/// Disconnects VM `vm` (it is being torn down); frames to it are dropped
/// from now on.
pub fn detach(vm: usize) {
    let mut t = TABLE.lock();
    if let Some(p) = t.ports.get_mut(vm) {
        *p = None;
        t.macs[vm] = None;
    }
}

/// Passes the frames port `from` transmitted to their receivers.
pub fn forward(from: usize, sender: &dyn Port, frames: Vec<Vec<u8>>) {
    let stats = sender.port_stats();
    for frame in frames {
        let receivers: Vec<(usize, Arc<dyn Port>)> = {
            let t = TABLE.lock();
            let port = |i: usize| t.ports[i].clone().map(|p| (i, p));
            match switch::route(&t.macs, from, &frame) {
                Route::To(to) => port(to).into_iter().collect(),
                Route::Flood => (0..t.ports.len()).filter(|&i| i != from).filter_map(port).collect(),
                Route::Spoofed { source } => {
                    let n = stats.spoofed.fetch_add(1, Relaxed) + 1;
                    if n.is_power_of_two() {
                        log::warn!(
                            "vm {}: net: dropped a frame from source MAC {} (not its own); {n} spoofed so far",
                            sender.port_name(),
                            MacFmt(source)
                        );
                    }
                    continue;
                }
                Route::Unknown | Route::Runt => {
                    stats.unknown.fetch_add(1, Relaxed);
                    continue;
                }
            }
        };
        stats.forwarded.fetch_add(1, Relaxed);
        stats.forwarded_bytes.fetch_add(frame.len() as u64, Relaxed);
        let last = receivers.len().saturating_sub(1);
        let mut frame = Some(frame);
        for (i, (vm, port)) in receivers.into_iter().enumerate() {
            // The last receiver takes the frame itself, the others a copy.
            let copy = if i == last { frame.take().unwrap_or_default() } else { frame.clone().unwrap_or_default() };
            stats.copies.fetch_add(1, Relaxed);
            let kick = port.deliver(copy);
            if kick != 0 {
                OWED.lock().push((vm, kick));
                ANY_OWED.store(true, Relaxed);
            }
        }
    }
}

/// The kicks owed to receivers since the last call (cheap when none).
pub fn take_owed() -> Vec<(usize, u64)> {
    if !ANY_OWED.load(Relaxed) {
        return Vec::new();
    }
    let mut owed = OWED.lock();
    ANY_OWED.store(false, Relaxed);
    core::mem::take(&mut *owed)
}

/// `02:d1:5c:00:00:01`.
pub struct MacFmt(pub Mac);

impl core::fmt::Display for MacFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}
