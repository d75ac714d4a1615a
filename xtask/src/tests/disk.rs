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
