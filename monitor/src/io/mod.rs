//! The monitor's I/O: the machine console, multiplexed between the monitor
//! and every VM; the physical disk (`disk`) and the guest disks carved
//! from it (`blk`).

pub mod blk;
pub mod console;
pub mod disk;
