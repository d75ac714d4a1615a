//! The boot bundle: the VMs to run and their images, in one flattened
//! device tree that xtask writes (format: xtask/src/bundle.rs) and QEMU
//! loads as the initrd. A DTB because the monitor already parses DTBs
//! safely; everything in it is checked before use.

use crate::{io::blk::Mode as DiskMode, mm::placement::Mode};
use alloc::{format, string::String, vec::Vec};
use fdt::{node::FdtNode, Fdt};
use numa::policy::{self, Params};

/// What happens when a VM's guest crashes or powers off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Never,
    OnCrash,
    /// After a crash and after a power-off (a fault campaign's attacker).
    Always,
}

/// A guest that keeps crashing is not restarted once it has booted more
/// often than this, unless its manifest says otherwise (`max-restarts`).
pub const DEFAULT_MAX_RESTARTS: usize = 5;

/// vCPUs per VM: the virtual GIC's SGI target lists have 64 entries.
pub const MAX_VCPUS: usize = 64;

/// One VM as the bundle describes it.
pub struct VmSpec {
    pub restart: Restart,
    /// Restarts happen while the VM has booted at most this often.
    pub max_restarts: usize,
    /// The node its vCPUs and memory should be on; None lets the monitor pick.
    pub home_node: Option<usize>,
    /// The trust group it shares boot images with (`""`: the run's
    /// default group); None: it shares with nobody.
    pub share_group: Option<&'static str>,
    pub name: String,
    pub vcpus: usize,
    pub memory: u64,
    pub kernel: &'static [u8],
    pub initrd: Option<&'static [u8]>,
    /// Appended to `initrd` in guest memory (the VM's own archive).
    pub initrd_extra: Option<&'static [u8]>,
    pub bootargs: String,
    /// Its virtio-blk disks, in the order the guest sees them (vda, vdb, ...).
    pub disks: Vec<DiskSpec>,
    /// Its virtio-net device, if it has one.
    pub net: Option<NetSpec>,
    /// A virtio-balloon device (free page reporting): property `balloon`.
    pub balloon: bool,
}

/// The `net@0` of a VM: its port on the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Its MAC address: a unicast address (xtask makes it unique).
    pub mac: [u8; 6],
}

/// One `disk@N` of a VM: an image of the physical disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub image: String,
    pub mode: DiskMode,
}

/// Disks one VM may have (the device-region table has this many slots).
pub const MAX_DISKS: usize = 4;

/// Machine-wide settings of the run.
pub struct Settings {
    /// None: the default (see `mm::placement::init`).
    pub placement: Option<Mode>,
    pub params: Params,
    /// Take the sharing census when the run's first VM ends (`census`):
    /// it hashes every mapped guest page, minutes for 64 VMs under TCG,
    /// so it is asked for, not taken by default.
    pub census: bool,
}

/// Parses the bundle at `blob`, which lives (reserved) for the whole run.
pub fn parse(blob: &'static [u8]) -> Result<(Vec<VmSpec>, Settings), String> {
    // `fdt` trusts the blob's offsets; a corrupt bundle must not panic it.
    numa::check_dtb(blob).map_err(|e| format!("boot bundle is not a valid DTB: {e}"))?;
    let fdt = Fdt::new(blob).map_err(|e| format!("boot bundle is not a valid DTB: {e:?}"))?;
    let root = fdt.find_node("/").ok_or("boot bundle has no root node")?;
    let compatible = root.property("compatible").and_then(|p| p.as_str());
    if compatible != Some("disco,bundle-v1") {
        return Err(format!("boot bundle compatible is {compatible:?}, expected \"disco,bundle-v1\""));
    }
    let vms = fdt.find_node("/vms").ok_or("boot bundle has no /vms node")?;
    let specs: Vec<VmSpec> = vms.children().map(|vm| parse_vm(&fdt, vm)).collect::<Result<_, _>>()?;
    if specs.is_empty() {
        return Err("boot bundle lists no VMs".into());
    }
    let placement = match root.property("placement").and_then(|p| p.as_str()) {
        None => None,
        Some("first-touch") => Some(Mode::FirstTouch),
        Some("migrate") => Some(Mode::Migrate),
        Some("replicate") => Some(Mode::Replicate),
        Some(other) => {
            return Err(format!("bundle: placement is `{other}`, expected `first-touch`, `migrate` or `replicate`"))
        }
    };
    let params = match root.property("placement-params").and_then(|p| p.as_str()) {
        None => Params::default(),
        Some(text) => policy::parse_params(text).map_err(|e| format!("bundle: placement-params: {e}"))?,
    };
    let census = root.property("census").is_some();
    Ok((specs, Settings { placement, params, census }))
}

fn parse_vm(fdt: &Fdt<'static>, vm: FdtNode<'_, 'static>) -> Result<VmSpec, String> {
    let node = vm.name;
    let string = |key: &str| -> Result<String, String> {
        vm.property(key)
            .and_then(|p| p.as_str())
            .map(String::from)
            .ok_or_else(|| format!("bundle: {node}: missing or non-string `{key}`"))
    };
    let number = |key: &str| -> Result<u64, String> {
        vm.property(key)
            .and_then(|p| p.as_usize())
            .map(|v| v as u64)
            .ok_or_else(|| format!("bundle: {node}: missing or bad `{key}`"))
    };
    let image = |name: &str| -> Result<&'static [u8], String> {
        fdt.find_node(&format!("/images/{name}"))
            .and_then(|n| n.property("data"))
            .map(|p| p.value)
            .ok_or_else(|| format!("bundle: {node}: image `{name}` not found"))
    };
    let name = string("name")?;
    let vcpus = number("vcpus")? as usize;
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(format!("bundle: {node}: vcpus {vcpus} must be 1..={MAX_VCPUS}"));
    }
    let memory = number("memory-size")?;
    if memory < (16 << 20) || memory % 4096 != 0 {
        return Err(format!("bundle: {node}: memory-size {memory:#x} must be >= 16 MiB and page aligned"));
    }
    let kernel = image(&string("kernel")?)?;
    let initrd = match vm.property("initrd").and_then(|p| p.as_str()) {
        Some(name) => Some(image(name)?),
        None => None,
    };
    let initrd_extra = match vm.property("initrd-extra").and_then(|p| p.as_str()) {
        Some(_) if initrd.is_none() => return Err(format!("bundle: {node}: initrd-extra without initrd")),
        Some(name) => Some(image(name)?),
        None => None,
    };
    let bootargs = string("bootargs").unwrap_or_default();
    let restart = match vm.property("restart").and_then(|p| p.as_str()) {
        None | Some("never") => Restart::Never,
        Some("on-crash") => Restart::OnCrash,
        Some("always") => Restart::Always,
        Some(other) => {
            return Err(format!("bundle: {node}: restart is `{other}`, expected `never`, `on-crash` or `always`"))
        }
    };
    let max_restarts = vm.property("max-restarts").and_then(|p| p.as_usize()).unwrap_or(DEFAULT_MAX_RESTARTS);
    let home_node = vm.property("home-node").and_then(|p| p.as_usize());
    // By default the run's VMs form one trust group (`""`), as on Disco's
    // machine, which one user owned; "none" shares with nobody.
    let share_group = match vm.property("share-group").map(|p| p.as_str()) {
        None => Some(""),
        Some(Some("none")) => None,
        Some(Some(name)) if !name.is_empty() => Some(name),
        Some(_) => return Err(format!("bundle: {node}: share-group is not a non-empty string")),
    };
    let disks = vm
        .children()
        .filter(|c| c.name.starts_with("disk@"))
        .map(|d| parse_disk(node, d))
        .collect::<Result<Vec<_>, _>>()?;
    if disks.len() > MAX_DISKS {
        return Err(format!("bundle: {node}: {} disks (at most {MAX_DISKS})", disks.len()));
    }
    let mut nets = vm.children().filter(|c| c.name.starts_with("net@"));
    let net = nets.next().map(|n| parse_net(node, n)).transpose()?;
    if nets.next().is_some() {
        return Err(format!("bundle: {node}: more than one net@ node (a VM has at most one network device)"));
    }
    Ok(VmSpec {
        name,
        vcpus,
        memory,
        kernel,
        initrd,
        initrd_extra,
        bootargs,
        restart,
        max_restarts,
        home_node,
        share_group,
        disks,
        net,
        balloon: vm.property("balloon").is_some(),
    })
}

/// `net@0 { mac = [6 bytes]; }`.
fn parse_net(vm: &str, net: FdtNode<'_, 'static>) -> Result<NetSpec, String> {
    let at = net.name;
    let mac: [u8; 6] = net
        .property("mac")
        .and_then(|p| p.value.try_into().ok())
        .ok_or_else(|| format!("bundle: {vm}/{at}: missing `mac` or not 6 bytes"))?;
    if mac[0] & 1 != 0 {
        return Err(format!("bundle: {vm}/{at}: mac {mac:02x?} is a group address"));
    }
    Ok(NetSpec { mac })
}

/// `disk@N { image = "NAME"; mode = "persistent"; read-only; }`, or
/// `mode = "cow"` (a base image under the VM's own overlay).
fn parse_disk(vm: &str, disk: FdtNode<'_, 'static>) -> Result<DiskSpec, String> {
    let at = disk.name;
    let image = disk
        .property("image")
        .and_then(|p| p.as_str())
        .ok_or_else(|| format!("bundle: {vm}/{at}: missing or non-string `image`"))?;
    let read_only = disk.property("read-only").is_some();
    let mode = match disk.property("mode").and_then(|p| p.as_str()) {
        Some("persistent") => DiskMode::Direct { read_only },
        Some("cow") if !read_only => DiskMode::Cow,
        Some("cow") => return Err(format!("bundle: {vm}/{at}: a copy-on-write disk is not read-only")),
        other => return Err(format!("bundle: {vm}/{at}: mode is {other:?}, expected \"persistent\" or \"cow\"")),
    };
    Ok(DiskSpec { image: image.into(), mode })
}
