//! Per VM: guest page -> machine frame and its placement state (Disco's
//! pmap).
//!
//! Dense, one 16-byte slot per guest page of `[base_gpfn, base_gpfn +
//! pages)`: guest RAM is one contiguous range per VM, and the fault path
//! and the placement loop want an index, not a tree walk. Replicas are rare
//! (read-shared hot pages only), so their frames live in a side table
//! instead of widening every slot.
//!
//! The pmap holds its frames as [`Frame`] references (rebuilt from the slot
//! on the way out); the only ways out are [`Pmap::unmap`],
//! [`Pmap::replace`], [`Pmap::collapse`] and [`Pmap::drain`], so a frame
//! mapped here cannot also be freed elsewhere.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::memmap::{Frame, MemMap};
use crate::{NodeId, FRAME_SIZE};

/// How a guest page's frame is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// One frame, this VM's alone, mapped read-write.
    Private,
    /// Read-only, possibly replicated on other nodes; a write collapses it.
    ReadShared,
    /// Read-only frame shared with other users (block cache, another VM);
    /// a write copies it.
    CowShared,
}

/// What the pmap knows about one mapped guest page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Machine address of the master frame.
    pub pa: u64,
    /// Node of the master frame.
    pub node: NodeId,
    /// Sharing state.
    pub state: PageState,
    /// Nodes holding a replica (bit n = node n; the master's node is not
    /// set).
    pub replicas: u64,
    /// In-flight I/O pins: a pinned page is neither unmapped nor moved.
    pub pins: u16,
    /// Migrations since the last freeze (saturates at 255).
    pub moves: u8,
    /// Placement interval before which the page must not move.
    pub frozen_until: u32,
}

// Slot word: bits 63..10 frame number, 9..2 node, 1..0 state (0 = unmapped).
const NODE_SHIFT: u32 = 2;
const PFN_SHIFT: u32 = 10;
const MAX_NODE: NodeId = 1 << (PFN_SHIFT - NODE_SHIFT);

/// One guest page: 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    word: u64,
    frozen_until: u32,
    pins: u16,
    moves: u8,
    /// Bits of `replicas` would not fit; this says whether to look.
    replicated: bool,
}

const _: () = assert!(core::mem::size_of::<Slot>() <= 16);

impl Slot {
    fn mapped(&self) -> bool {
        self.word & 3 != 0
    }

    fn pa(&self) -> u64 {
        (self.word >> PFN_SHIFT) * FRAME_SIZE
    }

    fn node(&self) -> NodeId {
        ((self.word >> NODE_SHIFT) as usize) & (MAX_NODE - 1)
    }

    fn state(&self) -> PageState {
        match self.word & 3 {
            2 => PageState::ReadShared,
            3 => PageState::CowShared,
            _ => PageState::Private,
        }
    }

    fn set_state(&mut self, state: PageState) {
        let bits = match state {
            PageState::Private => 1,
            PageState::ReadShared => 2,
            PageState::CowShared => 3,
        };
        self.word = self.word & !3 | bits;
    }

    fn frame(&self) -> Frame {
        Frame::from_parts(self.pa(), self.node())
    }

    /// The slot word for `frame`, state Private; None if it cannot be
    /// encoded (an unaligned address or a node beyond 255: not from a
    /// memmap).
    fn word_for(frame: &Frame) -> Option<u64> {
        let ok = frame.pa().is_multiple_of(FRAME_SIZE) && frame.node() < MAX_NODE;
        ok.then(|| (frame.pa() / FRAME_SIZE) << PFN_SHIFT | (frame.node() as u64) << NODE_SHIFT | 1)
    }
}

/// One VM's guest pages.
pub struct Pmap {
    base_gpfn: u64,
    slots: Vec<Slot>,
    /// Replica frames of replicated pages, by gpfn (each on its own node).
    replicas: BTreeMap<u64, Vec<Frame>>,
}

impl Pmap {
    /// An empty pmap for guest pages `[base_gpfn, base_gpfn + pages)`.
    pub fn new(base_gpfn: u64, pages: usize) -> Self {
        Self { base_gpfn, slots: vec![Slot::default(); pages], replicas: BTreeMap::new() }
    }

    /// First guest page covered.
    pub fn base_gpfn(&self) -> u64 {
        self.base_gpfn
    }

    /// Guest pages covered.
    pub fn pages(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, gpfn: u64) -> Option<usize> {
        let i = usize::try_from(gpfn.checked_sub(self.base_gpfn)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    fn slot_mut(&mut self, gpfn: u64) -> Option<&mut Slot> {
        let i = self.index(gpfn)?;
        Some(&mut self.slots[i]).filter(|s| s.mapped())
    }

    fn info(&self, gpfn: u64, s: &Slot) -> PageInfo {
        let replicas = match s.replicated {
            true => self.replicas.get(&gpfn).map_or(0, |r| r.iter().fold(0, |m, f| m | bit(f.node()))),
            false => 0,
        };
        PageInfo {
            pa: s.pa(),
            node: s.node(),
            state: s.state(),
            replicas,
            pins: s.pins,
            moves: s.moves,
            frozen_until: s.frozen_until,
        }
    }

    /// The page's frame and state. None: unmapped or out of range.
    pub fn get(&self, gpfn: u64) -> Option<PageInfo> {
        let s = &self.slots[self.index(gpfn)?];
        s.mapped().then(|| self.info(gpfn, s))
    }

    /// Another reference to the page's master frame (`map`'s refcount +
    /// 1), for a new holder that shares it, such as the boot-image cache
    /// adopting a VM's stable copy. None: unmapped.
    pub fn share_frame(&self, gpfn: u64, map: &MemMap) -> Option<Frame> {
        let s = &self.slots[self.index(gpfn)?];
        // The rebuilt token stays the pmap's; only the new reference leaves.
        s.mapped().then(|| map.share(&s.frame()))
    }

    /// Maps `frame` at `gpfn`, Private, with fresh placement history.
    /// `Err(frame)`: out of range or already mapped.
    pub fn map(&mut self, gpfn: u64, frame: Frame) -> Result<(), Frame> {
        let (Some(i), Some(word)) = (self.index(gpfn), Slot::word_for(&frame)) else { return Err(frame) };
        if self.slots[i].mapped() {
            return Err(frame);
        }
        self.slots[i] = Slot { word, ..Slot::default() };
        Ok(())
    }

    /// Takes the page's frame out. None while it is pinned (in-flight I/O)
    /// or replicated ([`Pmap::collapse`] first), or when unmapped.
    pub fn unmap(&mut self, gpfn: u64) -> Option<Frame> {
        let s = self.slot_mut(gpfn).filter(|s| s.pins == 0 && !s.replicated)?;
        let frame = s.frame();
        *s = Slot::default();
        Some(frame)
    }

    /// Migration: installs `new` and returns the old frame; state and
    /// freeze are kept, `moves` goes up by one. `Err(new)` when unmapped,
    /// pinned or replicated.
    pub fn replace(&mut self, gpfn: u64, new: Frame) -> Result<Frame, Frame> {
        let Some(word) = Slot::word_for(&new) else { return Err(new) };
        let Some(s) = self.slot_mut(gpfn).filter(|s| s.pins == 0 && !s.replicated) else { return Err(new) };
        let old = s.frame();
        let state = s.state();
        s.word = word;
        s.set_state(state);
        s.moves = s.moves.saturating_add(1);
        Ok(old)
    }

    /// Sets the sharing state of a mapped page. False when unmapped.
    pub fn set_state(&mut self, gpfn: u64, state: PageState) -> bool {
        self.slot_mut(gpfn).map(|s| s.set_state(state)).is_some()
    }

    /// Adds a replica (a frame on another node holding a copy) to a mapped
    /// page and makes a Private page ReadShared; a CowShared one stays
    /// CowShared (its master is another owner's frame, and a write copies
    /// it, replicas dropped). `Err(frame)`: unmapped, or the master or
    /// another replica is already on that node.
    pub fn add_replica(&mut self, gpfn: u64, frame: Frame) -> Result<(), Frame> {
        let Some(i) = self.index(gpfn) else { return Err(frame) };
        let Some(info) = self.get(gpfn) else { return Err(frame) };
        if info.node == frame.node() || info.replicas & bit(frame.node()) != 0 || frame.node() >= 64 {
            return Err(frame);
        }
        self.replicas.entry(gpfn).or_default().push(frame);
        let s = &mut self.slots[i];
        s.replicated = true;
        if s.state() != PageState::CowShared {
            s.set_state(PageState::ReadShared);
        }
        Ok(())
    }

    /// Machine address of the page's copy on `node`: the master or a
    /// replica there.
    pub fn frame_on(&self, gpfn: u64, node: NodeId) -> Option<u64> {
        let info = self.get(gpfn)?;
        if info.node == node {
            return Some(info.pa);
        }
        self.replicas.get(&gpfn)?.iter().find(|f| f.node() == node).map(Frame::pa)
    }

    /// Takes every replica of the page out (a write to a ReadShared page);
    /// the page becomes Private again, a CowShared one stays CowShared.
    /// Empty when it had none.
    pub fn collapse(&mut self, gpfn: u64) -> Vec<Frame> {
        let Some(s) = self.slot_mut(gpfn) else { return Vec::new() };
        s.replicated = false;
        if s.state() != PageState::CowShared {
            s.set_state(PageState::Private);
        }
        self.replicas.remove(&gpfn).unwrap_or_default()
    }

    /// One more in-flight I/O on the page. False when unmapped (or 65535
    /// pins already).
    pub fn pin(&mut self, gpfn: u64) -> bool {
        let Some(s) = self.slot_mut(gpfn).filter(|s| s.pins < u16::MAX) else { return false };
        s.pins += 1;
        true
    }

    /// One in-flight I/O done. An unpin without a pin is logged.
    pub fn unpin(&mut self, gpfn: u64) {
        match self.slot_mut(gpfn).filter(|s| s.pins > 0) {
            Some(s) => s.pins -= 1,
            None => log::error!("pmap: unpin of unpinned or unmapped gpfn {gpfn:#x}"),
        }
    }

    /// The page must not move before interval `until_interval`.
    pub fn freeze(&mut self, gpfn: u64, until_interval: u32) {
        if let Some(s) = self.slot_mut(gpfn) {
            s.frozen_until = until_interval;
        }
    }

    /// Forgets the page's migrations (after a freeze).
    pub fn reset_moves(&mut self, gpfn: u64) {
        if let Some(s) = self.slot_mut(gpfn) {
            s.moves = 0;
        }
    }

    /// Teardown: every frame out, masters then replicas, pins ignored.
    /// Frames the iterator did not reach when dropped stay in the pmap.
    pub fn drain(&mut self) -> impl Iterator<Item = Frame> + '_ {
        let Self { slots, replicas, .. } = self;
        let masters = slots.iter_mut().filter(|s| s.mapped()).map(|s| {
            let frame = s.frame();
            *s = Slot::default();
            frame
        });
        // One frame at a time out of the map itself, so an iterator dropped
        // half-way leaves the rest where the next drain finds them.
        let copies = core::iter::from_fn(move || loop {
            let mut first = replicas.first_entry()?;
            let frame = first.get_mut().pop();
            if first.get().is_empty() {
                first.remove();
            }
            if frame.is_some() {
                return frame;
            }
        });
        masters.chain(copies)
    }

    /// Every replica frame, of every replicated page.
    pub fn replica_frames(&self) -> impl Iterator<Item = &Frame> + '_ {
        self.replicas.values().flatten()
    }

    /// Replica frames alive.
    pub fn replica_count(&self) -> usize {
        self.replicas.values().map(Vec::len).sum()
    }

    /// Mapped pages per node (by master frame), for nodes `0..nodes`.
    pub fn mapped_per_node(&self, nodes: usize) -> Vec<usize> {
        let mut counts = vec![0; nodes];
        for s in self.slots.iter().filter(|s| s.mapped()) {
            if let Some(c) = counts.get_mut(s.node()) {
                *c += 1;
            }
        }
        counts
    }

    /// Every mapped page, lowest gpfn first.
    pub fn iter_mapped(&self) -> impl Iterator<Item = (u64, PageInfo)> + '_ {
        let base = self.base_gpfn;
        self.slots.iter().enumerate().filter(|(_, s)| s.mapped()).map(move |(i, s)| {
            let gpfn = base + i as u64;
            (gpfn, self.info(gpfn, s))
        })
    }
}

fn bit(node: NodeId) -> u64 {
    1u64.checked_shl(node as u32).unwrap_or(0)
}
