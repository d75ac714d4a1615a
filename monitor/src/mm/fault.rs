//! Stage-2 faults on guest RAM.

use super::{replica::WriteFault, VmSpace};
use crate::arch::exit::{Abort, Fault};
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
    /// A write to a page write-protected by replication: see
    /// `mm::replica`.
    WriteProtect(WriteFault),
}

/// Resolves `abort` (on guest RAM) taken on a CPU of `node`, with one
/// look at the page's descriptor. An error ends the VM (out of memory, or
/// an access the VM may not make).
pub fn resolve(space: &Mutex<VmSpace>, abort: &Abort, node: NodeId) -> Result<Resolved, String> {
    let ipa = abort.ipa;
    let mut space = space.lock();
    // The root this CPU translated through (replicas differ per root).
    let pte = space.lookup_on(ipa, node).or_else(|| space.lookup(ipa));
    match (abort.fault, pte) {
        // A mapping changed under the vCPU (the TLB entry it faulted on is
        // gone, or another CPU mapped the page first): retry.
        (Fault::Translation, Some(pte)) if pte.is_valid() => Ok(Resolved::Retry),
        // The descriptor already allows the access: another CPU relaxed
        // it and invalidated only its own TLB, so this CPU's stale,
        // stricter entry goes now (or it would fault forever).
        (Fault::Permission | Fault::AccessFlag, Some(pte))
            if pte.is_valid() && pte.perm().allows(abort.write, abort.fetch) =>
        {
            space.invalidate_local(ipa);
            Ok(Resolved::Retry)
        }
        // The descriptor is gone since the vCPU faulted: another CPU
        // unmapped it (sampling, migration, a merge's break) between the
        // fault and this lock. The retry takes the translation fault
        // that describes the page as it is now.
        (Fault::Permission | Fault::AccessFlag, pte) if !pte.is_some_and(|p| p.is_valid()) => {
            space.invalidate_local(ipa);
            Ok(Resolved::Retry)
        }
        (Fault::Translation, Some(pte)) if pte.is_sampled() => {
            space.restore_sampled(ipa, pte, node);
            Ok(Resolved::Sampled)
        }
        (Fault::Permission, Some(pte)) if pte.is_valid() && abort.write && !abort.fetch => space
            .write_fault(ipa, node)
            .map(Resolved::WriteProtect)
            .ok_or_else(|| format!("stage-2 write to read-only guest RAM at {ipa:#x}")),
        (Fault::Translation, _) => space
            .touch(ipa, node)
            .map(|_| Resolved::FirstTouch)
            .ok_or_else(|| format!("out of machine memory backing guest page {ipa:#x}")),
        (fault, _) => Err(format!(
            "stage-2 {fault:?} fault on guest RAM at {ipa:#x} ({})",
            if abort.fetch {
                "fetch"
            } else if abort.write {
                "write"
            } else {
                "read"
            }
        )),
    }
}
