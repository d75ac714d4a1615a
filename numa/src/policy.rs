//! Disco's page migration policy (Verghese, Devine, Gupta, Rosenblum,
//! "Operating system support for improving data locality on CC-NUMA
//! compute servers", ASPLOS 1996), as a pure function.
//!
//! Each interval the placement loop has, per hot page, how many cache
//! misses (or sampled touches) each node took on it. A page is hot when its
//! misses reach the trigger; a hot page that one node dominates and that
//! lives elsewhere moves to that node. A page that keeps moving is frozen
//! for a while, so pages shared by alternating nodes do not ping-pong.
//! Pages that are not [`PageState::Private`] are left alone: a read-shared
//! page is replicated or collapsed, not moved, and moving a COW-shared
//! frame would move it for every sharer.

use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::pmap::{PageInfo, PageState};
use crate::NodeId;

/// Tunables of the policy. See [`Params::default`] for why each default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Misses per interval that make a page hot.
    pub trigger: u32,
    /// Share (percent) of a hot page's misses the top node must have for
    /// the page to move there.
    pub dominance_percent: u32,
    /// Moves after which a page is frozen instead of moved again.
    pub max_moves: u8,
    /// Intervals a frozen page stays put.
    pub freeze_intervals: u32,
    /// Most pages moved per node per interval.
    pub batch: usize,
    /// Length of an interval (counters are reset after each).
    pub interval_ms: u32,
    /// Misses in an interval that make a node a *reader* of a hot page it
    /// shares with others (Verghese et al.'s sharing threshold).
    pub sharing: u32,
    /// Collapses after which a page is frozen instead of replicated again.
    pub max_collapses: u8,
    /// Intervals a node stays a recent *reader* of a page after the
    /// interval it read it in ([`Readers`]).
    pub window: u32,
}

impl Default for Params {
    /// - `interval_ms` 100: long enough for a hot page to gather tens of
    ///   misses and for a counter pass to be cheap relative to it, short
    ///   enough that a phase change is followed within a fraction of a
    ///   second.
    /// - `trigger` 64: a move costs a 4 KiB copy plus a TLB invalidation,
    ///   a few microseconds; 64 remote misses cost about as much extra
    ///   latency, so a page this hot repays its move within one interval.
    ///   Below it, counter noise would move cold pages.
    /// - `dominance_percent` 80: a page several nodes use only trades whose
    ///   misses are remote, and alternates; at 80% a move makes at least
    ///   four fifths of the page's misses local.
    /// - `max_moves` 4: a page moved four times without a freeze is
    ///   following alternating users; more moves are pure copy cost.
    /// - `freeze_intervals` 8: 0.8 s at the default interval, long enough
    ///   to stop a ping-pong, short enough to follow a real change soon.
    /// - `sharing` 16, a quarter of the trigger (the ratio Verghese et al.
    ///   used): a node with fewer misses on a shared page gains too little
    ///   from a local copy to repay it within an interval.
    /// - `max_collapses` 2: a page written twice after being replicated is
    ///   read-write shared; replicating it again would only collapse again.
    ///   Two watches that ended in a write also end the attempts (without
    ///   a freeze: migration still applies).
    /// - `window` 8: nodes that stream through a read-shared data set
    ///   seldom miss on one page in the same interval (one node's pass
    ///   reaches it an interval before another's); measured with
    ///   `replicate-shared`, a pass over its 8 MiB scene spans one to
    ///   several intervals under the plugin, so readers are remembered
    ///   for 8 to 16 (0.8-1.6 s), long enough to see every node of a
    ///   pass, short enough to forget a node that stopped reading.
    /// - `batch` 1024: 4 MiB of copying per node per interval, about a
    ///   millisecond on hardware (1% of the interval), with one TLB
    ///   broadcast per batch. Measured under the ccNUMA plugin (`cargo
    ///   xtask bench placement`), 256 left a moved VM's 16 MiB working set
    ///   mostly remote for 16 intervals, longer than many workloads' hot
    ///   phases.
    fn default() -> Self {
        Self {
            trigger: 64,
            dominance_percent: 80,
            max_moves: 4,
            freeze_intervals: 8,
            batch: 1024,
            interval_ms: 100,
            sharing: 16,
            max_collapses: 2,
            window: 8,
        }
    }
}

impl fmt::Display for Params {
    /// The form [`parse_params`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trigger={},interval={},freeze={},batch={},dominance={},max-moves={},sharing={},max-collapses={},window={}",
            self.trigger,
            self.interval_ms,
            self.freeze_intervals,
            self.batch,
            self.dominance_percent,
            self.max_moves,
            self.sharing,
            self.max_collapses,
            self.window
        )
    }
}

/// What to do with one page this interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave it.
    None,
    /// Move it to this node.
    Migrate(NodeId),
    /// It moved too often: freeze it for `freeze_intervals` and reset its
    /// moves, instead of moving it again.
    Freeze,
}

/// Decides for one page. `counts[n]`: misses by node `n` in the last
/// interval; `home`: the node the page is on; `info`: its pmap entry;
/// `now`: the current interval number.
///
/// In order: frozen (`now < frozen_until`), pinned or not Private -> None;
/// fewer than `trigger` misses -> None; the top node (lowest id on a tie)
/// has under `dominance_percent` of them or is `home` -> None; the page
/// has moved `max_moves` times -> Freeze; else Migrate(top node).
pub fn decide(p: &Params, counts: &[u32], home: NodeId, info: &PageInfo, now: u32) -> Action {
    if now < info.frozen_until || info.pins > 0 || info.state != PageState::Private {
        return Action::None;
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total == 0 || total < u64::from(p.trigger) {
        return Action::None;
    }
    // max_by_key keeps the last maximum; reversing keeps the lowest id.
    let Some((top, &misses)) = counts.iter().enumerate().rev().max_by_key(|(_, &c)| c) else {
        return Action::None;
    };
    if top == home || u64::from(misses) * 100 < total * u64::from(p.dominance_percent) {
        return Action::None;
    }
    if info.moves >= p.max_moves {
        Action::Freeze
    } else {
        Action::Migrate(top)
    }
}

/// What to do with one hot page several nodes use (replication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Leave it (cold, one user, written, frozen or pinned).
    None,
    /// Give these nodes (bit n = node n) a read-only copy each: every
    /// reader without one; never the master's node.
    Replicate(u64),
    /// It collapsed too often: freeze it instead of replicating again.
    Freeze,
}

/// The nodes that read a page recently: those with at least `sharing`
/// misses on it in an interval of the current or the previous *epoch*
/// (`window` intervals each), so a node is remembered for `window` to
/// `2 * window` intervals. Two bit sets and an epoch number: a few bytes
/// per page the policy has looked at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Readers {
    epoch: u32,
    current: u64,
    previous: u64,
}

impl Readers {
    /// Records the readers among `counts` (misses per node) of interval `now`.
    pub fn note(&mut self, p: &Params, counts: &[u32], now: u32) {
        self.advance(p, now);
        self.current |= readers_of(p, counts);
    }

    /// The nodes that read the page within the window before `now`
    /// (bit n = node n), including what [`Readers::note`] recorded at `now`.
    pub fn recent(&self, p: &Params, now: u32) -> u64 {
        let mut r = *self;
        r.advance(p, now);
        r.current | r.previous
    }

    fn advance(&mut self, p: &Params, now: u32) {
        let epoch = now / p.window.max(1);
        if epoch != self.epoch {
            self.previous = if epoch == self.epoch.wrapping_add(1) { self.current } else { 0 };
            self.current = 0;
            self.epoch = epoch;
        }
    }
}

/// The nodes (bit n = node n, n < 64) with at least `sharing` misses.
fn readers_of(p: &Params, counts: &[u32]) -> u64 {
    counts.iter().enumerate().take(64).filter(|&(_, &c)| c > 0 && c >= p.sharing).fold(0u64, |set, (n, _)| set | 1 << n)
}

/// What the monitor remembers of a page beyond its pmap entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Someone wrote it in the interval (or since it was write-protected).
    pub written: bool,
    /// Its replicas were collapsed by a write this often since its last freeze.
    pub collapses: u8,
    /// Watches that ended in a write (it was never replicated then).
    pub dirty: u8,
    /// [`Readers::recent`]: nodes that read it in the window.
    pub recent: u64,
}

/// Decides replication for one page (Disco's policy after Verghese et al.):
/// `counts[n]` are node n's misses in the interval, `h` what is known of
/// the page's past.
///
/// A COW-shared page (a frame shared with other VMs: a merged boot-image
/// page, a cached disk block) is read-only by construction, so it gets
/// copies like any read-shared page, and a write replaces it by a private
/// copy with the replicas dropped (kernel text merged back after boot is
/// the case that matters: every vCPU runs it).
///
/// In order: frozen or pinned -> None; fewer than `trigger`
/// misses -> None; fewer than two *readers* (nodes with at least `sharing`
/// misses now, or recently: `h.recent`) -> None, which leaves a one-user
/// page to [`decide`]; written now, or `max_collapses` watches that ended
/// in a write -> None (a read-write shared page gains nothing from copies;
/// migration may still help it, so it is not frozen); collapsed
/// `max_collapses` times -> Freeze; else Replicate(the readers without a
/// copy), None when all have one.
pub fn decide_shared(p: &Params, counts: &[u32], info: &PageInfo, h: &History, now: u32) -> Share {
    if now < info.frozen_until || info.pins > 0 {
        return Share::None;
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total == 0 || total < u64::from(p.trigger) {
        return Share::None;
    }
    let readers = readers_of(p, counts) | h.recent;
    if readers.count_ones() < 2 || h.written || h.dirty >= p.max_collapses {
        return Share::None;
    }
    if h.collapses >= p.max_collapses {
        return Share::Freeze;
    }
    let home = if info.node < 64 { 1u64 << info.node } else { 0 };
    match readers & !home & !info.replicas {
        0 => Share::None,
        missing => Share::Replicate(missing),
    }
}

/// Reads `key=value` pairs separated by commas, e.g.
/// `trigger=64,interval=100,freeze=8,batch=1024,dominance=80,max-moves=4`;
/// keys left out keep their defaults, an empty string is all defaults.
/// Errors name the key.
pub fn parse_params(s: &str) -> Result<Params, String> {
    let mut p = Params::default();
    for pair in s.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}`: expected key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "trigger" => p.trigger = number(key, value)?,
            "interval" => p.interval_ms = number(key, value)?,
            "freeze" => p.freeze_intervals = number(key, value)?,
            "batch" => p.batch = number(key, value)?,
            "dominance" => p.dominance_percent = number(key, value)?,
            "max-moves" => p.max_moves = number(key, value)?,
            "sharing" => p.sharing = number(key, value)?,
            "max-collapses" => p.max_collapses = number(key, value)?,
            "window" => p.window = number(key, value)?,
            _ => {
                return Err(format!(
                    "unknown key `{key}` (known: trigger, interval, freeze, batch, dominance, max-moves, sharing, max-collapses, window)"
                ))
            }
        }
    }
    if p.interval_ms == 0 {
        return Err("interval: must be at least 1 ms".into());
    }
    if p.window == 0 {
        return Err("window: must be at least 1 interval".into());
    }
    if !(1..=100).contains(&p.dominance_percent) {
        return Err(format!("dominance: {} is not a percentage in 1..=100", p.dominance_percent));
    }
    Ok(p)
}

fn number<T: core::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{key}: `{value}` is not a number in range"))
}
