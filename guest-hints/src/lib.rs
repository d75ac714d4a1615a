//! The contract between guests and the monitor (see DESIGN.md).
#![no_std]
