//! Persistent disks: one image of the physical disk given whole to one VM
//! as its virtio-blk disk, read-write (or read-only), kept across runs.
//!
//! The guest addresses sectors from 0; [`Extent::map`] turns a request's
//! range into the physical disk's sectors and refuses any range that is
//! not entirely inside the image, so a guest can never reach the header or
//! another image whatever sector numbers it sends.

use crate::header::{ImageEntry, SECTOR_BYTES};

/// Where an image lies on the physical disk, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    first: u64,
    sectors: u64,
}

impl Extent {
    /// `sectors` sectors from physical sector `first`.
    pub fn new(first: u64, sectors: u64) -> Self {
        Self { first, sectors }
    }

    /// The extent of a (validated) header entry.
    pub fn of(entry: &ImageEntry) -> Self {
        Self::new(entry.first_sector(), entry.sectors())
    }

    /// The image's size in sectors (the guest disk's capacity).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The physical sector where image sector `sector` is, for a request of
    /// `bytes` bytes (a whole number of sectors); None when any byte of it
    /// is outside the image, or the arithmetic overflows.
    pub fn map(&self, sector: u64, bytes: u64) -> Option<u64> {
        if !bytes.is_multiple_of(SECTOR_BYTES) {
            return None;
        }
        let end = sector.checked_add(bytes / SECTOR_BYTES)?;
        if end > self.sectors {
            return None;
        }
        self.first.checked_add(sector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{DiskHeader, ImageKind, ImageName};

    #[test]
    fn maps_inside_the_image_only() {
        let e = Extent::new(2048, 100);
        assert_eq!(e.map(0, 512), Some(2048));
        assert_eq!(e.map(99, 512), Some(2147));
        assert_eq!(e.map(0, 100 * 512), Some(2048));
        // One sector past the end, a range crossing the end, far past it.
        assert_eq!(e.map(100, 512), None);
        assert_eq!(e.map(99, 1024), None);
        assert_eq!(e.map(u64::MAX, 512), None);
        assert_eq!(e.map(1, u64::MAX - 511), None);
        // Partial sectors are not requests the device passes on.
        assert_eq!(e.map(0, 100), None);
        assert_eq!(e.map(5, 0), Some(2053));
    }

    #[test]
    fn neighbouring_images_stay_apart() {
        let name = |n| ImageName::new(n).unwrap();
        let h = DiskHeader::layout(&[
            (name("a"), ImageKind::Persistent, 3 << 20),
            (name("b"), ImageKind::Persistent, 1 << 20),
        ])
        .unwrap();
        let (a, b) = (Extent::of(&h.images[0]), Extent::of(&h.images[1]));
        let last_a = a.map(a.sectors() - 1, 512).unwrap();
        assert!(last_a < b.map(0, 512).unwrap());
        assert_eq!(a.map(a.sectors(), 512), None);
        assert_eq!(last_a + 1, h.images[0].end() / 512);
    }
}
