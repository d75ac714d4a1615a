//! Machine memory and guest memory: the per-node frame allocators
//! (`frames`), each VM's guest-physical space (`space`: stage 2 and pmap),
//! the faults that fill and change it (`fault`), the per-page access
//! counters (`counters`), devices' view of guest RAM (`guest`) and the placement loop that migrates pages to the
//! nodes that use them (`placement`, `mover`). Nothing here knows the
//! scheduler or the VM registry: callers pass the space and the node.

pub mod boot_image;
pub mod code;
pub mod counters;
pub mod fault;
pub mod frames;
pub mod guest;
pub mod merge;
pub mod placement;
pub mod replica;
pub mod space;

pub use space::VmSpace;
