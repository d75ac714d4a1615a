use super::*;
use alloc::{boxed::Box, vec, vec::Vec};
use proptest::prelude::*;

/// Blocks as boxed arrays, at most `limit` at once; counts what is live.
struct VecStore {
    limit: usize,
    live: usize,
}

impl BlockStore for VecStore {
    type Block = Box<core::cell::RefCell<[u8; BLOCK_BYTES]>>;
    fn alloc(&mut self, _block: u64) -> Option<Self::Block> {
        (self.live < self.limit).then(|| {
            self.live += 1;
            Box::new(core::cell::RefCell::new([0xee; BLOCK_BYTES]))
        })
    }
    fn read(&self, b: &Self::Block, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&b.borrow()[offset..offset + buf.len()]);
    }
    fn write(&mut self, b: &Self::Block, offset: usize, data: &[u8]) {
        b.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
    }
    fn free(&mut self, _b: Self::Block) {
        self.live -= 1;
    }
}

/// The base image: bytes nobody may write (the trait has no write), and a
/// count of reads.
struct VecBase {
    bytes: Vec<u8>,
    reads: usize,
    fail: bool,
}

impl BaseImage for VecBase {
    type Error = ();
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.reads += 1;
        let at = (sector * SECTOR_BYTES) as usize;
        if self.fail || at + buf.len() > self.bytes.len() {
            return Err(());
        }
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }
}

fn base(sectors: u64) -> VecBase {
    let bytes = (0..sectors * SECTOR_BYTES).map(|i| (i * 7 + i / 4096) as u8).collect();
    VecBase { bytes, reads: 0, fail: false }
}

fn overlay(sectors: u64, limit: usize) -> Overlay<VecStore> {
    Overlay::new(VecStore { limit, live: 0 }, sectors)
}

#[test]
fn reads_the_base_until_written() {
    let mut b = base(64);
    let o = overlay(64, 8);
    let mut buf = vec![0; 3 * 512];
    o.read(&mut b, 5, &mut buf).unwrap();
    assert_eq!(buf, b.bytes[5 * 512..8 * 512]);
    assert_eq!(b.reads, 1, "one run of base blocks is one base read");
}

#[test]
fn a_partial_write_keeps_the_rest_of_the_block() {
    let mut b = base(64);
    let mut o = overlay(64, 8);
    o.write(&mut b, 9, &[1; 512]).unwrap();
    assert_eq!(o.blocks(), 1);
    let mut block = vec![0; BLOCK_BYTES];
    o.read(&mut b, 8, &mut block).unwrap();
    assert_eq!(block[..512], b.bytes[8 * 512..9 * 512]);
    assert_eq!(block[512..1024], [1; 512]);
    assert_eq!(block[1024..], b.bytes[10 * 512..16 * 512]);
}

#[test]
fn reads_mix_own_blocks_and_the_base() {
    let mut b = base(64);
    let mut o = overlay(64, 8);
    o.write(&mut b, 8, &[2; BLOCK_BYTES]).unwrap();
    let reads = b.reads;
    assert_eq!(reads, 0, "a whole-block write reads nothing from the base");
    let mut buf = vec![0; 24 * 512];
    o.read(&mut b, 0, &mut buf).unwrap();
    assert_eq!(buf[..4096], b.bytes[..4096]);
    assert_eq!(buf[4096..8192], [2; 4096]);
    assert_eq!(buf[8192..], b.bytes[8192..12288]);
    assert_eq!(b.reads, 2, "the base runs on either side of the own block");
}

#[test]
fn out_of_range_and_partial_sectors_are_refused() {
    let mut b = base(20);
    let mut o = overlay(20, 8);
    let mut buf = vec![0; 1024];
    assert_eq!(o.read(&mut b, 19, &mut buf), Err(OverlayError::OutOfRange));
    assert_eq!(o.read(&mut b, u64::MAX, &mut buf), Err(OverlayError::OutOfRange));
    assert_eq!(o.write(&mut b, 0, &[0; 100]), Err(OverlayError::OutOfRange));
    // The last block is partial (20 sectors = 2.5 blocks): writable, and
    // what lies past the end reads as nothing.
    o.write(&mut b, 19, &[3; 512]).unwrap();
    let mut tail = vec![0; 4 * 512];
    o.read(&mut b, 16, &mut tail).unwrap();
    assert_eq!(tail[..1536], b.bytes[16 * 512..19 * 512]);
    assert_eq!(tail[1536..], [3; 512]);
}

#[test]
fn a_failed_write_changes_nothing() {
    let mut b = base(64);
    let mut o = overlay(64, 2);
    o.write(&mut b, 0, &[4; 512]).unwrap();
    // Three new blocks needed, one frame left.
    assert_eq!(o.write(&mut b, 8, &[5; 3 * BLOCK_BYTES]), Err(OverlayError::Full));
    assert_eq!(o.blocks(), 1);
    let mut buf = vec![0; 3 * BLOCK_BYTES];
    o.read(&mut b, 8, &mut buf).unwrap();
    assert_eq!(buf, b.bytes[8 * 512..8 * 512 + 3 * BLOCK_BYTES]);
    b.fail = true;
    assert_eq!(o.write(&mut b, 16, &[6; 512]), Err(OverlayError::Base(())));
    assert_eq!(o.blocks(), 1);
    assert_eq!(o.discard().live, 0, "discard frees every block, and a failed write leaked none");
}

#[derive(Debug, Clone)]
enum Op {
    Read { vm: usize, sector: u64, sectors: u64 },
    Write { vm: usize, sector: u64, sectors: u64, fill: u8 },
}

fn op(sectors: u64) -> impl Strategy<Value = Op> {
    let range = (0..sectors, 1..=24u64).prop_map(move |(s, n)| (s, n.min(sectors - s)));
    prop_oneof![
        (0..3usize, range.clone()).prop_map(|(vm, (sector, sectors))| Op::Read { vm, sector, sectors }),
        (0..3usize, range, any::<u8>()).prop_map(|(vm, (sector, sectors), fill)| Op::Write {
            vm,
            sector,
            sectors,
            fill
        }),
    ]
}

proptest! {
    /// Three VMs over one base, random reads and writes: each reads exactly
    /// what a private full copy of the base with only its own writes holds
    /// (never another VM's writes), the base never changes, and discarding
    /// frees every block.
    #[test]
    fn vms_see_their_own_writes_and_the_base_only(ops in proptest::collection::vec(op(77), 1..60)) {
        let sectors = 77;
        let mut b = base(sectors);
        let original = b.bytes.clone();
        let mut vms: Vec<Overlay<VecStore>> = (0..3).map(|_| overlay(sectors, usize::MAX)).collect();
        let mut models: Vec<Vec<u8>> = (0..3).map(|_| original.clone()).collect();
        for op in ops {
            match op {
                Op::Read { vm, sector, sectors } => {
                    let mut buf = vec![0; (sectors * SECTOR_BYTES) as usize];
                    vms[vm].read(&mut b, sector, &mut buf).unwrap();
                    let at = (sector * SECTOR_BYTES) as usize;
                    prop_assert_eq!(&buf[..], &models[vm][at..at + buf.len()]);
                }
                Op::Write { vm, sector, sectors, fill } => {
                    let data: Vec<u8> = (0..sectors * SECTOR_BYTES).map(|i| fill ^ i as u8).collect();
                    vms[vm].write(&mut b, sector, &data).unwrap();
                    let at = (sector * SECTOR_BYTES) as usize;
                    models[vm][at..at + data.len()].copy_from_slice(&data);
                }
            }
        }
        prop_assert_eq!(&b.bytes, &original);
        for (vm, model) in vms.into_iter().zip(&models) {
            let mut all = vec![0; original.len()];
            vm.read(&mut b, 0, &mut all).unwrap();
            prop_assert_eq!(&all, model);
            prop_assert_eq!(vm.discard().live, 0);
        }
    }
}
