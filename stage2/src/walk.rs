//! The walker: visits the entries of an IPA range, level by level, and
//! lets a callback replace each one. Visits come in three kinds, as in
//! KVM's pgtable walker: `Leaf` for every entry that is not a table (pages,
//! blocks, invalid entries), `TablePre` before descending into a table and
//! `TablePost` after it. The callback sees the IPA the entry starts at, its
//! level and its old descriptor, and returns [`Action::Set`] to write a new
//! one. A `TablePost` visit that replaces a table descriptor frees the
//! table (teardown); with [`Flags::alloc`] missing tables are created on
//! the way down, so a leaf visit reaches level 3 for every page.

use crate::{index, level_size, Pte, ENTRIES, IPA_LIMIT, LEAF_LEVEL, PAGE_SIZE, START_LEVEL};

/// How the walker reaches table memory (machine frames in the monitor, a
/// `Vec` in tests).
pub trait TableMemory {
    /// Entry `index` of the table at machine address `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Writes entry `index` of the table at `table` as one 64-bit store
    /// (the hardware walker may read it at any time).
    fn write(&mut self, table: u64, index: usize, value: u64);
    /// A zeroed table frame, or None when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Gives back a table frame the walker unlinked.
    fn free_table(&mut self, table: u64);
}

/// Which kind of visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// A page, block or invalid entry.
    Leaf,
    /// A table descriptor, before its entries are walked.
    TablePre,
    /// A table descriptor, after its entries were walked.
    TablePost,
}

/// What the callback sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The first IPA the entry maps.
    pub ipa: u64,
    /// Its table's level (1-3).
    pub level: u32,
    /// The descriptor before the visit.
    pub old: Pte,
    /// Which visit this is.
    pub visit: Visit,
}

/// What the callback wants done with the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the entry as it is.
    Keep,
    /// Write this descriptor.
    Set(Pte),
}

/// Which visits to make, and whether to create missing tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Visit leaves (pages, blocks, invalid entries).
    pub leaf: bool,
    /// Visit tables before their entries.
    pub table_pre: bool,
    /// Visit tables after their entries.
    pub table_post: bool,
    /// Create missing tables on the way down.
    pub alloc: bool,
}

impl Flags {
    /// Leaf visits only.
    pub const LEAF: Flags = Flags { leaf: true, table_pre: false, table_post: false, alloc: false };
    /// Leaf visits at level 3, creating tables on the way.
    pub const MAP: Flags = Flags { leaf: true, table_pre: false, table_post: false, alloc: true };
    /// Leaf and table-post visits: what teardown needs.
    pub const TEARDOWN: Flags = Flags { leaf: true, table_pre: false, table_post: true, alloc: false };
}

/// Why a walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A table frame was needed and none was left.
    NoMemory,
    /// The range is outside the IPA space or empty-reversed.
    OutOfRange,
}

/// Walks `[start, end)` of the tables rooted at `root` (level 1).
pub fn walk<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    start: u64,
    end: u64,
    flags: Flags,
    visitor: &mut dyn FnMut(&Entry) -> Action,
) -> Result<(), WalkError> {
    if end > IPA_LIMIT || start > end {
        return Err(WalkError::OutOfRange);
    }
    walk_table(mem, root, START_LEVEL, 0, start & !(PAGE_SIZE - 1), end, flags, visitor)
}

#[allow(clippy::too_many_arguments)]
fn walk_table<M: TableMemory + ?Sized>(
    mem: &mut M,
    table: u64,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    flags: Flags,
    visitor: &mut dyn FnMut(&Entry) -> Action,
) -> Result<(), WalkError> {
    let size = level_size(level);
    let mut i = if start > base { index(start, level) } else { 0 };
    while i < ENTRIES {
        let ipa = base + i as u64 * size;
        if ipa >= end {
            break;
        }
        let mut current = Pte(mem.read(table, i));
        let entry = |old: Pte, visit: Visit| Entry { ipa, level, old, visit };
        if level < LEAF_LEVEL && current.is_table(level) && flags.table_pre {
            current = apply(mem, table, i, current, visitor(&entry(current, Visit::TablePre)));
        }
        if level < LEAF_LEVEL && current == Pte::EMPTY && flags.alloc {
            let child = mem.alloc_table().ok_or(WalkError::NoMemory)?;
            current = Pte::table(child);
            mem.write(table, i, current.0);
        }
        if current.is_table(level) {
            walk_table(mem, current.addr(), level + 1, ipa, start.max(ipa), end, flags, visitor)?;
            if flags.table_post {
                let new = apply(mem, table, i, current, visitor(&entry(current, Visit::TablePost)));
                if new != current {
                    mem.free_table(current.addr());
                }
            }
        } else if flags.leaf {
            apply(mem, table, i, current, visitor(&entry(current, Visit::Leaf)));
        }
        i += 1;
    }
    Ok(())
}

/// Carries out a visit's action on entry `i` of `table`; returns the
/// entry's value afterwards.
fn apply<M: TableMemory + ?Sized>(mem: &mut M, table: u64, i: usize, old: Pte, action: Action) -> Pte {
    match action {
        Action::Set(new) => {
            mem.write(table, i, new.0);
            new
        }
        Action::Keep => old,
    }
}

/// The level-3 descriptor for `ipa`, or None when a table on the way is
/// missing (or a block maps it).
pub fn lookup<M: TableMemory + ?Sized>(mem: &mut M, root: u64, ipa: u64) -> Option<Pte> {
    let mut found = None;
    let _ = walk(mem, root, ipa, ipa + 1, Flags::LEAF, &mut |e| {
        if e.level == LEAF_LEVEL {
            found = Some(e.old);
        }
        Action::Keep
    });
    found
}

/// Writes the level-3 descriptor for `ipa` (creating tables); returns the
/// old one. The caller owns break-before-make: replacing a valid entry
/// with another valid one needs an invalid step and a TLB invalidation in
/// between.
pub fn set_leaf<M: TableMemory + ?Sized>(mem: &mut M, root: u64, ipa: u64, new: Pte) -> Result<Pte, WalkError> {
    let mut old = None;
    walk(mem, root, ipa, ipa + 1, Flags::MAP, &mut |e| {
        old = Some(e.old);
        Action::Set(new)
    })?;
    old.ok_or(WalkError::OutOfRange)
}

/// Unlinks every table below `root` (root included is the caller's): calls
/// `leaf` with every non-empty level-3 descriptor, then frees the tables.
pub fn destroy<M: TableMemory + ?Sized>(mem: &mut M, root: u64, leaf: &mut dyn FnMut(u64, Pte)) {
    let _ = walk(mem, root, 0, IPA_LIMIT, Flags::TEARDOWN, &mut |e| {
        match e.visit {
            Visit::Leaf if e.old != Pte::EMPTY => leaf(e.ipa, e.old),
            _ => {}
        }
        Action::Set(Pte::EMPTY)
    });
}
