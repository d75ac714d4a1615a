//! A guest's virtio-blk storage: one image of the physical disk
//! ([`super::disk`]), as a `vdev` block backend. The guest's sector 0 is
//! the image's first sector; `cow_disk::Extent` refuses any range that is
//! not entirely inside the image (the device model already answers IOERR
//! past the capacity it advertises; this is the second fence, so that no
//! guest request can reach the header or another VM's image).

use super::disk::{self, Disk};
use alloc::{format, string::String};
use cow_disk::{Extent, ImageKind};
use vdev::virtio::blk::{BlockBackend, IoError};

/// One guest disk's view of the physical disk.
pub struct ImageDisk {
    disk: &'static Disk,
    extent: Extent,
}

impl ImageDisk {
    /// The image called `name` on the physical disk: a persistent image,
    /// or (`read_only`) a base image. Copy-on-write overlays on base images
    /// come with the sharing issue; until then a base image is given only
    /// read-only (the device model then refuses every write).
    pub fn open(name: &str, read_only: bool) -> Result<Self, String> {
        let disk = disk::get().ok_or_else(|| format!("disk image `{name}`: the machine has no disk attached"))?;
        let entry = disk.header.find(name).ok_or_else(|| format!("disk image `{name}` is not on the physical disk"))?;
        if entry.kind != ImageKind::Persistent && !(entry.kind == ImageKind::Base && read_only) {
            return Err(format!(
                "disk image `{name}` is a {} image; a VM gets a persistent image, or a base image read-only",
                entry.kind
            ));
        }
        Ok(Self { disk, extent: Extent::of(entry) })
    }

    /// The disk's capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.extent.sectors()
    }

    fn map(&self, sector: u64, bytes: usize) -> Result<u64, IoError> {
        self.extent.map(sector, bytes as u64).ok_or_else(|| {
            log::warn!("disk: guest request of {bytes} bytes at sector {sector} is outside its image");
            IoError
        })
    }
}

impl BlockBackend for ImageDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let at = self.map(sector, buf.len())?;
        self.disk.read(at, buf).map_err(|_| IoError)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let at = self.map(sector, data.len())?;
        self.disk.write(at, data).map_err(|_| IoError)
    }

    /// Reaches the physical disk (its own FLUSH) before the guest's
    /// request completes.
    fn flush(&mut self) -> Result<(), IoError> {
        self.disk.flush().map_err(|_| IoError)
    }

    fn sectors(&self) -> u64 {
        self.extent.sectors()
    }
}
