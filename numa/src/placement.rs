//! Where a waking vCPU runs (Disco: a VM's vCPUs prefer its home node).
//!
//! In order: the CPU it last ran on, if that CPU is idle (its caches and
//! TLB may still hold its state); else the idle CPU nearest the VM's home
//! node; else the least-loaded CPU of the home node's distance class (the
//! last CPU wins ties). Loads are read without locks, so the choice is a
//! good guess, not a guarantee; idle CPUs steal to fix what it gets wrong.

/// Picks a CPU. `nearest`: every CPU, nearest the home node first (as
/// [`nearest_cpus`] orders them); `distance(cpu)`: the CPU's node distance
/// from the home node; `load(cpu)`: vCPUs queued on or running on it.
/// Returns None only when `nearest` is empty.
pub fn choose_cpu(
    nearest: &[usize],
    distance: impl Fn(usize) -> u8,
    load: impl Fn(usize) -> usize,
    last: Option<usize>,
) -> Option<usize> {
    if let Some(last) = last.filter(|&c| nearest.contains(&c) && load(c) == 0) {
        return Some(last);
    }
    if let Some(&idle) = nearest.iter().find(|&&c| load(c) == 0) {
        return Some(idle);
    }
    let home = distance(*nearest.first()?);
    nearest.iter().copied().take_while(|&c| distance(c) == home).min_by_key(|&c| (load(c), Some(c) != last))
}

/// Every CPU ordered by (distance from `home`, index): the preference list
/// of a VM homed there. `cpus` are (cpu index, node) pairs.
pub fn nearest_cpus(cpus: &[(usize, usize)], distance: impl Fn(usize) -> u8) -> alloc::vec::Vec<usize> {
    let mut order: alloc::vec::Vec<(u8, usize)> = cpus.iter().map(|&(cpu, node)| (distance(node), cpu)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, cpu)| cpu).collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// numa2: CPUs 0, 1 on node 0; 2, 3 on node 1; home node 0.
    fn numa2_home0(cpu: usize) -> u8 {
        if cpu < 2 {
            10
        } else {
            20
        }
    }

    #[test]
    fn prefers_idle_last_cpu_then_idle_home_cpu() {
        let nearest = [0, 1, 2, 3];
        let loads = [1, 0, 0, 0];
        assert_eq!(choose_cpu(&nearest, numa2_home0, |c| loads[c], Some(3)), Some(3));
        assert_eq!(choose_cpu(&nearest, numa2_home0, |c| loads[c], Some(0)), Some(1));
        assert_eq!(choose_cpu(&nearest, numa2_home0, |c| loads[c], None), Some(1));
    }

    #[test]
    fn all_busy_goes_to_least_loaded_home_cpu() {
        let nearest = [0, 1, 2, 3];
        assert_eq!(choose_cpu(&nearest, numa2_home0, |c| [3, 2, 1, 1][c], None), Some(1));
        assert_eq!(
            choose_cpu(&nearest, numa2_home0, |c| [2, 2, 1, 1][c], Some(1)),
            Some(1),
            "ties favour the last CPU"
        );
        assert_eq!(choose_cpu(&[], numa2_home0, |_| 0, None), None);
    }

    #[test]
    fn nearest_orders_by_distance_then_index() {
        let cpus = [(0, 0), (1, 0), (2, 1), (3, 1)];
        assert_eq!(nearest_cpus(&cpus, |n| if n == 1 { 10 } else { 20 }), [2, 3, 0, 1]);
    }

    proptest! {
        #[test]
        fn choice_is_idle_when_any_cpu_is(loads in proptest::collection::vec(0usize..4, 1..12), last in proptest::option::of(0usize..12)) {
            let n = loads.len();
            let nearest: alloc::vec::Vec<usize> = (0..n).collect();
            let distance = |c: usize| if c < n / 2 { 10 } else { 20 };
            let got = choose_cpu(&nearest, distance, |c| loads[c], last).unwrap();
            prop_assert!(got < n);
            if loads.contains(&0) {
                prop_assert_eq!(loads[got], 0);
            } else {
                // No idle CPU: a home-class CPU with the least load among them.
                let home_min = (0..n).filter(|&c| distance(c) == distance(0)).map(|c| loads[c]).min().unwrap();
                prop_assert_eq!(distance(got), distance(0));
                prop_assert_eq!(loads[got], home_min);
            }
        }
    }
}
