//! The fuzz loop: replay a target's seeds, then mutate corpus entries
//! until the time is up. A panic (a broken invariant or a bug in the
//! parser) is caught, counted and its input written to the crash
//! directory, one file per panic site. An input whose run reports a
//! feature bit no earlier input had joins the corpus (a coarse,
//! target-defined stand-in for coverage feedback).

use super::mutate::mutate;
use super::rng::{fnv, Rng};
use super::targets::Target;
use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Corpus entries kept at most; a new one then replaces a random one.
const MAX_CORPUS: usize = 4096;

/// One target's run.
#[derive(Debug, Clone)]
pub struct Stats {
    pub name: &'static str,
    pub execs: u64,
    pub secs: f64,
    pub crashes: u64,
    pub corpus: usize,
    /// One input per distinct panic site, with its message.
    pub crash_files: Vec<(PathBuf, String)>,
}

impl Stats {
    pub fn per_sec(&self) -> f64 {
        self.execs as f64 / self.secs.max(1e-9)
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `input` once; `Err` holds the panic message (with its location).
pub fn exec(target: &Target, input: &[u8]) -> Result<u64, String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
        .map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into()))
}

/// Panics are recorded for [`exec`] instead of printed while `f` runs.
pub fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    let old = panic::take_hook();
    panic::set_hook(Box::new(|info| LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()))));
    let r = f();
    panic::set_hook(old);
    r
}

/// How long one target runs: until `time` has passed or `execs` inputs
/// ran, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub time: Duration,
    pub execs: u64,
}

/// Fuzzes `target` within `budget` from `seeds`; crash inputs go to
/// `crash_dir/<target>/`.
pub fn run(target: &Target, seeds: Vec<Vec<u8>>, budget: Budget, seed: u64, crash_dir: &Path) -> Stats {
    let start = Instant::now();
    let mut stats = Stats { name: target.name, execs: 0, secs: 0.0, crashes: 0, corpus: 0, crash_files: Vec::new() };
    let mut sites = HashSet::new();
    let mut seen = 0u64;
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng::new(seed ^ fnv(target.name.as_bytes()));
    let mut one = |input: Vec<u8>, corpus: &mut Vec<Vec<u8>>, stats: &mut Stats, rng: &mut Rng| {
        stats.execs += 1;
        match exec(target, &input) {
            Ok(features) if features & !seen != 0 || corpus.is_empty() => {
                seen |= features;
                if corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                } else {
                    let i = rng.below(corpus.len());
                    corpus[i] = input;
                }
            }
            Ok(_) => {}
            Err(msg) => {
                stats.crashes += 1;
                let site = msg.lines().next().unwrap_or("").to_string();
                if sites.insert(site) {
                    stats.crash_files.push((save_crash(crash_dir, target.name, &input), msg));
                }
            }
        }
    };
    for s in seeds {
        one(s, &mut corpus, &mut stats, &mut rng);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    while start.elapsed() < budget.time && stats.execs < budget.execs {
        for _ in 0..64 {
            let input = if rng.chance(64) {
                (0..rng.below(target.max_len.min(512))).map(|_| rng.next() as u8).collect()
            } else {
                let base = &corpus[rng.below(corpus.len())];
                let other = &corpus[rng.below(corpus.len())];
                mutate(&mut rng, base, other, target.dict, target.max_len)
            };
            one(input, &mut corpus, &mut stats, &mut rng);
        }
    }
    stats.secs = start.elapsed().as_secs_f64();
    stats.corpus = corpus.len();
    stats
}

fn save_crash(dir: &Path, target: &str, input: &[u8]) -> PathBuf {
    let dir = dir.join(target);
    let path = dir.join(format!("crash-{:016x}.bin", fnv(input)));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, input)) {
        eprintln!("fuzz: cannot write {}: {e}", path.display());
    }
    path
}
