//! `[[vm.disk]]` tables of a VM manifest: parsing, checks, and what the
//! guest's init is told to mount.

use super::parse_size;
use crate::util::root;
use anyhow::Result;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub(super) image: Spanned<String>,
    mode: Option<Spanned<String>>,
    /// Any value, so a non-boolean gets an error naming the field.
    readonly: Option<Spanned<toml::Value>>,
    size: Option<Spanned<String>>,
    pub(super) mount: Option<Spanned<String>>,
}

/// Disks one VM may have (the monitor's device table has this many slots).
pub const MAX_DISKS: usize = 4;
/// Size of an image created on demand without `size`.
pub const DEFAULT_DISK_BYTES: u64 = 64 << 20;

/// One `[[vm.disk]]`: a persistent or base image of the run's disk file.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub image: String,
    /// `mode = "base"` or `"cow"`: a base image (e.g. `debian`, which
    /// `cargo xtask disks` builds), read-only or under the VM's own
    /// copy-on-write overlay; else a persistent disk.
    pub base: bool,
    /// `mode = "cow"`: the VM writes to its overlay in the monitor, which
    /// ends with the VM; the base image never changes.
    pub cow: bool,
    pub read_only: bool,
    /// Bytes, used when the image does not exist yet.
    pub size: u64,
    /// Where the guest's init mounts it (an absolute path), if anywhere;
    /// `/`: the root the `exec` runs in (a read-only disk under a writable
    /// tmpfs overlay, or a copy-on-write disk itself; see
    /// `guest-hints/guest/init`).
    pub mount: Option<String>,
    /// `file:line: vm `name`: field `image`` for errors found later (an
    /// image the disk file lacks).
    pub image_at: String,
}

/// The guest device name of disk `index` of a VM: vda, vdb, ...
pub fn guest_device(index: usize) -> String {
    format!("vd{}", (b'a' + index as u8) as char)
}

/// The kernel argument that tells the guest's init what to mount:
/// `disco.mount=vda:/data,vdb:/logs:ro` (None when nothing is mounted).
pub fn mount_arg(disks: &[DiskSpec]) -> Option<String> {
    let mounts: Vec<String> = disks
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let dir = d.mount.as_ref()?;
            Some(format!("{}:{dir}{}", guest_device(i), if d.read_only { ":ro" } else { "" }))
        })
        .collect();
    (!mounts.is_empty()).then(|| format!("disco.mount={}", mounts.join(",")))
}

/// A mount point the init's parser takes: absolute, of `[A-Za-z0-9/._-]`
/// (no `:`, `,` or space, which separate the kernel argument), not `/`
/// (which [`disk`] takes for the exec's root).
fn valid_mount(dir: &str) -> bool {
    dir.len() > 1
        && dir.starts_with('/')
        && dir.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && !dir.split('/').any(|p| p == "..")
}

/// The disk file of a manifest without `disk_file`.
pub fn default_disk_file() -> PathBuf {
    root().join(".cache/disks/default.disk")
}

/// Checks one `[[vm.disk]]` of VM `vm`.
pub(super) fn disk(
    d: &RawDisk,
    vm: &str,
    err: &impl Fn(Range<usize>, &str, &str, String) -> anyhow::Error,
) -> Result<DiskSpec> {
    let image = d.image.get_ref();
    cow_disk::ImageName::new(image).map_err(|e| err(d.image.span(), vm, "image", format!("`{image}`: {e}")))?;
    let (base, cow) = match d.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        Some(("persistent", _)) => (false, false),
        Some(("base", _)) => (true, false),
        Some(("cow", _)) => (true, true),
        Some((other, span)) => {
            return Err(err(
                span,
                vm,
                "mode",
                format!("`{other}`: the disk modes are \"persistent\", \"base\" and \"cow\""),
            ))
        }
        None => {
            return Err(err(
                d.image.span(),
                vm,
                "mode",
                "missing: say mode = \"persistent\" (a VM's own disk), \"base\" (a read-only base image) or \"cow\" \
                 (a base image under the VM's own copy-on-write overlay)"
                    .into(),
            ))
        }
    };
    let size = match &d.size {
        Some(s) if base => {
            return Err(err(s.span(), vm, "size", "a base image's size is that of its contents: drop `size`".into()))
        }
        None => DEFAULT_DISK_BYTES,
        Some(s) => {
            let text = s.get_ref();
            match parse_size(text) {
                Some(n) if n > 0 && n % (1 << 20) == 0 => n,
                _ => {
                    return Err(err(
                        s.span(),
                        vm,
                        "size",
                        format!("`{text}` must be a positive whole number of MiB, such as \"64M\""),
                    ))
                }
            }
        }
    };
    let read_only = match &d.readonly {
        None => base && !cow,
        Some(v) => match v.get_ref() {
            toml::Value::Boolean(true) if cow => {
                return Err(err(
                    v.span(),
                    vm,
                    "readonly",
                    "a copy-on-write disk is writable (its writes stay in the VM's overlay): drop it, or say \
                     mode = \"base\""
                        .into(),
                ))
            }
            toml::Value::Boolean(false) if base && !cow => {
                return Err(err(
                    v.span(),
                    vm,
                    "readonly",
                    "a base image is read-only: say true or drop it (or mode = \"cow\" to write to an overlay)".into(),
                ))
            }
            toml::Value::Boolean(b) => *b,
            other => return Err(err(v.span(), vm, "readonly", format!("`{other}`: expected true or false"))),
        },
    };
    let mount = match &d.mount {
        None => None,
        Some(m) if m.get_ref() == "/" && (read_only || cow) => Some("/".into()),
        Some(m) if m.get_ref() == "/" => {
            return Err(err(
                m.span(),
                vm,
                "mount",
                "`/` (the exec's root) needs a read-only disk (under a tmpfs overlay: add readonly = true) or a \
                 copy-on-write one"
                    .into(),
            ))
        }
        Some(m) if valid_mount(m.get_ref()) => Some(m.get_ref().clone()),
        Some(m) => {
            return Err(err(
                m.span(),
                vm,
                "mount",
                format!("`{}`: an absolute path of A-Z a-z 0-9 / . _ - other than /", m.get_ref()),
            ))
        }
    };
    let image_at = err(d.image.span(), vm, "image", String::new()).to_string().trim_end_matches([':', ' ']).to_string();
    Ok(DiskSpec { image: image.clone(), base, cow, read_only, size, mount, image_at })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use std::path::Path;

    fn with(disk: &str) -> Result<Vec<DiskSpec>> {
        let text = format!("[[vm]]\nname = \"w\"\nvcpus = 1\nmemory = \"512M\"\n\n[[vm.disk]]\n{disk}");
        let m = parse("w.toml", &text, &crate::machine::load("numa2")?, Path::new("/"))?;
        Ok(m.vms[0].disks.clone())
    }

    #[test]
    fn base_images_are_read_only_and_may_be_the_root() {
        let d = with("image = \"debian\"\nmode = \"base\"\nmount = \"/\"\n").unwrap();
        assert!(d[0].base && d[0].read_only, "{d:?}");
        assert_eq!(mount_arg(&d).as_deref(), Some("disco.mount=vda:/:ro"));
        assert_eq!(d[0].image_at, "w.toml:7: vm `w`: field `image`");
        let d = with("image = \"debian\"\nmode = \"base\"\nreadonly = true\n").unwrap();
        assert!(d[0].base && d[0].read_only && d[0].mount.is_none());
        let err = |disk: &str| with(disk).unwrap_err().to_string();
        let e = err("image = \"debian\"\nmode = \"base\"\nreadonly = false\n");
        assert!(e.starts_with("w.toml:9: vm `w`: field `readonly`: a base image is read-only"), "{e}");
        let e = err("image = \"debian\"\nmode = \"base\"\nsize = \"2G\"\n");
        assert!(e.starts_with("w.toml:9: vm `w`: field `size`: a base image's size"), "{e}");
        let e = err("image = \"data\"\nmode = \"persistent\"\nmount = \"/\"\n");
        assert!(e.starts_with("w.toml:9: vm `w`: field `mount`: `/`") && e.contains("readonly = true"), "{e}");
        // A read-only persistent disk may be the root too.
        let d = with("image = \"data\"\nmode = \"persistent\"\nreadonly = true\nmount = \"/\"\n").unwrap();
        assert!(!d[0].base && d[0].mount.as_deref() == Some("/"));
    }

    #[test]
    fn cow_disks_are_writable_base_images() {
        let d = with("image = \"debian\"\nmode = \"cow\"\nmount = \"/\"\n").unwrap();
        assert!(d[0].base && d[0].cow && !d[0].read_only, "{d:?}");
        assert_eq!(mount_arg(&d).as_deref(), Some("disco.mount=vda:/"));
        let e = with("image = \"debian\"\nmode = \"cow\"\nreadonly = true\n").unwrap_err().to_string();
        assert!(e.starts_with("w.toml:9: vm `w`: field `readonly`: a copy-on-write disk is writable"), "{e}");
        let e = with("image = \"debian\"\nmode = \"cow\"\nsize = \"1G\"\n").unwrap_err().to_string();
        assert!(e.starts_with("w.toml:9: vm `w`: field `size`: a base image's size"), "{e}");
        let e = with("image = \"debian\"\nmode = \"cw\"\n").unwrap_err().to_string();
        assert!(e.starts_with("w.toml:8: vm `w`: field `mode`: `cw`") && e.contains("\"cow\""), "{e}");
    }

    #[test]
    fn shipped_workload_manifest_loads() {
        let path = root().join("qemu-configs/vms/workload.toml");
        let m = super::super::load(&path, &crate::machine::load("numa2").unwrap()).unwrap();
        let d = &m.vms[0].disks[0];
        assert_eq!((d.image.as_str(), d.base, d.read_only, d.mount.as_deref()), ("debian", true, true, Some("/")));
        assert!(m.vms[0].exec.as_deref().is_some_and(|e| e.contains("/opt/disco/workloads/")));
    }
}
