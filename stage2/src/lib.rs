//! Arm VMSAv8-64 stage-2 translation tables, as data: the descriptor
//! format ([`pte`]) and one walker ([`walk`]) that every operation on a
//! VM's guest-physical space is a callback of (mapping, translation,
//! permission changes, teardown, migration, sampling), as KVM's
//! `kvm_pgtable_walk` is.
//!
//! The crate touches no hardware: tables are reached through
//! [`TableMemory`], which the monitor implements over machine memory and
//! the tests over a `Vec`. TLB maintenance and break-before-make ordering
//! are the caller's (the monitor's `arch::stage2`): the walker only tells
//! it which entries changed from valid to something else.
//!
//! Layout: 4 KiB granule, 39-bit IPA space, walks start at level 1
//! (VTCR_EL2.T0SZ = 25, SL0 = 1), so a root table has 512 entries of
//! 1 GiB each.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod pte;
pub mod walk;

pub use pte::{Perm, Pte};
pub use walk::{walk, Action, Flags, TableMemory, Visit, WalkError};

/// Size of a page (and of a table).
pub const PAGE_SIZE: u64 = 4096;
/// Entries per table.
pub const ENTRIES: usize = 512;
/// Size of the guest-physical address space (39 bits).
pub const IPA_LIMIT: u64 = 1 << 39;
/// The level walks start at.
pub const START_LEVEL: u32 = 1;
/// The level of page (4 KiB) descriptors.
pub const LEAF_LEVEL: u32 = 3;

/// Bytes one entry at `level` maps (1 GiB, 2 MiB, 4 KiB).
pub const fn level_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

/// Index of `ipa` in a table at `level`.
pub const fn index(ipa: u64, level: u32) -> usize {
    ((ipa >> (12 + 9 * (3 - level))) & 511) as usize
}
