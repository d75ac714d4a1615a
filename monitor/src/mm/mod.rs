//! Machine memory and guest memory: the per-node frame allocators
//! (`frames`), each VM's guest-physical space (`space`: stage 2 and pmap),
//! the faults that fill and change it (`fault`), the per-page access
//! counters (`counters`), devices' view of guest RAM (`guest`), the
//! placement loop that migrates and replicates pages (`placement`,
//! `replica`), what VMs share: boot images (`boot_image`, `merge`), disk
//! blocks (`block_cache`), mapped copy-on-write (`cow`), and the census of
//! it (`census`), and pages the guest gives back (`discard`). Nothing here
//! knows the scheduler or the VM registry: callers pass the space and the
//! node.

pub mod block_cache;
pub mod boot_image;
pub mod census;
pub mod code;
pub mod counters;
mod cow;
mod discard;
pub mod fault;
pub mod frames;
pub mod guest;
pub mod merge;
pub mod placement;
pub mod replica;
pub mod space;

pub use space::VmSpace;
