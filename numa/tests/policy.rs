//! Disco's migration policy, one test per rule, and its parameter string.

use numa::pmap::{PageInfo, PageState};
use numa::policy::{decide, decide_shared, parse_params, Action, History, Params, Readers, Share};
use proptest::prelude::*;

fn page() -> PageInfo {
    PageInfo { pa: 0x4000_0000, node: 0, state: PageState::Private, replicas: 0, pins: 0, moves: 0, frozen_until: 0 }
}

fn p() -> Params {
    Params::default()
}

fn clean() -> History {
    History::default()
}

#[test]
fn defaults() {
    let d = p();
    assert_eq!((d.trigger, d.dominance_percent, d.max_moves), (64, 80, 4));
    assert_eq!((d.freeze_intervals, d.batch, d.interval_ms), (8, 1024, 100));
}

#[test]
fn hot_dominated_remote_page_migrates() {
    assert_eq!(decide(&p(), &[0, 64], 0, &page(), 1), Action::Migrate(1));
    assert_eq!(decide(&p(), &[16, 64, 0], 0, &page(), 1), Action::Migrate(1), "exactly 80%");
}

#[test]
fn cold_pages_stay() {
    assert_eq!(decide(&p(), &[0, 63], 0, &page(), 1), Action::None);
    assert_eq!(decide(&p(), &[], 0, &page(), 1), Action::None);
    let zero = Params { trigger: 0, ..p() };
    assert_eq!(decide(&zero, &[0, 0], 0, &page(), 1), Action::None, "no misses, nothing to follow");
}

#[test]
fn shared_pages_without_a_dominant_node_stay() {
    assert_eq!(decide(&p(), &[17, 64], 0, &page(), 1), Action::None, "just under 80%");
    assert_eq!(decide(&p(), &[0, 50, 50], 0, &page(), 1), Action::None);
}

#[test]
fn pages_already_home_stay() {
    assert_eq!(decide(&p(), &[100, 0], 0, &page(), 1), Action::None);
    assert_eq!(decide(&p(), &[0, 100], 1, &PageInfo { node: 1, ..page() }, 1), Action::None);
}

#[test]
fn ties_go_to_the_lowest_node() {
    let half = Params { dominance_percent: 50, ..p() };
    assert_eq!(decide(&half, &[0, 40, 40], 0, &page(), 1), Action::Migrate(1));
}

#[test]
fn frozen_pages_stay_until_the_interval() {
    let frozen = PageInfo { frozen_until: 10, ..page() };
    assert_eq!(decide(&p(), &[0, 1000], 0, &frozen, 9), Action::None);
    assert_eq!(decide(&p(), &[0, 1000], 0, &frozen, 10), Action::Migrate(1));
}

#[test]
fn pinned_pages_stay() {
    assert_eq!(decide(&p(), &[0, 1000], 0, &PageInfo { pins: 1, ..page() }, 1), Action::None);
}

#[test]
fn shared_state_pages_are_not_migrated() {
    for state in [PageState::ReadShared, PageState::CowShared] {
        assert_eq!(decide(&p(), &[0, 1000], 0, &PageInfo { state, ..page() }, 1), Action::None);
    }
}

#[test]
fn pages_that_moved_too_often_freeze() {
    assert_eq!(decide(&p(), &[0, 1000], 0, &PageInfo { moves: 3, ..page() }, 1), Action::Migrate(1));
    assert_eq!(decide(&p(), &[0, 1000], 0, &PageInfo { moves: 4, ..page() }, 1), Action::Freeze);
    assert_eq!(decide(&p(), &[1000, 0], 0, &PageInfo { moves: 9, ..page() }, 1), Action::None, "home: no freeze");
}

#[test]
fn huge_counts_do_not_overflow() {
    assert_eq!(decide(&p(), &[u32::MAX, u32::MAX, u32::MAX], 0, &page(), 1), Action::None);
    assert_eq!(decide(&p(), &[0, u32::MAX], 0, &page(), 1), Action::Migrate(1));
}

#[test]
fn parse_reads_every_key_and_keeps_defaults() {
    let all = parse_params(
        "trigger=32,interval=50,freeze=4,batch=128,dominance=90,max-moves=2,sharing=8,max-collapses=3,window=4",
    )
    .unwrap();
    let want = Params {
        trigger: 32,
        interval_ms: 50,
        freeze_intervals: 4,
        batch: 128,
        dominance_percent: 90,
        max_moves: 2,
        sharing: 8,
        max_collapses: 3,
        window: 4,
    };
    assert_eq!(all, want);
    assert_eq!(parse_params("").unwrap(), p());
    assert_eq!(parse_params(" batch = 1 , ").unwrap(), Params { batch: 1, ..p() });
    assert_eq!(parse_params(&p().to_string()).unwrap(), p());
}

#[test]
fn parse_errors_name_the_key() {
    for (s, key) in [
        ("trigger=lots", "trigger"),
        ("max-moves=300", "max-moves"),
        ("interval=0", "interval"),
        ("dominance=101", "dominance"),
        ("dominance=0", "dominance"),
        ("frobnicate=1", "frobnicate"),
        ("batch", "batch"),
        ("freeze=-1", "freeze"),
        ("window=0", "window"),
    ] {
        let err = parse_params(s).unwrap_err();
        assert!(err.contains(key), "{s:?}: {err}");
    }
}

#[test]
fn read_shared_hot_page_is_replicated_to_its_readers() {
    // Nodes 1 and 2 read, the master is on node 0 (which reads too).
    assert_eq!(decide_shared(&p(), &[20, 30, 16], &page(), &clean(), 1), Share::Replicate(0b110));
    // Node 3 is under the sharing threshold: no copy for it.
    assert_eq!(decide_shared(&p(), &[40, 30, 0, 15], &page(), &clean(), 1), Share::Replicate(0b10));
    // Readers that hold a copy already need none.
    let replicated = PageInfo { state: PageState::ReadShared, replicas: 0b10, ..page() };
    assert_eq!(decide_shared(&p(), &[40, 30], &replicated, &clean(), 1), Share::None);
    assert_eq!(decide_shared(&p(), &[40, 30, 20], &replicated, &clean(), 1), Share::Replicate(0b100));
    // A frame shared copy-on-write (merged kernel text) is read-only already.
    let cow = PageInfo { state: PageState::CowShared, ..page() };
    assert_eq!(decide_shared(&p(), &[40, 40], &cow, &clean(), 1), Share::Replicate(0b10));
}

#[test]
fn pages_replication_cannot_help_are_left() {
    assert_eq!(
        decide_shared(&p(), &[40, 20], &page(), &History { written: true, ..clean() }, 1),
        Share::None,
        "written"
    );
    assert_eq!(decide_shared(&p(), &[30, 30], &page(), &clean(), 1), Share::None, "60 misses: cold");
    assert_eq!(decide_shared(&p(), &[100, 15], &page(), &clean(), 1), Share::None, "one reader: migration's job");
    let frozen = PageInfo { frozen_until: 5, ..page() };
    assert_eq!(decide_shared(&p(), &[40, 40], &frozen, &clean(), 4), Share::None);
    let pinned = PageInfo { pins: 1, ..page() };
    assert_eq!(decide_shared(&p(), &[40, 40], &pinned, &clean(), 1), Share::None);
}

#[test]
fn nodes_that_read_in_turn_share_a_page() {
    // Node 1 read it two intervals ago, node 0 reads it now (the master
    // went to node 1): two readers, so node 0 gets a copy.
    let mut r = Readers::default();
    r.note(&p(), &[0, 64], 3);
    r.note(&p(), &[64, 0], 5);
    let h = History { recent: r.recent(&p(), 5), ..clean() };
    let on_1 = PageInfo { node: 1, ..page() };
    assert_eq!(decide_shared(&p(), &[64, 0], &on_1, &h, 5), Share::Replicate(0b1));
    // Without the memory, the page is node 0's alone: migration's job.
    assert_eq!(decide_shared(&p(), &[64, 0], &on_1, &clean(), 5), Share::None);
}

#[test]
fn readers_are_forgotten_after_one_to_two_windows() {
    let p = Params { window: 4, ..p() };
    let mut r = Readers::default();
    r.note(&p, &[16, 15], 5);
    assert_eq!(r.recent(&p, 5), 0b1, "node 1 is under the sharing threshold");
    assert_eq!(r.recent(&p, 11), 0b1, "the next window still remembers");
    assert_eq!(r.recent(&p, 12), 0, "two windows later: forgotten");
    r.note(&p, &[0, 20], 9);
    assert_eq!(r.recent(&p, 9), 0b11);
    assert_eq!(r.recent(&p, 13), 0b10);
}

#[test]
fn pages_that_keep_collapsing_freeze() {
    assert_eq!(
        decide_shared(&p(), &[40, 40], &page(), &History { collapses: 1, ..clean() }, 1),
        Share::Replicate(0b10)
    );
    assert_eq!(decide_shared(&p(), &[40, 40], &page(), &History { collapses: 2, ..clean() }, 1), Share::Freeze);
    // Watches that ended in writes stop the attempts, but freeze nothing:
    // migration may still help a read-write page.
    assert_eq!(decide_shared(&p(), &[40, 40], &page(), &History { dirty: 1, ..clean() }, 1), Share::Replicate(0b10));
    assert_eq!(decide_shared(&p(), &[40, 40], &page(), &History { dirty: 2, ..clean() }, 1), Share::None);
}

proptest! {
    /// Whatever the counts and the remembered readers: copies go only to
    /// readers (at least `sharing` misses now, or recently) that lack one,
    /// never to the master's node, only for hot unwritten pages with two
    /// or more readers.
    #[test]
    fn replication_obeys_the_rules(counts in prop::collection::vec(0u32..100, 1..6), home in 0usize..6,
                                   replicas in 0u64..64, written: bool, recent in 0u64..64) {
        let info = PageInfo { node: home, replicas: replicas & !(1 << home), ..page() };
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        let now = (0..counts.len()).filter(|&n| counts[n] >= 16).fold(0u64, |s, n| s | 1 << n);
        let h = History { written, recent, ..clean() };
        if let Share::Replicate(set) = decide_shared(&p(), &counts, &info, &h, 0) {
            prop_assert!(!written && total >= 64 && (now | recent).count_ones() >= 2);
            prop_assert_eq!(set & (1 << home), 0);
            prop_assert_eq!(set & info.replicas, 0);
            prop_assert_eq!(set & !(now | recent), 0);
        }
    }

    #[test]
    fn params_round_trip(trigger in any::<u32>(), interval in 1u32.., freeze in any::<u32>(), batch in any::<usize>(),
                         dominance in 1u32..=100, max_moves in any::<u8>(), sharing in any::<u32>(), max_collapses in any::<u8>(),
                         window in 1u32..) {
        let p = Params { trigger, interval_ms: interval, freeze_intervals: freeze, batch, dominance_percent: dominance, max_moves, sharing, max_collapses, window };
        prop_assert_eq!(parse_params(&p.to_string()), Ok(p));
    }

    /// Whatever the counts, a migration goes to a node other than home that
    /// has at least the dominance share, and only for a hot page.
    #[test]
    fn migrations_obey_the_rules(counts in prop::collection::vec(0u32..200, 1..5), home in 0usize..5, moves in 0u8..6) {
        let info = PageInfo { node: home, moves, ..page() };
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        match decide(&p(), &counts, home, &info, 0) {
            Action::Migrate(n) => {
                prop_assert!(n != home && total >= 64 && moves < 4);
                prop_assert!(counts[n] as u64 * 100 >= total * 80);
            }
            Action::Freeze => prop_assert!(moves >= 4 && total >= 64),
            Action::None => {}
        }
    }
}
