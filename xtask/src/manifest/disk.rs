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

/// One `[[vm.disk]]`: a persistent image of the run's disk file.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub image: String,
    pub read_only: bool,
    /// Bytes, used when the image does not exist yet.
    pub size: u64,
    /// Where the guest's init mounts it (an absolute path), if anywhere.
    pub mount: Option<String>,
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
/// (no `:`, `,` or space, which separate the kernel argument), not `/`.
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
    match d.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        Some(("persistent", _)) => {}
        Some((other, span)) => {
            return Err(err(span, vm, "mode", format!("`{other}`: the only disk mode yet is \"persistent\"")))
        }
        None => {
            return Err(err(
                d.image.span(),
                vm,
                "mode",
                "missing: say mode = \"persistent\" (the only mode yet)".into(),
            ))
        }
    }
    let size = match &d.size {
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
        None => false,
        Some(v) => match v.get_ref() {
            toml::Value::Boolean(b) => *b,
            other => return Err(err(v.span(), vm, "readonly", format!("`{other}`: expected true or false"))),
        },
    };
    let mount = match &d.mount {
        None => None,
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
    Ok(DiskSpec { image: image.clone(), read_only, size, mount })
}
