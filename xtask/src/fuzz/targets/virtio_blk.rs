//! virtio-blk (`vdev::virtio::blk`) over the virtio-mmio transport, driven
//! through a fuzzed guest RAM image by [`super::driver`] (whose checks
//! apply), on a small in-memory disk. Also checked: a read-only disk's
//! contents never change, whatever the guest asks.

use super::driver::{self, seed, Step};
use super::guest::Watched;
use super::Target;
use crate::fuzz::input::Bytes;
use vdev::virtio::blk::{
    BlkConfig, MemDisk, VirtioBlk, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vdev::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use vdev::virtio::transport::VirtioMmio;

pub const TARGET: Target = Target {
    name: "virtio-blk",
    about: "virtio-mmio transport + split virtqueue + virtio-blk requests",
    max_len: 4096,
    dict: &[],
    seeds,
    run,
};

const SECTORS: u64 = 16;

/// A request: the disk's read-only byte, a queue of 8 at 0x0 / 0x1000 /
/// 0x2000, the header (`kind`, `sector`) at 0x3000; `descs` as (address,
/// length, flags) chained from 0 in the table; not yet submitted.
fn request(read_only: u8, kind: u32, sector: u64, descs: &[(u16, u32, u16)]) -> Vec<u8> {
    let mut v = vec![read_only];
    v.extend(seed::setup(1, &[(3, 0x0000, 0x1000, 0x2000)]));
    let mut hdr = kind.to_le_bytes().to_vec();
    hdr.extend_from_slice(&[0; 4]);
    hdr.extend_from_slice(&sector.to_le_bytes());
    seed::poke(&mut v, 0x3000, &hdr);
    for (i, &(addr, len, flags)) in descs.iter().enumerate() {
        seed::desc(&mut v, 0, i as u16, addr, len, flags, i as u16 + 1);
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let (next, write) = (VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE);
    let io = |data_flags| [(0x3000, 16, next), (0x4000, 512, next | data_flags), (0x5000, 1, write)];
    let submitted = |mut v: Vec<u8>| {
        seed::submit(&mut v, 0, 0);
        v
    };
    let mut out: Vec<Vec<u8>> = [
        request(0, VIRTIO_BLK_T_IN, 3, &io(write)),
        request(0, VIRTIO_BLK_T_OUT, 3, &io(0)),
        request(0, VIRTIO_BLK_T_GET_ID, 0, &io(write)),
        // Past the disk's end, unknown type, read-only disk: error statuses.
        request(0, VIRTIO_BLK_T_IN, SECTORS, &io(write)),
        request(0, 99, 0, &io(write)),
        request(1, VIRTIO_BLK_T_OUT, 0, &io(0)),
        request(0, VIRTIO_BLK_T_FLUSH, 0, &[(0x3000, 16, next), (0x5000, 1, write)]),
        // The status byte in a device-readable buffer: not even answerable.
        request(0, VIRTIO_BLK_T_IN, 0, &[(0x3000, 16, next), (0x4000, 512, next | write), (0x5000, 1, 0)]),
    ]
    .into_iter()
    .map(submitted)
    .collect();
    // A read through an indirect table at 0x6000.
    let mut v = request(0, VIRTIO_BLK_T_IN, 0, &[(0x6000, 48, VIRTQ_DESC_F_INDIRECT)]);
    seed::desc(&mut v, 0x6000, 0, 0x3000, 16, next, 1);
    seed::desc(&mut v, 0x6000, 1, 0x4000, 1024, next | write, 2);
    seed::desc(&mut v, 0x6000, 2, 0x5000, 1, write, 0);
    out.push(submitted(v));
    out
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let read_only = b.u8() & 1 != 0;
    let mut t = VirtioMmio::new(VirtioBlk::new(BlkConfig::new(SECTORS, read_only, b"fuzz")));
    let mut disk = MemDisk::new(SECTORS);
    for (i, byte) in disk.bytes.iter_mut().enumerate() {
        *byte = (i * 7 + 3) as u8;
    }
    let original = disk.bytes.clone();
    let mut mem = Watched::new();
    driver::bring_up(&mut t, &mut b);
    let mut features = 0u64;
    let mut ops = 0;
    while !b.is_empty() && ops < 128 {
        ops += 1;
        features |= 1
            << match driver::step(&mut t, &mut mem, &mut disk, &mut b) {
                Step::Done(n) => n,
                Step::Device(_) => {
                    disk.fail = !disk.fail;
                    9
                }
            };
        if read_only {
            assert!(disk.bytes == original, "a read-only disk was written");
        }
    }
    features
}
