//! A VM's virtio-balloon device (`bus::Device::Balloon`, with `balloon =
//! true` in the manifest): the guest's free page reporting names free
//! ranges, and the monitor unmaps them and gives their frames back to
//! their nodes (`mm::VmSpace::discard`, through the device's guest memory,
//! `mm::guest::GuestRam`); the guest's next touch of such a
//! page gets a fresh zeroed frame. Requests run synchronously on the
//! notifying vCPU, under the device's own lock (then the space's, per
//! range), and a range is unmapped before its chain goes back to the
//! guest, which may reuse the pages from then on.

use super::{bus, Vm};
use crate::{arch::esr::DataAbort, arch::stage2::PAGE_SIZE};
use spin::Mutex;
use vdev::{
    mmio::MmioError,
    virtio::{balloon::VirtioBalloon, transport::VirtioMmio},
};

/// The device and the level last given to the vGIC.
pub struct GuestBalloon {
    pub mmio: VirtioMmio<VirtioBalloon>,
    pub line: bool,
}

impl GuestBalloon {
    pub fn new() -> Mutex<Self> {
        Mutex::new(Self { mmio: VirtioMmio::new(VirtioBalloon::new()), line: false })
    }
}

impl Vm {
    /// An access to the balloon's registers; a QueueNotify runs the
    /// requests now. Returns the value read and the vCPUs to kick.
    pub(super) fn balloon_access(
        &self,
        spi: u32,
        offset: u64,
        access: DataAbort,
        value: u64,
    ) -> Result<(Option<u64>, u64), MmioError> {
        let balloon = self.balloon.as_ref().ok_or(MmioError::Unmapped)?;
        let mut balloon = balloon.lock();
        let GuestBalloon { mmio, line } = &mut *balloon;
        let had_failed = mmio.needs_reset();
        let read = bus::perform(mmio, offset, access, value)?;
        if access.write {
            mmio.process_notified(&mut self.ram(), &mut ());
            if !had_failed && mmio.needs_reset() {
                let why = mmio.last_error().map(|e| alloc::format!("{e}")).unwrap_or_default();
                log::warn!("vm {}: balloon: malformed queue ({why}): device needs reset", self.name);
            }
        }
        Ok((read, self.drive_spi(spi, line, mmio.irq_level())))
    }

    /// Sets the balloon target to `pages` (4 KiB) and tells the driver
    /// (a configuration change interrupt). Returns the vCPUs to kick;
    /// None: the VM has no balloon.
    pub fn set_balloon_target(&self, pages: u32) -> Option<u64> {
        let balloon = self.balloon.as_ref()?;
        let mut balloon = balloon.lock();
        let GuestBalloon { mmio, line } = &mut *balloon;
        mmio.device_mut().set_target(pages);
        mmio.config_changed();
        Some(self.drive_spi(bus::balloon_spi(), line, mmio.irq_level()))
    }

    /// The statistics line of its balloon, if it has one.
    pub(super) fn balloon_stats_line(&self) -> Option<alloc::string::String> {
        let (s, target, actual) = {
            let b = self.balloon.as_ref()?.lock();
            let d = b.mmio.device();
            (d.stats(), d.target(), d.actual())
        };
        Some(alloc::format!(
            "stats: vm {}: balloon: target {target} pages, actual {actual}; free page reports {}, pages reported {}, \
             inflated {}, deflated {}; frames given back {} ({} KiB), unaligned bytes {}",
            self.name,
            s.reports,
            s.reported_pages,
            s.inflated_pages,
            s.deflated_pages,
            s.freed_pages,
            s.freed_pages * PAGE_SIZE / 1024,
            s.unaligned
        ))
    }
}
