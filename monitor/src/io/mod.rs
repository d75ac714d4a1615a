//! The monitor's I/O: the machine console, multiplexed between the monitor
//! and every VM; the physical disk (`disk`) and the guest disks carved
//! from it (`blk`, with copy-on-write overlays in frames: `cow`); the
//! Ethernet switch between VMs (`net`).

pub mod blk;
pub mod console;
mod cow;
pub mod disk;
pub mod net;
