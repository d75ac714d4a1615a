//! NUMA topology and machine-frame management (see DESIGN.md).
#![no_std]
extern crate alloc;
pub mod counters;
