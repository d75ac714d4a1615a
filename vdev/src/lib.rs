//! Virtual devices as MMIO state machines (see DESIGN.md).
#![no_std]
extern crate alloc;
