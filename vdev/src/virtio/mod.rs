//! Virtio devices for guests (virtio 1.2): the virtio-mmio transport
//! ([`transport::VirtioMmio`]), split virtqueues ([`queue::SplitQueue`]) and
//! device models ([`blk::VirtioBlk`], [`net::VirtioNet`],
//! [`balloon::VirtioBalloon`]), and the
//! forwarding decision of the switch between VMs' network devices
//! ([`switch::route`]).
//!
//! Nothing here touches guest memory by itself or runs on its own: a guest
//! MMIO access goes to [`transport::VirtioMmio`] through [`MmioDevice`]; a
//! queue notification is only recorded, and the monitor then calls
//! [`transport::VirtioMmio::process`] with the VM's [`GuestMemory`] and the
//! device's backend, and drives the interrupt line from
//! [`transport::VirtioMmio::irq_level`].
//!
//! [`MmioDevice`]: crate::mmio::MmioDevice

pub mod balloon;
pub mod blk;
pub mod net;
pub mod queue;
pub mod switch;
pub mod transport;

#[cfg(test)]
mod tests;

use crate::mem::GuestMemory;
use queue::{QueueError, SplitQueue};

/// Device IDs (5).
pub const VIRTIO_ID_NET: u32 = 1;
pub const VIRTIO_ID_BLOCK: u32 = 2;
pub const VIRTIO_ID_BALLOON: u32 = 5;

/// Reserved (device-independent) feature bits (6).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (2.1).
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 64;
pub const STATUS_FAILED: u32 = 128;

/// InterruptStatus bits (4.2.2).
pub const INT_VRING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// The device-specific half of a virtio device; the transport does the
/// rest (status, features, queue setup, notifications, interrupts).
pub trait VirtioDevice {
    /// What the device works on, handed to [`Self::process`] on each call
    /// (a block device's storage, a network switch port). `?Sized`, so it
    /// may be a trait object.
    type Backend: ?Sized;

    /// The virtio device ID (e.g. [`VIRTIO_ID_BLOCK`]).
    fn device_id(&self) -> u32;
    /// The device-specific feature bits it offers; the transport adds
    /// [`VIRTIO_F_VERSION_1`] and [`VIRTIO_F_INDIRECT_DESC`].
    fn features(&self) -> u64;
    /// How many virtqueues it has (at most 64).
    fn num_queues(&self) -> u16;
    /// The largest size of each queue (a power of two, at most 32768).
    fn queue_max(&self) -> u16;
    /// `size` bytes (1, 2, 4 or 8, naturally aligned) of the configuration
    /// space at `offset`, little-endian; bytes past its end read as 0.
    fn config_read(&self, offset: u64, size: u8) -> u64;
    /// A driver write to the configuration space (ignored by default).
    fn config_write(&mut self, _offset: u64, _size: u8, _value: u64) {}
    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, _features: u64) {}
    /// Handles what the driver made available on `queue`. Returns whether
    /// used buffers were added (the transport then interrupts unless the
    /// driver suppressed it). An error means the device needs a reset.
    /// Must do bounded work (at most the queue size chains per call).
    fn process(
        &mut self,
        queue: u16,
        q: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
        backend: &mut Self::Backend,
    ) -> Result<bool, QueueError>;
    /// The driver reset the device (Status written 0).
    fn reset(&mut self);
}

/// `size` bytes at `offset` of a configuration space laid out in `bytes`
/// (little-endian); bytes past its end read as 0.
pub fn config_bytes_read(bytes: &[u8], offset: u64, size: u8) -> u64 {
    let mut v = 0u64;
    for i in 0..u64::from(size.min(8)) {
        let b = offset.checked_add(i).and_then(|o| usize::try_from(o).ok()).and_then(|o| bytes.get(o));
        v |= u64::from(b.copied().unwrap_or(0)) << (8 * i);
    }
    v
}
