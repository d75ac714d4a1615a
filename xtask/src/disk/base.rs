//! Base images in a disk file: an image xtask built (the Debian root of
//! `cargo xtask disks`) written into its place in the file, and rewritten
//! only when its stamp says the contents changed.

use super::{create, human, read_full, read_header, ImageSpec};
use anyhow::{bail, ensure, Context, Result};
use cow_disk::header::{DiskHeader, ImageEntry, ImageKind, ImageName, LAYOUT_ALIGN};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A base image built elsewhere (e.g. `rootfs`) to go into a disk file.
#[derive(Clone)]
pub struct Built {
    pub image: PathBuf,
    /// The stamp text: changes whenever the image's contents would.
    pub stamp: String,
}

/// Makes sure disk file `file` holds base image `name` with the contents
/// of `built` (a file xtask built, e.g. the Debian root filesystem): a
/// missing file is created with it, a missing image is added after the
/// last one, and an image whose contents are out of date (its stamp, kept
/// beside the disk file as `FILE.NAME.stamp`, differs) is rewritten in
/// place if the new contents fit. Other images are left alone.
pub fn ensure_base_image(file: &Path, name: &str, built: &Built) -> Result<DiskHeader> {
    let iname = ImageName::new(name).map_err(|e| anyhow::anyhow!("image {name}: {e}"))?;
    let stamp_file = PathBuf::from(format!("{}.{name}.stamp", file.display()));
    let len = std::fs::metadata(&built.image).with_context(|| format!("{}", built.image.display()))?.len();
    // Room to grow (a sparse file: unused room costs nothing), so a
    // rebuilt image with a few more files still fits in place.
    let size = (len + len / 4).max(1).next_multiple_of(64 << 20);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let (header, entry, fresh) = if !file.exists() {
        let spec = ImageSpec { name: iname, kind: ImageKind::Base, size: Some(size), from: None };
        let header = create(file, &[spec], false)?;
        let e = header.images[0];
        (header, e, true)
    } else {
        let mut header = read_header(file)?;
        match header.find(name) {
            Some(e) if e.kind != ImageKind::Base => {
                bail!("{}: image {name} is a {} image, not a base image", file.display(), e.kind)
            }
            Some(e) => {
                let e = *e;
                if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(built.stamp.as_str()) {
                    return Ok(header);
                }
                ensure!(
                    len <= e.size,
                    "{}: base image {name} ({}) is too small for its new contents ({}); delete the disk file \
                     (its persistent images too) or make a new one with `cargo xtask disk create`",
                    file.display(),
                    human(e.size),
                    human(len)
                );
                (header, e, false)
            }
            None => {
                let offset = header.disk_bytes.next_multiple_of(LAYOUT_ALIGN);
                let e = ImageEntry { name: iname, kind: ImageKind::Base, offset, size };
                header.images.push(e);
                header.disk_bytes = (offset + size).next_multiple_of(LAYOUT_ALIGN);
                let bytes = header.encode().map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
                let mut f = OpenOptions::new().write(true).open(file)?;
                f.set_len(header.disk_bytes)?;
                f.write_all(&bytes)?;
                (header, e, true)
            }
        }
    };
    eprintln!("disk: writing base image {name} ({}) into {} ...", human(len), file.display());
    // The stamp goes first: a copy cut short leaves no valid stamp.
    let _ = std::fs::remove_file(&stamp_file);
    let mut src = File::open(&built.image)?;
    let mut dst = OpenOptions::new().write(true).open(file)?;
    copy_into(&mut src, &mut dst, entry.offset, entry.size, fresh)
        .with_context(|| format!("copying {} into {}", built.image.display(), file.display()))?;
    dst.sync_all()?;
    std::fs::write(&stamp_file, &built.stamp)?;
    Ok(header)
}

/// Copies `src` to `dst` at `offset`; the rest of the `size` bytes there
/// become zeros. Into a `fresh` (sparse, all-zero) region, zero blocks are
/// skipped so the file stays sparse.
fn copy_into(src: &mut File, dst: &mut File, offset: u64, size: u64, fresh: bool) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = read_full(src, &mut buf)?;
        if n == 0 {
            break;
        }
        ensure!(at + n as u64 <= size, "the source is larger than the image ({size} bytes)");
        if !(fresh && buf[..n].iter().all(|&b| b == 0)) {
            dst.seek(SeekFrom::Start(offset + at))?;
            dst.write_all(&buf[..n])?;
        }
        at += n as u64;
    }
    if !fresh {
        buf.fill(0);
        dst.seek(SeekFrom::Start(offset + at))?;
        while at < size {
            let n = (size - at).min(CHUNK as u64) as usize;
            dst.write_all(&buf[..n])?;
            at += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{ensure_images, tests::scratch};
    use super::*;
    use std::io::Read;

    #[test]
    fn base_image_added_rewritten_and_kept() {
        let f = scratch("base.disk");
        let _ = std::fs::remove_file(&f);
        let img = scratch("base.ext4");
        let built = |data: &[u8], stamp: &str| {
            std::fs::write(&img, data).unwrap();
            Built { image: img.clone(), stamp: stamp.into() }
        };
        let read_image = |h: &DiskHeader, n: usize| {
            let e = h.find("debian").unwrap();
            let mut b = vec![0u8; n];
            let mut file = File::open(&f).unwrap();
            file.seek(SeekFrom::Start(e.offset)).unwrap();
            file.read_exact(&mut b).unwrap();
            b
        };
        // A persistent image first; the base image goes after it.
        let name = |n| ImageName::new(n).unwrap();
        ensure_images(&f, &[(name("data"), 1 << 20)]).unwrap();
        let h = ensure_base_image(&f, "debian", &built(&[7u8; 5000], "v1")).unwrap();
        let e = *h.find("debian").unwrap();
        assert_eq!((e.kind, e.size), (ImageKind::Base, 64 << 20));
        assert!(e.offset >= h.find("data").unwrap().end());
        assert_eq!(read_image(&h, 5001)[..], [[7u8; 5000].as_slice(), &[0]].concat()[..]);
        // Same stamp: nothing is written, even if the file differs.
        let h2 = ensure_base_image(&f, "debian", &built(&[9u8; 10], "v1")).unwrap();
        assert_eq!(read_image(&h2, 1)[0], 7);
        // A new stamp: rewritten in place, the old tail zeroed.
        let h3 = ensure_base_image(&f, "debian", &built(&[9u8; 10], "v2")).unwrap();
        assert_eq!(*h3.find("debian").unwrap(), e);
        assert_eq!(read_image(&h3, 5000)[..], [[9u8; 10].as_slice(), &[0u8; 4990]].concat()[..]);
        // Too large for the image it has: refused, naming the way out.
        let big = built(&vec![1u8; (64 << 20) + 1], "v3");
        let err = ensure_base_image(&f, "debian", &big).unwrap_err().to_string();
        assert!(err.contains("too small") && err.contains("delete the disk file"), "{err}");
        // A persistent image of that name is not taken for a base image.
        assert!(ensure_base_image(&f, "data", &built(b"x", "v1"))
            .unwrap_err()
            .to_string()
            .contains("not a base image"));
        for p in [&f, &img] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(format!("{}.debian.stamp", f.display()));
    }
}
