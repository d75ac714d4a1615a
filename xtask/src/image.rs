//! Builds the monitor and turns its ELF into a flat arm64 `Image`.
//!
//! QEMU starts an arm64 `Image` (64-byte Linux header, magic `ARM\x64` at
//! 0x38) at EL2 with the host DTB address in x0; a bare ELF would get x0 = 0.
//! The monitor's linker script puts that header first, so the flat file is
//! simply its loadable segments laid out by physical address.

use crate::setup::MONITOR_TARGET;
use crate::util::{rel, root, run, write_if_changed};
use anyhow::{bail, Context, Result};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{elf, Endianness};
use std::path::PathBuf;
use std::process::Command;

/// Set to an ELF path to boot that instead of building the monitor (a
/// bisect, or a test fixture that checks the harness's monitor path).
pub const ELF_OVERRIDE: &str = "XTASK_MONITOR_ELF";

/// Builds `monitor` (release, bare-metal target) and writes `monitor.img`
/// next to the ELF; returns the image path.
pub fn build_monitor() -> Result<PathBuf> {
    let dir = root().join("target").join(MONITOR_TARGET).join("release");
    let elf = match std::env::var_os(ELF_OVERRIDE) {
        Some(p) => {
            eprintln!(
                "build: using {} from ${ELF_OVERRIDE} instead of building the monitor",
                PathBuf::from(&p).display()
            );
            std::fs::create_dir_all(&dir)?;
            PathBuf::from(p)
        }
        None => {
            eprintln!("build: monitor ({MONITOR_TARGET}, release) ...");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(Command::new(cargo).current_dir(root()).args([
                "build",
                "--quiet",
                "-p",
                "monitor",
                "--release",
                "--target",
                MONITOR_TARGET,
            ]))?;
            dir.join("monitor")
        }
    };
    let data = std::fs::read(&elf).with_context(|| format!("reading {}", rel(&elf)))?;
    let flat = flatten(&data).with_context(|| format!("converting {} to a flat image", rel(&elf)))?;
    if !has_image_header(&flat) {
        eprintln!(
            "build: warning: {} does not start with an arm64 Image header (magic ARM\\x64 at 0x38); \
             QEMU will not pass it the DTB in x0",
            rel(&elf)
        );
    }
    let img = dir.join("monitor.img");
    write_if_changed(&img, &flat)?;
    Ok(img)
}

/// Whether a blob carries the arm64 Linux `Image` header magic.
pub fn has_image_header(img: &[u8]) -> bool {
    img.get(0x38..0x3c) == Some(b"ARM\x64")
}

/// Lays out the file bytes of every `PT_LOAD` segment at its physical
/// address, starting at the lowest one; gaps are zero. Memory-only tails
/// (`.bss`) are left out: the monitor clears its own bss.
pub fn flatten(data: &[u8]) -> Result<Vec<u8>> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF")?;
    let e = file.endian();
    if file.elf_header().e_machine(e) != elf::EM_AARCH64 {
        bail!("not an aarch64 ELF");
    }
    let segs: Vec<(u64, &[u8])> = file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(e) == elf::PT_LOAD && p.p_filesz(e) > 0)
        .map(|p| Ok((p.p_paddr(e), p.data(e, data).map_err(|_| anyhow::anyhow!("segment data out of the file"))?)))
        .collect::<Result<_>>()?;
    let Some(base) = segs.iter().map(|s| s.0).min() else { bail!("no loadable segments") };
    let end = segs.iter().map(|(a, d)| a + d.len() as u64).max().unwrap_or(base);
    if end - base > 256 << 20 {
        bail!("segments span {:#x}..{:#x}: over 256 MiB, probably a linker-script mistake", base, end);
    }
    let mut out = vec![0u8; (end - base) as usize];
    for (addr, bytes) in segs {
        let off = (addr - base) as usize;
        out[off..off + bytes.len()].copy_from_slice(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given `(paddr, bytes, memsz)` PT_LOAD segments.
    fn elf(segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let mut data_off = phoff + 56 * segs.len() as u64;
        let mut h = Vec::new();
        h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        h.extend_from_slice(&elf::EM_AARCH64.0.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // entry
        h.extend_from_slice(&phoff.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // shoff
        h.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 56, segs.len() as u16, 64, 0, 0] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        let mut body = Vec::new();
        for (paddr, bytes, memsz) in segs {
            h.extend_from_slice(&elf::PT_LOAD.0.to_le_bytes());
            h.extend_from_slice(&7u32.to_le_bytes());
            h.extend_from_slice(&data_off.to_le_bytes());
            h.extend_from_slice(&(paddr + 0xffff_0000_0000_0000).to_le_bytes()); // vaddr differs
            h.extend_from_slice(&paddr.to_le_bytes());
            h.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            h.extend_from_slice(&memsz.to_le_bytes());
            h.extend_from_slice(&4096u64.to_le_bytes());
            body.extend_from_slice(bytes);
            data_off += bytes.len() as u64;
        }
        h.extend(body);
        h
    }

    #[test]
    fn segments_by_physical_address_with_gaps() {
        let f = elf(&[(0x4008_0010, b"cd", 2), (0x4008_0000, b"ab", 2), (0x4008_0020, b"", 0x1000)]);
        let flat = flatten(&f).unwrap();
        assert_eq!(flat.len(), 0x12);
        assert_eq!(&flat[..2], b"ab");
        assert!(flat[2..0x10].iter().all(|&b| b == 0));
        assert_eq!(&flat[0x10..], b"cd");
    }

    #[test]
    fn header_magic() {
        let mut img = vec![0u8; 64];
        assert!(!has_image_header(&img));
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(has_image_header(&img));
    }
}
