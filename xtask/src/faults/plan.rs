//! The campaign's plan (pure): which faults the attacker injects in each
//! of its boots. Boot `b` reads line `b` of the plan file in its
//! initramfs (`disco.boot=b` on its command line), so a restarted attacker
//! carries on where the campaign is, with no state kept in the guest.
//!
//! A boot injects faults drawn uniformly from [`KINDS`] until it draws one
//! that ends the guest (panic, oops, reset, power-off, CPU_OFF of its last
//! vCPU, a masked spin) or has injected [`MAX_PER_BOOT`]; then it resets
//! itself. The plan is a function of the seed alone, so a failing campaign
//! is rerun exactly with `--seed`.

/// What one injection does (the guest side is `bench/faults/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `echo c > /proc/sysrq-trigger`: the kernel panics.
    Panic,
    /// A NULL store in kernel code (the module): an oops, then a reset.
    Oops,
    /// `reboot -f`: PSCI SYSTEM_RESET.
    Reset,
    /// `poweroff -f`: PSCI SYSTEM_OFF (the attacker restarts: `restart = "always"`).
    PowerOff,
    /// Every other vCPU offlined, then PSCI CPU_OFF on the last one.
    CpuOff,
    /// An endless loop with interrupts masked (the guest's RCU stall
    /// detector panics it, or the campaign's watchdog resets it).
    Spin,
    /// Loads and stores at random guest-physical pages outside RAM.
    Wild,
    /// Random reads and writes of every emulated device's registers.
    Mmio,
    /// Garbage virtqueues on the attacker's virtio-net device.
    Vqueue,
    /// Random HVC function IDs and arguments.
    Hvc,
    /// Random SMC function IDs and arguments.
    Smc,
    /// Trapped system register accesses (ID space reads, ICC_SGI1R_EL1).
    Sysreg,
}

pub const KINDS: [Kind; 12] = [
    Kind::Panic,
    Kind::Oops,
    Kind::Reset,
    Kind::PowerOff,
    Kind::CpuOff,
    Kind::Spin,
    Kind::Wild,
    Kind::Mmio,
    Kind::Vqueue,
    Kind::Hvc,
    Kind::Smc,
    Kind::Sysreg,
];

/// Injections one boot makes at most before it resets itself.
pub const MAX_PER_BOOT: usize = 6;

impl Kind {
    /// The name in the plan file, the guest script and the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Panic => "panic",
            Kind::Oops => "oops",
            Kind::Reset => "reset",
            Kind::PowerOff => "poweroff",
            Kind::CpuOff => "cpu-off",
            Kind::Spin => "spin",
            Kind::Wild => "wild",
            Kind::Mmio => "mmio",
            Kind::Vqueue => "vqueue",
            Kind::Hvc => "hvc",
            Kind::Smc => "smc",
            Kind::Sysreg => "sysreg",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == name)
    }

    /// Does the guest end (and the boot with it)?
    pub fn ends_boot(self) -> bool {
        matches!(self, Kind::Panic | Kind::Oops | Kind::Reset | Kind::PowerOff | Kind::CpuOff | Kind::Spin)
    }
}

/// splitmix64: small, and the same on every host.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Every kind once, in the fewest boots: the kinds that leave the guest
/// running together, then each one that ends it in a boot of its own.
/// `mmio` goes last among the others: its random writes may silence the
/// console or the interrupt controller, which only a reset undoes.
pub fn covering() -> Vec<Vec<Kind>> {
    let (ends, mut stays): (Vec<Kind>, Vec<Kind>) = KINDS.iter().partition(|k| k.ends_boot());
    stays.sort_by_key(|&k| k == Kind::Mmio);
    std::iter::once(stays).chain(ends.into_iter().map(|k| vec![k])).collect()
}

/// The boots' injections, at least `count` in all; with `cover`, the
/// [`covering`] boots first.
pub fn plan(count: usize, seed: u64, cover: bool) -> Vec<Vec<Kind>> {
    let mut rng = Rng(seed);
    let mut boots = if cover { covering() } else { Vec::new() };
    let mut planned: usize = boots.iter().map(Vec::len).sum();
    while planned < count {
        let mut boot = Vec::new();
        while boot.len() < MAX_PER_BOOT && planned < count {
            let kind = KINDS[(rng.next() % KINDS.len() as u64) as usize];
            boot.push(kind);
            planned += 1;
            if kind.ends_boot() {
                break;
            }
        }
        boots.push(boot);
    }
    boots
}

/// The plan file: line `b` (1-based) holds boot `b`'s kinds.
pub fn text(plan: &[Vec<Kind>]) -> String {
    plan.iter().map(|b| b.iter().map(|k| k.name()).collect::<Vec<_>>().join(" ") + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boot_ends_with_one_fault_that_ends_it_or_is_full() {
        let p = plan(1000, 7, false);
        assert_eq!(p.iter().map(Vec::len).sum::<usize>(), 1000);
        for (i, boot) in p.iter().enumerate() {
            let (last, rest) = boot.split_last().expect("no empty boot");
            assert!(rest.iter().all(|k| !k.ends_boot()), "boot {i}: {boot:?}");
            assert!(last.ends_boot() || boot.len() == MAX_PER_BOOT || i == p.len() - 1, "boot {i}: {boot:?}");
        }
    }

    #[test]
    fn a_thousand_cover_every_kind_and_the_seed_decides() {
        let p = plan(1000, 1, false);
        for k in KINDS {
            let n = p.iter().flatten().filter(|&&x| x == k).count();
            assert!((50..=120).contains(&n), "{k:?}: {n} of 1000");
        }
        assert_eq!(p, plan(1000, 1, false));
        assert_ne!(p, plan(1000, 2, false));
    }

    #[test]
    fn covering_has_every_kind_once_in_seven_boots() {
        let c = plan(12, 5, true);
        assert_eq!(c, covering());
        assert_eq!(c.len(), 7);
        let mut all: Vec<Kind> = c.concat();
        all.sort();
        assert_eq!(all, KINDS.to_vec());
        assert!(c[0].iter().all(|k| !k.ends_boot()) && c[1..].iter().all(|b| b.len() == 1 && b[0].ends_boot()));
    }

    #[test]
    fn text_round_trips() {
        let p = plan(40, 3, true);
        let back: Vec<Vec<Kind>> =
            text(&p).lines().map(|l| l.split(' ').map(|n| Kind::from_name(n).expect("a kind")).collect()).collect();
        assert_eq!(back, p);
    }
}
