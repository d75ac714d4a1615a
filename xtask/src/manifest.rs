//! VM manifests: `qemu-configs/vms/<name>.toml` (or any path) -> the VMs of
//! one run, validated against the machine before anything boots.
//!
//! ```toml
//! machine = "numa2"          # optional: the topology (default numa2; --machine overrides)
//! placement = "migrate"      # optional: "first-touch" | "migrate" | "replicate" (default: replicate under --numa-sim, else first-touch; --placement overrides)
//! placement_params = "trigger=64,interval=100"  # optional: numa::policy parameters
//! census = true              # optional (default false): the sharing census when the first VM ends
//!                            # (hashes every mapped guest page: seconds per GiB of guests under TCG)
//!
//! [[vm]]
//! name = "a"                 # 1-16 of [A-Za-z0-9_-], unique: console prefix `[a] `
//! vcpus = 2                  # 1..=64; more vCPUs than CPUs in all is fine (time-shared)
//! memory = "512M"            # K/M/G (or KiB/MiB/GiB), a multiple of 2 MiB, >= 16 MiB
//! kernel = "path/Image"      # optional: default the Debian kernel
//! initrd = "path/x.cpio"     # optional: default the project initramfs
//! cmdline = "quiet"          # optional: appended to the base kernel arguments
//! exec = "nproc"             # optional: run after boot, like --exec (own initrd)
//! restart = "on-crash"       # optional: "never" (default) | "on-crash" | "always" (after power-off too)
//! max_restarts = 5           # optional (default 5, with restart): restarts while the VM has booted at most
//!                            # this many times (resets count as boots)
//! home_node = 1              # optional: a node of the machine
//! share_group = "g"          # optional: who shares boot images and disk blocks with it (default: the run's one group; "none": nobody)
//! balloon = true             # optional (default false): a virtio-balloon device; the guest's free page
//!                            # reporting gives memory it does not use back to the machine
//!
//! [[vm.disk]]                # optional, up to 4 per VM: /dev/vda, /dev/vdb, ...
//! image = "data"             # an image of the disk file (created if missing)
//! mode = "persistent"        # required: "persistent" (its own image), "base" (a base image, read-only)
//!                            # or "cow" (a base image under the VM's overlay in the monitor, gone at its end)
//! readonly = false           # optional (default false)
//! size = "64M"               # optional: size when the image is created (default 64 MiB)
//! mount = "/data"            # optional: the guest's init mounts it there (ext4; ro if readonly;
//!                            # "/": the exec's root, for a read-only or copy-on-write disk)
//!
//! [[vm.net]]                 # optional, at most 1 per VM: eth0 on the switch between the run's VMs
//! mac = "02:00:00:00:00:01"  # optional: default 02:d1:5c:00:HH:LL from the VM's index (unique)
//! ip = "10.0.0.1/24"         # optional: the init gives eth0 this address (unique)
//! ```
//!
//! `disk_file = "path"` (top level, optional) names the physical disk file
//! the images live in; default `.cache/disks/default.disk`.
//!
//! Every error names file, line and field.

use crate::machine::Machine;
use crate::util::{rel, root};
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

mod disk;
mod net;
mod restart;
pub use disk::{default_disk_file, mount_arg, DiskSpec, MAX_DISKS};
use disk::{disk, RawDisk};
pub use net::{default_mac, ip_arg, mac_text, NetSpec};
use net::{net, RawNet, MAX_NETS};
pub use restart::Restart;
use restart::restart;

/// vCPUs one VM may have: the virtual GIC routes SGIs to at most 64.
pub const MAX_VCPUS: u32 = 64;

/// Memory the monitor keeps for itself (image, page tables, bundle copy).
pub const MONITOR_RESERVE_MIB: u64 = 64;
/// Longest VM name (it also names bundle images and log prefixes).
const MAX_NAME: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    machine: Option<String>,
    placement: Option<Spanned<String>>,
    placement_params: Option<Spanned<String>>,
    disk_file: Option<Spanned<String>>,
    #[serde(default)]
    census: bool,
    #[serde(default)]
    vm: Vec<Spanned<RawVm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Spanned<String>,
    vcpus: Spanned<u32>,
    memory: Spanned<String>,
    kernel: Option<Spanned<String>>,
    initrd: Option<Spanned<String>>,
    cmdline: Option<String>,
    exec: Option<String>,
    restart: Option<Spanned<String>>,
    max_restarts: Option<Spanned<u32>>,
    home_node: Option<Spanned<u32>>,
    share_group: Option<Spanned<String>>,
    #[serde(default)]
    balloon: bool,
    #[serde(default)]
    disk: Vec<Spanned<RawDisk>>,
    #[serde(default)]
    net: Vec<Spanned<RawNet>>,
}

/// One validated VM.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// `file:line: vm `name`: field `memory`` for errors found later
    /// (the memory a kernel and initrd need is known only once they are).
    pub memory_at: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub exec: Option<String>,
    pub restart: Restart,
    /// The monitor's restart bound (None: its default, 5).
    pub max_restarts: Option<u32>,
    pub home_node: Option<u32>,
    /// Its trust group for sharing (None: the run's default group; Some("none"): shares with nobody).
    pub share_group: Option<String>,
    /// Its virtio-blk disks, in guest order (vda, vdb, ...).
    pub disks: Vec<DiskSpec>,
    /// Its virtio-net device (`eth0`), if any.
    pub net: Option<NetSpec>,
    /// A virtio-balloon device with free page reporting.
    pub balloon: bool,
}

/// A parsed manifest: the machine it names (if any) and its VMs.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    /// `machine = ...` (read early by [`machine_of`]; kept for checks).
    #[allow(dead_code)]
    pub machine: Option<String>,
    pub placement: Placement,
    /// `census = true`: the monitor takes the sharing census when the
    /// run's first VM ends (the bundle's `census`).
    pub census: bool,
    pub vms: Vec<VmSpec>,
    /// The disk file holding the VMs' images (`disk_file`, or the default).
    pub disk_file: PathBuf,
}

/// How the monitor places guest pages (machine-wide; the bundle carries it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// `first-touch`, `migrate` or `replicate`; None: the monitor's default (replicate with the plugin's miss counters, else first-touch).
    pub mode: Option<String>,
    /// `k=v,...` of `numa::policy::parse_params`.
    pub params: Option<String>,
}

impl Placement {
    /// Checks a mode and parameters given on the command line or in a file.
    pub fn check(mode: Option<&str>, params: Option<&str>) -> std::result::Result<(), String> {
        if let Some(mode) = mode {
            if !["first-touch", "migrate", "replicate"].contains(&mode) {
                return Err(format!("`{mode}` is not a placement mode: use `first-touch`, `migrate` or `replicate`"));
            }
        }
        if let Some(params) = params {
            numa::policy::parse_params(params)?;
        }
        Ok(())
    }
}

/// The manifest plain `cargo xtask run` boots.
pub fn default_path() -> PathBuf {
    root().join("qemu-configs/vms/default.toml")
}

/// Reads the machine name a manifest asks for without validating the VMs.
pub fn read(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading VM manifest {}", path.display()))?;
    Ok((rel(path), text))
}

/// `machine = ...` of a manifest text, if it parses at all.
pub fn machine_of(text: &str) -> Option<String> {
    toml::from_str::<RawFile>(text).ok().and_then(|r| r.machine)
}

/// `"512M"` -> MiB-precision bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match s[digits..].trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn valid_name(n: &str) -> bool {
    (1..=MAX_NAME).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses and validates against `machine`; `file` only appears in messages;
/// relative kernel/initrd paths are taken from `base`.
pub fn parse(file: &str, text: &str, machine: &Machine, base: &Path) -> Result<Manifest> {
    let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let raw: RawFile = toml::from_str(text).map_err(|e| anyhow!("{}", crate::toml_error::describe(file, text, &e)))?;
    let err = |span: Range<usize>, vm: &str, field: &str, msg: String| {
        let who = if vm.is_empty() { String::new() } else { format!("vm `{vm}`: ") };
        anyhow!("{file}:{}: {who}field `{field}`: {msg}", line_of(span.start))
    };
    if raw.vm.is_empty() {
        return Err(anyhow!("{file}: no [[vm]] tables: a manifest lists at least one VM"));
    }
    let avail_mib = machine.total_mib().saturating_sub(MONITOR_RESERVE_MIB);
    let mut mib = 0u64;
    let mut vms: Vec<VmSpec> = Vec::new();
    for v in &raw.vm {
        let v = v.get_ref();
        let name = v.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(err(v.name.span(), "", "name", format!("`{name}` must be 1-{MAX_NAME} of A-Z a-z 0-9 _ -")));
        }
        if vms.iter().any(|o| o.name == name) {
            return Err(err(v.name.span(), "", "name", format!("duplicate VM name `{name}`")));
        }
        let vcpus = *v.vcpus.get_ref();
        if vcpus == 0 {
            return Err(err(v.vcpus.span(), &name, "vcpus", "0: a VM needs at least 1 vCPU".into()));
        }
        if vcpus > MAX_VCPUS {
            return Err(err(
                v.vcpus.span(),
                &name,
                "vcpus",
                format!("{vcpus}: a VM has at most {MAX_VCPUS} vCPUs (its virtual GIC's limit)"),
            ));
        }
        let size = v.memory.get_ref();
        let bytes = parse_size(size).ok_or_else(|| {
            err(v.memory.span(), &name, "memory", format!("`{size}` is not a size such as \"256M\" or \"1G\""))
        })?;
        if bytes < 16 << 20 || bytes % (2 << 20) != 0 {
            return Err(err(
                v.memory.span(),
                &name,
                "memory",
                format!("`{size}` must be a multiple of 2 MiB, at least 16 MiB"),
            ));
        }
        let m = bytes >> 20;
        mib += m;
        if mib > avail_mib {
            return Err(err(
                v.memory.span(),
                &name,
                "memory",
                format!(
                    "{mib} MiB of VM memory in all so far does not fit machine {}: {} MiB minus {MONITOR_RESERVE_MIB} MiB for the monitor = {avail_mib} MiB",
                    machine.name,
                    machine.total_mib()
                ),
            ));
        }
        let (restart, max_restarts) = restart(v.restart.as_ref(), v.max_restarts.as_ref(), &name, &err)?;
        let home_node = match &v.home_node {
            Some(h) if *h.get_ref() as usize >= machine.nodes => {
                return Err(err(
                    h.span(),
                    &name,
                    "home_node",
                    format!(
                        "node {} does not exist: machine {} has nodes 0..={}",
                        h.get_ref(),
                        machine.name,
                        machine.nodes - 1
                    ),
                ))
            }
            Some(h) if machine.cpus_per_node[*h.get_ref() as usize] == 0 => {
                return Err(err(
                    h.span(),
                    &name,
                    "home_node",
                    format!(
                        "node {} of machine {} has no CPUs (a memory-only node): a VM's home must run its vCPUs; \
                         the memory-only node's memory serves as the allocators' fallback",
                        h.get_ref(),
                        machine.name
                    ),
                ))
            }
            h => h.as_ref().map(|h| *h.get_ref()),
        };
        let share_group = match &v.share_group {
            Some(g) if !valid_name(g.get_ref()) => {
                return Err(err(
                    g.span(),
                    &name,
                    "share_group",
                    format!("`{}` must be 1-{MAX_NAME} of A-Z a-z 0-9 _ - (or \"none\")", g.get_ref()),
                ))
            }
            g => g.as_ref().map(|g| g.get_ref().clone()),
        };
        let path = |p: &Option<Spanned<String>>, field: &str| -> Result<Option<PathBuf>> {
            let Some(p) = p else { return Ok(None) };
            let full = base.join(p.get_ref());
            if !full.is_file() {
                return Err(err(p.span(), &name, field, format!("{} is not a file", full.display())));
            }
            Ok(Some(full))
        };
        if v.disk.len() > MAX_DISKS {
            return Err(err(
                v.disk[MAX_DISKS].span(),
                &name,
                "disk",
                format!("{} disks: a VM has at most {MAX_DISKS}", v.disk.len()),
            ));
        }
        let mut disks = Vec::new();
        for d in &v.disk {
            disks.push(disk(d.get_ref(), &name, &err)?);
        }
        for (i, d) in disks.iter().enumerate() {
            if let Some(m) = d.mount.as_ref().filter(|m| disks[..i].iter().any(|o| o.mount.as_ref() == Some(m))) {
                let span = v.disk[i].get_ref().mount.as_ref().map_or(v.disk[i].span(), |s| s.span());
                return Err(err(span, &name, "mount", format!("`{m}` is the mount point of another disk of this VM")));
            }
            if disks[..i].iter().any(|o| o.image == d.image) {
                return Err(err(
                    v.disk[i].get_ref().image.span(),
                    &name,
                    "image",
                    format!("`{}` is this VM's disk twice", d.image),
                ));
            }
            if let Some(o) =
                vms.iter().find(|o| o.disks.iter().any(|od| od.image == d.image && !(od.base && d.base || od.read_only && d.read_only)))
            {
                return Err(err(
                    v.disk[i].get_ref().image.span(),
                    &name,
                    "image",
                    format!(
                        "`{}` is also vm `{}`'s disk: a persistent image is shared only read-only by all",
                        d.image, o.name
                    ),
                ));
            }
        }
        if v.net.len() > MAX_NETS {
            return Err(err(
                v.net[MAX_NETS].span(),
                &name,
                "net",
                format!("{} network devices: a VM has at most {MAX_NETS}", v.net.len()),
            ));
        }
        let others: Vec<(&str, &NetSpec)> =
            vms.iter().filter_map(|o| o.net.as_ref().map(|n| (o.name.as_str(), n))).collect();
        let net = match v.net.first() {
            Some(n) => Some(net(n.get_ref(), n.span(), &name, vms.len(), &others, &err)?),
            None => None,
        };
        vms.push(VmSpec {
            net,
            balloon: v.balloon,
            disks,
            kernel: path(&v.kernel, "kernel")?,
            initrd: path(&v.initrd, "initrd")?,
            name,
            vcpus,
            memory_mib: m,
            memory_at: format!("{file}:{}: vm `{}`: field `memory`", line_of(v.memory.span().start), v.name.get_ref()),
            cmdline: v.cmdline.clone().unwrap_or_default(),
            exec: v.exec.clone(),
            restart,
            max_restarts,
            home_node,
            share_group,
        });
    }
    if let Some(v) = &raw.placement {
        Placement::check(Some(v.get_ref()), None).map_err(|m| err(v.span(), "", "placement", m))?;
    }
    if let Some(v) = &raw.placement_params {
        Placement::check(None, Some(v.get_ref())).map_err(|m| err(v.span(), "", "placement_params", m))?;
    }
    let placement =
        Placement { mode: raw.placement.map(|v| v.into_inner()), params: raw.placement_params.map(|v| v.into_inner()) };
    let disk_file = raw.disk_file.map_or_else(default_disk_file, |f| base.join(f.get_ref()));
    Ok(Manifest { file: file.to_string(), machine: raw.machine, placement, census: raw.census, vms, disk_file })
}

/// Loads a manifest file for `machine`.
pub fn load(path: &Path, machine: &Machine) -> Result<Manifest> {
    let (file, text) = read(path)?;
    parse(&file, &text, machine, path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use disk::DEFAULT_DISK_BYTES;

    fn numa2() -> Machine {
        crate::machine::load("numa2").unwrap()
    }

    const TWO: &str = "[[vm]]\nname = \"a\"\nvcpus = 2\nmemory = \"512M\"\n\n[[vm]]\nname = \"b\"\nvcpus = 2\nmemory = \"1G\"\nrestart = \"on-crash\"\nhome_node = 1\n";

    fn parse_err(text: &str) -> String {
        parse("m.toml", text, &numa2(), Path::new(".")).unwrap_err().to_string()
    }

    #[test]
    fn two_vms() {
        let m = parse("m.toml", TWO, &numa2(), Path::new(".")).unwrap();
        assert_eq!(m.vms.len(), 2);
        assert_eq!((m.vms[0].memory_mib, m.vms[1].memory_mib), (512, 1024));
        assert_eq!((m.vms[0].restart, m.vms[1].restart), (Restart::Never, Restart::OnCrash));
        assert_eq!(m.vms[1].home_node, Some(1));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5T"), None);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse_err(&TWO.replace("vcpus = 2\nmemory = \"1G\"", "vcpus = 2\ncolour = 1\nmemory = \"1G\""));
        assert!(e.starts_with("m.toml:9:") && e.contains("unknown field `colour`"), "{e}");
        let e = parse_err(&TWO.replace("vcpus = 2\nmemory = \"512M\"", "vcpus = 0\nmemory = \"512M\""));
        assert!(e.starts_with("m.toml:3: vm `a`: field `vcpus`: 0"), "{e}");
        let e = parse_err(&TWO.replace("\"1G\"", "\"2G\""));
        assert!(e.starts_with("m.toml:9: vm `b`: field `memory`:") && e.contains("does not fit"), "{e}");
        let e = parse_err(&TWO.replace("name = \"b\"", "name = \"a\""));
        assert!(e.starts_with("m.toml:7: field `name`: duplicate VM name `a`"), "{e}");
        let e = parse_err(&TWO.replace("home_node = 1", "home_node = 2"));
        assert!(e.starts_with("m.toml:11: vm `b`: field `home_node`: node 2 does not exist"), "{e}");
        let far = crate::machine::load("numa-far").unwrap();
        let e = format!(
            "{:#}",
            parse("m.toml", &TWO.replace("home_node = 1", "home_node = 2"), &far, Path::new("/")).unwrap_err()
        );
        assert!(e.starts_with("m.toml:11: vm `b`: field `home_node`: node 2 of machine numa-far has no CPUs"), "{e}");
        let e = parse_err(&TWO.replace("vcpus = 2\nmemory = \"1G\"", "vcpus = 65\nmemory = \"1G\""));
        assert!(e.starts_with("m.toml:8: vm `b`: field `vcpus`: 65") && e.contains("at most 64 vCPUs"), "{e}");
        let e = parse_err(&TWO.replace("\"on-crash\"", "\"sometimes\""));
        assert!(e.starts_with("m.toml:10: vm `b`: field `restart`"), "{e}");
        let m = parse("m.toml", &TWO.replace("\"on-crash\"", "\"always\"\nmax_restarts = 500"), &numa2(), Path::new("."));
        let b = &m.unwrap().vms[1];
        assert_eq!((b.restart, b.max_restarts), (Restart::Always, Some(500)));
        let e = parse_err(&TWO.replace("vcpus = 2\nmemory = \"512M\"", "vcpus = 2\nmemory = \"512M\"\nmax_restarts = 3"));
        assert!(e.contains("vm `a`: field `max_restarts`: needs `restart"), "{e}");
        let e = parse_err(&TWO.replace("\"on-crash\"", "\"on-crash\"\nmax_restarts = 0"));
        assert!(e.starts_with("m.toml:11: vm `b`: field `max_restarts`: 0: expected 1..="), "{e}");
        let e = parse_err(&TWO.replace("home_node = 1", "home_node = 1\nshare_group = \"a b\""));
        assert!(e.starts_with("m.toml:12: vm `b`: field `share_group`: `a b` must be"), "{e}");
        let m = parse("m.toml", &TWO.replace("home_node = 1", "share_group = \"none\""), &numa2(), Path::new("."));
        assert_eq!(m.unwrap().vms[1].share_group.as_deref(), Some("none"));
    }

    #[test]
    fn placement_errors_name_line_and_field() {
        let e = parse_err(&format!("placement = \"nearest\"\n{TWO}"));
        assert!(e.starts_with("m.toml:1: field `placement`:") && e.contains("first-touch"), "{e}");
        let e = parse_err(&format!("placement_params = \"trigger=x\"\n{TWO}"));
        assert!(e.starts_with("m.toml:1: field `placement_params`:") && e.contains("trigger"), "{e}");
        let file = format!("placement = \"migrate\"\nplacement_params = \"batch=64\"\n{TWO}");
        let m = parse("m.toml", &file, &numa2(), Path::new("/")).unwrap();
        assert_eq!(m.placement.mode.as_deref(), Some("migrate"));
        assert_eq!(m.placement.params.as_deref(), Some("batch=64"));
    }

    #[test]
    fn census_is_asked_for_at_the_top_level() {
        assert!(!parse("m.toml", TWO, &numa2(), Path::new("/")).unwrap().census);
        let m = parse("m.toml", &format!("census = true\n{TWO}"), &numa2(), Path::new("/")).unwrap();
        assert!(m.census);
        let e = parse_err(&format!("census = \"yes\"\n{TWO}"));
        assert!(e.starts_with("m.toml:1:") && e.contains("census"), "{e}");
    }

    /// A `[[vm.disk]]` table of `image` plus `extra` lines.
    fn disk_table(image: &str, extra: &str) -> String {
        format!("[[vm.disk]]\nimage = \"{image}\"\nmode = \"persistent\"\n{extra}")
    }

    #[test]
    fn disks() {
        let file = format!(
            "disk_file = \"x.disk\"\n{TWO}{}{}",
            disk_table("data", "readonly = true\nsize = \"8M\"\n"),
            disk_table("logs", "")
        );
        let m = parse("m.toml", &file, &numa2(), Path::new("/base")).unwrap();
        assert_eq!(m.disk_file, Path::new("/base/x.disk"));
        assert!(m.vms[0].disks.is_empty());
        let b = &m.vms[1].disks;
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].image.as_str(), b[0].read_only, b[0].size), ("data", true, 8 << 20));
        assert_eq!((b[1].image.as_str(), b[1].read_only, b[1].size), ("logs", false, DEFAULT_DISK_BYTES));
        let m = parse("m.toml", TWO, &numa2(), Path::new("/")).unwrap();
        assert_eq!(m.disk_file, default_disk_file());
    }

    #[test]
    fn mounts() {
        let file = format!(
            "{TWO}{}{}{}",
            disk_table("a", "mount = \"/data\"\n"),
            disk_table("b", ""),
            disk_table("c", "mount = \"/srv/logs\"\nreadonly = true\n")
        );
        let m = parse("m.toml", &file, &numa2(), Path::new("/")).unwrap();
        assert_eq!(mount_arg(&m.vms[1].disks).as_deref(), Some("disco.mount=vda:/data,vdc:/srv/logs:ro"));
        assert_eq!(mount_arg(&m.vms[0].disks), None);
        for bad in ["data", "/", "/a b", "/a:b", "/x/../etc"] {
            let e = parse_err(&format!("{TWO}{}", disk_table("a", &format!("mount = \"{bad}\"\n"))));
            assert!(e.starts_with("m.toml:15: vm `b`: field `mount`:"), "{bad}: {e}");
        }
        let twice = format!("{TWO}{}{}", disk_table("a", "mount = \"/d\"\n"), disk_table("b", "mount = \"/d\"\n"));
        assert!(
            parse_err(&twice).starts_with("m.toml:19: vm `b`: field `mount`: `/d` is the mount point"),
            "{}",
            parse_err(&twice)
        );
    }

    #[test]
    fn disk_errors_name_file_line_and_field() {
        let with = |disk: &str| parse_err(&format!("{TWO}[[vm.disk]]\n{disk}"));
        let e = with("image = \"data\"\nmode = \"cw\"\n");
        assert!(e.starts_with("m.toml:14: vm `b`: field `mode`: `cw`") && e.contains("persistent"), "{e}");
        let e = with("image = \"data\"\n");
        assert!(e.starts_with("m.toml:13: vm `b`: field `mode`: missing"), "{e}");
        let e = with("image = \"no/slash\"\nmode = \"persistent\"\n");
        assert!(e.starts_with("m.toml:13: vm `b`: field `image`: `no/slash`"), "{e}");
        let e = with("image = \"data\"\nmode = \"persistent\"\nsize = \"1000K\"\n");
        assert!(e.starts_with("m.toml:15: vm `b`: field `size`: `1000K`"), "{e}");
        let e = with("image = \"data\"\nmode = \"persistent\"\nreadonly = \"yes\"\n");
        assert!(e.starts_with("m.toml:15: vm `b`: field `readonly`: `\"yes\"`: expected true or false"), "{e}");
        let e = with("image = \"data\"\nmode = \"persistent\"\nshared = 1\n");
        assert!(e.starts_with("m.toml:") && e.contains("unknown field `shared`"), "{e}");
        let e = parse_err(&format!("{TWO}{}{}", disk_table("data", ""), disk_table("data", "")));
        assert!(e.starts_with("m.toml:16: vm `b`: field `image`: `data` is this VM's disk twice"), "{e}");
        let five: String = (0..5).map(|i| disk_table(&format!("d{i}"), "")).collect();
        let e = parse_err(&format!("{TWO}{five}"));
        assert!(e.contains("vm `b`: field `disk`: 5 disks"), "{e}");
        // Two VMs writing one image would corrupt it; reading it both is fine.
        let a =
            "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\n[[vm.disk]]\nimage = \"data\"\nmode = \"persistent\"\n";
        let b = a.replace("\"a\"", "\"b\"");
        let e = parse_err(&format!("{a}{b}"));
        assert!(e.starts_with("m.toml:13: vm `b`: field `image`: `data` is also vm `a`'s disk"), "{e}");
        let ro = |t: &str| t.to_string() + "readonly = true\n";
        parse("m.toml", &format!("{}{}", ro(a), ro(&b)), &numa2(), Path::new("/")).unwrap();
        // One base image under many VMs' copy-on-write overlays (or read-only) is fine.
        let cow = |t: &str| t.replace("mode = \"persistent\"", "mode = \"cow\"");
        let base = |t: &str| t.replace("mode = \"persistent\"", "mode = \"base\"");
        parse("m.toml", &format!("{}{}", cow(a), base(&b)), &numa2(), Path::new("/")).unwrap();
        parse("m.toml", &format!("{}{}", cow(a), cow(&b)), &numa2(), Path::new("/")).unwrap();
    }

    #[test]
    fn shipped_manifests_load() {
        let m = load(&default_path(), &numa2()).unwrap();
        assert_eq!(m.vms.len(), 2);
        assert!(m.vms.iter().all(|v| v.vcpus == 2));
        assert_eq!(m.machine.as_deref(), Some("numa2"));
    }
}
