//! Copy-on-write disks: shared base images, per-VM overlays and the global
//! block cache (to come: see the issues), and the physical disk's header
//! ([`header`]), which `cargo xtask disk` writes and the monitor reads, and
//! persistent disks ([`persistent`]): one image as one VM's disk.
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod header;
pub mod persistent;

pub use header::{DiskHeader, HeaderError, ImageEntry, ImageKind, ImageName};
pub use persistent::Extent;
