//! The virtio-mmio register file and status machine.

use super::*;
use crate::mmio::MmioError;
use crate::virtio::blk::{VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX};

fn blk() -> VirtioMmio<VirtioBlk> {
    VirtioMmio::new(VirtioBlk::new(BlkConfig::new(0x1_2345_6789, false, b"x")))
}

/// What Linux's `vm_probe` checks first.
#[test]
fn identifies_as_a_modern_block_device() {
    let mut d = blk();
    assert_eq!(r(&mut d, MAGIC), u32::from_le_bytes(*b"virt"));
    assert_eq!(r(&mut d, VERSION_REG), 2);
    assert_eq!(r(&mut d, DEVICE_ID), VIRTIO_ID_BLOCK);
    assert_eq!(r(&mut d, VENDOR_ID_REG), VENDOR_ID);
    let f = read_features(&mut d);
    assert_eq!(
        f,
        VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH
    );
    assert_eq!(f & VIRTIO_F_EVENT_IDX, 0, "event idx is not offered");
    w(&mut d, DEVICE_FEATURES_SEL, 2);
    assert_eq!(r(&mut d, DEVICE_FEATURES), 0);
    w(&mut d, QUEUE_SEL, 0);
    assert_eq!(r(&mut d, QUEUE_NUM_MAX), 256);
    assert_eq!(r(&mut d, QUEUE_READY), 0);
    w(&mut d, QUEUE_SEL, 1);
    assert_eq!(r(&mut d, QUEUE_NUM_MAX), 0, "only one queue");
    assert_eq!(r(&mut d, SHM_LEN_LOW), u32::MAX, "no shared memory region");
    assert_eq!(r(&mut d, SHM_LEN_HIGH), u32::MAX);
    assert_eq!(r(&mut d, CONFIG_GENERATION), 0);
    assert_eq!(r(&mut d, STATUS), 0);
    assert_eq!(r(&mut d, 0x0f0), 0, "reserved offsets read as zero");
    assert!(!d.irq_level());
}

#[test]
fn access_widths() {
    let mut d = blk();
    assert_eq!(d.read(MAGIC, 2), Err(MmioError::BadWidth));
    assert_eq!(d.read(MAGIC, 8), Err(MmioError::BadWidth));
    assert_eq!(d.read(STATUS + 1, 1), Err(MmioError::BadWidth));
    assert_eq!(d.write(STATUS, 1, 1), Err(MmioError::BadWidth));
    assert_eq!(d.read(VIRTIO_MMIO_FRAME_SIZE, 4), Err(MmioError::Unmapped));
    assert_eq!(d.write(u64::MAX, 4, 0), Err(MmioError::Unmapped));
    assert_eq!(d.read(CONFIG + 1, 2), Err(MmioError::BadWidth), "config space: naturally aligned");
    assert_eq!(d.read(CONFIG, 3), Err(MmioError::BadWidth));
    assert_eq!(d.status(), 0, "nothing changed");
}

/// capacity, seg_max, blk_size at their virtio_blk_config offsets, at
/// every width Linux uses (a 64-bit field as two 32-bit reads).
#[test]
fn block_config_space() {
    let mut d = blk();
    assert_eq!(d.read(CONFIG, 8), Ok(0x1_2345_6789));
    assert_eq!(d.read(CONFIG, 4), Ok(0x2345_6789));
    assert_eq!(d.read(CONFIG + 4, 4), Ok(1));
    assert_eq!(d.read(CONFIG + 1, 1), Ok(0x67));
    assert_eq!(d.read(CONFIG + 2, 2), Ok(0x2345));
    assert_eq!(d.read(CONFIG + 12, 4), Ok(254), "seg_max = queue size - 2");
    assert_eq!(d.read(CONFIG + 20, 4), Ok(512), "blk_size");
    assert_eq!(d.read(CONFIG + 8, 4), Ok(0), "size_max not offered");
    assert_eq!(d.read(CONFIG + 0xF8, 8), Ok(0), "past the device's fields");
    d.write(CONFIG, 8, 0).unwrap();
    assert_eq!(d.read(CONFIG, 8), Ok(0x1_2345_6789), "config writes do not change capacity");
}

#[test]
fn read_only_disk_offers_ro() {
    let mut d = VirtioMmio::new(VirtioBlk::new(BlkConfig::new(8, true, b"")));
    assert_ne!(read_features(&mut d) & VIRTIO_BLK_F_RO, 0);
    assert_eq!(read_features(&mut blk()) & VIRTIO_BLK_F_RO, 0);
}

#[test]
fn feature_negotiation() {
    let mut d = blk();
    let s = negotiate(&mut d, VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
    assert_eq!(s, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    assert_eq!(d.driver_features(), VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
    // After FEATURES_OK the features are final.
    write_features(&mut d, VIRTIO_F_VERSION_1);
    assert_eq!(d.driver_features(), VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
    // Unselected halves are ignored.
    let mut d = blk();
    add_status(&mut d, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    w(&mut d, DRIVER_FEATURES_SEL, 7);
    w(&mut d, DRIVER_FEATURES, u32::MAX);
    assert_eq!(d.driver_features(), 0);
}

#[test]
fn driver_features_only_after_driver() {
    let mut d = blk();
    add_status(&mut d, STATUS_ACKNOWLEDGE);
    write_features(&mut d, VIRTIO_F_VERSION_1);
    assert_eq!(d.driver_features(), 0);
}

#[test]
fn features_ok_refused_without_version_1() {
    let mut d = blk();
    let s = negotiate(&mut d, !VIRTIO_F_VERSION_1);
    assert_eq!(s & STATUS_FEATURES_OK, 0, "a legacy driver is refused");
    assert_eq!(s, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    // And DRIVER_OK cannot follow.
    add_status(&mut d, STATUS_DRIVER_OK);
    assert_eq!(r(&mut d, STATUS) & STATUS_DRIVER_OK, 0);
    // The driver gives up.
    add_status(&mut d, STATUS_FAILED);
    assert_eq!(r(&mut d, STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED);
}

#[test]
fn features_ok_refused_for_features_not_offered() {
    let mut d = blk();
    w(&mut d, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    write_features(&mut d, VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
    add_status(&mut d, STATUS_FEATURES_OK);
    assert_eq!(r(&mut d, STATUS) & STATUS_FEATURES_OK, 0);
    // Fixing the features makes it acceptable.
    write_features(&mut d, VIRTIO_F_VERSION_1);
    add_status(&mut d, STATUS_FEATURES_OK);
    assert_ne!(r(&mut d, STATUS) & STATUS_FEATURES_OK, 0);
}

#[test]
fn status_bits_only_in_order() {
    let mut d = blk();
    w(&mut d, STATUS, STATUS_DRIVER);
    assert_eq!(r(&mut d, STATUS), 0, "DRIVER before ACKNOWLEDGE");
    w(&mut d, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER_OK);
    assert_eq!(r(&mut d, STATUS), STATUS_ACKNOWLEDGE, "DRIVER_OK before FEATURES_OK");
    w(&mut d, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    assert_eq!(r(&mut d, STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    w(&mut d, STATUS, STATUS_DRIVER);
    assert_eq!(r(&mut d, STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER, "clearing a bit is ignored");
    w(&mut d, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_NEEDS_RESET);
    assert_eq!(r(&mut d, STATUS), STATUS_ACKNOWLEDGE | STATUS_DRIVER, "NEEDS_RESET is the device's");
}

#[test]
fn whole_sequence_in_one_write() {
    let mut d = blk();
    w(&mut d, STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    write_features(&mut d, VIRTIO_F_VERSION_1);
    w(&mut d, STATUS, 0xF);
    assert_eq!(r(&mut d, STATUS), 0xF);
}

#[test]
fn queue_setup_only_between_features_ok_and_driver_ok() {
    let mut d = blk();
    // Before FEATURES_OK: ignored.
    add_status(&mut d, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    w(&mut d, QUEUE_NUM, 8);
    w(&mut d, QUEUE_DESC_LOW, 0x1000);
    w(&mut d, QUEUE_READY, 1);
    assert_eq!(r(&mut d, QUEUE_READY), 0);
    assert_eq!(r(&mut d, QUEUE_DESC_LOW), 0);
    assert!(!d.needs_reset());

    // Between FEATURES_OK and DRIVER_OK: accepted.
    assert_ne!(negotiate(&mut d, u64::MAX) & STATUS_FEATURES_OK, 0);
    setup_queue(&mut d, 16);
    assert_eq!(r(&mut d, QUEUE_READY), 1);
    let q = d.queue(0).unwrap();
    assert_eq!((q.size(), q.desc_table(), q.avail_ring(), q.used_ring()), (16, DESC, AVAIL, USED));
    assert_eq!((r(&mut d, QUEUE_DESC_LOW), r(&mut d, QUEUE_DESC_HIGH)), (DESC as u32, 0));
    // While ready: ignored.
    w(&mut d, QUEUE_DESC_LOW, 0x2000);
    w(&mut d, QUEUE_NUM, 32);
    assert_eq!(d.queue(0).unwrap().desc_table(), DESC);
    assert_eq!(d.queue(0).unwrap().size(), 16);

    // After DRIVER_OK: ignored, even once the queue is disabled.
    add_status(&mut d, STATUS_DRIVER_OK);
    w(&mut d, QUEUE_READY, 0);
    assert_eq!(r(&mut d, QUEUE_READY), 0);
    w(&mut d, QUEUE_NUM, 8);
    w(&mut d, QUEUE_READY, 1);
    assert_eq!(r(&mut d, QUEUE_READY), 0);
    assert!(d.queue(0).is_none());

    // A queue that does not exist.
    let mut d = blk();
    negotiate(&mut d, u64::MAX);
    w(&mut d, QUEUE_SEL, 5);
    w(&mut d, QUEUE_NUM, 8);
    w(&mut d, QUEUE_READY, 1);
    assert_eq!(r(&mut d, QUEUE_READY), 0);
    assert!(!d.needs_reset());
}

#[test]
fn bad_queue_setup_needs_reset() {
    for (num, desc) in [(3, DESC), (512, DESC), (0, DESC), (16, DESC + 8)] {
        let mut d = blk();
        negotiate(&mut d, u64::MAX);
        w(&mut d, QUEUE_NUM, num);
        w(&mut d, QUEUE_DESC_LOW, desc as u32);
        w(&mut d, QUEUE_DESC_HIGH, (desc >> 32) as u32);
        w(&mut d, QUEUE_DRIVER_LOW, AVAIL as u32);
        w(&mut d, QUEUE_DEVICE_LOW, USED as u32);
        w(&mut d, QUEUE_READY, 1);
        assert_eq!(r(&mut d, QUEUE_READY), 0, "num {num} desc {desc:#x}");
        assert!(d.needs_reset());
        assert_ne!(r(&mut d, STATUS) & STATUS_NEEDS_RESET, 0);
        assert!(d.last_error().is_some());
    }
}

#[test]
fn reset_clears_everything() {
    let mut g = Guest::new(8);
    let (h, s) = (DATA, DATA + 0x100);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(g.kick());
    assert_eq!(g.dev.interrupt_status(), INT_VRING);

    w(&mut g.dev, STATUS, 0);
    assert_eq!(r(&mut g.dev, STATUS), 0);
    assert_eq!(r(&mut g.dev, INTERRUPT_STATUS), 0);
    assert!(!g.dev.irq_level());
    assert_eq!(g.dev.driver_features(), 0);
    w(&mut g.dev, QUEUE_SEL, 0);
    assert_eq!(r(&mut g.dev, QUEUE_READY), 0);
    assert_eq!(r(&mut g.dev, QUEUE_DESC_LOW), 0);
    assert!(g.dev.queue(0).is_none());
    // Notifications are ignored until the driver is back.
    w(&mut g.dev, QUEUE_NOTIFY, 0);
    assert_eq!(g.dev.take_notified(), None);

    // A second initialisation starts the rings from 0 again.
    g.mem.bytes.fill(0);
    g.start();
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(g.kick());
    assert_eq!(Driver::used_idx(&g.mem), 1);
    assert_eq!(g.disk.flushes, 2);
}

#[test]
fn notify_is_recorded_not_processed() {
    let mut g = Guest::new(8);
    let (h, s) = (DATA, DATA + 0x100);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    w(&mut g.dev, QUEUE_NOTIFY, 0);
    w(&mut g.dev, QUEUE_NOTIFY, 0);
    w(&mut g.dev, QUEUE_NOTIFY, 1); // no such queue
    w(&mut g.dev, QUEUE_NOTIFY, 1000);
    assert_eq!(Driver::used_idx(&g.mem), 0, "nothing done yet");
    assert_eq!(g.disk.flushes, 0);
    assert_eq!(g.dev.take_notified(), Some(0));
    assert_eq!(g.dev.take_notified(), None);
    let disk: &mut dyn blk::BlockBackend = &mut g.disk;
    assert!(g.dev.process(0, &mut g.mem, disk));
    assert_eq!(Driver::used_idx(&g.mem), 1);
    assert_eq!(g.disk.flushes, 1);
    // Processing a queue with nothing new does nothing.
    let disk: &mut dyn blk::BlockBackend = &mut g.disk;
    g.dev.process(0, &mut g.mem, disk);
    assert_eq!(Driver::used_idx(&g.mem), 1);
    // Nor does a queue that does not exist.
    let disk: &mut dyn blk::BlockBackend = &mut g.disk;
    g.dev.process(9, &mut g.mem, disk);
}

#[test]
fn notify_before_driver_ok_is_ignored() {
    let mut d = blk();
    negotiate(&mut d, u64::MAX);
    setup_queue(&mut d, 8);
    w(&mut d, QUEUE_NOTIFY, 0);
    assert_eq!(d.take_notified(), None);
    let mut mem = VecMemory::new(BASE, MEM_SIZE);
    let mut disk = MemDisk::new(8);
    assert!(!d.process(0, &mut mem, &mut disk));
}

#[test]
fn interrupt_status_and_ack() {
    let mut g = Guest::new(8);
    let (h, s) = (DATA, DATA + 0x100);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    for _ in 0..2 {
        let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
        g.q.publish(&mut g.mem, head);
    }
    assert!(g.kick());
    assert_eq!(Driver::used_idx(&g.mem), 2, "one kick, both requests");
    assert_eq!(g.ack(), INT_VRING);
    assert!(!g.dev.irq_level());
    assert_eq!(r(&mut g.dev, INTERRUPT_STATUS), 0);
}

#[test]
fn no_interrupt_flag_is_honoured() {
    let mut g = Guest::new(8);
    let (h, s) = (DATA, DATA + 0x100);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    g.mem.write_u16(AVAIL, queue::VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(!g.kick());
    assert_eq!(Driver::used_idx(&g.mem), 1, "completed, silently");
}

#[test]
fn config_change_interrupt_and_generation() {
    let mut g = Guest::new(8);
    g.dev.config_changed();
    assert_eq!(r(&mut g.dev, CONFIG_GENERATION), 1);
    assert!(g.dev.irq_level());
    assert_eq!(g.ack(), INT_CONFIG);
    // Before DRIVER_OK only the generation moves.
    let mut d = blk();
    d.config_changed();
    assert_eq!(r(&mut d, CONFIG_GENERATION), 1);
    assert!(!d.irq_level());
}

#[test]
fn malformed_chain_needs_reset_until_reset() {
    let mut g = Guest::new(8);
    put_desc(&mut g.mem, DESC, 0, DATA, 16, queue::VIRTQ_DESC_F_NEXT, 0); // loops on itself
    g.q.publish(&mut g.mem, 0);
    assert!(g.kick());
    assert!(g.dev.needs_reset());
    assert_eq!(g.dev.last_error(), Some(queue::QueueError::ChainTooLong));
    assert_eq!(r(&mut g.dev, STATUS), 0xF | STATUS_NEEDS_RESET);
    assert_eq!(g.ack(), INT_CONFIG);
    assert_eq!(Driver::used_idx(&g.mem), 0);
    // A good request now is not processed.
    let (h, s) = (DATA, DATA + 0x100);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(!g.kick());
    assert_eq!(g.disk.flushes, 0);
    // The driver's status writes keep NEEDS_RESET (Linux writes back what it read).
    add_status(&mut g.dev, STATUS_FAILED);
    assert!(g.dev.needs_reset());
    // Reset brings it back.
    g.mem.bytes.fill(0);
    g.start();
    assert!(!g.dev.needs_reset());
    assert_eq!(g.dev.last_error(), None);
    g.mem.write_u32(h, blk::VIRTIO_BLK_T_FLUSH).unwrap();
    let head = g.q.chain(&mut g.mem, &[(h, 16, false), (s, 1, true)]);
    g.q.publish(&mut g.mem, head);
    assert!(g.kick());
    assert_eq!(g.disk.flushes, 1);
}
