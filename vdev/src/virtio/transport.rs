//! The virtio-mmio transport, version 2 ("modern", virtio 1.2 section
//! 4.2.2), as a state machine over a [`VirtioDevice`].
//!
//! Registers (offset: name):
//! `0x000` MagicValue "virt", `0x004` Version 2, `0x008` DeviceID,
//! `0x00c` VendorID, `0x010`/`0x014` DeviceFeatures/Sel,
//! `0x020`/`0x024` DriverFeatures/Sel, `0x030` QueueSel, `0x034`
//! QueueNumMax, `0x038` QueueNum, `0x044` QueueReady, `0x050` QueueNotify,
//! `0x060` InterruptStatus, `0x064` InterruptACK, `0x070` Status,
//! `0x080`/`0x084` QueueDescLow/High, `0x090`/`0x094` QueueDriverLow/High,
//! `0x0a0`/`0x0a4` QueueDeviceLow/High, `0x0ac` SHMSel, `0x0b0..0x0bc`
//! SHMLen/SHMBase (no shared memory regions: they read as all ones),
//! `0x0fc` ConfigGeneration, `0x100..0x200` the device's configuration
//! space.
//!
//! Registers below `0x100` take 32-bit aligned accesses only
//! ([`MmioError::BadWidth`] otherwise); other offsets below `0x100` read as
//! zero and ignore writes; the configuration space takes 1, 2, 4 or 8
//! bytes, naturally aligned; offsets from [`VIRTIO_MMIO_FRAME_SIZE`] on are
//! [`MmioError::Unmapped`].
//!
//! The status machine: bits are set in order (ACKNOWLEDGE, DRIVER,
//! FEATURES_OK, DRIVER_OK; a bit whose predecessor is missing is not set);
//! a write that clears a set bit is ignored, except writing 0, which resets
//! the device. FEATURES_OK is refused (stays clear) unless the driver
//! accepted [`VIRTIO_F_VERSION_1`] and nothing the device did not offer.
//! Driver features are writable only between DRIVER and FEATURES_OK;
//! queues are configurable only between FEATURES_OK and DRIVER_OK, while
//! not ready. QueueReady = 1 with a bad size or misaligned rings leaves the
//! queue not ready and sets NEEDS_RESET.
//!
//! A QueueNotify write (after DRIVER_OK, for a ready queue) only records
//! the queue ([`VirtioMmio::take_notified`]); [`VirtioMmio::process`] does
//! the work with guest memory passed in. A [`QueueError`] from the queue
//! or device sets NEEDS_RESET, raises the configuration-change interrupt
//! and logs one warning; the device then ignores its queues until reset.

use super::queue::{QueueError, SplitQueue};
use super::{
    VirtioDevice, INT_CONFIG, INT_VRING, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED,
    STATUS_FEATURES_OK, STATUS_NEEDS_RESET, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use crate::mem::GuestMemory;
use crate::mmio::{check_aligned, MmioDevice, MmioError};
use alloc::vec::Vec;

/// Size of a virtio-mmio device's register frame (as on QEMU's `virt`).
pub const VIRTIO_MMIO_FRAME_SIZE: u64 = 0x200;

/// "virt", little-endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern virtio-mmio layout.
pub const VERSION: u32 = 2;
/// The VendorID this transport reports ("DSCO", little-endian).
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"DSCO");

// Register offsets (4.2.2).
pub const MAGIC: u64 = 0x000;
pub const VERSION_REG: u64 = 0x004;
pub const DEVICE_ID: u64 = 0x008;
pub const VENDOR_ID_REG: u64 = 0x00c;
pub const DEVICE_FEATURES: u64 = 0x010;
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
pub const DRIVER_FEATURES: u64 = 0x020;
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
pub const QUEUE_SEL: u64 = 0x030;
pub const QUEUE_NUM_MAX: u64 = 0x034;
pub const QUEUE_NUM: u64 = 0x038;
pub const QUEUE_READY: u64 = 0x044;
pub const QUEUE_NOTIFY: u64 = 0x050;
pub const INTERRUPT_STATUS: u64 = 0x060;
pub const INTERRUPT_ACK: u64 = 0x064;
pub const STATUS: u64 = 0x070;
pub const QUEUE_DESC_LOW: u64 = 0x080;
pub const QUEUE_DESC_HIGH: u64 = 0x084;
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub const SHM_SEL: u64 = 0x0ac;
pub const SHM_LEN_LOW: u64 = 0x0b0;
pub const SHM_LEN_HIGH: u64 = 0x0b4;
pub const SHM_BASE_LOW: u64 = 0x0b8;
pub const SHM_BASE_HIGH: u64 = 0x0bc;
pub const CONFIG_GENERATION: u64 = 0x0fc;
pub const CONFIG: u64 = 0x100;

/// Queues a transport handles at most (the notification bitmap's width).
pub const MAX_QUEUES: u16 = 64;

/// Status bits the driver sets.
const DRIVER_BITS: u32 = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK | STATUS_FAILED;

/// One queue's registers as the driver programs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct QueueRegs {
    num: u32,
    desc: u64,
    driver: u64,
    device: u64,
    /// Set once the driver wrote QueueReady = 1 with a valid setup.
    active: Option<SplitQueue>,
}

/// A virtio-mmio device: the transport's registers around a [`VirtioDevice`].
#[derive(Debug, Clone)]
pub struct VirtioMmio<D: VirtioDevice> {
    device: D,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueRegs>,
    interrupt_status: u32,
    config_generation: u32,
    /// Queues notified and not yet taken, one bit each.
    notified: u64,
    last_error: Option<QueueError>,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// The device in its reset state.
    pub fn new(device: D) -> Self {
        let n = device.num_queues().min(MAX_QUEUES);
        Self {
            device,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: (0..n).map(|_| QueueRegs::default()).collect(),
            interrupt_status: 0,
            config_generation: 0,
            notified: 0,
            last_error: None,
        }
    }

    pub fn device(&self) -> &D {
        &self.device
    }
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The features offered: the device's plus the transport's.
    pub fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC
    }
    /// The features the driver accepted (final once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }
    /// The Status register.
    pub fn status(&self) -> u32 {
        self.status
    }
    /// Whether the device gave up (NEEDS_RESET) after a malformed queue.
    pub fn needs_reset(&self) -> bool {
        self.status & STATUS_NEEDS_RESET != 0
    }
    /// The error that set NEEDS_RESET, until the next reset.
    pub fn last_error(&self) -> Option<QueueError> {
        self.last_error
    }
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }
    /// The level of the device's interrupt line: InterruptStatus != 0.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }
    /// Queue `index` if the driver made it ready.
    pub fn queue(&self, index: u16) -> Option<&SplitQueue> {
        self.queues.get(usize::from(index)).and_then(|q| q.active.as_ref())
    }

    /// The lowest-numbered queue notified since it was last taken.
    pub fn take_notified(&mut self) -> Option<u16> {
        if self.notified == 0 {
            return None;
        }
        let q = self.notified.trailing_zeros() as u16;
        self.notified &= self.notified - 1;
        Some(q)
    }

    /// Lets the device handle queue `queue` with the VM's memory and the
    /// device's backend. Does nothing before DRIVER_OK, after NEEDS_RESET
    /// or for a queue that is not ready. Returns the interrupt level
    /// afterwards ([`Self::irq_level`]).
    pub fn process(&mut self, queue: u16, mem: &mut dyn GuestMemory, backend: &mut D::Backend) -> bool {
        if self.status & STATUS_DRIVER_OK == 0 || self.needs_reset() {
            return self.irq_level();
        }
        let Some(q) = self.queues.get_mut(usize::from(queue)).and_then(|q| q.active.as_mut()) else {
            return self.irq_level();
        };
        let result =
            self.device
                .process(queue, q, mem, backend)
                .and_then(|used| if used { q.needs_interrupt(mem) } else { Ok(false) });
        match result {
            Ok(true) => self.interrupt_status |= INT_VRING,
            Ok(false) => {}
            Err(e) => self.fail(queue, e),
        }
        self.irq_level()
    }

    /// [`Self::process`] for every notified queue; returns the interrupt
    /// level afterwards.
    pub fn process_notified(&mut self, mem: &mut dyn GuestMemory, backend: &mut D::Backend) -> bool {
        while let Some(q) = self.take_notified() {
            self.process(q, mem, backend);
        }
        self.irq_level()
    }

    /// The device's configuration changed (e.g. a resized disk): a new
    /// ConfigGeneration and the configuration-change interrupt.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & STATUS_DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG;
        }
    }

    fn fail(&mut self, queue: u16, e: QueueError) {
        log::warn!("virtio-mmio (device id {}): queue {queue}: {e}; device needs reset", self.device.device_id());
        self.last_error = Some(e);
        self.status |= STATUS_NEEDS_RESET;
        self.interrupt_status |= INT_CONFIG;
        self.notified = 0;
    }

    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            *q = QueueRegs::default();
        }
        self.interrupt_status = 0;
        self.notified = 0;
        self.last_error = None;
        self.device.reset();
    }

    fn features_acceptable(&self) -> bool {
        let f = self.driver_features;
        f & VIRTIO_F_VERSION_1 != 0 && f & !self.device_features() == 0
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let cur = self.status & DRIVER_BITS;
        let want = value & DRIVER_BITS;
        if cur & !want != 0 {
            log::debug!("virtio-mmio: status write {value:#x} clears bits of {cur:#x}; ignored");
            return;
        }
        let new = want & !cur;
        let mut s = cur;
        if new & STATUS_ACKNOWLEDGE != 0 {
            s |= STATUS_ACKNOWLEDGE;
        }
        if new & STATUS_DRIVER != 0 && s & STATUS_ACKNOWLEDGE != 0 {
            s |= STATUS_DRIVER;
        }
        if new & STATUS_FEATURES_OK != 0 && s & STATUS_DRIVER != 0 && self.features_acceptable() {
            s |= STATUS_FEATURES_OK;
        }
        let driver_ok = new & STATUS_DRIVER_OK != 0 && s & STATUS_FEATURES_OK != 0;
        if driver_ok {
            s |= STATUS_DRIVER_OK;
        }
        if new & STATUS_FAILED != 0 {
            s |= STATUS_FAILED;
        }
        self.status = s | (self.status & STATUS_NEEDS_RESET);
        if driver_ok {
            self.device.activate(self.driver_features);
        }
    }

    /// The selected queue, if it may be configured now.
    fn configurable_queue(&mut self) -> Option<&mut QueueRegs> {
        if self.status & STATUS_FEATURES_OK == 0 || self.status & STATUS_DRIVER_OK != 0 {
            return None;
        }
        let q = self.queues.get_mut(self.queue_sel as usize)?;
        q.active.is_none().then_some(q)
    }

    fn write_queue_ready(&mut self, value: u32) {
        if value & 1 == 0 {
            // Allowed any time: the device stops using the queue.
            if let Some(q) = self.queues.get_mut(self.queue_sel as usize) {
                q.active = None;
            }
            return;
        }
        let max = u32::from(self.device.queue_max());
        let indirect = self.driver_features & VIRTIO_F_INDIRECT_DESC != 0;
        let sel = self.queue_sel;
        let Some(q) = self.configurable_queue() else { return };
        let made = if q.num > max {
            Err(QueueError::BadSize(q.num))
        } else {
            SplitQueue::new(q.num, q.desc, q.driver, q.device)
        };
        match made {
            Ok(mut sq) => {
                sq.set_indirect(indirect);
                q.active = Some(sq);
            }
            Err(e) => self.fail(sel as u16, e),
        }
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let sel_queue = self.queues.get(self.queue_sel as usize);
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        match offset {
            MAGIC => MAGIC_VALUE,
            VERSION_REG => VERSION,
            DEVICE_ID => self.device.device_id(),
            VENDOR_ID_REG => VENDOR_ID,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => lo(self.device_features()),
                1 => hi(self.device_features()),
                _ => 0,
            },
            QUEUE_NUM_MAX => sel_queue.map_or(0, |_| u32::from(self.device.queue_max())),
            QUEUE_READY => sel_queue.map_or(0, |q| u32::from(q.active.is_some())),
            INTERRUPT_STATUS => self.interrupt_status,
            STATUS => self.status,
            QUEUE_DESC_LOW => sel_queue.map_or(0, |q| lo(q.desc)),
            QUEUE_DESC_HIGH => sel_queue.map_or(0, |q| hi(q.desc)),
            QUEUE_DRIVER_LOW => sel_queue.map_or(0, |q| lo(q.driver)),
            QUEUE_DRIVER_HIGH => sel_queue.map_or(0, |q| hi(q.driver)),
            QUEUE_DEVICE_LOW => sel_queue.map_or(0, |q| lo(q.device)),
            QUEUE_DEVICE_HIGH => sel_queue.map_or(0, |q| hi(q.device)),
            // No shared memory regions: length and base all ones.
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            CONFIG_GENERATION => self.config_generation,
            // Write-only and reserved registers.
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        let set_lo = |r: &mut u64| *r = (*r & !0xFFFF_FFFF) | u64::from(value);
        let set_hi = |r: &mut u64| *r = (*r & 0xFFFF_FFFF) | (u64::from(value) << 32);
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES => {
                let open = self.status & STATUS_DRIVER != 0 && self.status & STATUS_FEATURES_OK == 0;
                match (open, self.driver_features_sel) {
                    (true, 0) => set_lo(&mut self.driver_features),
                    (true, 1) => set_hi(&mut self.driver_features),
                    _ => log::debug!("virtio-mmio: DriverFeatures write ignored"),
                }
            }
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM => {
                if let Some(q) = self.configurable_queue() {
                    q.num = value;
                }
            }
            QUEUE_READY => self.write_queue_ready(value),
            QUEUE_NOTIFY => {
                let ready = value < u32::from(MAX_QUEUES) && self.queue(value as u16).is_some();
                if ready && self.status & STATUS_DRIVER_OK != 0 && !self.needs_reset() {
                    self.notified |= 1 << value;
                }
            }
            INTERRUPT_ACK => self.interrupt_status &= !value,
            STATUS => self.write_status(value),
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW
            | QUEUE_DEVICE_HIGH => {
                let Some(q) = self.configurable_queue() else { return };
                let reg = match offset & !4 {
                    QUEUE_DESC_LOW => &mut q.desc,
                    QUEUE_DRIVER_LOW => &mut q.driver,
                    _ => &mut q.device,
                };
                if offset & 4 == 0 {
                    set_lo(reg)
                } else {
                    set_hi(reg)
                }
            }
            // Read-only and reserved registers; SHMSel selects nothing.
            _ => {}
        }
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmio<D> {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if offset >= VIRTIO_MMIO_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        check_aligned(offset, size)?;
        if offset >= CONFIG {
            return Ok(self.device.config_read(offset - CONFIG, size));
        }
        if size != 4 {
            return Err(MmioError::BadWidth);
        }
        Ok(u64::from(self.read_reg(offset)))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        if offset >= VIRTIO_MMIO_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        check_aligned(offset, size)?;
        if offset >= CONFIG {
            self.device.config_write(offset - CONFIG, size, value & crate::mmio::size_mask(size));
            return Ok(());
        }
        if size != 4 {
            return Err(MmioError::BadWidth);
        }
        self.write_reg(offset, value as u32);
        Ok(())
    }
}
