//! A guest's virtio-blk storage: one image of the physical disk
//! ([`super::disk`]), as a `vdev` block backend, either given whole
//! (persistent, or a base image read-only) or under the VM's own
//! copy-on-write overlay (`mode = "cow"` over a base image; see
//! `cow_disk::overlay`), which the physical disk never sees: the base stays
//! unchanged whatever the VM writes, and the overlay goes when the VM ends.
//!
//! A VM that shares (a trust group) and reads whole, aligned pages of a
//! base image's blocks it has not written maps the machine-wide cached
//! copy of each (`mm::block_cache`) instead of keeping its own: the blocks
//! are gathered while the request runs ([`ImageDisk::take_cached`]) and
//! mapped once it is done, under the VM's space lock.
//!
//! The guest's sector 0 is the image's first sector; `cow_disk::Extent`
//! refuses any range that is not entirely inside the image (the device
//! model already answers IOERR past the capacity it advertises; this is
//! the second fence, so that no guest request can reach the header or
//! another VM's image).

use super::{
    cow::OverlayFrames,
    disk::{self, Disk},
};
use crate::mm::block_cache;
use alloc::{format, string::String, vec::Vec};
use cow_disk::{BaseImage, Extent, ImageKind, Overlay, OverlayError};
use numa::{memmap::Frame, NodeId};
use vdev::virtio::blk::{BlockBackend, IoError};

/// How a VM uses its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads and writes go to the image (a persistent image, or a base
    /// image given read-only).
    Direct { read_only: bool },
    /// Writes go to the VM's overlay over a base image.
    Cow,
}

/// One image of the physical disk.
struct Image {
    disk: &'static Disk,
    extent: Extent,
    /// Its index in the disk's header (its block cache id).
    index: u16,
    base: bool,
}

impl Image {
    fn map(&self, sector: u64, bytes: usize) -> Result<u64, IoError> {
        self.extent.map(sector, bytes as u64).ok_or_else(|| {
            log::warn!("disk: guest request of {bytes} bytes at sector {sector} is outside its image");
            IoError
        })
    }
}

impl BaseImage for Image {
    type Error = IoError;
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let at = self.map(sector, buf.len())?;
        self.disk.read(at, buf).map_err(|_| IoError)
    }
}

/// One guest disk's view of the physical disk.
pub struct ImageDisk {
    image: Image,
    overlay: Option<Overlay<OverlayFrames>>,
    /// The VM's trust group (None: it shares nothing) and node.
    group: Option<&'static str>,
    node: NodeId,
    /// Cached blocks for the pages the current request filled, as (guest
    /// address, frame reference).
    cached: Vec<(u64, Frame)>,
}

impl ImageDisk {
    /// The image called `name` on the physical disk, used as `mode` says,
    /// by VM `vm` (memmap owner id) whose overlay and cached blocks come
    /// from `node`, sharing cached blocks with trust group `group`.
    pub fn open(
        name: &str,
        mode: Mode,
        (vm, node): (u16, NodeId),
        group: Option<&'static str>,
    ) -> Result<Self, String> {
        let disk = disk::get().ok_or_else(|| format!("disk image `{name}`: the machine has no disk attached"))?;
        let (index, entry) = disk
            .header
            .images
            .iter()
            .enumerate()
            .find(|(_, e)| e.name.as_str() == name)
            .ok_or_else(|| format!("disk image `{name}` is not on the physical disk"))?;
        let fits = match mode {
            Mode::Direct { read_only } => {
                entry.kind == ImageKind::Persistent || (entry.kind == ImageKind::Base && read_only)
            }
            Mode::Cow => entry.kind == ImageKind::Base,
        };
        if !fits {
            return Err(format!(
                "disk image `{name}` is a {} image; a VM gets a persistent image, or a base image read-only \
                 or copy-on-write",
                entry.kind
            ));
        }
        let image = Image { disk, extent: Extent::of(entry), index: index as u16, base: entry.kind == ImageKind::Base };
        let overlay = (mode == Mode::Cow).then(|| Overlay::new(OverlayFrames { vm, node }, image.extent.sectors()));
        Ok(Self { image, overlay, group, node, cached: Vec::new() })
    }

    /// The disk's capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.image.extent.sectors()
    }

    /// Blocks the VM wrote to its copy-on-write overlay (0 without one).
    pub fn overlay_blocks(&self) -> usize {
        self.overlay.as_ref().map_or(0, |o| o.blocks())
    }

    /// The cached blocks gathered for the request just run, to map.
    pub fn take_cached(&mut self) -> Vec<(u64, Frame)> {
        core::mem::take(&mut self.cached)
    }

    /// Frees the overlay (the VM ended): copy-on-write writes are not kept.
    pub fn discard(self) {
        if let Some(overlay) = self.overlay {
            overlay.discard();
        }
        for (_, frame) in self.cached {
            crate::mm::frames::free(frame, self.node);
        }
    }
}

fn io_error(e: OverlayError<IoError>) -> IoError {
    if e == OverlayError::OutOfRange {
        log::warn!("disk: guest request outside its copy-on-write disk");
    }
    IoError
}

impl BlockBackend for ImageDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        match &self.overlay {
            Some(o) => o.read(&mut self.image, sector, buf).map_err(io_error),
            None => self.image.read(sector, buf),
        }
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        match &mut self.overlay {
            Some(o) => o.write(&mut self.image, sector, data).map_err(io_error),
            None => {
                let at = self.image.map(sector, data.len())?;
                self.image.disk.write(at, data).map_err(|_| IoError)
            }
        }
    }

    /// Reaches the physical disk (its own FLUSH) before the guest's
    /// request completes; an overlay lives in memory and needs nothing.
    fn flush(&mut self) -> Result<(), IoError> {
        match self.overlay {
            Some(_) => Ok(()),
            None => self.image.disk.flush().map_err(|_| IoError),
        }
    }

    fn sectors(&self) -> u64 {
        self.image.extent.sectors()
    }

    /// A block of a base image this VM has not written goes to (or comes
    /// from) the block cache of its trust group.
    fn filled(&mut self, sector: u64, gpa: u64, data: &[u8]) {
        let Some(group) = self.group.filter(|_| self.image.base) else { return };
        let block = sector * cow_disk::header::SECTOR_BYTES / cow_disk::overlay::BLOCK_BYTES as u64;
        if self.overlay.as_ref().is_some_and(|o| o.has_block(block)) {
            return;
        }
        if let Some(frame) = block_cache::get_or_insert(group, self.image.index, block, data, self.node) {
            self.cached.push((gpa, frame));
        }
    }
}
