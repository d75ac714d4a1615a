//! The fuzz targets: one per parser of guest- or user-controlled input.
//! Each turns any byte string into a run of its parser and panics when an
//! invariant the parser promises breaks; it returns feature bits (which
//! kinds of behaviour the input reached) that steer the corpus.

mod driver;
mod dtb;
mod guest;
mod machine;
mod manifest;
mod pl011;
mod psci;
mod text;
mod vgic;
mod virtio_blk;
mod virtio_balloon;
mod virtio_net;
mod virtqueue;

pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// Inputs are cut to this length.
    pub max_len: usize,
    /// Tokens the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Inputs to start from (besides the files in the corpus directory).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// One run; panics on a broken invariant.
    pub run: fn(&[u8]) -> u64,
}

pub fn all() -> Vec<Target> {
    vec![
        vgic::TARGET,
        pl011::TARGET,
        psci::TARGET,
        virtqueue::TARGET,
        virtio_blk::TARGET,
        virtio_net::TARGET,
        virtio_balloon::TARGET,
        dtb::TARGET,
        machine::TARGET,
        manifest::TARGET,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed runs clean, and each device target's first seed gets as
    /// far as it is written to: a request or frame completed with an
    /// interrupt and no NEEDS_RESET (feature bit 4 of [`driver::process`]).
    #[test]
    fn seeds_run_clean_and_deep() {
        for t in all() {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{}: no seeds", t.name);
            for (i, s) in seeds.iter().enumerate() {
                let features = (t.run)(s);
                assert_ne!(features, 0, "{} seed {i}", t.name);
                if t.name.starts_with("virtio-") && i == 0 {
                    assert!(features & (1 << 4) != 0, "{} seed {i}: features {features:#x}", t.name);
                }
            }
        }
    }
}
