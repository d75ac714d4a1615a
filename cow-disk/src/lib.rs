//! Copy-on-write disks: shared base images under per-VM overlays
//! ([`overlay`]; the global block cache is still to come, see issue 14),
//! the physical disk's header ([`header`]), which `cargo xtask disk`
//! writes and the monitor reads, and persistent disks ([`persistent`]):
//! one image as one VM's disk.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod header;
pub mod overlay;
pub mod persistent;

pub use header::{DiskHeader, HeaderError, ImageEntry, ImageKind, ImageName};
pub use overlay::{BaseImage, BlockStore, Overlay, OverlayError};
pub use persistent::Extent;
