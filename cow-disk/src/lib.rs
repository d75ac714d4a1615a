//! Copy-on-write disks: shared base images, per-VM overlays and the global
//! block cache. Nothing here yet: the virtio-blk issue fills it.
#![no_std]
