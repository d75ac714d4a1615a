//! virtio-net, driven the way Linux's `virtio_net` drives it: receive
//! queue 0 with 12 + 1518-byte buffers, transmit queue 1 with header and
//! frame in one buffer or two; and arbitrary transmit chains.

use super::*;
use crate::virtio::net::*;
use crate::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use proptest::prelude::*;

const MAC: Mac = [2, 0xd1, 0x5c, 0, 0, 7];
/// Rings of queue q at RINGS + q * 0x4000: descriptors, avail (+0x1000),
/// used (+0x2000).
const RINGS: u64 = BASE;
const QSIZE: u16 = 16;
const RX_BUFS: u64 = BASE + 0x10000;
const TX_BUFS: u64 = BASE + 0x40000;
const RX_BUF_LEN: u32 = (NET_HDR_BYTES + MAX_FRAME) as u32;

fn rings(q: u16) -> (u64, u64, u64) {
    let base = RINGS + u64::from(q) * 0x4000;
    (base, base + 0x1000, base + 0x2000)
}

/// A guest with a virtio-net device up to DRIVER_OK.
struct NetGuest {
    dev: VirtioMmio<VirtioNet>,
    mem: VecMemory,
    /// Per queue: next avail index (descriptors: one chain per slot,
    /// two descriptors each at 2 * slot and 2 * slot + 1).
    avail: [u16; 2],
    used_seen: [u16; 2],
}

impl NetGuest {
    fn new() -> Self {
        let mut g = Self {
            dev: VirtioMmio::new(VirtioNet::new(MAC)),
            mem: VecMemory::new(BASE, MEM_SIZE),
            avail: [0; 2],
            used_seen: [0; 2],
        };
        let accept =
            VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_NET_F_MAC | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_MRG_RXBUF;
        assert_ne!(negotiate(&mut g.dev, accept) & STATUS_FEATURES_OK, 0);
        let want = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_NET_F_MAC;
        assert_eq!(g.dev.driver_features(), want, "no offloads offered");
        setup_queues(&mut g.dev, &[RX_QUEUE, TX_QUEUE], (QSIZE, QUEUE_SIZE), rings);
        add_status(&mut g.dev, STATUS_DRIVER_OK);
        assert_eq!(r(&mut g.dev, STATUS), 0xF);
        g
    }

    /// Makes a chain of `bufs` available on queue `q`.
    fn post(&mut self, q: u16, bufs: &[Buf]) {
        let (desc, avail, _) = rings(q);
        let slot = self.avail[q as usize] % QSIZE;
        let first = (2 * slot) % QSIZE;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = (first + i as u16) % QSIZE;
            let mut flags = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            put_desc(&mut self.mem, desc, index, addr, len, flags, (index + 1) % QSIZE);
        }
        self.mem.write_u16(avail + 4 + 2 * u64::from(slot), first).unwrap();
        self.avail[q as usize] = self.avail[q as usize].wrapping_add(1);
        self.mem.write_u16(avail + 2, self.avail[q as usize]).unwrap();
    }

    /// Writes arbitrary descriptors (address offset from BASE, length,
    /// flags, next) and makes `heads` available on queue `q`.
    fn raw(&mut self, q: u16, descs: &[(u64, u32, u16, u16)], heads: &[u16]) {
        let (desc, avail, _) = rings(q);
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            put_desc(&mut self.mem, desc, i as u16, BASE + addr, len, flags, next);
        }
        for (slot, &h) in heads.iter().enumerate() {
            self.mem.write_u16(avail + 4 + 2 * slot as u64, h).unwrap();
        }
        self.mem.write_u16(avail + 2, heads.len() as u16).unwrap();
    }

    /// Notifies queue `q` and lets the device work; returns the IRQ level.
    fn kick(&mut self, q: u16) -> bool {
        w(&mut self.dev, QUEUE_NOTIFY, q.into());
        self.dev.process_notified(&mut self.mem, &mut ())
    }

    /// Used elements of queue `q` not seen yet: (id, len).
    fn used(&mut self, q: u16) -> Vec<(u32, u32)> {
        let (_, _, used) = rings(q);
        let idx = self.mem.read_u16(used + 2).unwrap();
        let mut out = Vec::new();
        while self.used_seen[q as usize] != idx {
            let at = used + 4 + 8 * u64::from(self.used_seen[q as usize] % QSIZE);
            out.push((self.mem.read_u32(at).unwrap(), self.mem.read_u32(at + 4).unwrap()));
            self.used_seen[q as usize] = self.used_seen[q as usize].wrapping_add(1);
        }
        out
    }
}

fn eth(dst: Mac, src: Mac, payload: usize) -> Vec<u8> {
    let mut f = Vec::from(dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend(pattern(payload, 3));
    f
}

#[test]
fn config_space_holds_the_mac() {
    let mut g = NetGuest::new();
    assert_eq!(r(&mut g.dev, DEVICE_ID), VIRTIO_ID_NET);
    let mac: Vec<u8> = (0..6).map(|i| g.dev.read(CONFIG + i, 1).unwrap() as u8).collect();
    assert_eq!(mac, MAC);
    assert_eq!(g.dev.read(CONFIG + 6, 2).unwrap(), 0, "no status field offered");
}

#[test]
fn transmit_header_and_frame_in_one_buffer_or_two() {
    let mut g = NetGuest::new();
    let frame = eth([0xff; 6], MAC, 100);
    // One buffer: header pushed in front of the frame (VERSION_1).
    g.mem.write(TX_BUFS, &[0; NET_HDR_BYTES]).unwrap();
    g.mem.write(TX_BUFS + NET_HDR_BYTES as u64, &frame).unwrap();
    g.post(TX_QUEUE, &[(TX_BUFS, (NET_HDR_BYTES + frame.len()) as u32, false)]);
    // Two buffers: header, then frame.
    g.mem.write(TX_BUFS + 0x1000, &[0; NET_HDR_BYTES]).unwrap();
    g.mem.write(TX_BUFS + 0x2000, &frame).unwrap();
    g.post(TX_QUEUE, &[(TX_BUFS + 0x1000, NET_HDR_BYTES as u32, false), (TX_BUFS + 0x2000, frame.len() as u32, false)]);
    assert!(g.kick(TX_QUEUE), "tx completion interrupt");
    assert_eq!(g.dev.device_mut().take_tx(), [frame.clone(), frame.clone()]);
    assert_eq!(g.used(TX_QUEUE), [(0, 0), (2, 0)]);
    let c = g.dev.device().counters();
    assert_eq!((c.tx_frames, c.tx_bytes, c.tx_malformed), (2, 2 * frame.len() as u64, 0));
}

#[test]
fn malformed_transmits_are_dropped_and_returned() {
    let mut g = NetGuest::new();
    let frame = eth([0xff; 6], MAC, 60);
    let mut hdr = [0u8; NET_HDR_BYTES];
    hdr[0] = 1; // NEEDS_CSUM, not offered
    g.mem.write(TX_BUFS, &hdr).unwrap();
    g.mem.write(TX_BUFS + NET_HDR_BYTES as u64, &frame).unwrap();
    let whole = (NET_HDR_BYTES + frame.len()) as u32;
    g.post(TX_QUEUE, &[(TX_BUFS, whole, false)]);
    g.post(TX_QUEUE, &[(TX_BUFS + 0x1000, 20, false)]);
    g.post(TX_QUEUE, &[(TX_BUFS + 0x1000, (NET_HDR_BYTES + MAX_FRAME + 1) as u32, false)]);
    g.post(TX_QUEUE, &[(TX_BUFS + 0x1000, 64, false), (TX_BUFS + 0x2000, 64, true)]);
    g.kick(TX_QUEUE);
    assert!(g.dev.device_mut().take_tx().is_empty());
    assert_eq!(g.used(TX_QUEUE).len(), 4, "every chain returned");
    assert_eq!(g.dev.device().counters().tx_malformed, 4);
    assert_eq!(g.dev.device_mut().take_malformed(), Some(Malformed::WritableTx));
    assert!(!g.dev.needs_reset(), "a bad frame is not a bad queue");
}

#[test]
fn receive_fills_posted_buffers_and_keeps_a_bounded_backlog() {
    let mut g = NetGuest::new();
    let frame = eth(MAC, [2, 0, 0, 0, 0, 1], 1000);
    // Before any buffer: the frame waits.
    assert!(g.dev.device_mut().push_rx(frame.clone()));
    assert!(!g.dev.process(RX_QUEUE, &mut g.mem, &mut ()));
    assert_eq!(g.dev.device().backlog(), 1);
    g.post(RX_QUEUE, &[(RX_BUFS, RX_BUF_LEN, true)]);
    assert!(g.kick(RX_QUEUE), "rx interrupt");
    let used = g.used(RX_QUEUE);
    assert_eq!(used, [(0, (NET_HDR_BYTES + frame.len()) as u32)]);
    let hdr = NetHdr::parse(bytes(&g.mem, RX_BUFS, NET_HDR_BYTES).as_slice().try_into().unwrap());
    assert_eq!(hdr, NetHdr { num_buffers: 1, ..NetHdr::default() });
    assert_eq!(bytes(&g.mem, RX_BUFS + NET_HDR_BYTES as u64, frame.len()), frame);
    // A buffer too small, and one with a readable part: returned empty.
    g.post(RX_QUEUE, &[(RX_BUFS, 100, true)]);
    g.post(RX_QUEUE, &[(RX_BUFS, 100, false), (RX_BUFS + 0x1000, RX_BUF_LEN, true)]);
    g.dev.device_mut().push_rx(frame.clone());
    g.dev.device_mut().push_rx(frame.clone());
    g.dev.process(RX_QUEUE, &mut g.mem, &mut ());
    assert_eq!(g.used(RX_QUEUE), [(2, 0), (4, 0)]);
    // The backlog is bounded; a reset empties it.
    for _ in 0..RX_BACKLOG + 3 {
        g.dev.device_mut().push_rx(frame.clone());
    }
    assert_eq!(g.dev.device().backlog(), RX_BACKLOG);
    assert!(!g.dev.device_mut().push_rx(Vec::from([0u8; 10])), "runt");
    let c = g.dev.device().counters();
    assert_eq!((c.rx_frames, c.rx_bytes, c.rx_dropped), (1, frame.len() as u64, 2 + 3 + 1));
    w(&mut g.dev, STATUS, 0);
    assert_eq!(g.dev.device().backlog(), 0);
}

proptest! {
    /// Arbitrary transmit descriptors and bytes: no panic, no loop; the
    /// device either needs a reset or returned every chain, and every
    /// frame it let out is a whole Ethernet frame within MAX_FRAME.
    #[test]
    fn arbitrary_transmit_chains(
        descs in proptest::collection::vec((0u64..0x120000, 0u32..0x800, 0u16..8, 0u16..20), 1..16),
        heads in proptest::collection::vec(0u16..20, 1..16),
        seed in any::<u64>(),
    ) {
        let mut g = NetGuest::new();
        let mut x = seed | 1;
        for b in g.mem.bytes[0x40000..0x48000].iter_mut() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            *b = if x % 4 == 0 { x as u8 } else { 0 };
        }
        g.raw(TX_QUEUE, &descs, &heads);
        for _ in 0..4 {
            g.kick(TX_QUEUE);
        }
        let frames = g.dev.device_mut().take_tx();
        for f in &frames {
            prop_assert!((ETH_HLEN..=MAX_FRAME).contains(&f.len()));
        }
        if !g.dev.needs_reset() {
            prop_assert_eq!(g.used(TX_QUEUE).len(), heads.len());
            let c = g.dev.device().counters();
            prop_assert_eq!(c.tx_frames + c.tx_malformed, heads.len() as u64);
        }
    }
}

proptest! {
    /// Arbitrary receive descriptors: no panic; without a reset, every
    /// posted chain that met a frame came back (empty, or with a header and
    /// a whole Ethernet header at least), and every frame is counted once.
    #[test]
    fn arbitrary_receive_chains(
        descs in proptest::collection::vec((0u64..0x120000, 0u32..0x800, 0u16..8, 0u16..20), 1..16),
        heads in proptest::collection::vec(0u16..20, 1..16),
        frames in 0usize..20,
    ) {
        let mut g = NetGuest::new();
        g.raw(RX_QUEUE, &descs, &heads);
        for i in 0..frames {
            g.dev.device_mut().push_rx(eth(MAC, [2, 0, 0, 0, 0, 1], 60 + 50 * i));
        }
        g.kick(RX_QUEUE);
        if !g.dev.needs_reset() {
            let used = g.used(RX_QUEUE);
            prop_assert_eq!(used.len(), frames.min(heads.len()));
            let c = g.dev.device().counters();
            prop_assert_eq!(c.rx_frames + c.rx_dropped + g.dev.device().backlog() as u64, frames as u64);
            for (_, len) in used {
                prop_assert!(len == 0 || len as usize >= NET_HDR_BYTES + ETH_HLEN);
            }
        }
    }
}
