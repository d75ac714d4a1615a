//! What fig6 reads from a run's console: the sharing census the monitor
//! prints when the run's first VM ends (`stats: census: ...`, only with
//! `census = true`), each VM's statistics (boot-image pages shared, disk
//! blocks mapped from the block cache), and whether the census came at
//! the right moment: every VM alive (the census counts all of them) and
//! past its workload (its `DISCO-HOLD` line before the census line).

use super::run::{vm_name, HOLD};
use crate::util::stat;

/// One run's memory footprint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Footprint {
    /// The census: VMs counted, guest pages mapped, machine frames behind
    /// them, distinct contents, pages captured and possible.
    pub vms: u64,
    pub pages: u64,
    pub frames: u64,
    pub distinct: u64,
    pub captured: u64,
    pub possible: u64,
    /// Sums over the VMs' replication lines.
    pub boot_shared: u64,
    pub cache_mapped: u64,
    /// Every VM's own frames (`frames per node [a, b]` summed), at its end.
    pub own_frames: u64,
    /// Why the census does not measure the run as fig6 needs (empty: it does).
    pub problems: Vec<String>,
}

/// The numbers of a `stats: census: ...` line.
fn census(line: &str) -> Option<[u64; 6]> {
    let l = &line[line.find("census: ")?..];
    Some([
        stat(l, "census:")?,
        stat(l, "map")?,
        stat(l, "pages in")?,
        stat(l, ");")?,
        stat(l, "sharing captured")?,
        stat(l, " of ")?,
    ])
}

/// The sum of `frames per node [a, b, ...]` on a line.
fn frames_per_node(line: &str) -> Option<u64> {
    let rest = &line[line.find("frames per node [")? + "frames per node [".len()..];
    let list = &rest[..rest.find(']')?];
    list.split(',').map(|x| x.trim().parse::<u64>().ok()).sum()
}

/// Reads the footprint of a run of `n` VMs from its console.
pub fn read(lines: &[String], n: u32) -> Footprint {
    let mut f = Footprint::default();
    let at = lines.iter().position(|l| l.starts_with("stats: census: "));
    match at.and_then(|i| census(&lines[i])) {
        Some([vms, pages, frames, distinct, captured, possible]) => {
            (f.vms, f.pages, f.frames, f.distinct, f.captured, f.possible) =
                (vms, pages, frames, distinct, captured, possible)
        }
        None => f.problems.push("no census line (`stats: census: ...`)".into()),
    }
    if at.is_some() && f.vms != u64::from(n) {
        f.problems.push(format!("the census counted {} VMs of {n}: one had ended before it", f.vms));
    }
    for i in 0..n {
        let name = vm_name(n, i);
        let hold = format!("[{name}] {HOLD} status=");
        match lines.iter().position(|l| l.starts_with(&hold)) {
            None => f.problems.push(format!("vm {name}: no `{HOLD}` line (its workload did not end)")),
            Some(h) if at.is_some_and(|c| h > c) => {
                f.problems.push(format!("vm {name}: the census came before its workload ended (--hold too short)"))
            }
            Some(_) => {}
        }
        let stats = format!("stats: vm {name}: ");
        let mine: Vec<&String> = lines.iter().filter(|l| l.starts_with(&stats)).collect();
        let repl = mine.iter().find(|l| l.contains(": replication:"));
        f.boot_shared += repl.and_then(|l| stat(l, "boot image pages shared")).unwrap_or(0);
        f.cache_mapped += repl.and_then(|l| stat(l, "block cache mapped")).unwrap_or(0);
        f.own_frames += mine.iter().find_map(|l| frames_per_node(l)).unwrap_or(0);
    }
    f
}

impl Footprint {
    /// Machine memory behind the guests' pages, MiB (4 KiB frames).
    pub fn mib(&self) -> f64 {
        self.frames as f64 * 4096.0 / (1 << 20) as f64
    }

    /// Captured / possible sharing, %.
    pub fn captured_pct(&self) -> f64 {
        100.0 * self.captured as f64 / self.possible.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = include_str!("fixtures/fig6-2-shared.console.txt");

    #[test]
    fn reads_the_census_and_every_vms_statistics() {
        let lines: Vec<String> = CONSOLE.lines().map(String::from).collect();
        let f = read(&lines, 2);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.vms, 2);
        assert!(f.frames > 0 && f.frames <= f.pages && f.captured == f.pages - f.frames, "{f:?}");
        assert!(f.possible == f.pages - f.distinct && f.boot_shared > 0 && f.cache_mapped > 0, "{f:?}");
    }

    #[test]
    fn a_census_too_early_or_missing_is_a_problem() {
        let lines: Vec<String> = CONSOLE.lines().map(String::from).collect();
        // The census moved before w1's hold line.
        let census = lines.iter().position(|l| l.starts_with("stats: census: ")).unwrap();
        let mut early = lines.clone();
        let c = early.remove(census);
        early.insert(0, c);
        assert!(read(&early, 2).problems.iter().any(|p| p.contains("before its workload ended")));
        let none: Vec<String> = lines.iter().filter(|l| !l.contains("census")).cloned().collect();
        assert!(read(&none, 2).problems.iter().any(|p| p.contains("no census line")));
        assert!(read(&lines, 3).problems.iter().any(|p| p.contains("counted 2 VMs of 3")));
    }

    #[test]
    fn parses_the_monitors_census_line() {
        let l = "stats: census: 3 VMs map 9 guest pages in 6 machine frames (2 shared: 1 by 2 VMs, 1 by 3 VMs, 0 by \
                 4-7 VMs, 0 by 8+ VMs); 5 distinct contents (1 zero pages): sharing captured 3 of 4 possible pages (75%)";
        assert_eq!(census(l), Some([3, 9, 6, 5, 3, 4]));
        assert_eq!(frames_per_node("stats: vm w: exits ...; frames per node [21269, 13734]"), Some(35003));
    }
}
