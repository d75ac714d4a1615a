//! virtio-balloon (`vdev::virtio::balloon`) over the virtio-mmio
//! transport, driven through a fuzzed guest RAM image by [`super::driver`]
//! (whose checks apply). Guest RAM is 64 KiB here, so 16 pages: the free
//! page reports and inflations name ranges of it. Also checked (by
//! [`Watched`]'s `discard`): the device discards only whole pages inside
//! RAM; and its counts add up (pages whose backing went never exceed the
//! pages reported and inflated).

use super::driver::{self, seed, Step};
use super::guest::{Watched, MEM_BASE};
use super::Target;
use crate::fuzz::input::Bytes;
use vdev::virtio::balloon::{VirtioBalloon, DEFLATE_QUEUE, INFLATE_QUEUE, REPORTING_QUEUE};
use vdev::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use vdev::virtio::transport::VirtioMmio;

pub const TARGET: Target = Target {
    name: "virtio-balloon",
    about: "virtio-mmio transport + split virtqueues + virtio-balloon reports, inflate and deflate",
    max_len: 4096,
    dict: &[],
    seeds,
    run,
};

/// Three queues of 4 (inflate, deflate, reporting) in the first 0x9000
/// bytes, with indirect descriptors.
fn setup() -> Vec<u8> {
    let rings = |q: u16| (2, q * 0x3000, q * 0x3000 + 0x1000, q * 0x3000 + 0x2000);
    seed::setup(1, &[rings(0), rings(1), rings(2)])
}

fn seeds() -> Vec<Vec<u8>> {
    let (next, write, indirect) = (VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT);
    let desc_of = |q: u16| q * 0x3000;
    let mut out = Vec::new();
    // A report of two free ranges (pages 10-11 and 13), device-writable.
    let mut v = setup();
    let r = desc_of(REPORTING_QUEUE);
    seed::desc(&mut v, r, 0, 0xa000, 0x2000, write | next, 1);
    seed::desc(&mut v, r, 1, 0xd000, 0x1000, write, 0);
    seed::submit(&mut v, REPORTING_QUEUE as u8, 0);
    out.push(v);
    // The same through an indirect table, with an unaligned range.
    let mut v = setup();
    seed::desc(&mut v, r, 0, 0x9800, 32, indirect, 0);
    seed::desc(&mut v, 0x9800, 0, 0xa800, 0x1900, write | next, 1);
    seed::desc(&mut v, 0x9800, 1, 0xe000, 0x1000, write, 0);
    seed::submit(&mut v, REPORTING_QUEUE as u8, 0);
    out.push(v);
    // Inflate pages 14 and 15, then deflate them.
    let mut v = setup();
    let pfn = |p: u64| ((MEM_BASE >> 12) + p) as u32;
    let pfns: Vec<u8> = [pfn(14), pfn(15)].iter().flat_map(|p| p.to_le_bytes()).collect();
    seed::poke(&mut v, 0x9c00, &pfns);
    seed::desc(&mut v, desc_of(INFLATE_QUEUE), 0, 0x9c00, 8, 0, 0);
    seed::submit(&mut v, INFLATE_QUEUE as u8, 0);
    seed::desc(&mut v, desc_of(DEFLATE_QUEUE), 0, 0x9c00, 8, 0, 0);
    seed::submit(&mut v, DEFLATE_QUEUE as u8, 0);
    out.push(v);
    out
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let mut t = VirtioMmio::new(VirtioBalloon::new());
    let mut mem = Watched::new();
    driver::bring_up(&mut t, &mut b);
    let (mut features, mut ops) = (0u64, 0);
    while !b.is_empty() && ops < 128 {
        ops += 1;
        features |= 1
            << match driver::step(&mut t, &mut mem, &mut (), &mut b) {
                Step::Done(n) => n,
                Step::Device(_) => {
                    t.device_mut().set_target(b.u32());
                    t.config_changed();
                    9
                }
            };
        let s = t.device().stats();
        assert!(s.freed_pages <= s.reported_pages + s.inflated_pages, "freed more pages than named: {s:?}");
    }
    if !mem.discards.is_empty() {
        features |= 1 << 10;
    }
    features
}
