//! The monitor's I/O: the machine console, multiplexed between the monitor
//! and every VM.

pub mod console;
