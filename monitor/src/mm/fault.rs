//! Stage-2 faults on guest RAM.

use super::VmSpace;
use crate::arch::exit::Fault;
use alloc::{format, string::String};
use numa::NodeId;
use spin::Mutex;

/// How a fault was resolved; the guest retries its access in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The page was backed by a new frame from the faulting CPU's node.
    FirstTouch,
    /// The page was unmapped to sample who touches it; now counted and
    /// mapped again.
    Sampled,
    /// Nothing to do: another CPU mapped or changed the page meanwhile.
    Retry,
}

/// Resolves a fault at `ipa` (guest RAM) taken on a CPU of `node`. An
/// error ends the VM (out of memory, or an access the VM may not make).
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    space: &Mutex<VmSpace>,
    ipa: u64,
    fault: Fault,
    write: bool,
    fetch: bool,
    node: NodeId,
) -> Result<Resolved, String> {
    let mut space = space.lock();
    match fault {
        Fault::Translation => {
            let pte = space.lookup(ipa);
            if pte.is_some_and(|p| p.is_valid()) {
                return Ok(Resolved::Retry);
            }
            if space.restore_sampled(ipa, node) {
                return Ok(Resolved::Sampled);
            }
            space
                .touch(ipa, node)
                .map(|_| Resolved::FirstTouch)
                .ok_or_else(|| format!("out of machine memory backing guest page {ipa:#x}"))
        }
        // A mapping changed under the vCPU (the TLB entry it faulted on is
        // gone): the access is allowed now, so retrying is the answer.
        Fault::Permission | Fault::AccessFlag
            if space.lookup(ipa).is_some_and(|p| p.is_valid() && p.perm().allows(write, fetch)) =>
        {
            Ok(Resolved::Retry)
        }
        _ => Err(format!(
            "stage-2 {fault:?} fault on guest RAM at {ipa:#x} ({})",
            if fetch { "fetch" } else if write { "write" } else { "read" }
        )),
    }
}
