use super::*;
use alloc::vec;
use proptest::prelude::*;

fn name(s: &str) -> ImageName {
    ImageName::new(s).unwrap()
}

fn sample() -> DiskHeader {
    DiskHeader::layout(&[
        (name("debian-base"), ImageKind::Base, 64 << 20),
        (name("vm0.data"), ImageKind::Persistent, 3 * 512),
        (name("vm1_data-2"), ImageKind::Persistent, 1 << 20),
    ])
    .unwrap()
}

/// Recomputes the CRC after a test edits the bytes.
fn reseal(b: &mut [u8; HEADER_BYTES]) {
    b[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
    let crc = crc32(b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The sample with `edit` applied to its bytes, resealed, decoded.
fn edited(edit: impl FnOnce(&mut [u8; HEADER_BYTES])) -> Result<DiskHeader, HeaderError> {
    let mut b = sample().encode().unwrap();
    edit(&mut b);
    reseal(&mut b);
    DiskHeader::decode(&b)
}

fn entry(i: usize) -> usize {
    PREAMBLE_BYTES + i * ENTRY_BYTES
}

#[test]
fn crc32_matches_zlib() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
}

#[test]
fn layout_aligns_images_to_1_mib() {
    let h = sample();
    let at: Vec<_> = h.images.iter().map(|e| (e.offset, e.size)).collect();
    assert_eq!(at, [(1 << 20, 64 << 20), (65 << 20, 1536), (66 << 20, 1 << 20)]);
    assert_eq!(h.disk_bytes, 67 << 20);
    assert_eq!(h.find("vm0.data").unwrap().first_sector(), (65 << 20) / 512);
    assert_eq!(h.find("vm0.data").unwrap().sectors(), 3);
    assert!(h.find("nope").is_none());
    assert_eq!(DiskHeader::layout(&[]).unwrap().disk_bytes, 1 << 20);
}

#[test]
fn encode_decode_round_trip() {
    let h = sample();
    let b = h.encode().unwrap();
    assert_eq!(&b[..8], b"DISCODSK");
    assert_eq!(le32(&b, 8), 1);
    assert_eq!(le32(&b, 12), 3);
    assert_eq!(le64(&b, 0x18), 67 << 20);
    assert_eq!(&b[entry(0)..entry(0) + 12], b"debian-base\0");
    assert_eq!(le32(&b, entry(0) + 0x20), 1);
    assert_eq!(le32(&b, entry(1) + 0x20), 2);
    assert_eq!(le64(&b, entry(1) + 0x28), 65 << 20);
    assert_eq!(le64(&b, entry(1) + 0x30), 1536);
    assert!(b[entry(3)..].iter().all(|&x| x == 0));
    assert_eq!(DiskHeader::decode(&b), Ok(h.clone()));
    // Trailing bytes (the rest of the disk) are ignored.
    let mut long = vec![0xAAu8; HEADER_BYTES + 100];
    long[..HEADER_BYTES].copy_from_slice(&b);
    assert_eq!(DiskHeader::decode(&long), Ok(h));
}

#[test]
fn names() {
    assert!(ImageName::new("a").is_ok());
    assert!(ImageName::new(&"x".repeat(32)).is_ok());
    for bad in ["", &"x".repeat(33), "a b", "a/b", "é", "a\0", "x=y", "a:b"] {
        assert_eq!(ImageName::new(bad), Err(HeaderError::BadName(None)), "{bad:?}");
    }
    // A full 32-byte name has no NUL.
    let h = DiskHeader::layout(&[(name(&"n".repeat(32)), ImageKind::Base, 512)]).unwrap();
    assert_eq!(DiskHeader::decode(&h.encode().unwrap()).unwrap().images[0].name.as_str(), "n".repeat(32));
}

#[test]
fn too_short_bad_magic_version_checksum() {
    let b = sample().encode().unwrap();
    assert_eq!(DiskHeader::decode(&b[..HEADER_BYTES - 1]), Err(HeaderError::TooShort(HEADER_BYTES - 1)));
    assert_eq!(DiskHeader::decode(&[]), Err(HeaderError::TooShort(0)));
    assert_eq!(edited(|b| b[0] = b'X'), Err(HeaderError::BadMagic));
    assert_eq!(edited(|b| b[8] = 2), Err(HeaderError::UnsupportedVersion(2)));
    let mut c = b;
    c[entry(0) + 0x30] ^= 1;
    assert!(matches!(DiskHeader::decode(&c), Err(HeaderError::BadChecksum { .. })));
    let mut c = b;
    c[HEADER_BYTES - 1] = 1;
    assert!(matches!(DiskHeader::decode(&c), Err(HeaderError::BadChecksum { .. })), "padding is covered too");
}

#[test]
fn malformed_entries() {
    assert_eq!(edited(|b| b[12] = 64), Err(HeaderError::TooManyImages(64)));
    assert_eq!(
        edited(|b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes())),
        Err(HeaderError::TooManyImages(u32::MAX))
    );
    assert_eq!(edited(|b| b[entry(1)] = b' '), Err(HeaderError::BadName(Some(1))));
    assert_eq!(edited(|b| b[entry(1)..entry(1) + 32].fill(0)), Err(HeaderError::BadName(Some(1))), "empty");
    assert_eq!(edited(|b| b[entry(0) + 31] = b'x'), Err(HeaderError::BadName(Some(0))), "not NUL-padded");
    assert_eq!(edited(|b| b[entry(2) + 0x20] = 3), Err(HeaderError::BadKind { entry: 2, kind: 3 }));
    assert_eq!(edited(|b| b[entry(2) + 0x20] = 0), Err(HeaderError::BadKind { entry: 2, kind: 0 }));
    assert_eq!(edited(|b| b[entry(0) + 0x24] = 1), Err(HeaderError::UnknownFlags { entry: 0, flags: 1 }));
    let set64 = |b: &mut [u8; HEADER_BYTES], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    assert_eq!(
        edited(|b| set64(b, entry(1) + 0x28, (65 << 20) + 512)),
        Err(HeaderError::BadOffset { entry: 1, offset: (65 << 20) + 512 })
    );
    assert_eq!(
        edited(|b| set64(b, entry(0) + 0x28, 0)),
        Err(HeaderError::BadOffset { entry: 0, offset: 0 }),
        "inside the header"
    );
    assert_eq!(edited(|b| set64(b, entry(1) + 0x30, 0)), Err(HeaderError::BadSize { entry: 1, size: 0 }));
    assert_eq!(edited(|b| set64(b, entry(1) + 0x30, 1000)), Err(HeaderError::BadSize { entry: 1, size: 1000 }));
    assert_eq!(edited(|b| set64(b, entry(2) + 0x30, 2 << 20)), Err(HeaderError::OutsideDisk { entry: 2 }));
    assert_eq!(edited(|b| set64(b, entry(2) + 0x28, !4095u64)), Err(HeaderError::OutsideDisk { entry: 2 }), "overflow");
    assert_eq!(edited(|b| set64(b, 0x18, 66 << 20)), Err(HeaderError::OutsideDisk { entry: 2 }), "disk too small");
    assert_eq!(edited(|b| set64(b, entry(1) + 0x28, 64 << 20)), Err(HeaderError::Overlap { first: 0, second: 1 }));
    assert_eq!(
        edited(|b| b.copy_within(entry(0)..entry(0) + 32, entry(2))),
        Err(HeaderError::DuplicateName { first: 0, second: 2 })
    );
    // Fewer entries than written: the rest is ignored (but covered by the CRC).
    assert_eq!(edited(|b| b[12] = 1).unwrap().images.len(), 1);
}

#[test]
fn encode_refuses_invalid_headers() {
    let mut h = sample();
    h.images[1].offset = h.images[0].offset;
    assert_eq!(h.encode(), Err(HeaderError::Overlap { first: 0, second: 1 }));
    let mut h = sample();
    h.disk_bytes = 0;
    assert_eq!(h.encode(), Err(HeaderError::OutsideDisk { entry: 0 }));
    let many: Vec<_> = (0..64).map(|i| (name(&alloc::format!("i{i}")), ImageKind::Base, 512)).collect();
    assert_eq!(DiskHeader::layout(&many), Err(HeaderError::TooManyImages(64)));
    assert!(DiskHeader::layout(&many[..63]).is_ok());
    assert_eq!(
        DiskHeader::layout(&[(name("a"), ImageKind::Base, 511)]),
        Err(HeaderError::BadSize { entry: 0, size: 511 })
    );
    assert_eq!(
        DiskHeader::layout(&[(name("a"), ImageKind::Base, u64::MAX - 511)]),
        Err(HeaderError::OutsideDisk { entry: 0 })
    );
    assert_eq!(
        DiskHeader::layout(&[(name("a"), ImageKind::Base, 512), (name("a"), ImageKind::Base, 512)]),
        Err(HeaderError::DuplicateName { first: 0, second: 1 })
    );
}

fn image() -> impl Strategy<Value = (ImageName, ImageKind, u64)> {
    (
        "[A-Za-z0-9._-]{1,32}",
        prop_oneof![Just(ImageKind::Base), Just(ImageKind::Persistent)],
        prop_oneof![1u64..4096, 1u64..(1 << 31)],
    )
        .prop_map(|(n, k, sectors)| (ImageName::new(&n).unwrap(), k, sectors * 512))
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        let _ = DiskHeader::decode(&bytes);
    }

    /// Garbage behind a valid preamble (resealed, so the checks past the
    /// checksum are reached): decode never panics, and what it accepts
    /// encodes back to the same bytes.
    #[test]
    fn decode_sealed_garbage(count in 0u32..70, disk in any::<u64>(), entries in prop::collection::vec(any::<u8>(), 0..HEADER_BYTES - PREAMBLE_BYTES)) {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&count.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&disk.to_le_bytes());
        b[PREAMBLE_BYTES..PREAMBLE_BYTES + entries.len()].copy_from_slice(&entries);
        reseal(&mut b);
        if let Ok(h) = DiskHeader::decode(&b) {
            prop_assert!(h.validate().is_ok());
            let again = DiskHeader::decode(&h.encode().unwrap()).unwrap();
            prop_assert_eq!(again, h);
        }
    }

    #[test]
    fn round_trip(images in prop::collection::vec(image(), 0..MAX_IMAGES)) {
        let mut seen = alloc::collections::BTreeSet::new();
        let images: Vec<_> = images.into_iter().filter(|i| seen.insert(alloc::string::String::from(i.0.as_str()))).collect();
        let h = DiskHeader::layout(&images).unwrap();
        let b = h.encode().unwrap();
        prop_assert_eq!(DiskHeader::decode(&b), Ok(h.clone()));
        for e in &h.images {
            prop_assert!(e.offset % LAYOUT_ALIGN == 0 && e.end() <= h.disk_bytes);
        }
    }

    /// Any one changed byte of a valid header is refused.
    #[test]
    fn every_byte_is_checked(at in 0..HEADER_BYTES, xor in 1u8..=255) {
        let mut b = sample().encode().unwrap();
        b[at] ^= xor;
        prop_assert!(DiskHeader::decode(&b).is_err());
    }
}
