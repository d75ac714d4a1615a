//! `cargo xtask disk`: build, list and inspect physical disk files (the
//! raw file QEMU attaches as the machine's virtio disk). The format is
//! `cow_disk::header`'s: a 4 KiB header with a table of named images
//! (base or persistent), the images at 1 MiB boundaries after it.

use anyhow::{bail, ensure, Context, Result};
use clap::Subcommand;
use cow_disk::header::{
    DiskHeader, ImageEntry, ImageKind, ImageName, HEADER_BYTES, LAYOUT_ALIGN, SECTOR_BYTES, VERSION,
};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

mod base;
pub use base::{ensure_base_image, Built};

#[derive(Subcommand, Debug)]
pub enum DiskCmd {
    /// Create a disk file holding the given images (a sparse file: empty images take no space).
    Create {
        file: PathBuf,
        /// NAME=SIZE[:kind=base|persistent][:from=PATH]; SIZE as 512, 64K, 100M, 2G (a multiple of 512) or `auto`
        /// with from= (the file's size, rounded up to 1 MiB); kind defaults to persistent; from= comes last.
        #[arg(long = "image", value_name = "SPEC", required = true)]
        images: Vec<String>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List the images of a disk file.
    List { file: PathBuf },
    /// Print the header and one image's entry, and hexdump the image's first bytes.
    Inspect {
        file: PathBuf,
        name: String,
        /// How many bytes of the image to dump.
        #[arg(long, default_value_t = 256)]
        bytes: usize,
    },
}

pub fn main(cmd: DiskCmd) -> Result<u8> {
    match cmd {
        DiskCmd::Create { file, images, force } => {
            let specs = images.iter().map(|s| ImageSpec::parse(s)).collect::<Result<Vec<_>>>()?;
            let header = create(&file, &specs, force)?;
            print!("{}", list_text(&file, &header));
        }
        DiskCmd::List { file } => {
            let header = read_header(&file)?;
            print!("{}", list_text(&file, &header));
        }
        DiskCmd::Inspect { file, name, bytes } => print!("{}", inspect_text(&file, &name, bytes)?),
    }
    Ok(0)
}

/// One `--image` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: ImageName,
    pub kind: ImageKind,
    /// Bytes; `None` = the size of `from`, rounded up to 1 MiB.
    pub size: Option<u64>,
    pub from: Option<PathBuf>,
}

impl ImageSpec {
    pub fn parse(spec: &str) -> Result<Self> {
        let (name, rest) = spec.split_once('=').with_context(|| format!("--image {spec}: expected NAME=SIZE[:...]"))?;
        let name = ImageName::new(name).map_err(|e| anyhow::anyhow!("--image {spec}: {e}"))?;
        // from= takes the rest of the argument, so a path may contain ':'.
        let (opts, from) = match rest.find(":from=") {
            Some(i) => (&rest[..i], Some(PathBuf::from(&rest[i + ":from=".len()..]))),
            None => (rest, None),
        };
        let mut parts = opts.split(':');
        let size = parts.next().unwrap_or_default();
        let size = if size == "auto" {
            ensure!(from.is_some(), "--image {spec}: size `auto` needs from=PATH");
            None
        } else {
            let n = parse_size(size).with_context(|| format!("--image {spec}: bad size `{size}`"))?;
            ensure!(n > 0 && n % SECTOR_BYTES == 0, "--image {spec}: size must be a positive multiple of 512 bytes");
            Some(n)
        };
        let mut kind = ImageKind::Persistent;
        for opt in parts {
            kind = match opt {
                "kind=base" | "base" => ImageKind::Base,
                "kind=persistent" | "persistent" => ImageKind::Persistent,
                _ => bail!("--image {spec}: unknown option `{opt}` (kind=base, kind=persistent, from=PATH)"),
            };
        }
        if from.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            bail!("--image {spec}: from= needs a path");
        }
        Ok(Self { name, kind, size, from })
    }
}

/// `512`, `64K`, `100M`, `2G`, `1T` (binary units; `KiB` etc. too).
fn parse_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match &s[digits..] {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `1.5 GiB`-style sizes for listings.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Writes a new disk file: header, then each image's `from` contents; the
/// rest stays sparse (reads as zeros).
pub fn create(file: &Path, specs: &[ImageSpec], force: bool) -> Result<DiskHeader> {
    let mut sized = Vec::with_capacity(specs.len());
    for s in specs {
        let from_len = match &s.from {
            Some(p) => Some(std::fs::metadata(p).with_context(|| format!("image {}: {}", s.name, p.display()))?.len()),
            None => None,
        };
        let size = match (s.size, from_len) {
            (Some(size), Some(len)) => {
                ensure!(
                    len <= size,
                    "image {}: {} is {} bytes, more than its size {size}",
                    s.name,
                    s.from.as_ref().unwrap().display(),
                    len
                );
                size
            }
            (Some(size), None) => size,
            (None, Some(len)) => len.max(1).next_multiple_of(1 << 20),
            (None, None) => bail!("image {}: no size", s.name),
        };
        sized.push((s.name, s.kind, size));
    }
    let header = DiskHeader::layout(&sized).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let bytes = header.encode().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;

    if file.exists() && !force {
        bail!("{} exists (use --force to replace it)", file.display());
    }
    let write = || -> Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(file)?;
        f.set_len(header.disk_bytes)?;
        f.write_all(&bytes)?;
        for (spec, entry) in specs.iter().zip(&header.images) {
            let Some(from) = &spec.from else { continue };
            let mut src = File::open(from).with_context(|| format!("opening {}", from.display()))?;
            f.seek(SeekFrom::Start(entry.offset))?;
            let copied = std::io::copy(&mut src, &mut f).with_context(|| format!("copying {}", from.display()))?;
            ensure!(copied <= entry.size, "{} grew while being copied", from.display());
        }
        f.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(file);
        return Err(e.context(format!("writing {}", file.display())));
    }
    Ok(header)
}

/// Makes sure disk file `file` holds a persistent image for each `(name,
/// size)`: a missing file is created with them, a missing image is added
/// after the last one (the file grows, sparse; existing images and their
/// contents stay where they are). An image that exists keeps its size.
/// Returns the header as it is afterwards.
pub fn ensure_images(file: &Path, wanted: &[(ImageName, u64)]) -> Result<DiskHeader> {
    if !file.exists() {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let specs: Vec<ImageSpec> = wanted
            .iter()
            .map(|&(name, size)| ImageSpec { name, kind: ImageKind::Persistent, size: Some(size), from: None })
            .collect();
        let header = create(file, &specs, false)?;
        eprintln!("disk: created {} ({})", file.display(), human(header.disk_bytes));
        return Ok(header);
    }
    let mut header = read_header(file)?;
    let before = header.images.len();
    for &(name, size) in wanted {
        match header.find(name.as_str()) {
            Some(e) if e.kind == ImageKind::Persistent => continue,
            Some(e) => bail!("{}: image {name} is a {} image, not a persistent disk", file.display(), e.kind),
            None => {}
        }
        let offset = header.disk_bytes.next_multiple_of(LAYOUT_ALIGN);
        let end = offset.checked_add(size).context("disk too large")?;
        header.images.push(ImageEntry { name, kind: ImageKind::Persistent, offset, size });
        header.disk_bytes = end.next_multiple_of(LAYOUT_ALIGN);
        eprintln!("disk: adding persistent image {name} ({}) to {}", human(size), file.display());
    }
    if header.images.len() == before {
        return Ok(header);
    }
    let bytes = header.encode().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut f = OpenOptions::new().write(true).open(file).with_context(|| format!("opening {}", file.display()))?;
    // Grow first, then the header: a header never names bytes past the end.
    f.set_len(header.disk_bytes)?;
    // The new images read as zeros (a sparse extension).
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(header)
}

/// Reads and checks the header of a disk file, and that the file is as
/// long as the header says.
pub fn read_header(file: &Path) -> Result<DiskHeader> {
    let mut f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut b = vec![0u8; HEADER_BYTES];
    let n = read_full(&mut f, &mut b)?;
    let header = DiskHeader::decode(&b[..n]).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let len = f.metadata()?.len();
    ensure!(
        len >= header.disk_bytes,
        "{}: the file is {len} bytes but its header describes {} bytes",
        file.display(),
        header.disk_bytes
    );
    Ok(header)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub fn list_text(file: &Path, h: &DiskHeader) -> String {
    let mut s =
        format!("{}: DISCODSK v{VERSION}, {} image(s), {}\n", file.display(), h.images.len(), human(h.disk_bytes));
    let _ = writeln!(s, "{:<32}  {:<10}  {:>12}  {:>10}", "NAME", "KIND", "OFFSET", "SIZE");
    for e in &h.images {
        let _ =
            writeln!(s, "{:<32}  {:<10}  {:>#12x}  {:>10}", e.name.as_str(), e.kind.as_str(), e.offset, human(e.size));
    }
    s
}

pub fn inspect_text(file: &Path, name: &str, bytes: usize) -> Result<String> {
    let h = read_header(file)?;
    let Some(e) = h.find(name) else {
        let names: Vec<&str> = h.images.iter().map(|e| e.name.as_str()).collect();
        bail!("{}: no image `{name}` (images: {})", file.display(), names.join(", "));
    };
    let raw = {
        let mut f = File::open(file)?;
        let mut b = vec![0u8; HEADER_BYTES];
        read_full(&mut f, &mut b)?;
        b
    };
    let index = h.images.iter().position(|x| x.name == e.name).unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(s, "file        {}", file.display());
    let _ = writeln!(s, "magic       DISCODSK");
    let _ = writeln!(s, "version     {VERSION}");
    let _ = writeln!(s, "images      {}", h.images.len());
    let _ = writeln!(s, "crc32       {:#010x}", u32::from_le_bytes(raw[0x10..0x14].try_into().unwrap()));
    let _ = writeln!(s, "disk bytes  {} ({})", h.disk_bytes, human(h.disk_bytes));
    let _ = writeln!(s, "image       {index}: {}", e.name);
    let _ = writeln!(s, "  kind      {}", e.kind);
    let _ = writeln!(s, "  offset    {:#x} (sector {})", e.offset, e.first_sector());
    let _ = writeln!(s, "  size      {} ({}, {} sectors)", e.size, human(e.size), e.sectors());
    let n = bytes.min(usize::try_from(e.size).unwrap_or(usize::MAX));
    let mut data = vec![0u8; n];
    let mut f = File::open(file)?;
    f.seek(SeekFrom::Start(e.offset))?;
    let got = read_full(&mut f, &mut data)?;
    let _ = writeln!(s, "first {got} bytes:");
    s.push_str(&hexdump(&data[..got]));
    Ok(s)
}

/// `xxd`-style lines: offset, 16 hex bytes, ASCII; runs of identical
/// lines collapse into `*` (as `hexdump -C`).
pub fn hexdump(data: &[u8]) -> String {
    let mut s = String::new();
    let mut last: Option<&[u8]> = None;
    let mut starred = false;
    for (i, line) in data.chunks(16).enumerate() {
        if last == Some(line) && line.len() == 16 {
            if !starred {
                s.push_str("*\n");
                starred = true;
            }
            continue;
        }
        starred = false;
        last = Some(line);
        let _ = write!(s, "{:08x} ", i * 16);
        for j in 0..16 {
            match line.get(j) {
                Some(b) => {
                    let _ = write!(s, " {b:02x}");
                }
                None => s.push_str("   "),
            }
        }
        s.push_str("  |");
        s.extend(line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        s.push_str("|\n");
    }
    if starred {
        let _ = writeln!(s, "{:08x}", data.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn scratch(name: &str) -> PathBuf {
        let dir = crate::util::cache_dir("test-disk").unwrap();
        dir.join(format!("{}-{name}", std::process::id()))
    }

    #[test]
    fn parses_image_specs() {
        let s = ImageSpec::parse("vm0=64M").unwrap();
        assert_eq!((s.name.as_str(), s.kind, s.size, s.from), ("vm0", ImageKind::Persistent, Some(64 << 20), None));
        let s = ImageSpec::parse("root=2G:kind=base:from=/tmp/a:b.ext4").unwrap();
        assert_eq!((s.kind, s.size, s.from), (ImageKind::Base, Some(2 << 30), Some(PathBuf::from("/tmp/a:b.ext4"))));
        let s = ImageSpec::parse("r=auto:base:from=x").unwrap();
        assert_eq!((s.kind, s.size), (ImageKind::Base, None));
        assert_eq!(ImageSpec::parse("d=512").unwrap().size, Some(512));
        for bad in
            ["vm0", "=1M", "a b=1M", "d=1000", "d=0", "d=1X", "d=auto", "d=1M:kind=cow", "d=1M:from=", "d=99999999999T"]
        {
            assert!(ImageSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("3MiB"), Some(3 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size(""), None);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1 << 20), "1 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn create_list_inspect() {
        let src = scratch("src.bin");
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &content).unwrap();
        let file = scratch("disk.img");
        let specs = [
            ImageSpec::parse(&format!("base=auto:kind=base:from={}", src.display())).unwrap(),
            ImageSpec::parse("vm0.data=3M").unwrap(),
            ImageSpec::parse(&format!("vm1=8K:from={}", src.display())).unwrap(),
        ];
        let h = create(&file, &specs, true).unwrap();
        assert!(create(&file, &specs, false).unwrap_err().to_string().contains("exists"));
        assert_eq!(read_header(&file).unwrap(), h);
        let offsets: Vec<_> = h.images.iter().map(|e| (e.offset, e.size)).collect();
        assert_eq!(offsets, [(1 << 20, 1 << 20), (2 << 20, 3 << 20), (5 << 20, 8192)]);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 6 << 20);
        let disk = std::fs::read(&file).unwrap();
        assert_eq!(&disk[1 << 20..(1 << 20) + 5000], &content[..]);
        assert_eq!(&disk[5 << 20..(5 << 20) + 5000], &content[..]);
        assert!(disk[(5 << 20) + 5000..].iter().all(|&b| b == 0));

        let list = list_text(&file, &h);
        assert!(list.contains("3 image(s), 6 MiB"), "{list}");
        assert!(
            list.lines().any(|l| l.starts_with("vm0.data")
                && l.contains("persistent")
                && l.contains("0x200000")
                && l.contains("3 MiB")),
            "{list}"
        );
        assert!(list.lines().any(|l| l.starts_with("base") && l.contains("base")), "{list}");

        let out = inspect_text(&file, "vm1", 40).unwrap();
        assert!(out.contains("image       2: vm1"), "{out}");
        assert!(out.contains("offset    0x500000 (sector 10240)"), "{out}");
        assert!(out.contains("size      8192 (8 KiB, 16 sectors)"), "{out}");
        assert!(out.contains("00000000  00 01 02 03"), "{out}");
        assert!(out.contains("00000020  20 21 22 23 24 25 26 27                          |"), "{out}");
        assert!(inspect_text(&file, "nope", 16).unwrap_err().to_string().contains("images: base, vm0.data, vm1"));

        // A truncated file and a corrupted header are refused.
        let f = OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(5 << 20).unwrap();
        assert!(read_header(&file).unwrap_err().to_string().contains("header describes"));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read_header(&file).unwrap_err().to_string().contains("checksum"));

        // An image smaller than its source.
        let small = [ImageSpec::parse(&format!("x=4K:from={}", src.display())).unwrap()];
        assert!(create(&scratch("small.img"), &small, true).unwrap_err().to_string().contains("more than its size"));
        assert!(!scratch("small.img").exists());
        for p in [src, file] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn ensure_images_creates_then_adds_keeping_contents() {
        let f = scratch("ensure.disk");
        let _ = std::fs::remove_file(&f);
        let name = |n| ImageName::new(n).unwrap();
        let h = ensure_images(&f, &[(name("a"), 1 << 20)]).unwrap();
        let a = *h.find("a").unwrap();
        // Something the guest wrote into a.
        let mut file = OpenOptions::new().write(true).open(&f).unwrap();
        file.seek(SeekFrom::Start(a.offset)).unwrap();
        file.write_all(b"kept").unwrap();
        drop(file);
        let h = ensure_images(&f, &[(name("a"), 8 << 20), (name("b"), 2 << 20)]).unwrap();
        assert_eq!(*h.find("a").unwrap(), a, "an existing image keeps its place and size");
        let b = h.find("b").unwrap();
        assert!(b.offset >= a.end() && b.size == 2 << 20);
        assert_eq!(read_header(&f).unwrap(), h);
        let mut buf = [0u8; 4];
        let mut file = File::open(&f).unwrap();
        file.seek(SeekFrom::Start(a.offset)).unwrap();
        file.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"kept");
        // Nothing to add: the file is left alone.
        assert_eq!(ensure_images(&f, &[(name("b"), 1 << 20)]).unwrap(), h);
        let base = scratch("ensure-base.disk");
        let spec = ImageSpec::parse("root=1M:kind=base").unwrap();
        create(&base, &[spec], true).unwrap();
        let e = ensure_images(&base, &[(name("root"), 1 << 20)]).unwrap_err().to_string();
        assert!(e.contains("base image"), "{e}");
        let _ = std::fs::remove_file(&f);
        let _ = std::fs::remove_file(&base);
    }

    #[test]
    fn hexdump_collapses_repeats() {
        let mut d = vec![0u8; 64];
        d[0] = b'A';
        let s = hexdump(&d);
        assert_eq!(
            s,
            "00000000  41 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  |A...............|\n\
             00000010  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  |................|\n\
             *\n\
             00000040\n"
        );
    }
}
