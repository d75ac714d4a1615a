//! From "boot this guest on that machine" to a QEMU command line.
//!
//! [`Env`] does the slow once-per-invocation work (setup, guest packages,
//! base initramfs, monitor build); [`Boot`] describes one run. Under the
//! monitor QEMU gets `-kernel monitor.img -initrd bundle.dtb`; with
//! `native` it boots the same kernel and initramfs directly, which checks
//! the harness and gives the baseline for benchmarks.

use crate::bundle::{Bundle, Vm};
use crate::debs::Guest;
use crate::machine::Machine;
use crate::manifest::{Manifest, Placement, VmSpec};
use crate::util::{gc_run_files, run_file, write_if_changed};
use crate::{debs, image, initramfs, qemu, setup};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel arguments every guest gets: console on the PL011, warnings only
/// (keeps exec output clean), and reboot (= end of run) on panic.
pub const BASE_BOOTARGS: &str = "console=ttyAMA0 loglevel=4 panic=-1";

/// Prepared inputs shared by every boot of one xtask invocation.
pub struct Env {
    pub guest: Guest,
    pub base_initrd: PathBuf,
    disk_initrd: Option<PathBuf>,
    monitor: Option<PathBuf>,
}

impl Env {
    /// Runs setup and builds the guest side (the monitor is built lazily).
    pub fn prepare() -> Result<Env> {
        setup::host()?;
        gc_run_files(&["initramfs", "bundle"]);
        let guest = debs::ensure()?;
        let base_initrd = initramfs::base(&guest.busybox)?;
        Ok(Env { guest, base_initrd, disk_initrd: None, monitor: None })
    }

    /// The initramfs of VMs with disks or a network device: the base plus
    /// the kernel's virtio, ext4 and virtio-net modules and mke2fs (built
    /// on first use).
    pub fn disk_initrd(&mut self) -> Result<PathBuf> {
        if self.disk_initrd.is_none() {
            self.disk_initrd = Some(crate::disk_tools::with_disk_tools(&self.base_initrd, &self.guest)?);
        }
        Ok(self.disk_initrd.clone().expect("just built"))
    }

    /// The monitor image, built on first use.
    pub fn monitor(&mut self) -> Result<PathBuf> {
        if self.monitor.is_none() {
            self.monitor = Some(image::build_monitor()?);
        }
        Ok(self.monitor.clone().expect("just built"))
    }
}

/// The single VM the default bundle runs.
#[derive(Debug, Clone, PartialEq)]
pub struct VmShape {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Extra kernel arguments after [`BASE_BOOTARGS`].
    pub append: String,
}

impl Default for VmShape {
    fn default() -> Self {
        VmShape { vcpus: 1, memory_mib: 512, append: String::new() }
    }
}

pub const VM_NAME: &str = "vm0";

/// One run: where, what, how.
#[derive(Debug, Clone)]
pub struct Boot {
    pub machine: Machine,
    pub native: bool,
    /// Natively, restrict the kernel to the VM's CPUs and memory
    /// (`maxcpus=`, `mem=`) so it sees what the VM would.
    pub native_like_vm: bool,
    pub exec: Option<String>,
    pub vm: VmShape,
    /// Names the log and per-run files.
    pub tag: String,
    /// Page placement under the monitor.
    pub placement: Placement,
}

impl Boot {
    pub fn bootargs(&self) -> String {
        let mut a = BASE_BOOTARGS.to_string();
        if self.native && self.native_like_vm {
            a.push_str(&format!(" maxcpus={} mem={}M", self.vm.vcpus, self.vm.memory_mib));
        }
        if !self.vm.append.is_empty() {
            a.push(' ');
            a.push_str(&self.vm.append);
        }
        a
    }

    /// Builds the payload files and returns the QEMU command (console not
    /// yet wired: see [`qemu::interactive_console`] / [`qemu::captured_console`]).
    pub fn command(&self, env: &mut Env, interactive: bool) -> Result<Command> {
        let initrd = initramfs::with_exec(&env.base_initrd, self.exec.as_deref(), &self.tag)?;
        let mut cmd = Command::new(qemu::QEMU);
        cmd.args(self.machine.qemu_args());
        if self.native {
            cmd.arg("-kernel").arg(&env.guest.kernel);
            cmd.arg("-initrd").arg(&initrd);
            cmd.arg("-append").arg(self.bootargs());
        } else {
            let monitor = env.monitor()?;
            let bundle = Bundle {
                images: vec![
                    ("kernel".into(), std::fs::read(&env.guest.kernel)?),
                    ("initrd".into(), std::fs::read(&initrd)?),
                ],
                vms: vec![Vm {
                    name: VM_NAME.into(),
                    vcpus: self.vm.vcpus,
                    memory_size: self.vm.memory_mib << 20,
                    kernel: "kernel".into(),
                    initrd: Some("initrd".into()),
                    initrd_extra: None,
                    bootargs: self.bootargs(),
                    restart: None,
                    max_restarts: None,
                    home_node: None,
                    share_group: None,
                    disks: vec![],
                    net: None,
                    balloon: false,
                }],
                placement: self.placement.clone(),
                census: false,
            };
            let path = run_file("bundle", &self.tag, "dtb")?;
            write_if_changed(&path, &bundle.to_dtb()?)?;
            cmd.arg("-kernel").arg(monitor);
            cmd.arg("-initrd").arg(path);
        }
        cmd.args(if interactive { qemu::interactive_console() } else { qemu::captured_console() });
        Ok(cmd)
    }
}

/// The guest-physical windows of the devices the monitor emulates
/// (`monitor/src/vm/bus.rs`), as `LO-HI` hex ranges: GICD, the
/// redistributors of up to 64 vCPUs, the PL011, the virtio-mmio slots.
pub const GUEST_DEVICE_WINDOWS: &str = "8000000-88fffff 9000000-9000fff a000000-a000fff";

/// Memory the guest kernel needs to boot beyond its image, its initrd and
/// the unpacked initramfs (measured: the Debian kernel's early allocations,
/// page tables and first processes fit in this with room to spare).
const BOOT_WORKING_MIB: u64 = 16;

/// The least memory (MiB, a 2 MiB multiple) a VM with this kernel Image and
/// an initrd of `initrd_len` bytes needs: what the monitor needs to load
/// them (`monitor/src/vm/mod.rs`: the kernel at RAM base + text_offset up
/// to its image_size, the initrd below a 2 MiB DTB slot at the top), plus
/// the initramfs unpacked into page cache, plus [`BOOT_WORKING_MIB`].
pub fn min_memory_mib(kernel: &[u8], initrd_len: u64) -> u64 {
    let field = |at: usize| kernel.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let (text_offset, image_size) = match field(16) {
        0 => (0x80000, kernel.len() as u64),
        size => (field(8), size.max(kernel.len() as u64)),
    };
    let initrd = initrd_len.next_multiple_of(4096);
    let bytes = text_offset + image_size + 2 * initrd + (2 << 20) + (BOOT_WORKING_MIB << 20);
    (bytes.div_ceil(1 << 20)).next_multiple_of(2)
}

/// Rejects a VM too small for its kernel and initrd before anything boots.
fn check_memory(vm: &VmSpec, kernel: &Path, initrd: &Path) -> Result<()> {
    let image = std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
    let initrd_len = std::fs::metadata(initrd).with_context(|| format!("reading {}", initrd.display()))?.len()
        + vm.exec.as_deref().map_or(0, |c| initramfs::exec_archive(c).len() as u64);
    let need = min_memory_mib(&image, initrd_len);
    if vm.memory_mib < need {
        bail!(
            "{}: {} MiB is too small: this kernel ({} MiB) and initrd ({} KiB) need at least {need} MiB \
             (image, initrd and its unpacked copy, a 2 MiB device-tree slot, {BOOT_WORKING_MIB} MiB to boot)",
            vm.memory_at,
            vm.memory_mib,
            image.len() >> 20,
            initrd_len >> 10
        );
    }
    Ok(())
}

/// The QEMU command for several VMs (a manifest) under the monitor. Each VM
/// with `exec` gets its base initrd plus a small archive of its own
/// (`/exec.sh`, as the bundle's `initrd-extra`); images
/// several VMs share are stored once in the bundle.
pub fn manifest_command(
    env: &mut Env,
    machine: &Machine,
    man: &Manifest,
    tag: &str,
    interactive: bool,
) -> Result<Command> {
    let (vms, placement) = (&man.vms, &man.placement);
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    let mut paths: Vec<(PathBuf, String)> = Vec::new();
    let mut image = |path: &PathBuf, name: String| -> Result<String> {
        if let Some((_, n)) = paths.iter().find(|(p, _)| p == path) {
            return Ok(n.clone());
        }
        images.push((name.clone(), std::fs::read(path)?));
        paths.push((path.clone(), name.clone()));
        Ok(name)
    };
    let mut bvms = Vec::new();
    let mut extras = Vec::new();
    for vm in vms {
        let kernel = match &vm.kernel {
            None => image(&env.guest.kernel, "kernel".into())?,
            Some(p) => image(p, format!("kernel-{}", vm.name))?,
        };
        // The kernel's virtio modules come with the disk tools.
        let plain = vm.disks.is_empty() && vm.net.is_none() && !vm.balloon;
        let base = match (&vm.initrd, plain) {
            (Some(own), _) => own.clone(),
            (None, true) => env.base_initrd.clone(),
            (None, false) => env.disk_initrd()?,
        };
        check_memory(vm, vm.kernel.as_ref().unwrap_or(&env.guest.kernel), &base)?;
        let initrd = match (&vm.initrd, plain) {
            (None, true) => image(&base, "initrd".into())?,
            (None, false) => image(&base, "initrd-disk".into())?,
            (Some(_), _) => image(&base, format!("initrd-{}", vm.name))?,
        };
        // Each VM's exec script is its own small archive after the shared
        // base: the bundle holds the base once however many VMs there are.
        let initrd_extra = vm.exec.as_deref().map(|cmd| (format!("exec-{}", vm.name), initramfs::exec_archive(cmd)));
        let mut bootargs = BASE_BOOTARGS.to_string();
        let args = [crate::manifest::mount_arg(&vm.disks), crate::manifest::ip_arg(vm.net.as_ref())];
        for extra in args.iter().flatten().chain(Some(&vm.cmdline).filter(|c| !c.is_empty())) {
            bootargs.push(' ');
            bootargs.push_str(extra);
        }
        bvms.push(Vm {
            name: vm.name.clone(),
            vcpus: vm.vcpus,
            memory_size: vm.memory_mib << 20,
            kernel,
            initrd: Some(initrd),
            initrd_extra: initrd_extra.as_ref().map(|(name, _)| name.clone()),
            bootargs,
            restart: Some(vm.restart.as_str().into()),
            max_restarts: vm.max_restarts,
            home_node: vm.home_node,
            share_group: vm.share_group.clone(),
            disks: vm
                .disks
                .iter()
                .map(|d| crate::bundle::Disk { image: d.image.clone(), read_only: d.read_only, cow: d.cow })
                .collect(),
            net: vm.net.as_ref().map(|n| n.mac),
            balloon: vm.balloon,
        });
        extras.extend(initrd_extra);
    }
    images.extend(extras);
    let bundle = Bundle { images, vms: bvms, placement: placement.clone(), census: man.census };
    let path = run_file("bundle", tag, "dtb")?;
    write_if_changed(&path, &bundle.to_dtb()?)?;
    let mut cmd = Command::new(qemu::QEMU);
    cmd.args(machine.qemu_args());
    cmd.arg("-kernel").arg(env.monitor()?);
    cmd.arg("-initrd").arg(path);
    if vms.iter().any(|v| !v.disks.is_empty()) {
        cmd.args(disk_args(man)?);
    }
    cmd.args(if interactive { qemu::interactive_console() } else { qemu::captured_console() });
    Ok(cmd)
}

/// A base image the manifest names: `debian` is built (`cargo xtask
/// disks`, cached) and written into the disk file when missing or stale;
/// any other must already be in the file.
fn ensure_base(file: &Path, name: &str) -> Result<()> {
    if name == crate::rootfs::IMAGE {
        let built = crate::rootfs::ensure()?;
        crate::disk::ensure_base_image(file, name, &built)?;
        return Ok(());
    }
    let h = crate::disk::read_header(file).with_context(|| format!("base image {name}"))?;
    match h.find(name) {
        Some(e) if e.kind == cow_disk::ImageKind::Base => Ok(()),
        Some(e) => bail!("{}: image {name} is a {} image, not a base image", file.display(), e.kind),
        None => bail!(
            "{}: no base image {name}, and xtask builds only `{}` (cargo xtask disks); add it with `cargo xtask disk create`",
            file.display(),
            crate::rootfs::IMAGE
        ),
    }
}

/// The physical disk: the manifest's disk file (its images created or
/// added as needed) as a modern virtio-mmio block device, which the
/// monitor drives. `cache=writeback` keeps QEMU's page cache, and the
/// monitor's flushes make QEMU sync the file.
fn disk_args(man: &Manifest) -> Result<Vec<String>> {
    let mut wanted: Vec<(cow_disk::ImageName, u64)> = Vec::new();
    let mut bases: Vec<&crate::manifest::DiskSpec> = Vec::new();
    for d in man.vms.iter().flat_map(|v| &v.disks) {
        if d.base {
            if !bases.iter().any(|b| b.image == d.image) {
                bases.push(d);
            }
            continue;
        }
        let name = cow_disk::ImageName::new(&d.image).map_err(|e| anyhow::anyhow!("disk image {}: {e}", d.image))?;
        if !wanted.iter().any(|(n, _)| *n == name) {
            wanted.push((name, d.size));
        }
    }
    if !wanted.is_empty() {
        crate::disk::ensure_images(&man.disk_file, &wanted)?;
    }
    for d in bases {
        ensure_base(&man.disk_file, &d.image).with_context(|| d.image_at.clone())?;
    }
    Ok(vec![
        "-global".into(),
        "virtio-mmio.force-legacy=false".into(),
        "-drive".into(),
        format!("file={},if=none,format=raw,id=disk0,cache=writeback", man.disk_file.display()),
        "-device".into(),
        "virtio-blk-device,drive=disk0".into(),
    ])
}

/// The QEMU command that boots the one VM of `man` natively (no monitor),
/// on the same kernel, initramfs and disks, restricted to the VM's vCPUs and
/// memory (`maxcpus=`, `mem=`): the baseline of a workload run. Each disk
/// is QEMU's own virtio-blk over the image's bytes of the disk file (raw
/// `offset=`/`size=`), so the guest sees exactly what the monitor would
/// give it.
pub fn native_manifest_command(env: &mut Env, machine: &Machine, man: &Manifest, tag: &str) -> Result<Command> {
    let [vm] = man.vms.as_slice() else { bail!("{}: a native run boots one VM, not {}", man.file, man.vms.len()) };
    let base = match &vm.initrd {
        Some(own) => own.clone(),
        None if vm.disks.is_empty() => env.base_initrd.clone(),
        None => env.disk_initrd()?,
    };
    let initrd = initramfs::with_exec(&base, vm.exec.as_deref(), tag)?;
    let mut bootargs = format!("{BASE_BOOTARGS} maxcpus={} mem={}M", vm.vcpus, vm.memory_mib);
    for extra in crate::manifest::mount_arg(&vm.disks).iter().chain(Some(&vm.cmdline).filter(|c| !c.is_empty())) {
        bootargs.push(' ');
        bootargs.push_str(extra);
    }
    let mut cmd = Command::new(qemu::QEMU);
    cmd.args(machine.qemu_args());
    cmd.arg("-kernel").arg(&env.guest.kernel).arg("-initrd").arg(&initrd).arg("-append").arg(bootargs);
    if !vm.disks.is_empty() {
        disk_args(man)?; // creates or updates the images
        let header = crate::disk::read_header(&man.disk_file)?;
        cmd.args(["-global", "virtio-mmio.force-legacy=false"]);
        for (i, d) in vm.disks.iter().enumerate() {
            let e =
                header.find(&d.image).with_context(|| format!("{}: no image {}", man.disk_file.display(), d.image))?;
            cmd.arg("-drive").arg(format!(
                "file={},if=none,format=raw,id=disk{i},offset={},size={},readonly={},snapshot={},cache=writeback",
                man.disk_file.display(),
                e.offset,
                e.size,
                if d.read_only { "on" } else { "off" },
                // QEMU's own copy-on-write for a `cow` disk: the base image stays as it is.
                if d.cow { "on" } else { "off" }
            ));
            cmd.arg("-device").arg(format!("virtio-blk-device,drive=disk{i}"));
        }
    }
    cmd.args(qemu::captured_console());
    Ok(cmd)
}
