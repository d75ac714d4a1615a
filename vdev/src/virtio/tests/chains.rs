//! Split virtqueue parsing: good chains, and every malformed shape.

use super::*;
use crate::mem::MemError;
use crate::virtio::queue::*;

const F_NEXT: u16 = VIRTQ_DESC_F_NEXT;
const F_WRITE: u16 = VIRTQ_DESC_F_WRITE;
const F_INDIRECT: u16 = VIRTQ_DESC_F_INDIRECT;

fn setup(size: u16) -> (SplitQueue, VecMemory, Driver) {
    let mut q = SplitQueue::new(u32::from(size), DESC, AVAIL, USED).unwrap();
    q.set_indirect(true);
    (q, VecMemory::new(BASE, MEM_SIZE), Driver::new(size))
}

/// Publishes descriptor `head` (already written) and pops it.
fn pop_one(q: &mut SplitQueue, mem: &mut VecMemory, drv: &mut Driver, head: u16) -> Result<DescChain, QueueError> {
    drv.publish(mem, head);
    q.pop_chain(mem).map(|c| c.expect("a chain was published"))
}

/// Writes raw descriptors at indices 0.. and pops a chain headed by 0.
fn pop_raw(size: u16, descs: &[(u64, u32, u16, u16)]) -> Result<DescChain, QueueError> {
    let (mut q, mut mem, mut drv) = setup(size);
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        put_desc(&mut mem, DESC, i as u16, addr, len, flags, next);
    }
    pop_one(&mut q, &mut mem, &mut drv, 0)
}

#[test]
fn new_checks_size_and_alignment() {
    for size in [0, 3, 6, 65536, 1 << 20] {
        assert_eq!(SplitQueue::new(size, DESC, AVAIL, USED), Err(QueueError::BadSize(size)), "size {size}");
    }
    assert!(SplitQueue::new(32768, DESC, AVAIL, USED).is_ok());
    assert!(SplitQueue::new(1, DESC, AVAIL, USED).is_ok());
    assert_eq!(SplitQueue::new(8, DESC + 8, AVAIL, USED), Err(QueueError::BadRingAddress(DESC + 8)));
    assert_eq!(SplitQueue::new(8, DESC, AVAIL + 1, USED), Err(QueueError::BadRingAddress(AVAIL + 1)));
    assert_eq!(SplitQueue::new(8, DESC, AVAIL, USED + 2), Err(QueueError::BadRingAddress(USED + 2)));
    let top = !0xFu64;
    assert_eq!(SplitQueue::new(8, top, AVAIL, USED), Err(QueueError::BadRingAddress(top)));
}

#[test]
fn pops_a_chain_and_returns_it() {
    let (mut q, mut mem, mut drv) = setup(8);
    assert_eq!(q.pop_chain(&mem), Ok(None), "nothing available");
    let head = drv.chain(&mut mem, &[(DATA, 16, false), (DATA + 16, 100, false), (DATA + 0x200, 513, true)]);
    let c = pop_one(&mut q, &mut mem, &mut drv, head).unwrap();
    assert_eq!(c.head(), 0);
    assert_eq!(c.readable().len(), 2);
    assert_eq!(c.writable(), [Descriptor { addr: DATA + 0x200, len: 513, writable: true }]);
    assert_eq!((c.readable_len(), c.writable_len()), (116, 513));
    assert_eq!(q.pop_chain(&mem), Ok(None));
    q.add_used(&mut mem, c.head(), 77).unwrap();
    assert_eq!(Driver::used_idx(&mem), 1);
    assert_eq!(drv.used(&mem, 0), (0, 77));
    assert_eq!(q.next_used(), 1);
    assert!(q.needs_interrupt(&mem).unwrap());
    mem.write_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
    assert!(!q.needs_interrupt(&mem).unwrap());
    assert_eq!(q.add_used(&mut mem, 8, 0), Err(QueueError::HeadOutOfRange(8)));
}

#[test]
fn only_readable_or_only_writable_chains() {
    let c = pop_raw(4, &[(DATA, 8, 0, 0)]).unwrap();
    assert_eq!((c.readable().len(), c.writable().len()), (1, 0));
    let c = pop_raw(4, &[(DATA, 8, F_WRITE | F_NEXT, 1), (DATA + 8, 8, F_WRITE, 0)]).unwrap();
    assert_eq!((c.readable().len(), c.writable().len()), (0, 2));
}

/// The free-running indices wrap at 65536; the ring slots follow them
/// across the wrap.
#[test]
fn avail_and_used_indices_wrap() {
    for size in [1u16, 2, 4] {
        let (mut q, mut mem, mut drv) = setup(size);
        for n in 0..70_000u32 {
            let head = drv.chain(&mut mem, &[(DATA, 4, true)]);
            drv.publish(&mut mem, head);
            let c = q.pop_chain(&mem).unwrap().unwrap();
            assert_eq!(c.head(), head);
            q.add_used(&mut mem, c.head(), n).unwrap();
            assert_eq!(drv.used(&mem, n as u16), (u32::from(head), n));
        }
        assert_eq!(q.next_avail(), (70_000u32 % 65536) as u16);
        assert_eq!(Driver::used_idx(&mem), (70_000u32 % 65536) as u16);
    }
}

#[test]
fn several_available_at_once() {
    let (mut q, mut mem, mut drv) = setup(4);
    for i in 0..4 {
        let head = drv.chain(&mut mem, &[(DATA + i * 16, 16, false)]);
        drv.publish(&mut mem, head);
    }
    assert_eq!(q.pending(&mem), Ok(4));
    let heads: Vec<u16> = core::iter::from_fn(|| q.pop_chain(&mem).unwrap()).map(|c| c.head()).collect();
    assert_eq!(heads, [0, 1, 2, 3]);
}

#[test]
fn avail_idx_jumping_ahead_is_an_error() {
    let (mut q, mut mem, _) = setup(8);
    mem.write_u16(AVAIL + 2, 9).unwrap();
    assert_eq!(q.pop_chain(&mem), Err(QueueError::AvailIdxJump { avail: 9, next: 0 }));
    mem.write_u16(AVAIL + 2, 0xFFFF).unwrap();
    assert!(matches!(q.pop_chain(&mem), Err(QueueError::AvailIdxJump { .. })), "going backwards is a jump too");
    mem.write_u16(AVAIL + 2, 8).unwrap();
    assert!(q.pending(&mem).is_ok(), "a full ring is fine");
}

#[test]
fn head_out_of_range() {
    let (mut q, mut mem, mut drv) = setup(8);
    assert_eq!(pop_one(&mut q, &mut mem, &mut drv, 8), Err(QueueError::HeadOutOfRange(8)));
    assert_eq!(q.next_avail(), 1, "the bad entry is consumed");
}

#[test]
fn next_out_of_range() {
    assert_eq!(pop_raw(4, &[(DATA, 8, F_NEXT, 4)]), Err(QueueError::NextOutOfRange(4)));
}

#[test]
fn loops_are_too_long() {
    assert_eq!(pop_raw(4, &[(DATA, 8, F_NEXT, 0)]), Err(QueueError::ChainTooLong), "self loop");
    assert_eq!(pop_raw(4, &[(DATA, 8, F_NEXT, 1), (DATA, 8, F_NEXT, 0)]), Err(QueueError::ChainTooLong));
    // Exactly the queue size is fine; one more is not possible without a loop.
    let c = pop_raw(4, &[(DATA, 8, F_NEXT, 1), (DATA, 8, F_NEXT, 2), (DATA, 8, F_NEXT, 3), (DATA, 8, 0, 0)]);
    assert_eq!(c.unwrap().descriptors().len(), 4);
    // A big queue with a long loop still ends.
    let table = BASE + 0x8_0000; // 32768 * 16 bytes: the top half of memory
    let mut q = SplitQueue::new(32768, table, AVAIL, USED).unwrap();
    let mut mem = VecMemory::new(BASE, MEM_SIZE);
    for i in 0..32768u16 {
        put_desc(&mut mem, table, i, DATA, 1, F_NEXT, (i + 1) % 32768);
    }
    Driver::new(32768).publish(&mut mem, 0);
    assert_eq!(q.pop_chain(&mem), Err(QueueError::ChainTooLong));
}

#[test]
fn readable_after_writable() {
    assert_eq!(pop_raw(4, &[(DATA, 8, F_WRITE | F_NEXT, 1), (DATA, 8, 0, 0)]), Err(QueueError::ReadableAfterWritable));
}

#[test]
fn zero_length_descriptor() {
    assert_eq!(pop_raw(4, &[(DATA, 8, F_NEXT, 1), (DATA, 0, F_WRITE, 0)]), Err(QueueError::ZeroLength));
}

#[test]
fn ranges_outside_memory_or_overflowing() {
    let end = BASE + MEM_SIZE as u64;
    assert_eq!(pop_raw(4, &[(end - 8, 9, 0, 0)]), Err(QueueError::Memory(MemError { gpa: end - 8, len: 9 })));
    assert!(pop_raw(4, &[(end - 8, 8, 0, 0)]).is_ok());
    assert!(matches!(pop_raw(4, &[(BASE - 1, 4, 0, 0)]), Err(QueueError::Memory(_))));
    assert!(matches!(pop_raw(4, &[(u64::MAX - 3, 8, F_WRITE, 0)]), Err(QueueError::Memory(_))));
    assert!(matches!(pop_raw(4, &[(0, u32::MAX, 0, 0)]), Err(QueueError::Memory(_))));
}

#[test]
fn rings_outside_memory() {
    let mut q = SplitQueue::new(8, 0x1000, 0x2000, 0x3000).unwrap();
    let mut mem = VecMemory::new(BASE, MEM_SIZE);
    assert!(matches!(q.pop_chain(&mem), Err(QueueError::Memory(_))));
    assert!(matches!(q.add_used(&mut mem, 0, 0), Err(QueueError::Memory(_))));
    // Avail ring inside, descriptor table outside.
    let (_, mut mem, mut drv) = setup(8);
    let mut q = SplitQueue::new(8, 0x1000, AVAIL, USED).unwrap();
    drv.publish(&mut mem, 0);
    assert!(matches!(q.pop_chain(&mem), Err(QueueError::Memory(_))));
}

#[test]
fn indirect_tables_are_flattened() {
    let (mut q, mut mem, mut drv) = setup(4);
    let bufs = [(DATA, 16, false), (DATA + 16, 512, true), (DATA + 0x400, 1, true)];
    let head = drv.indirect(&mut mem, INDIRECT, &bufs);
    let c = pop_one(&mut q, &mut mem, &mut drv, head).unwrap();
    let got: Vec<Buf> = c.descriptors().iter().map(|d| (d.addr, d.len, d.writable)).collect();
    assert_eq!(got, bufs);
    assert_eq!(c.head(), head);
    // Direct descriptors before the indirect one are kept too.
    put_desc(&mut mem, INDIRECT, 0, DATA + 0x800, 4, F_WRITE, 0);
    put_desc(&mut mem, DESC, 2, DATA, 16, F_NEXT, 3);
    put_desc(&mut mem, DESC, 3, INDIRECT, 16, F_INDIRECT | F_WRITE, 0);
    let c = pop_one(&mut q, &mut mem, &mut drv, 2).unwrap();
    assert_eq!((c.readable_len(), c.writable_len()), (16, 4));
}

#[test]
fn indirect_not_negotiated() {
    let (mut q, mut mem, mut drv) = setup(4);
    q.set_indirect(false);
    let head = drv.indirect(&mut mem, INDIRECT, &[(DATA, 16, false)]);
    assert_eq!(pop_one(&mut q, &mut mem, &mut drv, head), Err(QueueError::IndirectNotNegotiated));
}

#[test]
fn malformed_indirect_tables() {
    let ind = |len: u32, flags: u16| (INDIRECT, len, F_INDIRECT | flags, 0u16);
    assert_eq!(pop_raw(4, &[ind(16, F_NEXT)]), Err(QueueError::IndirectWithNext));
    assert_eq!(pop_raw(4, &[ind(0, 0)]), Err(QueueError::BadIndirectLen(0)));
    assert_eq!(pop_raw(4, &[ind(17, 0)]), Err(QueueError::BadIndirectLen(17)));
    let end = BASE + MEM_SIZE as u64;
    assert!(matches!(pop_raw(4, &[(end - 16, 32, F_INDIRECT, 0)]), Err(QueueError::Memory(_))));

    let with_table = |table: &[(u64, u32, u16, u16)], len: u32| {
        let (mut q, mut mem, mut drv) = setup(4);
        for (i, &(addr, l, flags, next)) in table.iter().enumerate() {
            put_desc(&mut mem, INDIRECT, i as u16, addr, l, flags, next);
        }
        put_desc(&mut mem, DESC, 0, INDIRECT, len, F_INDIRECT, 0);
        pop_one(&mut q, &mut mem, &mut drv, 0)
    };
    assert_eq!(with_table(&[(INDIRECT, 16, F_INDIRECT, 0)], 16), Err(QueueError::NestedIndirect));
    assert_eq!(with_table(&[(DATA, 8, F_NEXT, 1)], 16), Err(QueueError::NextOutOfRange(1)), "next past the table");
    assert_eq!(with_table(&[(DATA, 8, F_NEXT, 1), (DATA, 8, F_NEXT, 0)], 32), Err(QueueError::ChainTooLong), "loop");
    assert_eq!(with_table(&[(DATA, 0, 0, 0)], 16), Err(QueueError::ZeroLength));
    assert_eq!(
        with_table(&[(DATA, 8, F_WRITE | F_NEXT, 1), (DATA, 8, 0, 0)], 32),
        Err(QueueError::ReadableAfterWritable)
    );
    // An indirect table may be longer than a small queue, up to
    // MAX_INDIRECT_CHAIN descriptors in the chain.
    let linked = |n: u16| -> Vec<_> { (0..n).map(|i| (DATA, 8, if i + 1 < n { F_NEXT } else { 0 }, i + 1)).collect() };
    assert_eq!(with_table(&linked(5), 80).unwrap().descriptors().len(), 5);
    let max = MAX_INDIRECT_CHAIN as u16;
    assert_eq!(with_table(&linked(max), 16 * u32::from(max)).unwrap().descriptors().len(), MAX_INDIRECT_CHAIN);
    assert_eq!(with_table(&linked(max + 1), 16 * u32::from(max + 1)), Err(QueueError::ChainTooLong));
    // A direct descriptor before the table counts too.
    let (mut q, mut mem, mut drv) = setup(4);
    for (i, &(addr, l, flags, next)) in linked(max).iter().enumerate() {
        put_desc(&mut mem, INDIRECT, i as u16, addr, l, flags, next);
    }
    put_desc(&mut mem, DESC, 0, DATA, 16, F_NEXT, 1);
    put_desc(&mut mem, DESC, 1, INDIRECT, 16 * u32::from(max), F_INDIRECT, 0);
    assert_eq!(pop_one(&mut q, &mut mem, &mut drv, 0), Err(QueueError::ChainTooLong));
}

#[test]
fn cursor_reads_and_writes_across_descriptors() {
    let mut mem = VecMemory::new(BASE, MEM_SIZE);
    let descs =
        [Descriptor { addr: DATA, len: 3, writable: true }, Descriptor { addr: DATA + 0x100, len: 5, writable: true }];
    let mut c = Cursor::new(&descs);
    assert_eq!(c.remaining(), 8);
    assert_eq!(c.write(&mut mem, b"abcd"), Ok(4));
    assert_eq!(c.skip(1), 1);
    c.limit(2);
    assert_eq!(c.write(&mut mem, b"xyz"), Ok(2));
    assert_eq!(c.remaining(), 0);
    assert_eq!(bytes(&mem, DATA, 3), b"abc");
    assert_eq!(bytes(&mem, DATA + 0x100, 5), b"d\0xy\0");
    let mut c = Cursor::new(&descs);
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mem, &mut buf), Ok(8));
    assert_eq!(&buf[..8], b"abcd\0xy\0");
    assert_eq!(c.read(&mem, &mut buf), Ok(0));
}
