//! The walker over tables kept in a Vec: mapping, lookup, permissions,
//! sampling marks, teardown, and a proptest against a model.

use proptest::prelude::*;
use stage2::{
    walk::{destroy, lookup, set_leaf, Entry, Flags},
    walk, Action, Perm, Pte, TableMemory, Visit, WalkError, LEAF_LEVEL, PAGE_SIZE,
};
use std::collections::BTreeMap;

/// Table frames in a Vec; frame n is at machine address BASE + n * 4 KiB.
struct VecTables {
    frames: Vec<[u64; 512]>,
    free: Vec<usize>,
    limit: usize,
}

const BASE: u64 = 0x8000_0000;

impl VecTables {
    fn new(limit: usize) -> (Self, u64) {
        let mut t = VecTables { frames: Vec::new(), free: Vec::new(), limit };
        let root = t.alloc_table().unwrap();
        (t, root)
    }
    fn slot(table: u64) -> usize {
        ((table - BASE) / PAGE_SIZE) as usize
    }
    fn in_use(&self) -> usize {
        self.frames.len() - self.free.len()
    }
}

impl TableMemory for VecTables {
    fn read(&self, table: u64, index: usize) -> u64 {
        self.frames[Self::slot(table)][index]
    }
    fn write(&mut self, table: u64, index: usize, value: u64) {
        self.frames[Self::slot(table)][index] = value;
    }
    fn alloc_table(&mut self) -> Option<u64> {
        if self.in_use() >= self.limit {
            return None;
        }
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                self.frames.push([0; 512]);
                self.frames.len() - 1
            }
        };
        self.frames[n] = [0; 512];
        Some(BASE + n as u64 * PAGE_SIZE)
    }
    fn free_table(&mut self, table: u64) {
        assert!(!self.free.contains(&Self::slot(table)), "table {table:#x} freed twice");
        self.free.push(Self::slot(table));
    }
}

const RAM: u64 = 0x4000_0000;

#[test]
fn a_mapped_page_is_found_with_its_frame_and_permissions() {
    let (mut t, root) = VecTables::new(16);
    let old = set_leaf(&mut t, root, RAM + 0x5000, Pte::page(0x1234_5000, Perm::RX)).unwrap();
    assert_eq!(old, Pte::EMPTY);
    let pte = lookup(&mut t, root, RAM + 0x5abc).unwrap();
    assert_eq!(pte.frame(), Some(0x1234_5000));
    assert_eq!(pte.perm(), Perm::RX);
    assert!(!pte.perm().allows(true, false));
    assert!(pte.perm().allows(false, true));
    // Root, one level-2 and one level-3 table.
    assert_eq!(t.in_use(), 3);
    assert_eq!(lookup(&mut t, root, RAM + 0x6000), Some(Pte::EMPTY));
    assert_eq!(lookup(&mut t, root, 0x1_0000_0000), None, "no tables there");
}

#[test]
fn leaf_visits_report_level_ipa_and_old_descriptor() {
    let (mut t, root) = VecTables::new(16);
    for n in 0..3 {
        set_leaf(&mut t, root, RAM + n * PAGE_SIZE, Pte::page(0x9000_0000 + n * PAGE_SIZE, Perm::RWX)).unwrap();
    }
    let mut seen = Vec::new();
    walk(&mut t, root, RAM, RAM + 3 * PAGE_SIZE, Flags::LEAF, &mut |e: &Entry| {
        seen.push((e.ipa, e.level, e.old.frame()));
        Action::Keep
    })
    .unwrap();
    let expected: Vec<_> = (0..3).map(|n| (RAM + n * PAGE_SIZE, LEAF_LEVEL, Some(0x9000_0000 + n * PAGE_SIZE))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn table_visits_come_before_and_after_their_entries() {
    let (mut t, root) = VecTables::new(16);
    set_leaf(&mut t, root, RAM, Pte::page(0x9000_0000, Perm::RWX)).unwrap();
    let mut order = Vec::new();
    let flags = Flags { leaf: true, table_pre: true, table_post: true, alloc: false };
    walk(&mut t, root, RAM, RAM + PAGE_SIZE, flags, &mut |e: &Entry| {
        order.push((e.visit, e.level));
        Action::Keep
    })
    .unwrap();
    assert_eq!(
        order,
        [(Visit::TablePre, 1), (Visit::TablePre, 2), (Visit::Leaf, 3), (Visit::TablePost, 2), (Visit::TablePost, 1)]
    );
}

#[test]
fn sampling_keeps_the_mapping_to_restore() {
    let pte = Pte::page(0x7654_3000, Perm::RWX);
    let sampled = pte.sampled();
    assert!(!sampled.is_valid() && sampled.is_sampled() && sampled.frame().is_none());
    assert_eq!(sampled.restored(), pte);
    assert!(!pte.is_sampled() && !Pte::EMPTY.is_sampled());
}

#[test]
fn permissions_change_without_touching_address_or_software_bits() {
    let pte = Pte::page(0x7654_3000, Perm::RWX).with_sw(stage2::pte::SW_SHARED);
    let ro = pte.with_perm(Perm::RX);
    assert_eq!(ro.addr(), 0x7654_3000);
    assert_eq!(ro.perm(), Perm::RX);
    assert_eq!(ro.sw(), stage2::pte::SW_SHARED);
    let none = pte.with_perm(Perm { read: true, write: false, exec: false });
    assert!(!none.perm().exec && none.perm().read);
}

#[test]
fn another_frame_keeps_permissions_and_software_bits() {
    let pte = Pte::page(0x7654_3000, Perm::RX).with_sw(stage2::pte::SW_SHARED);
    let moved = pte.with_addr(0x1234_5000);
    assert_eq!(moved.addr(), 0x1234_5000);
    assert_eq!((moved.perm(), moved.sw(), moved.is_valid()), (Perm::RX, stage2::pte::SW_SHARED, true));
    assert_eq!(moved.with_addr(0x7654_3000), pte);
}

#[test]
fn running_out_of_table_frames_is_an_error_not_a_panic() {
    let (mut t, root) = VecTables::new(2);
    assert_eq!(set_leaf(&mut t, root, RAM, Pte::page(0x9000_0000, Perm::RWX)), Err(WalkError::NoMemory));
    assert_eq!(walk(&mut t, root, 1 << 40, 1 << 41, Flags::LEAF, &mut |_| Action::Keep), Err(WalkError::OutOfRange));
}

#[test]
fn destroy_hands_back_every_page_and_frees_every_table() {
    let (mut t, root) = VecTables::new(64);
    let ipas = [RAM, RAM + PAGE_SIZE, RAM + (3 << 20), RAM + (1 << 30) + 0x2000];
    for (n, ipa) in ipas.iter().enumerate() {
        set_leaf(&mut t, root, *ipa, Pte::page(0x9000_0000 + n as u64 * PAGE_SIZE, Perm::RWX)).unwrap();
    }
    set_leaf(&mut t, root, RAM + 0x9000, Pte::page(0x9900_0000, Perm::RWX).sampled()).unwrap();
    let mut pages = Vec::new();
    destroy(&mut t, root, &mut |ipa, pte| pages.push((ipa, pte.addr())));
    assert_eq!(pages.len(), 5, "sampled (invalid but owned) pages are handed back too");
    assert_eq!(t.in_use(), 1, "only the root is left");
}

proptest! {
    /// Random map / unmap / protect / sample operations agree with a
    /// model, and teardown frees every table.
    #[test]
    fn the_walker_agrees_with_a_model(ops in prop::collection::vec((0u8..4, 0u64..2048, any::<bool>()), 1..200)) {
        let (mut t, root) = VecTables::new(1 << 12);
        let mut model: BTreeMap<u64, Pte> = BTreeMap::new();
        for (op, page, flag) in ops {
            // Pages spread over several level-2 and level-3 tables.
            let ipa = RAM + (page % 64) * PAGE_SIZE + (page / 64) * (2 << 20);
            match op {
                0 => {
                    let pte = Pte::page(0x1_0000_0000 + page * PAGE_SIZE, if flag { Perm::RWX } else { Perm::RX });
                    let old = set_leaf(&mut t, root, ipa, pte).unwrap();
                    prop_assert_eq!(old, model.insert(ipa, pte).unwrap_or(Pte::EMPTY));
                }
                1 => {
                    let old = set_leaf(&mut t, root, ipa, Pte::EMPTY).unwrap();
                    prop_assert_eq!(old, model.remove(&ipa).unwrap_or(Pte::EMPTY));
                }
                2 => {
                    walk(&mut t, root, ipa, ipa + PAGE_SIZE, Flags::LEAF, &mut |e| {
                        if e.old.is_valid() { Action::Set(e.old.with_perm(Perm::RX)) } else { Action::Keep }
                    }).unwrap();
                    if let Some(p) = model.get_mut(&ipa) { if p.is_valid() { *p = p.with_perm(Perm::RX); } }
                }
                _ => {
                    walk(&mut t, root, ipa, ipa + PAGE_SIZE, Flags::LEAF, &mut |e| {
                        if e.old.is_valid() { Action::Set(e.old.sampled()) } else { Action::Keep }
                    }).unwrap();
                    if let Some(p) = model.get_mut(&ipa) { if p.is_valid() { *p = p.sampled(); } }
                }
            }
        }
        for (ipa, pte) in &model {
            prop_assert_eq!(lookup(&mut t, root, *ipa), Some(*pte));
        }
        let mut seen = BTreeMap::new();
        destroy(&mut t, root, &mut |ipa, pte| { seen.insert(ipa, pte); });
        let nonempty: BTreeMap<u64, Pte> = model.into_iter().filter(|(_, p)| *p != Pte::EMPTY).collect();
        prop_assert_eq!(seen, nonempty);
        prop_assert_eq!(t.in_use(), 1);
    }
}
