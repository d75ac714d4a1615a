//! virtio-blk requests end to end: guest memory, queue, device, disk.

use super::*;
use crate::virtio::blk::*;
use crate::virtio::queue::QueueError;

const HDR: u64 = DATA;
const STATUS_BYTE: u64 = DATA + 0x20;
const BUF: u64 = DATA + 0x1000;

/// Writes a request header at `at`.
fn header(mem: &mut VecMemory, at: u64, kind: u32, sector: u64) {
    mem.write_u32(at, kind).unwrap();
    mem.write_u32(at + 4, 0).unwrap();
    mem.write_u64(at + 8, sector).unwrap();
}

/// Submits one chain and processes it; returns (status byte, used len).
fn run(g: &mut Guest, bufs: &[Buf]) -> (u8, u32) {
    g.mem.write_u8(STATUS_BYTE, 0xEE).unwrap();
    let head = g.q.chain(&mut g.mem, bufs);
    g.q.publish(&mut g.mem, head);
    let n = g.q.avail_idx.wrapping_sub(1);
    assert!(g.kick(), "used buffers interrupt");
    g.ack();
    assert!(!g.dev.needs_reset(), "{:?}", g.dev.last_error());
    assert_eq!(Driver::used_idx(&g.mem), g.q.avail_idx);
    let (id, len) = g.q.used(&g.mem, n);
    assert_eq!(id, u32::from(head));
    (bytes(&g.mem, STATUS_BYTE, 1)[0], len)
}

/// An OUT request of `data` at `sector`, the data split in two descriptors.
fn write(g: &mut Guest, sector: u64, data: &[u8]) -> (u8, u32) {
    header(&mut g.mem, HDR, VIRTIO_BLK_T_OUT, sector);
    g.mem.write(BUF, data).unwrap();
    let half = (data.len() / 2) as u32;
    let rest = data.len() as u32 - half;
    run(g, &[(HDR, 16, false), (BUF, half, false), (BUF + u64::from(half), rest, false), (STATUS_BYTE, 1, true)])
}

/// An IN request of `len` bytes at `sector` into BUF, in two descriptors
/// (the second starting at an odd offset); returns (status, used len, data).
fn read(g: &mut Guest, sector: u64, len: usize) -> (u8, u32, Vec<u8>) {
    header(&mut g.mem, HDR, VIRTIO_BLK_T_IN, sector);
    g.mem.write(BUF, &alloc::vec![0xAA; len]).unwrap();
    let first = (len / 3) as u32;
    let rest = len as u32 - first;
    let (s, used) =
        run(g, &[(HDR, 16, false), (BUF, first, true), (BUF + u64::from(first), rest, true), (STATUS_BYTE, 1, true)]);
    (s, used, bytes(&g.mem, BUF, len))
}

#[test]
fn write_flush_read_round_trip() {
    let mut g = Guest::new(16);
    let data = pattern(3 * SECTOR, 7);
    assert_eq!(write(&mut g, 5, &data), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(&g.disk.bytes[5 * SECTOR..8 * SECTOR], &data[..]);
    assert!(g.disk.bytes[..5 * SECTOR].iter().all(|&b| b == 0));

    header(&mut g.mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&mut g, &[(HDR, 16, false), (STATUS_BYTE, 1, true)]), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(g.disk.flushes, 1);

    let (s, used, got) = read(&mut g, 5, 3 * SECTOR);
    assert_eq!((s, used), (VIRTIO_BLK_S_OK, 3 * SECTOR as u32 + 1));
    assert_eq!(got, data);
    // A read straddling written and unwritten sectors.
    let (s, _, got) = read(&mut g, 7, 2 * SECTOR);
    assert_eq!(s, VIRTIO_BLK_S_OK);
    assert_eq!(&got[..SECTOR], &data[2 * SECTOR..]);
    assert!(got[SECTOR..].iter().all(|&b| b == 0));
}

/// The header, data and status in one buffer each way, through an
/// indirect table, as Linux submits when INDIRECT_DESC is negotiated.
#[test]
fn requests_through_indirect_tables() {
    let mut g = Guest::new(4);
    let data = pattern(2 * SECTOR, 1);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_OUT, 1);
    g.mem.write(BUF, &data).unwrap();
    let head = g.q.indirect(
        &mut g.mem,
        INDIRECT,
        &[
            (HDR, 16, false),
            (BUF, SECTOR as u32, false),
            (BUF + SECTOR as u64, SECTOR as u32, false),
            (STATUS_BYTE, 1, true),
        ],
    );
    g.q.publish(&mut g.mem, head);
    assert!(g.kick());
    assert_eq!(bytes(&g.mem, STATUS_BYTE, 1), [VIRTIO_BLK_S_OK]);
    assert_eq!(&g.disk.bytes[SECTOR..3 * SECTOR], &data[..]);
}

#[test]
fn requests_larger_than_the_bounce_buffer() {
    let mut g = Guest::with(BlkConfig::new(1024, false, b""), 8);
    let len = BOUNCE_BYTES * 2 + 3 * SECTOR;
    let data = pattern(len, 3);
    assert_eq!(write(&mut g, 100, &data).0, VIRTIO_BLK_S_OK);
    assert_eq!(&g.disk.bytes[100 * SECTOR..100 * SECTOR + len], &data[..]);
    let (s, used, got) = read(&mut g, 100, len);
    assert_eq!((s, used as usize), (VIRTIO_BLK_S_OK, len + 1));
    assert_eq!(got, data);
}

#[test]
fn get_id() {
    let mut g = Guest::new(8);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
    let (s, used) = run(&mut g, &[(HDR, 16, false), (BUF, 20, true), (STATUS_BYTE, 1, true)]);
    assert_eq!((s, used), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(bytes(&g.mem, BUF, 20), b"disco-test-disk\0\0\0\0\0");
}

#[test]
fn beyond_capacity_is_an_io_error() {
    let mut g = Guest::new(8);
    let sector = pattern(SECTOR, 9);
    assert_eq!(write(&mut g, DISK_SECTORS - 1, &sector).0, VIRTIO_BLK_S_OK, "the last sector");
    for (at, n) in [(DISK_SECTORS, 1), (DISK_SECTORS - 1, 2), (u64::MAX, 1), (u64::MAX / 512, 2)] {
        assert_eq!(write(&mut g, at, &pattern(n * SECTOR, 0)), (VIRTIO_BLK_S_IOERR, 1), "write {at}+{n}");
        assert_eq!(read(&mut g, at, n * SECTOR).0, VIRTIO_BLK_S_IOERR, "read {at}+{n}");
    }
    assert_eq!(&g.disk.bytes[(DISK_SECTORS as usize - 1) * SECTOR..], &sector[..]);
}

#[test]
fn partial_sectors_are_an_io_error() {
    let mut g = Guest::new(8);
    assert_eq!(write(&mut g, 0, &[1; 100]).0, VIRTIO_BLK_S_IOERR);
    assert_eq!(read(&mut g, 0, SECTOR + 1).0, VIRTIO_BLK_S_IOERR);
    assert!(g.disk.bytes.iter().all(|&b| b == 0));
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut g = Guest::with(BlkConfig::new(DISK_SECTORS, true, b"ro"), 8);
    assert_ne!(g.dev.driver_features() & VIRTIO_BLK_F_RO, 0);
    g.disk.bytes[..SECTOR].copy_from_slice(&pattern(SECTOR, 5));
    assert_eq!(write(&mut g, 0, &[0; SECTOR]), (VIRTIO_BLK_S_IOERR, 1));
    assert_eq!(&g.disk.bytes[..SECTOR], &pattern(SECTOR, 5)[..]);
    let (s, _, got) = read(&mut g, 0, SECTOR);
    assert_eq!((s, got), (VIRTIO_BLK_S_OK, pattern(SECTOR, 5)));
}

#[test]
fn unsupported_request_types() {
    let mut g = Guest::new(8);
    for kind in [11, 13, 2, 0xFFFF_FFFF] {
        header(&mut g.mem, HDR, kind, 0);
        assert_eq!(run(&mut g, &[(HDR, 16, false), (STATUS_BYTE, 1, true)]).0, VIRTIO_BLK_S_UNSUPP, "type {kind}");
    }
}

#[test]
fn short_header_is_an_io_error() {
    let mut g = Guest::new(8);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&mut g, &[(HDR, 8, false), (STATUS_BYTE, 1, true)]), (VIRTIO_BLK_S_IOERR, 1));
    // No readable part at all.
    assert_eq!(run(&mut g, &[(BUF, 512, true), (STATUS_BYTE, 1, true)]).0, VIRTIO_BLK_S_IOERR);
    assert_eq!(g.disk.flushes, 0);
    // A header split across descriptors is fine.
    assert_eq!(run(&mut g, &[(HDR, 5, false), (HDR + 5, 11, false), (STATUS_BYTE, 1, true)]).0, VIRTIO_BLK_S_OK);
    assert_eq!(g.disk.flushes, 1);
}

#[test]
fn backend_errors_are_io_errors() {
    let mut g = Guest::new(8);
    g.disk.fail = true;
    assert_eq!(write(&mut g, 0, &[1; SECTOR]).0, VIRTIO_BLK_S_IOERR);
    assert_eq!(read(&mut g, 0, SECTOR).0, VIRTIO_BLK_S_IOERR);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(run(&mut g, &[(HDR, 16, false), (STATUS_BYTE, 1, true)]).0, VIRTIO_BLK_S_IOERR);
}

#[test]
fn no_status_byte_needs_reset() {
    let mut g = Guest::new(8);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    let head = g.q.chain(&mut g.mem, &[(HDR, 16, false)]);
    g.q.publish(&mut g.mem, head);
    assert!(g.kick(), "the configuration-change interrupt");
    assert!(g.dev.needs_reset());
    assert!(matches!(g.dev.last_error(), Some(QueueError::BadRequest(_))));
    assert_eq!(g.ack(), INT_CONFIG);
    assert_eq!(g.disk.flushes, 0);
}

/// The status byte is the last writable byte, even inside a larger buffer.
#[test]
fn status_is_the_last_writable_byte() {
    let mut g = Guest::new(8);
    header(&mut g.mem, HDR, VIRTIO_BLK_T_IN, 0);
    g.disk.bytes[..SECTOR].copy_from_slice(&pattern(SECTOR, 2));
    g.mem.write(BUF, &[0xEE; SECTOR + 1]).unwrap();
    let head = g.q.chain(&mut g.mem, &[(HDR, 16, false), (BUF, SECTOR as u32 + 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(g.kick());
    assert_eq!(bytes(&g.mem, BUF, SECTOR), pattern(SECTOR, 2));
    assert_eq!(bytes(&g.mem, BUF + SECTOR as u64, 1), [VIRTIO_BLK_S_OK]);
    assert_eq!(g.q.used(&g.mem, 0), (u32::from(head), SECTOR as u32 + 1));
}

#[test]
fn one_kick_completes_several_requests() {
    let mut g = Guest::new(16);
    for i in 0..5u64 {
        header(&mut g.mem, HDR + 0x40 * i, VIRTIO_BLK_T_OUT, i);
        g.mem.write(BUF + 0x200 * i, &[i as u8 + 1; SECTOR]).unwrap();
        let head = g.q.chain(
            &mut g.mem,
            &[(HDR + 0x40 * i, 16, false), (BUF + 0x200 * i, 512, false), (STATUS_BYTE + i, 1, true)],
        );
        g.q.publish(&mut g.mem, head);
    }
    assert!(g.kick());
    assert_eq!(Driver::used_idx(&g.mem), 5);
    for i in 0..5 {
        assert_eq!(g.disk.bytes[i * SECTOR], i as u8 + 1);
    }
}

#[test]
fn whole_aligned_pages_of_a_read_are_reported_to_the_backend() {
    let mut g = Guest::new(64);
    g.disk.bytes = pattern(64 * SECTOR, 3);
    // 16 KiB from sector 8 (disk byte 4096) into BUF, split after 5461
    // bytes: the pages at BUF, BUF + 8 KiB and BUF + 12 KiB are whole in
    // one descriptor; BUF + 4 KiB straddles the split.
    let (s, _, data) = read(&mut g, 8, 4 * 4096);
    assert_eq!(s, VIRTIO_BLK_S_OK);
    assert_eq!(&data[..], &g.disk.bytes[8 * SECTOR..8 * SECTOR + 4 * 4096]);
    assert_eq!(g.disk.filled, [(8, BUF), (24, BUF + 8192), (32, BUF + 12288)]);
    // Disk offset not page-aligned: nothing to share.
    g.disk.filled.clear();
    read(&mut g, 9, 4 * 4096);
    assert_eq!(g.disk.filled, []);
}
