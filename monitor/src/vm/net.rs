//! A VM's virtio-net device (`bus::Device::Net`) and its port on the
//! monitor's switch (`io::net`).
//!
//! Transmit: a QueueNotify of the transmit queue takes the frames out of
//! the guest's buffers in batches (`vdev::virtio::net::TX_BATCH`), and
//! each batch is forwarded with the device's lock released. Receive: the
//! switch calls [`Port::deliver`] of the receiving VM, on the sender's CPU,
//! which copies the frame into a posted buffer or leaves it in the
//! device's backlog until the guest posts buffers (its QueueNotify of the
//! receive queue drains it).

use super::{bus, Vm, RAM_BASE};
use crate::{
    arch::esr::DataAbort,
    io::net::{self, MacFmt, Port, PortStats},
    mm::guest::GuestRam,
};
use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;
use spin::Mutex;
use vdev::{
    mmio::MmioError,
    virtio::{
        net::{Mac, Malformed, VirtioNet, QUEUE_SIZE, RX_QUEUE, TX_BATCH, TX_QUEUE},
        transport::VirtioMmio,
    },
};

/// The device and the level last given to the vGIC.
pub struct GuestNic {
    pub mmio: VirtioMmio<VirtioNet>,
    pub line: bool,
}

/// A VM's network device: the device behind its lock, and the switch's
/// counters of its port.
pub struct GuestNet {
    pub nic: Mutex<GuestNic>,
    pub stats: PortStats,
    /// Its SPI (from the region table).
    pub spi: u32,
}

impl GuestNet {
    pub fn new(mac: Mac, spi: u32) -> Self {
        let nic = GuestNic { mmio: VirtioMmio::new(VirtioNet::new(mac)), line: false };
        Self { nic: Mutex::new(nic), stats: PortStats::default(), spi }
    }
}

/// Rounds of [`TX_BATCH`] frames one notification takes at most: enough
/// for a full queue (what the guest made available before it notified).
const TX_ROUNDS: usize = QUEUE_SIZE as usize / TX_BATCH + 1;

impl Vm {
    pub(super) fn ram(&self) -> GuestRam<'_> {
        GuestRam { space: &self.space, base: RAM_BASE, size: self.ram_size, node: self.home() }
    }

    /// An access to the network device's registers; returns the value read
    /// and the vCPUs of this VM to kick.
    pub(super) fn net_access(
        &self,
        offset: u64,
        access: DataAbort,
        value: u64,
    ) -> Result<(Option<u64>, u64), MmioError> {
        let net = self.net.as_ref().ok_or(MmioError::Unmapped)?;
        let (read, tx, mut kick) = {
            let mut nic = net.nic.lock();
            let read = bus::perform(&mut nic.mmio, offset, access, value)?;
            let mut tx = false;
            if access.write {
                while let Some(q) = nic.mmio.take_notified() {
                    match q {
                        TX_QUEUE => tx = true,
                        q => self.net_process(&mut nic, q),
                    }
                }
            }
            (read, tx, self.net_line(net, &mut nic))
        };
        if tx {
            for _ in 0..TX_ROUNDS {
                let (frames, took) = {
                    let mut nic = net.nic.lock();
                    let taken = |nic: &GuestNic| nic.mmio.queue(TX_QUEUE).map(|q| q.next_avail());
                    let before = taken(&nic);
                    self.net_process(&mut nic, TX_QUEUE);
                    kick |= self.net_line(net, &mut nic);
                    (nic.mmio.device_mut().take_tx(), taken(&nic) != before)
                };
                if !frames.is_empty() {
                    net::forward(self.id, self, frames);
                }
                // Until a round takes no chain (malformed ones count).
                if !took {
                    break;
                }
            }
        }
        Ok((read, kick))
    }

    /// Lets the device work on queue `q`, logging what went wrong.
    fn net_process(&self, nic: &mut GuestNic, q: u16) {
        let had_failed = nic.mmio.needs_reset();
        nic.mmio.process(q, &mut self.ram(), &mut ());
        if !had_failed && nic.mmio.needs_reset() {
            let why = nic.mmio.last_error().map(|e| alloc::format!("{e}")).unwrap_or_default();
            log::warn!("vm {}: net: malformed queue ({why}): device needs reset", self.name);
        }
        if let Some(why) = nic.mmio.device_mut().take_malformed() {
            let c = nic.mmio.device().counters();
            let n = c.tx_malformed + c.rx_dropped;
            // Rate-limited: the 1st, 2nd, 4th, 8th, ... such event.
            if n.is_power_of_two() {
                log::warn!("vm {}: net: {} dropped ({n} dropped so far)", self.name, describe(why));
            }
        }
    }

    /// Drives the SPI from the device's interrupt line if it moved;
    /// returns the vCPUs to kick. Lock order: device, then devices.
    fn net_line(&self, net: &GuestNet, nic: &mut GuestNic) -> u64 {
        let level = nic.mmio.irq_level();
        self.drive_spi(net.spi, &mut nic.line, level)
    }

    /// The network line of the VM's statistics, if it has a device.
    pub(super) fn net_stats_line(&self) -> Option<alloc::string::String> {
        let net = self.net.as_ref()?;
        let (c, mac) = {
            let nic = net.nic.lock();
            (nic.mmio.device().counters(), nic.mmio.device().mac())
        };
        let s = &net.stats;
        Some(alloc::format!(
            "stats: vm {}: net {}: sent {} frames ({} bytes), received {} frames ({} bytes), \
             dropped {} (malformed {}, no destination {}, receiver full {}), spoofed {}, copies {}, remaps 0",
            self.name,
            MacFmt(mac),
            s.forwarded.load(Relaxed),
            s.forwarded_bytes.load(Relaxed),
            c.rx_frames,
            c.rx_bytes,
            c.tx_malformed + s.unknown.load(Relaxed) + c.rx_dropped,
            c.tx_malformed,
            s.unknown.load(Relaxed),
            c.rx_dropped,
            s.spoofed.load(Relaxed),
            s.copies.load(Relaxed),
        ))
    }
}

fn describe(why: Malformed) -> alloc::string::String {
    match why {
        Malformed::WritableTx => "a transmit chain with device-writable buffers".into(),
        Malformed::Short(n) => alloc::format!("a frame or receive buffer of {n} bytes, too short"),
        Malformed::Long(n) => alloc::format!("a transmit chain of {n} bytes, longer than a frame"),
        Malformed::Offload { flags, gso_type } => {
            alloc::format!("a frame asking for an offload not offered (flags {flags:#x}, gso_type {gso_type})")
        }
        Malformed::ReadableRx => "a receive buffer with device-readable parts".into(),
    }
}

impl Port for Vm {
    fn port_name(&self) -> &str {
        &self.name
    }

    fn port_stats(&self) -> &PortStats {
        // Only VMs with a device are attached.
        static NONE: PortStats = PortStats::new();
        self.net.as_ref().map_or(&NONE, |n| &n.stats)
    }

    fn deliver(&self, frame: Vec<u8>) -> u64 {
        let Some(net) = self.net.as_ref() else { return 0 };
        if self.ending() {
            return 0;
        }
        let mut nic = net.nic.lock();
        if !nic.mmio.device_mut().push_rx(frame) {
            return 0;
        }
        self.net_process(&mut nic, RX_QUEUE);
        self.net_line(net, &mut nic)
    }
}
