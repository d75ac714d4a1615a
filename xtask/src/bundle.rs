//! The boot bundle: everything the monitor runs, in one flattened device tree.
//!
//! QEMU can hand the monitor exactly two blobs (`-kernel` and `-initrd`). The
//! monitor is the kernel; the bundle travels as the initrd, and QEMU writes
//! its location into the host DTB (`/chosen/linux,initrd-start` and
//! `linux,initrd-end`). An FDT was chosen because the monitor already parses
//! FDTs (the `fdt` crate) and the format is self-describing and versioned.
//!
//! # Format v1
//!
//! ```dts
//! / {
//!     compatible = "disco,bundle-v1";
//!     placement = "migrate";            // optional: "first-touch" | "migrate" | "replicate" (absent: the monitor's default)
//!     placement-params = "trigger=64";  // optional: numa::policy::parse_params syntax
//!     census;                           // optional: the sharing census when the first VM ends
//!     images {                       // any node names; each holds one blob
//!         kernel { data = [..]; };   // raw bytes (here: Debian's arm64 Image)
//!         initrd { data = [..]; };   // raw bytes (here: a newc cpio archive)
//!     };
//!     vms {
//!         vm@0 {
//!             name = "vm0";                    // string: console prefix, logs
//!             vcpus = <1>;                     // u32
//!             memory-size = /bits/ 64 <BYTES>; // u64 big-endian, 2 MiB multiple
//!             kernel = "kernel";               // string: names a node in /images
//!             initrd = "initrd";               // string, optional: names a node in /images
//!             initrd-extra = "exec-vm0";       // string, optional: an archive the guest
//!                                              // gets right after `initrd` (the kernel
//!                                              // unpacks concatenated cpio archives), so
//!                                              // VMs share one base image
//!             bootargs = "console=ttyAMA0";    // string: the guest's /chosen/bootargs
//!                                              // (the monitor appends ` disco.boot=N`)
//!             restart = "never";               // string, optional: "never" | "on-crash" | "always"
//!             max-restarts = <5>;              // u32, optional: restart while booted at most this often
//!             home-node = <0>;                 // u32, optional: preferred NUMA node
//!             share-group = "g";               // string, optional: trust group for sharing ("none": nobody)
//!             balloon;                         // empty, optional: a virtio-balloon device
//!             disk@0 {                         // optional, up to 4: vda, vdb, ... in order
//!                 image = "data";              // string: an image of the physical disk's header
//!                 mode = "persistent";         // string: "persistent" (reads and writes go to
//!                                              // the image) or "cow" (a base image; writes go
//!                                              // to the VM's overlay in the monitor)
//!                 read-only;                   // empty, optional: the guest may not write
//!             };
//!         };
//!         // vm@1 ... in boot order
//!     };
//! };
//! ```
//!
//! Property data in an FDT is 4-byte aligned only: the monitor copies images
//! to where the guest needs them (an arm64 Image wants 2 MiB alignment).
//! Several VMs may name the same image: it is stored once.

use anyhow::{bail, Result};
use vm_fdt::FdtWriter;

pub const COMPATIBLE: &str = "disco,bundle-v1";

/// One VM of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub name: String,
    pub vcpus: u32,
    pub memory_size: u64,
    pub kernel: String,
    pub initrd: Option<String>,
    /// Appended to `initrd` in guest memory (the VM's own small archive).
    pub initrd_extra: Option<String>,
    pub bootargs: String,
    /// `"never"` or `"on-crash"`; omitted when `None` (the monitor's default: never).
    pub restart: Option<String>,
    /// The restart bound; omitted when `None` (the monitor's default: 5).
    pub max_restarts: Option<u32>,
    pub home_node: Option<u32>,
    /// Its trust group for sharing; omitted when `None` (the run's group).
    pub share_group: Option<String>,
    /// Its virtio-blk disks, in guest order.
    pub disks: Vec<Disk>,
    /// The MAC of its virtio-net device, if it has one.
    pub net: Option<[u8; 6]>,
    /// A virtio-balloon device (free page reporting): property `balloon`.
    pub balloon: bool,
}

/// One disk of a VM in the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    /// An image of the physical disk.
    pub image: String,
    pub read_only: bool,
    /// Copy-on-write over a base image (else reads and writes go to it).
    pub cow: bool,
}

/// Named images plus the VMs that use them.
#[derive(Debug, Default)]
pub struct Bundle {
    pub images: Vec<(String, Vec<u8>)>,
    pub vms: Vec<Vm>,
    pub placement: crate::manifest::Placement,
    /// The monitor takes the sharing census when the run's first VM ends.
    pub census: bool,
}

/// FDT node names: 1-31 of `[A-Za-z0-9,._+-]`.
fn valid_node_name(n: &str) -> bool {
    (1..=31).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || ",._+-".contains(c))
}

impl Bundle {
    /// Checks references and sizes, then writes the FDT.
    pub fn to_dtb(&self) -> Result<Vec<u8>> {
        if self.vms.is_empty() {
            bail!("bundle: no VMs");
        }
        for (name, _) in &self.images {
            if !valid_node_name(name) {
                bail!("bundle: image name `{name}` is not a valid node name");
            }
        }
        let has = |n: &str| self.images.iter().any(|(i, _)| i == n);
        for vm in &self.vms {
            if vm.vcpus == 0 {
                bail!("bundle: VM {} has no vCPUs", vm.name);
            }
            if vm.memory_size == 0 || vm.memory_size % (2 << 20) != 0 {
                bail!("bundle: VM {} memory {} is not a positive multiple of 2 MiB", vm.name, vm.memory_size);
            }
            if vm.initrd_extra.is_some() && vm.initrd.is_none() {
                bail!("bundle: VM {} has an initrd-extra but no initrd", vm.name);
            }
            for img in std::iter::once(&vm.kernel).chain(vm.initrd.as_ref()).chain(vm.initrd_extra.as_ref()) {
                if !has(img) {
                    bail!("bundle: VM {} names image `{img}`, which is not in the bundle", vm.name);
                }
            }
        }
        let mut w = FdtWriter::new()?;
        let root = w.begin_node("")?;
        w.property_string("compatible", COMPATIBLE)?;
        if let Some(mode) = &self.placement.mode {
            w.property_string("placement", mode)?;
        }
        if let Some(params) = &self.placement.params {
            w.property_string("placement-params", params)?;
        }
        if self.census {
            w.property_null("census")?;
        }
        let images = w.begin_node("images")?;
        for (name, data) in &self.images {
            let n = w.begin_node(name)?;
            w.property("data", data)?;
            w.end_node(n)?;
        }
        w.end_node(images)?;
        let vms = w.begin_node("vms")?;
        for (i, vm) in self.vms.iter().enumerate() {
            let n = w.begin_node(&format!("vm@{i}"))?;
            w.property_string("name", &vm.name)?;
            w.property_u32("vcpus", vm.vcpus)?;
            w.property_u64("memory-size", vm.memory_size)?;
            w.property_string("kernel", &vm.kernel)?;
            if let Some(initrd) = &vm.initrd {
                w.property_string("initrd", initrd)?;
            }
            if let Some(extra) = &vm.initrd_extra {
                w.property_string("initrd-extra", extra)?;
            }
            w.property_string("bootargs", &vm.bootargs)?;
            if let Some(r) = &vm.restart {
                w.property_string("restart", r)?;
            }
            if let Some(m) = vm.max_restarts {
                w.property_u32("max-restarts", m)?;
            }
            if let Some(h) = vm.home_node {
                w.property_u32("home-node", h)?;
            }
            if let Some(g) = &vm.share_group {
                w.property_string("share-group", g)?;
            }
            // Properties before the child nodes.
            if vm.balloon {
                w.property_null("balloon")?;
            }
            for (d, disk) in vm.disks.iter().enumerate() {
                let n = w.begin_node(&format!("disk@{d}"))?;
                w.property_string("image", &disk.image)?;
                w.property_string("mode", if disk.cow { "cow" } else { "persistent" })?;
                if disk.read_only {
                    w.property_null("read-only")?;
                }
                w.end_node(n)?;
            }
            if let Some(mac) = &vm.net {
                let n = w.begin_node("net@0")?;
                w.property("mac", mac)?;
                w.end_node(n)?;
            }
            w.end_node(n)?;
        }
        w.end_node(vms)?;
        w.end_node(root)?;
        Ok(w.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle {
            images: vec![("kernel".into(), vec![1, 2, 3, 4, 5]), ("initrd".into(), b"070701".to_vec())],
            vms: vec![
                Vm {
                    name: "vm0".into(),
                    vcpus: 2,
                    memory_size: 512 << 20,
                    kernel: "kernel".into(),
                    initrd: Some("initrd".into()),
                    initrd_extra: Some("initrd".into()),
                    bootargs: "console=ttyAMA0".into(),
                    restart: Some("on-crash".into()),
                    max_restarts: Some(40),
                    home_node: Some(1),
                    share_group: None,
                    disks: vec![
                        Disk { image: "data".into(), read_only: false, cow: false },
                        Disk { image: "base".into(), read_only: true, cow: false },
                        Disk { image: "debian".into(), read_only: false, cow: true },
                    ],
                    net: Some([2, 0, 0, 0, 0, 1]),
                    balloon: true,
                },
                Vm {
                    name: "vm1".into(),
                    vcpus: 1,
                    memory_size: 6 << 30,
                    kernel: "kernel".into(),
                    initrd: None,
                    initrd_extra: None,
                    bootargs: String::new(),
                    restart: None,
                    max_restarts: None,
                    home_node: None,
                    share_group: None,
                    disks: vec![],
                    net: None,
                    balloon: false,
                },
            ],
            placement: Default::default(),
            census: false,
        }
    }

    #[test]
    fn round_trip_through_fdt_crate() {
        let blob = sample().to_dtb().unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.property("compatible").unwrap().as_str(), Some(COMPATIBLE));
        let k = fdt.find_node("/images/kernel").unwrap();
        assert_eq!(k.property("data").unwrap().value, &[1, 2, 3, 4, 5]);
        let i = fdt.find_node("/images/initrd").unwrap();
        assert_eq!(i.property("data").unwrap().value, b"070701");
        let vm0 = fdt.find_node("/vms/vm@0").unwrap();
        assert_eq!(vm0.property("name").unwrap().as_str(), Some("vm0"));
        assert_eq!(vm0.property("vcpus").unwrap().value, &2u32.to_be_bytes());
        assert_eq!(vm0.property("memory-size").unwrap().value, &(512u64 << 20).to_be_bytes());
        assert_eq!(vm0.property("kernel").unwrap().as_str(), Some("kernel"));
        assert_eq!(vm0.property("initrd").unwrap().as_str(), Some("initrd"));
        assert_eq!(vm0.property("initrd-extra").unwrap().as_str(), Some("initrd"));
        assert_eq!(vm0.property("bootargs").unwrap().as_str(), Some("console=ttyAMA0"));
        let vm1 = fdt.find_node("/vms/vm@1").unwrap();
        assert_eq!(vm1.property("memory-size").unwrap().as_usize(), Some(6 << 30));
        assert!(vm1.property("initrd").is_none());
        assert_eq!(vm0.property("restart").unwrap().as_str(), Some("on-crash"));
        assert_eq!(vm0.property("max-restarts").unwrap().as_usize(), Some(40));
        assert_eq!(vm0.property("home-node").unwrap().value, &1u32.to_be_bytes());
        assert!(vm1.property("restart").is_none() && vm1.property("home-node").is_none());
        assert_eq!(fdt.find_node("/vms").unwrap().children().count(), 2);
        let d0 = fdt.find_node("/vms/vm@0/disk@0").unwrap();
        assert_eq!(d0.property("image").unwrap().as_str(), Some("data"));
        assert_eq!(d0.property("mode").unwrap().as_str(), Some("persistent"));
        assert!(d0.property("read-only").is_none());
        assert!(fdt.find_node("/vms/vm@0/disk@1").unwrap().property("read-only").is_some());
        let d2 = fdt.find_node("/vms/vm@0/disk@2").unwrap();
        assert_eq!(d2.property("mode").unwrap().as_str(), Some("cow"));
        assert!(d2.property("read-only").is_none());
        assert_eq!(fdt.find_node("/vms/vm@1").unwrap().children().count(), 0);
    }

    #[test]
    fn rejects_dangling_image_names() {
        let mut b = sample();
        b.vms[0].initrd = Some("nope".into());
        assert!(b.to_dtb().unwrap_err().to_string().contains("`nope`"));
        let mut b = sample();
        b.vms[1].initrd_extra = Some("initrd".into());
        assert!(b.to_dtb().unwrap_err().to_string().contains("no initrd"));
        let mut b = sample();
        b.vms[1].memory_size = 3 << 20;
        assert!(b.to_dtb().is_err());
    }
}
