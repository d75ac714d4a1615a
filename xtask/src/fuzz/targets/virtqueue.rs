//! A split virtqueue alone (`vdev::virtio::queue`) over a fuzzed guest RAM
//! image: pop chains and return them as used. Checked: every buffer of a
//! chain it returns lies inside guest RAM and is not empty, readable ones
//! come before writable ones, a chain is no longer than the queue allows
//! (1024 with indirect tables), the queue never hands out more chains than
//! the driver made available, and add_used publishes exactly one element.

use super::guest::{Watched, MEM_BASE};
use super::Target;
use crate::fuzz::input::Bytes;
use vdev::mem::GuestMemory;
use vdev::virtio::queue::{SplitQueue, MAX_INDIRECT_CHAIN};

pub const TARGET: Target = Target {
    name: "virtqueue",
    about: "split virtqueue descriptor chains, indirect tables and rings",
    max_len: 4096,
    dict: &[],
    seeds,
    run,
};

fn seeds() -> Vec<Vec<u8>> {
    // Queue of 4: table at 0, avail at 0x100, used at 0x200; one chain of
    // two descriptors (0 -> 1), made available, popped, used.
    let mut v = vec![2, 1, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02];
    let mut poke = |off: u16, data: &[u8]| {
        v.push(0);
        v.extend_from_slice(&off.to_le_bytes());
        v.push(data.len() as u8 - 1);
        v.extend_from_slice(data);
    };
    let d = |addr: u64, len: u32, flags: u16, next: u16| {
        let mut d = (MEM_BASE + addr).to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        d
    };
    poke(0, &d(0x1000, 64, 1, 1));
    poke(16, &d(0x2000, 64, 2, 0));
    poke(0x100, &[0, 0, 1, 0, 0, 0]);
    v.extend_from_slice(&[1, 1, 2, 0, 0, 32, 0, 0, 0]);
    vec![v]
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let size = 1u32 << (b.u8() % 16);
    let indirect = b.u8() & 1 != 0;
    let (desc, avail, used) = (b.u16(), b.u16(), b.u16());
    let addr = |off: u16| MEM_BASE + u64::from(off);
    let Ok(mut q) = SplitQueue::new(size, addr(desc), addr(avail), addr(used)) else {
        return 1;
    };
    q.set_indirect(indirect);
    let mut mem = Watched::new();
    let mut features = 0u64;
    let mut ops = 0;
    while !b.is_empty() && ops < 128 {
        ops += 1;
        features |= 1
            << match b.below(3) {
                0 => {
                    let (off, n) = (b.u16(), 1 + b.below(64));
                    let data = b.take(n);
                    mem.poke(off, data);
                    2
                }
                1 => pop(&mut q, &mut mem, indirect, &mut b),
                _ => {
                    let (head, len) = (b.u16(), b.u32());
                    let before = q.next_used();
                    match q.add_used(&mut mem, head, len) {
                        Ok(()) => {
                            assert_eq!(q.next_used(), before.wrapping_add(1), "add_used published");
                            assert_eq!(mem.mem.read_u16(q.used_ring() + 2).ok(), Some(q.next_used()), "used.idx");
                            3
                        }
                        Err(_) => 4,
                    }
                }
            };
    }
    features
}

fn pop(q: &mut SplitQueue, mem: &mut Watched, indirect: bool, b: &mut Bytes) -> u32 {
    if b.u8() & 3 == 0 {
        // The driver publishes more (as the ring entries it poked say).
        if let Ok(idx) = mem.mem.read_u16(q.avail_ring() + 2) {
            let _ = mem.mem.write_u16(q.avail_ring() + 2, idx.wrapping_add(1 + b.below(4) as u16));
        }
    }
    let pending = q.pending(&mem.mem);
    let before = q.next_avail();
    match q.pop_chain(mem) {
        Ok(None) => {
            assert_eq!(pending, Ok(0), "nothing popped with chains pending");
            5
        }
        Ok(Some(chain)) => {
            assert!(matches!(pending, Ok(n) if n > 0), "a chain popped with none pending ({pending:?})");
            assert_eq!(q.next_avail(), before.wrapping_add(1), "one ring entry consumed");
            assert!(chain.head() < q.size(), "head {} outside a table of {}", chain.head(), q.size());
            let descs = chain.descriptors();
            let limit = if indirect { usize::from(q.size()).max(MAX_INDIRECT_CHAIN) } else { usize::from(q.size()) };
            assert!(!descs.is_empty() && descs.len() <= limit, "chain of {} descriptors, limit {limit}", descs.len());
            let split = chain.readable().len();
            assert!(descs[..split].iter().all(|d| !d.writable), "readable part holds a writable buffer");
            assert!(descs[split..].iter().all(|d| d.writable), "readable buffer after a writable one");
            for d in descs {
                assert!(d.len > 0, "empty buffer");
                assert!(
                    mem.mem.check_range(d.addr, u64::from(d.len)).is_ok(),
                    "buffer {:#x}+{:#x} outside RAM",
                    d.addr,
                    d.len
                );
            }
            let sum = |ds: &[vdev::virtio::queue::Descriptor]| ds.iter().map(|d| u64::from(d.len)).sum::<u64>();
            assert_eq!(chain.readable_len(), sum(chain.readable()), "readable_len");
            assert_eq!(chain.writable_len(), sum(chain.writable()), "writable_len");
            6 + u32::from(descs.len() > 1) + 2 * u32::from(!chain.writable().is_empty())
        }
        Err(e) => 10 + (crate::fuzz::rng::fnv(format!("{e:?}").as_bytes()) % 40) as u32,
    }
}
