//! The physical disk's header: a table of named images.
//!
//! One raw disk file (attached to QEMU as a virtio block device) holds
//! every image of a run: base images (read-only, shared by VMs) and
//! persistent disks (one VM's, read-write, kept across runs). `cargo xtask
//! disk` builds, lists and inspects such files; the monitor reads the
//! header from sector 0 of the physical disk and gives VMs the images
//! their manifest names.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! 0x000  header, HEADER_BYTES (4096) long
//!   0x00  magic       [u8; 8]   "DISCODSK"
//!   0x08  version     u32       1
//!   0x0c  count       u32       image entries, at most MAX_IMAGES (63)
//!   0x10  crc32       u32       CRC-32 (IEEE 802.3, as zlib) of the 4096
//!                               header bytes with this field zero
//!   0x14  reserved    u32       0
//!   0x18  disk_bytes  u64       size of the disk; every image ends inside
//!   0x20  reserved    [u8; 32]  0
//!   0x40  entries     count x 64 bytes:
//!     +0x00  name      [u8; 32]  1 to 32 bytes of [A-Za-z0-9._-], NUL-padded
//!     +0x20  kind      u32       1 = base, 2 = persistent
//!     +0x24  flags     u32       0 (no flags defined)
//!     +0x28  offset    u64       byte offset of the image on the disk: a
//!                                multiple of 4096, not inside the header
//!     +0x30  size      u64       bytes, a positive multiple of 512
//!     +0x38  reserved  u64       0
//!   the rest of the header is 0
//! images at their offsets; `DiskHeader::layout` (and so `cargo xtask disk
//! create`) puts each at a 1 MiB boundary, the first at 1 MiB
//! ```
//!
//! Images do not overlap each other or the header, and names are unique.
//! [`DiskHeader::decode`] checks all of this (the disk is external input:
//! malformed bytes are a [`HeaderError`], never a panic) and
//! [`DiskHeader::encode`] refuses to write a header that would not decode.

use alloc::vec::Vec;
use core::fmt;

pub const MAGIC: [u8; 8] = *b"DISCODSK";
pub const VERSION: u32 = 1;
/// Bytes of the header at offset 0.
pub const HEADER_BYTES: usize = 4096;
/// Bytes before the first entry.
pub const PREAMBLE_BYTES: usize = 64;
/// Bytes of one image entry.
pub const ENTRY_BYTES: usize = 64;
/// Entries that fit in the header.
pub const MAX_IMAGES: usize = (HEADER_BYTES - PREAMBLE_BYTES) / ENTRY_BYTES;
/// Longest image name.
pub const NAME_BYTES: usize = 32;
/// Required alignment of an image's offset.
pub const IMAGE_ALIGN: u64 = 4096;
/// Where [`DiskHeader::layout`] puts images.
pub const LAYOUT_ALIGN: u64 = 1 << 20;
/// Image sizes are whole sectors.
pub const SECTOR_BYTES: u64 = 512;

const CRC_OFFSET: usize = 0x10;

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Read-only, shared between VMs (copy-on-write overlays come later).
    Base,
    /// One VM's disk, read-write, kept across runs.
    Persistent,
}

impl ImageKind {
    pub fn code(self) -> u32 {
        match self {
            ImageKind::Base => 1,
            ImageKind::Persistent => 2,
        }
    }
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(ImageKind::Base),
            2 => Some(ImageKind::Persistent),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Base => "base",
            ImageKind::Persistent => "persistent",
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An image name: 1 to [`NAME_BYTES`] bytes of `[A-Za-z0-9._-]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageName {
    bytes: [u8; NAME_BYTES],
    len: u8,
}

impl ImageName {
    pub fn new(name: &str) -> Result<Self, HeaderError> {
        Self::from_bytes(name.as_bytes()).ok_or(HeaderError::BadName(None))
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
        if b.is_empty() || b.len() > NAME_BYTES || !b.iter().all(ok) {
            return None;
        }
        let mut bytes = [0; NAME_BYTES];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self { bytes, len: b.len() as u8 })
    }

    /// The 32-byte field: the name, NUL-padded.
    fn decode(field: &[u8]) -> Option<Self> {
        let len = field.iter().position(|&c| c == 0).unwrap_or(field.len());
        if field[len..].iter().any(|&c| c != 0) {
            return None;
        }
        Self::from_bytes(&field[..len])
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEntry {
    pub name: ImageName,
    pub kind: ImageKind,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

impl ImageEntry {
    /// The image's first sector on the disk.
    pub fn first_sector(&self) -> u64 {
        self.offset / SECTOR_BYTES
    }
    /// The image's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR_BYTES
    }
    /// One past the image's last byte (checked not to overflow by
    /// [`DiskHeader::validate`]).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }
}

/// Why a header is not valid. Entry indices count from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_BYTES`] bytes.
    TooShort(usize),
    BadMagic,
    UnsupportedVersion(u32),
    TooManyImages(u32),
    /// The CRC field does not match the header's contents.
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// An entry's name is empty, too long, has a byte outside
    /// `[A-Za-z0-9._-]` or is not NUL-padded (`None`: a name being built).
    BadName(Option<usize>),
    BadKind {
        entry: usize,
        kind: u32,
    },
    UnknownFlags {
        entry: usize,
        flags: u32,
    },
    /// Offset not a multiple of [`IMAGE_ALIGN`], or inside the header.
    BadOffset {
        entry: usize,
        offset: u64,
    },
    /// Size zero or not a multiple of [`SECTOR_BYTES`].
    BadSize {
        entry: usize,
        size: u64,
    },
    /// The image ends past `disk_bytes` (or past `u64::MAX`).
    OutsideDisk {
        entry: usize,
    },
    Overlap {
        first: usize,
        second: usize,
    },
    DuplicateName {
        first: usize,
        second: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::TooShort(n) => write!(f, "{n} bytes is shorter than the {HEADER_BYTES}-byte header"),
            HeaderError::BadMagic => write!(f, "no DISCODSK magic: not a disk file"),
            HeaderError::UnsupportedVersion(v) => write!(f, "header version {v} (this build reads {VERSION})"),
            HeaderError::TooManyImages(n) => write!(f, "{n} images (at most {MAX_IMAGES})"),
            HeaderError::BadChecksum { stored, computed } => {
                write!(f, "header checksum {stored:#010x} does not match its contents ({computed:#010x})")
            }
            HeaderError::BadName(None) => {
                write!(f, "image names are 1 to {NAME_BYTES} characters of A-Z a-z 0-9 . _ -")
            }
            HeaderError::BadName(Some(i)) => write!(f, "image {i}: bad name"),
            HeaderError::BadKind { entry, kind } => write!(f, "image {entry}: unknown kind {kind}"),
            HeaderError::UnknownFlags { entry, flags } => write!(f, "image {entry}: unknown flags {flags:#x}"),
            HeaderError::BadOffset { entry, offset } => write!(
                f,
                "image {entry}: offset {offset:#x} is not a multiple of {IMAGE_ALIGN} after the {HEADER_BYTES}-byte header"
            ),
            HeaderError::BadSize { entry, size } => {
                write!(f, "image {entry}: size {size} is not a positive multiple of {SECTOR_BYTES}")
            }
            HeaderError::OutsideDisk { entry } => write!(f, "image {entry} ends past the end of the disk"),
            HeaderError::Overlap { first, second } => write!(f, "images {first} and {second} overlap"),
            HeaderError::DuplicateName { first, second } => write!(f, "images {first} and {second} have the same name"),
        }
    }
}

/// The decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskHeader {
    /// Size of the disk in bytes.
    pub disk_bytes: u64,
    pub images: Vec<ImageEntry>,
}

impl DiskHeader {
    /// Places `images` (name, kind, size in bytes) one after the other at
    /// [`LAYOUT_ALIGN`] boundaries from 1 MiB on; the disk ends at the
    /// next boundary after the last image.
    pub fn layout(images: &[(ImageName, ImageKind, u64)]) -> Result<Self, HeaderError> {
        let mut at = LAYOUT_ALIGN;
        let mut entries = Vec::with_capacity(images.len());
        for (entry, &(name, kind, size)) in images.iter().enumerate() {
            let end = at.checked_add(size).ok_or(HeaderError::OutsideDisk { entry })?;
            entries.push(ImageEntry { name, kind, offset: at, size });
            at = end.checked_next_multiple_of(LAYOUT_ALIGN).ok_or(HeaderError::OutsideDisk { entry })?;
        }
        let header = Self { disk_bytes: at, images: entries };
        header.validate()?;
        Ok(header)
    }

    /// The image called `name`.
    pub fn find(&self, name: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|e| e.name.as_str() == name)
    }

    /// Checks everything [`Self::decode`] checks, except the encoding.
    pub fn validate(&self) -> Result<(), HeaderError> {
        if self.images.len() > MAX_IMAGES {
            return Err(HeaderError::TooManyImages(self.images.len() as u32));
        }
        for (entry, e) in self.images.iter().enumerate() {
            if !e.offset.is_multiple_of(IMAGE_ALIGN) || e.offset < HEADER_BYTES as u64 {
                return Err(HeaderError::BadOffset { entry, offset: e.offset });
            }
            if e.size == 0 || !e.size.is_multiple_of(SECTOR_BYTES) {
                return Err(HeaderError::BadSize { entry, size: e.size });
            }
            if e.offset.checked_add(e.size).is_none_or(|end| end > self.disk_bytes) {
                return Err(HeaderError::OutsideDisk { entry });
            }
        }
        for (second, b) in self.images.iter().enumerate() {
            for (first, a) in self.images[..second].iter().enumerate() {
                if a.name == b.name {
                    return Err(HeaderError::DuplicateName { first, second });
                }
                if a.offset < b.end() && b.offset < a.end() {
                    return Err(HeaderError::Overlap { first, second });
                }
            }
        }
        Ok(())
    }

    /// The header's [`HEADER_BYTES`] bytes.
    pub fn encode(&self) -> Result<[u8; HEADER_BYTES], HeaderError> {
        self.validate()?;
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(self.images.len() as u32).to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.disk_bytes.to_le_bytes());
        for (i, e) in self.images.iter().enumerate() {
            let at = PREAMBLE_BYTES + i * ENTRY_BYTES;
            let entry = &mut b[at..at + ENTRY_BYTES];
            entry[..NAME_BYTES].copy_from_slice(&e.name.bytes);
            entry[0x20..0x24].copy_from_slice(&e.kind.code().to_le_bytes());
            entry[0x28..0x30].copy_from_slice(&e.offset.to_le_bytes());
            entry[0x30..0x38].copy_from_slice(&e.size.to_le_bytes());
        }
        let crc = crc32(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Decodes and checks the header at the start of `bytes` (at least
    /// [`HEADER_BYTES`]; more is ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let Some(b) = bytes.get(..HEADER_BYTES) else {
            return Err(HeaderError::TooShort(bytes.len()));
        };
        if b[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = le32(b, 8);
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let stored = le32(b, CRC_OFFSET);
        let computed = header_crc(b);
        if stored != computed {
            return Err(HeaderError::BadChecksum { stored, computed });
        }
        let count = le32(b, 12);
        if count as usize > MAX_IMAGES {
            return Err(HeaderError::TooManyImages(count));
        }
        let mut images = Vec::with_capacity(count as usize);
        for entry in 0..count as usize {
            let at = PREAMBLE_BYTES + entry * ENTRY_BYTES;
            let e = &b[at..at + ENTRY_BYTES];
            let name = ImageName::decode(&e[..NAME_BYTES]).ok_or(HeaderError::BadName(Some(entry)))?;
            let code = le32(e, 0x20);
            let kind = ImageKind::from_code(code).ok_or(HeaderError::BadKind { entry, kind: code })?;
            let flags = le32(e, 0x24);
            if flags != 0 {
                return Err(HeaderError::UnknownFlags { entry, flags });
            }
            images.push(ImageEntry { name, kind, offset: le64(e, 0x28), size: le64(e, 0x30) });
        }
        let header = Self { disk_bytes: le64(b, 0x18), images };
        header.validate()?;
        Ok(header)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// The CRC of a header with its CRC field taken as zero.
fn header_crc(b: &[u8]) -> u32 {
    let mut copy = [0u8; HEADER_BYTES];
    copy.copy_from_slice(&b[..HEADER_BYTES]);
    copy[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
    crc32(&copy)
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
