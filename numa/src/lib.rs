//! NUMA topology and machine-frame management for the monitor (see DESIGN.md).
//!
//! Everything here is plain data and arithmetic over physical addresses: no
//! EL2, no MMIO, no unsafe. The monitor feeds in the host device tree and
//! gets back a [`Topology`], builds one [`FrameAllocator`] per node from it,
//! and prints [`Hardware`] the way `numactl --hardware` would.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod bitmap;
pub mod census;
pub mod code_table;
pub mod counters;
mod dtb_check;
mod error;
mod fdt_parse;
mod frame;
pub mod memmap;
mod numactl;
pub mod park;
pub mod placement;
pub mod pmap;
pub mod policy;
mod range;
pub mod replica_protocol;
pub mod ring;
mod sync;
pub mod tlb_sync;
mod topology;

pub use dtb_check::check as check_dtb;
pub use error::TopologyError;
pub use frame::{FrameAllocator, FrameError};
pub use numactl::Hardware;
pub use range::MemRange;
pub use topology::{Cpu, Node, NodeId, Topology, LOCAL_DISTANCE, MAX_NODES, REMOTE_DISTANCE};

/// Size of a machine frame, the unit every allocator and mapping works in.
pub const FRAME_SIZE: u64 = 4096;
