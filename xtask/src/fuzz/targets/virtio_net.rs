//! virtio-net (`vdev::virtio::net`) over the virtio-mmio transport, driven
//! through a fuzzed guest RAM image by [`super::driver`] (whose checks
//! apply), with frames arriving for the guest. Also checked: every frame
//! the device hands to the switch is an Ethernet frame of 14 to 1518
//! bytes, and the counters add up (frames sent = frames taken out).

use super::driver::{self, seed, Step};
use super::guest::Watched;
use super::Target;
use crate::fuzz::input::Bytes;
use vdev::virtio::net::{VirtioNet, ETH_HLEN, MAX_FRAME};
use vdev::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use vdev::virtio::transport::VirtioMmio;

pub const TARGET: Target = Target {
    name: "virtio-net",
    about: "virtio-mmio transport + split virtqueues + virtio-net receive and transmit",
    max_len: 4096,
    dict: &[],
    seeds,
    run,
};

/// RX queue of 4 at 0x0/0x1000/0x2000, TX queue of 4 at
/// 0x3000/0x4000/0x5000, with indirect descriptors.
fn setup() -> Vec<u8> {
    seed::setup(1, &[(2, 0x0000, 0x1000, 0x2000), (2, 0x3000, 0x4000, 0x5000)])
}

/// A frame with its header (`flags` in the header) at 0x6000.
fn frame(v: &mut Vec<u8>, flags: u8, len: usize) {
    let mut f = vec![flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[2, 0xd1, 0x5c, 0, 0, 1, 0x08, 0x06]);
    f.resize(len, 0x42);
    seed::poke(v, 0x6000, &f);
}

/// Pushes a 60-byte frame for the guest and takes what the guest sent.
fn push_and_take(v: &mut Vec<u8>) {
    v.extend_from_slice(&[8, 60, 0, 0x11]);
}

fn seeds() -> Vec<Vec<u8>> {
    let (next, write, indirect) = (VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT);
    let mut out = Vec::new();
    // A frame sent (header and frame in two buffers), a receive buffer
    // posted and a frame pushed into it.
    let mut v = setup();
    frame(&mut v, 0, 60);
    seed::desc(&mut v, 0x3000, 0, 0x6000, 12, next, 1);
    seed::desc(&mut v, 0x3000, 1, 0x600c, 48, 0, 0);
    seed::submit(&mut v, 1, 0);
    seed::desc(&mut v, 0, 0, 0x8000, 1530, write, 0);
    push_and_take(&mut v);
    seed::submit(&mut v, 0, 0);
    v.push(9);
    out.push(v);
    // Malformed transmit chains: a writable part, an offload flag, too short.
    for (flags, len, tail) in [(0, 60, write), (1, 60, 0), (0, 20, 0)] {
        let mut v = setup();
        frame(&mut v, flags, len);
        seed::desc(&mut v, 0x3000, 0, 0x6000, len as u32, next, 1);
        seed::desc(&mut v, 0x3000, 1, 0x7000, 16, tail, 0);
        seed::submit(&mut v, 1, 0);
        v.push(9);
        out.push(v);
    }
    // A frame sent through an indirect table at 0xa000.
    let mut v = setup();
    frame(&mut v, 0, 60);
    seed::desc(&mut v, 0x3000, 0, 0xa000, 32, indirect, 0);
    seed::desc(&mut v, 0xa000, 0, 0x6000, 12, next, 1);
    seed::desc(&mut v, 0xa000, 1, 0x600c, 48, 0, 0);
    seed::submit(&mut v, 1, 0);
    v.push(9);
    out.push(v);
    // A receive chain with a device-readable part, and one too small.
    for (first, first_flags, second) in [(16, next, 1530), (8, next | write, 40)] {
        let mut v = setup();
        seed::desc(&mut v, 0, 0, 0x8000, first, first_flags, 1);
        seed::desc(&mut v, 0, 1, 0x9000, second, write, 0);
        push_and_take(&mut v);
        seed::submit(&mut v, 0, 0);
        out.push(v);
    }
    out
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let mut t = VirtioMmio::new(VirtioNet::new([2, 0xd1, 0x5c, 0, 0, 1]));
    let mut mem = Watched::new();
    driver::bring_up(&mut t, &mut b);
    let (mut features, mut ops, mut taken) = (0u64, 0, 0u64);
    while !b.is_empty() && ops < 128 {
        ops += 1;
        features |= 1
            << match driver::step(&mut t, &mut mem, &mut (), &mut b) {
                Step::Done(n) => n,
                Step::Device(8) => {
                    let (len, fill) = (usize::from(b.u16()) % 1600, b.u8());
                    t.device_mut().push_rx((0..len).map(|i| fill.wrapping_add(i as u8)).collect());
                    9
                }
                Step::Device(_) => {
                    for f in t.device_mut().take_tx() {
                        assert!((ETH_HLEN..=MAX_FRAME).contains(&f.len()), "transmitted a {}-byte frame", f.len());
                        taken += 1;
                    }
                    10
                }
            };
        let c = t.device().counters();
        assert!(c.tx_frames >= taken, "took {taken} frames, counted {}", c.tx_frames);
    }
    features
}
