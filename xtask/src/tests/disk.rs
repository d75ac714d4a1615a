//! Integration test of issue 13 (7a): a VM's persistent virtio-blk disk,
//! backed by an image of the physical disk the monitor drives, keeps what
//! the guest wrote across a guest crash, a VM restart and the end of the
//! run.

use super::smp::{spawn, with_log};
use super::{field, host_md5, GUEST_TIMEOUT};
use crate::boot::Env;
use crate::exec::{self, MultiOutcome};
use crate::util::{cache_dir, rel};
use anyhow::Result;

/// Lines of `seq` the guest writes to its disk.
const SEQ_LINES: u64 = 300_000;

/// Boot 1 makes ext4 on /dev/vda, writes a file, syncs and crashes the
/// kernel; boot 2 (restart = on-crash) mounts and reads it back. A second
/// QEMU, on the same disk file, gives the image read-only to a VM whose
/// init mounts it (`mount = "/data"`): it reads the file again and cannot
/// write the disk.
pub fn persistent_disk(env: &mut Env) -> Result<()> {
    let file = cache_dir("test-disk")?.join("persistent-disk.disk");
    // A fresh disk file: the image is created in it on demand.
    let _ = std::fs::remove_file(&file);
    let want = host_md5((1..=SEQ_LINES).map(|i| format!("{i}\n")).collect::<String>().as_bytes())?;
    let disk_file = format!("disk_file = \"{}\"\n", file.display());
    let writer = format!(
        "mkdir -p /mnt
if grep -q disco.boot=1 /proc/cmdline; then
  mkfs.ext4 -q -F /dev/vda || echo mkfs-failed
  mount -t ext4 /dev/vda /mnt && seq 1 {SEQ_LINES} > /mnt/seq && sync && echo written
  echo c > /proc/sysrq-trigger
fi
echo boot=$(grep -o 'disco.boot=[0-9]*' /proc/cmdline)
mount -t ext4 /dev/vda /mnt && echo md5=$(md5sum < /mnt/seq | cut -d' ' -f1)
umount /mnt && echo unmounted"
    );
    let text = format!(
        "{disk_file}[[vm]]\nname = \"p\"\nvcpus = 2\nmemory = \"256M\"\nrestart = \"on-crash\"\nexec = '''\n{writer}\n'''\n\n\
         [[vm.disk]]\nimage = \"data\"\nmode = \"persistent\"\nsize = \"64M\"\n"
    );
    let out = run(env, "persistent-disk", &text)?;
    let mut errs = Vec::new();
    let p = out.vm("p");
    if p.reboots != 1 || p.crashes.is_empty() {
        errs.push(format!(
            "vm p: expected one crash and one restart, saw {} crash line(s) and {} reboot(s)",
            p.crashes.len(),
            p.reboots
        ));
    }
    check_field(&p.output, "boot=", "disco.boot=2", "vm p after its restart", &mut errs);
    check_field(&p.output, "md5=", &want, "vm p: md5 of the file read back after the crash", &mut errs);
    check_field(&p.output, "unmounted", "", "vm p: umount", &mut errs);
    with_log(&out, errs)?;

    // The second run: another QEMU, the same disk file, read-only, and
    // mounted by the guest's init (`mount`).
    let reader = "echo ro=$(cat /sys/block/vda/ro)
echo mounted=$(grep -c '^/dev/vda /data ext4 ro' /proc/mounts)
dd if=/dev/zero of=/dev/vda bs=512 count=1 2>/dev/null && sync && echo wrote-a-read-only-disk
echo md5=$(md5sum < /data/seq | cut -d' ' -f1)";
    let text = format!(
        "{disk_file}[[vm]]\nname = \"q\"\nvcpus = 1\nmemory = \"256M\"\nexec = '''\n{reader}\n'''\n\n\
         [[vm.disk]]\nimage = \"data\"\nmode = \"persistent\"\nreadonly = true\nmount = \"/data\"\n"
    );
    let out = run(env, "persistent-disk-2", &text)?;
    let mut errs = Vec::new();
    let q = &out.vm("q").output;
    check_field(q, "ro=", "1", "vm q: /sys/block/vda/ro", &mut errs);
    check_field(q, "mounted=", "1", "vm q: /dev/vda on /data (ext4, ro) in /proc/mounts", &mut errs);
    check_field(q, "md5=", &want, "vm q: md5 of the file in the second run", &mut errs);
    if q.iter().any(|l| l.contains("wrote-a-read-only-disk")) {
        errs.push("vm q wrote to its read-only disk".into());
    }
    if errs.is_empty() {
        let _ = std::fs::remove_file(&file);
    } else {
        errs.push(format!("disk file kept: {}", rel(&file)));
    }
    with_log(&out, errs)
}

/// A guest that drives its virtio-blk device by hand with garbage (queue
/// rings outside its RAM, through `devmem` once Linux let go of the
/// device) gets NEEDS_RESET and a monitor log line, and the monitor carries
/// on: VM `h`, beside it, makes ext4 on its own disk and reads a file back
/// correctly.
pub fn malformed_queue(env: &mut Env) -> Result<()> {
    let file = cache_dir("test-disk")?.join("malformed-queue.disk");
    let _ = std::fs::remove_file(&file);
    let want = host_md5((1..=SEQ_LINES).map(|i| format!("{i}\n")).collect::<String>().as_bytes())?;
    // Register offsets of virtio-mmio (virtio 1.2, 4.2.2); the first
    // frame is vda. Status 1, 3, 11, 15: ACKNOWLEDGE, DRIVER, FEATURES_OK
    // (VERSION_1 accepted), DRIVER_OK. The rings at 0x1000-0x3fff are
    // below guest RAM.
    let garbage = "B=$((0x0a000000))
w() { devmem $((B + $1)) 32 $(($2)); }
echo a000000.virtio_mmio > /sys/bus/platform/drivers/virtio-mmio/unbind || echo unbind-failed
w 0x70 0; w 0x70 1; w 0x70 3
w 0x24 1; w 0x20 1; w 0x24 0; w 0x20 0; w 0x70 11
w 0x30 0; w 0x38 16
w 0x80 0x1000; w 0x84 0; w 0x90 0x2000; w 0x94 0; w 0xa0 0x3000; w 0xa4 0
w 0x44 1; w 0x70 15; w 0x50 0
echo status=$(devmem $((B + 0x70)) 32)";
    let good = format!(
        "mkdir -p /mnt; mkfs.ext4 -q -F /dev/vda && mount -t ext4 /dev/vda /mnt && seq 1 {SEQ_LINES} > /mnt/seq && sync
umount /mnt && mount -t ext4 /dev/vda /mnt && echo md5=$(md5sum < /mnt/seq | cut -d' ' -f1)"
    );
    let vm = |name: &str, exec: &str| {
        format!("[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"128M\"\nexec = '''\n{exec}\n'''\n\n[[vm.disk]]\nimage = \"{name}\"\nmode = \"persistent\"\nsize = \"16M\"\n\n")
    };
    let text = format!("disk_file = \"{}\"\n{}{}", file.display(), vm("g", garbage), vm("h", &good));
    let out = run(env, "malformed-queue", &text)?;
    let mut errs = Vec::new();
    // NEEDS_RESET (0x40) with the four driver bits.
    check_field(&out.vm("g").output, "status=", "0x0000004F", "vm g: Status after the garbage", &mut errs);
    if !out.lines.iter().any(|l| l.contains("vm g: disk 0: malformed") && l.contains("device needs reset")) {
        errs.push("no monitor line `vm g: disk 0: malformed ... device needs reset`".into());
    }
    check_field(&out.vm("h").output, "md5=", &want, "vm h: md5 of its file", &mut errs);
    let _ = std::fs::remove_file(&file);
    with_log(&out, errs)
}

fn run(env: &mut Env, tag: &str, text: &str) -> Result<MultiOutcome> {
    let (s, names) = spawn(env, tag, text, false)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = exec::run_multi(s, &names, GUEST_TIMEOUT)?;
    out.check()?;
    Ok(out)
}

fn check_field(lines: &[String], key: &str, want: &str, what: &str, errs: &mut Vec<String>) {
    match field(lines, key) {
        Ok(got) if got == want => {}
        Ok(got) => errs.push(format!("{what}: got `{got}`, expected `{want}`")),
        Err(_) => errs.push(format!("{what}: no `{key}` line in its output")),
    }
}
