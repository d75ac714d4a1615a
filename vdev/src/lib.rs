//! Virtual devices as MMIO state machines, and the guest device tree (see
//! DESIGN.md).
//!
//! Devices never call out: the monitor feeds them guest accesses and
//! external events, and reads back their outputs (interrupt levels,
//! transmitted bytes, interrupts to inject). Guest-controlled input never
//! panics: malformed accesses return an [`MmioError`].
#![no_std]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod fdt;
pub mod mem;
pub mod mmio;
pub mod pl011;
pub mod psci;
pub mod vgic;
pub mod virtio;

pub use fdt::{build_guest_fdt, GuestFdtConfig, VirtioMmioNode};
pub use mmio::{MmioDevice, MmioError};
pub use pl011::Pl011;
pub use vgic::{VGic, Virq, GICR_FRAME_SIZE};
