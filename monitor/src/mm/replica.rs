//! Replication of read-shared guest pages (Disco; Verghese et al.,
//! ASPLOS'96): a hot page that several nodes read and nobody writes gets a
//! read-only copy on each reading node, mapped in that node's stage-2 root;
//! the first write collapses the copies back to the master.
//!
//! Whether a page is written is learnt the way Disco's directory could not
//! tell it either: by write-protecting it for an interval (a *watch*). A
//! write to a watched page faults once, marks it written and gets write
//! access back; a page still clean at the next interval may be replicated.
//!
//! The protocol, with the VM's space lock held throughout (faults on the
//! page wait for it):
//! - replicate: every root maps the master read-only and each replica
//!   node's root is broken (invalid), one TLB invalidation per root, only
//!   then the master is copied and each replica mapped read-only in its
//!   node's root. No CPU can write the master while it is copied, and no
//!   root ever maps a copy writable.
//! - collapse (a write fault on a replicated page): the page is broken in
//!   every root, invalidated, the replicas freed, and the master mapped
//!   writable in every root. Replicas were read-only, so none diverged.
//!
//! A page mapped to a frame shared copy-on-write with other VMs (merged
//! kernel text, `mm::cow`) is replicated the same way, without a watch (it
//! is read-only anyway); its replicas are this VM's own frames, and the
//! write that copies the shared frame drops them first.
//!
//! `numa::replication` model-checks this ordering with loom.

use super::{frames, VmSpace};
use crate::arch::{
    marker,
    stage2::{copy_frame, Stage2, PAGE_SIZE},
};
use alloc::vec::Vec;
use numa::{
    memmap::{Frame, Use},
    pmap::PageState,
    policy::{History, Params, Readers},
    NodeId,
};
use stage2::{Perm, Pte};

/// What the monitor knows about a page's sharing, beyond the pmap.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sharing {
    /// Write-protected to learn whether anyone writes it.
    pub watched: bool,
    /// Written since the watch began or since it was replicated.
    pub written: bool,
    /// Collapses since its last freeze.
    pub collapses: u8,
    /// Watches that ended in a write since its last freeze.
    pub dirty: u8,
    /// Times `mm::merge` watched it to merge it with its boot image.
    pub merge_tries: u8,
    /// The nodes that read it lately, as the placement loop saw them.
    pub readers: Readers,
}

/// How a write fault on a write-protected page was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The page was watched: it is writable again, and marked written.
    Unwatched,
    /// The page was replicated: its copies are gone, the master writable.
    Collapsed,
    /// The page was a shared frame (a boot image's): it has a private
    /// copy now, writable.
    CopiedOnWrite,
}

/// A node keeps this share of its frames free of replicas: replicas are
/// an optimisation and must not be what runs a node out of memory.
const RESERVE_SHIFT: u32 = 4;

/// Has `node` frames to spare for a replica (above its reserve)?
fn spare_for_replica(node: NodeId) -> bool {
    let map = frames::memmap();
    map.free_frames(node) > map.total_frames(node) >> RESERVE_SHIFT
}

/// How [`VmSpace::migrate`] leaves a page it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMove {
    /// Mapped as before, its old frame freed (migration alone).
    Plain,
    /// Mapped read-only and watched: a node that reads it in turn can get
    /// a replica at once (replicate mode).
    Watched,
    /// The old frame stays as the old node's replica, both read-only: the
    /// old node read the page lately too, and the copy just made is all a
    /// replica needs (one copy instead of a move and then a replica).
    KeepOld,
}

impl VmSpace {
    /// Finishes the move of `gpfn` whose new frame `mapping` maps; `old`
    /// is the frame it left.
    pub(super) fn after_move(&mut self, gpfn: u64, mapping: Pte, old: Frame, after: AfterMove, here: NodeId) {
        let ipa = gpfn * PAGE_SIZE;
        let keep = match after {
            AfterMove::KeepOld if mapping.is_valid() && spare_for_replica(old.node()) => self.root_of(old.node()),
            _ => None,
        };
        let old = match keep {
            Some(root) => {
                let (old_pa, master) = (old.pa(), mapping.with_perm(Perm::RX));
                frames::memmap().set_owner(&old, Use::Replica { vm: self.vm(), gpfn });
                match self.pmap.add_replica(gpfn, old) {
                    Ok(()) => {
                        let _ = self.set(ipa, master);
                        let _ = self.set_in(root, ipa, master.with_addr(old_pa));
                        self.sharing.insert(gpfn, Sharing { watched: false, written: false, ..self.sharing(gpfn) });
                        self.stats.replicated += 1;
                        return;
                    }
                    Err(old) => old,
                }
            }
            None => old,
        };
        frames::free(old, here);
        if after == AfterMove::Plain || !mapping.is_valid() {
            let _ = self.set(ipa, mapping);
            return;
        }
        let _ = self.set(ipa, mapping.with_perm(Perm::RX));
        let s = self.sharing.entry(gpfn).or_default();
        (s.watched, s.written) = (true, false);
        self.stats.watched += 1;
    }

    /// The sharing record of a page (default: never watched).
    pub fn sharing(&self, gpfn: u64) -> Sharing {
        self.sharing.get(&gpfn).copied().unwrap_or_default()
    }

    /// Records which nodes read `gpfn` in interval `now` (`counts`: misses
    /// per node) and returns what the replication policy needs to know
    /// of its past, these readers included.
    pub fn history(&mut self, gpfn: u64, p: &Params, counts: &[u32], now: u32) -> History {
        let s = self.sharing.entry(gpfn).or_default();
        s.readers.note(p, counts, now);
        History { written: s.written, collapses: s.collapses, dirty: s.dirty, recent: s.readers.recent(p, now) }
    }

    /// Starts an interval of the replication policy: a page whose watch
    /// ended in a write may be watched again (its `dirty` count stays).
    /// Costs the writes seen, not the pages ever looked at: the map holds
    /// every page the policy considered, and this runs every interval with
    /// the VM's lock held.
    pub fn forget_writes(&mut self) {
        for gpfn in core::mem::take(&mut self.written) {
            if let Some(s) = self.sharing.get_mut(&gpfn).filter(|s| !s.watched) {
                s.written = false;
            }
        }
    }

    /// Forgets a page's collapses and dirty watches (it was frozen).
    pub fn reset_collapses(&mut self, gpfn: u64) {
        if let Some(s) = self.sharing.get_mut(&gpfn) {
            (s.collapses, s.dirty) = (0, 0);
        }
    }

    /// Write-protects `gpfns` (private, unpinned, mapped pages) in every
    /// root, so the next interval knows whether anyone wrote them.
    pub fn watch(&mut self, gpfns: &[u64]) {
        let mut ipas = Vec::with_capacity(gpfns.len());
        for &gpfn in gpfns {
            let Some(info) = self.page(gpfn).filter(|i| i.state == PageState::Private && i.pins == 0) else {
                continue;
            };
            let ipa = gpfn * PAGE_SIZE;
            let Some(pte) = self.lookup(ipa).filter(|p| p.is_valid() && p.addr() == info.pa) else { continue };
            // Fewer permissions, same frame: no break needed, only the
            // invalidation below.
            if self.set(ipa, pte.with_perm(Perm::RX)).is_some() {
                ipas.push(ipa);
                self.sharing.insert(gpfn, Sharing { watched: true, written: false, ..self.sharing(gpfn) });
            }
        }
        self.invalidate(&ipas);
        self.stats.watched += ipas.len() as u64;
    }

    /// Gives each `(gpfn, nodes)` page a read-only copy on every node of
    /// the bit set `nodes` (nodes with a root, without a copy, with frames
    /// to spare), as one batch. Returns the replicas made.
    pub fn replicate(&mut self, pages: &[(u64, u64)], here: NodeId) -> usize {
        let _cost = marker::Charged::begin();
        // (gpfn, master descriptor, replica frames with their roots).
        let mut batch = Vec::new();
        for &(gpfn, nodes) in pages {
            let Some(info) = self.page(gpfn).filter(|i| i.pins == 0) else { continue };
            let ipa = gpfn * PAGE_SIZE;
            let Some(pte) = self.lookup(ipa).filter(|p| p.is_valid() && p.addr() == info.pa) else { continue };
            let mut copies = Vec::new();
            for node in (0..64).filter(|n| nodes & 1 << n != 0 && *n != info.node && info.replicas & 1 << n == 0) {
                let Some(root) = self.root_of(node) else { continue };
                if !spare_for_replica(node) {
                    continue;
                }
                if let Some(frame) = frames::alloc_on(node, Use::Replica { vm: self.vm(), gpfn }) {
                    copies.push((root, frame));
                }
            }
            if copies.is_empty() {
                continue;
            }
            // Read-only everywhere, broken where a copy will be mapped.
            let master = pte.with_perm(Perm::RX);
            let _ = self.set(ipa, master);
            for &(root, _) in &copies {
                let _ = self.set_in(root, ipa, Pte::EMPTY);
            }
            batch.push((gpfn, master, copies));
        }
        let ipas: Vec<u64> = batch.iter().map(|(gpfn, _, _)| gpfn * PAGE_SIZE).collect();
        self.invalidate(&ipas);
        let mut made = 0;
        for (gpfn, master, copies) in batch {
            let ipa = gpfn * PAGE_SIZE;
            for (root, frame) in copies {
                let pa = frame.pa();
                copy_frame(pa, master.addr());
                match self.pmap.add_replica(gpfn, frame) {
                    Ok(()) => {
                        let _ = self.set_in(root, ipa, master.with_addr(pa));
                        made += 1;
                    }
                    Err(frame) => {
                        frames::free(frame, here);
                        let _ = self.set_in(root, ipa, master);
                    }
                }
            }
            let sharing = self.sharing(gpfn);
            self.sharing.insert(gpfn, Sharing { watched: false, written: false, ..sharing });
        }
        Stage2::publish();
        self.stats.replicated += made as u64;
        made
    }

    /// A write fault on `ipa`, whose descriptor is valid but read-only:
    /// ends its watch or collapses its replicas, and maps it writable.
    /// None: the page is neither (a fault the guest may not cause).
    pub fn write_fault(&mut self, ipa: u64, here: NodeId) -> Option<WriteFault> {
        let gpfn = ipa / PAGE_SIZE;
        let info = self.page(gpfn)?;
        let sharing = self.sharing.get_mut(&gpfn);
        let resolved = match (info.state, sharing) {
            (PageState::CowShared, _) => {
                return self.break_cow(gpfn, info.pa, here).then_some(WriteFault::CopiedOnWrite)
            }
            (PageState::ReadShared, _) => WriteFault::Collapsed,
            (PageState::Private, Some(s)) if s.watched => WriteFault::Unwatched,
            _ => return None,
        };
        let page = ipa & !(PAGE_SIZE - 1);
        let pte = self.lookup(page)?;
        let writable = Pte::page(info.pa, Perm::RWX).with_sw(pte.sw());
        if resolved == WriteFault::Collapsed {
            let _cost = marker::Charged::begin();
            let _ = self.set(page, Pte::EMPTY);
            self.invalidate(&[page]);
            for frame in self.pmap.collapse(gpfn) {
                frames::free(frame, here);
            }
            let _ = self.set(page, writable);
            Stage2::publish();
            self.stats.collapses += 1;
        } else {
            // More permissions, same frame: no break-before-make. The
            // read-only entry this CPU faulted on may still be cached, so
            // it goes here; other CPUs drop theirs when they fault on them
            // (`mm::fault`'s retry).
            let _ = self.set(page, writable);
            Stage2::publish();
            self.invalidate_local(page);
            self.stats.write_faults += 1;
        }
        if let Some(s) = self.sharing.get_mut(&gpfn) {
            let (collapses, dirty) = match resolved {
                WriteFault::Collapsed => (s.collapses.saturating_add(1), s.dirty),
                _ => (s.collapses, s.dirty.saturating_add(1)),
            };
            *s = Sharing { watched: false, written: true, collapses, dirty, ..*s };
            self.written.push(gpfn);
        }
        Some(resolved)
    }

    /// Backs `ipa` as [`VmSpace::touch`] does, for a write by the monitor
    /// itself (a device's DMA, the loader): a replicated page collapses and
    /// a watched one ends its watch first, as a guest write would, since
    /// no stage-2 fault tells the monitor about its own writes. Returns
    /// the machine address of the frame to write.
    pub fn touch_for_write(&mut self, ipa: u64, node: NodeId) -> Option<u64> {
        let pa = self.touch(ipa, node)?;
        let gpfn = ipa / PAGE_SIZE;
        let info = self.page(gpfn)?;
        if info.state == PageState::Private && !self.sharing(gpfn).watched {
            return Some(pa);
        }
        self.write_fault(ipa, node)?;
        self.page(gpfn).map(|i| i.pa)
    }

    /// Frees every replica this VM holds (memory ran short): each
    /// replicated page collapses to its master, kept read-only until a
    /// write faults. Returns the frames freed.
    pub fn reclaim_replicas(&mut self, here: NodeId) -> usize {
        let pages: Vec<u64> = self.pmap.iter_mapped().filter(|(_, i)| i.replicas != 0).map(|(g, _)| g).collect();
        let ipas: Vec<u64> = pages.iter().map(|g| g * PAGE_SIZE).collect();
        let nodes: Vec<NodeId> = self.root_nodes().collect();
        for &ipa in &ipas {
            for (root, node) in nodes.iter().enumerate() {
                let info = self.page(ipa / PAGE_SIZE);
                if info.is_some_and(|i| i.replicas & 1 << node != 0) {
                    let _ = self.set_in(root, ipa, Pte::EMPTY);
                }
            }
        }
        self.invalidate(&ipas);
        let mut freed = 0;
        for &gpfn in &pages {
            let Some(info) = self.page(gpfn) else { continue };
            for frame in self.pmap.collapse(gpfn) {
                frames::free(frame, here);
                freed += 1;
            }
            let ipa = gpfn * PAGE_SIZE;
            let master = Pte::page(info.pa, Perm::RX);
            for root in 0..nodes.len() {
                let _ = self.set_in(root, ipa, master);
            }
            // Still write-protected: a write ends it like a watch (or
            // copies a shared frame).
            if info.state != PageState::CowShared {
                self.sharing.insert(gpfn, Sharing { watched: true, written: false, ..self.sharing(gpfn) });
            }
        }
        Stage2::publish();
        freed
    }
}
