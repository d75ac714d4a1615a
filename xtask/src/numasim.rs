//! numa-sim, the ccNUMA cost-model QEMU plugin (`bench/numa-sim`), in xtask.
//!
//! [`Sim`] turns a machine from `qemu-configs/` into plugin arguments (node
//! sizes, CPUs per node, distances: nothing about the machine is hard-coded
//! in the plugin), backs every node's RAM with a file in `/dev/shm`
//! (`<prefix>.m<node>`; the last one is the counter channel, see
//! `numa/src/counters.rs`; all of them let the plugin map code addresses to
//! physical ones for instruction fetches), and rewrites a QEMU
//! command built by [`crate::boot`] to load the plugin. Natively the kernel
//! gets `mem=` so Linux never uses the counter region at the top of RAM;
//! under the monitor the monitor keeps it out of its allocators itself.
//!
//! [`payload`] is an extra initramfs archive for native runs: `memloop` (the
//! memory-bound workload with the plugin's region-of-interest markers) and
//! Debian's `numactl:arm64` with the libraries it needs.

#[path = "../../numa/src/code_table.rs"]
#[allow(dead_code)]
mod code_table;
#[path = "../../numa/src/counters.rs"]
#[allow(dead_code)]
mod counters;

use crate::boot::Boot;
use crate::initramfs::Cpio;
use crate::machine::{Machine, RAM_BASE};
use crate::numasim_json::Json;
use crate::setup::{apt_get, apt_update};
use crate::util::{cache_dir, rel, root, run, write_if_changed};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugin parameters a user may set with `--numa-sim=k=v,...`; the machine
/// keys (`mem`, `cpus`, `dist`, `shm`, `out`, `ram_prefix`) always come from xtask.
pub const USER_KEYS: &[&str] =
    &["cache", "assoc", "line", "local_ns", "remote_ns", "insn_ns", "top", "filter", "ifetch"];
/// Debian packages behind `numactl` in the guest.
const GUEST_DEBS: &[&str] = &["numactl", "libnuma1", "libc6"];

/// Checks `k=v,k=v` user parameters; returns them as plugin arguments.
pub fn parse_params(s: &str) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for kv in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let Some((k, val)) = kv.split_once('=') else { bail!("numa-sim parameter `{kv}` is not key=value") };
        if !USER_KEYS.contains(&k) {
            bail!("unknown numa-sim parameter `{k}` (known: {})", USER_KEYS.join(", "));
        }
        if val.is_empty() {
            bail!("numa-sim parameter `{k}` has no value");
        }
        v.push(format!("{k}={val}"));
    }
    Ok(v)
}

/// The plugin's machine arguments for `m`: each node's size and CPU count
/// in node order (the plugin lays nodes out from `ram_base` in that order,
/// as QEMU does, so unequal sizes give the right ranges; a memory-only node
/// has `0` CPUs).
pub fn machine_args(m: &Machine) -> Vec<String> {
    let join = |v: Vec<String>| v.join("/");
    let dist: Vec<String> =
        m.distances.iter().map(|r| r.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(":")).collect();
    vec![
        format!("ram_base={RAM_BASE:#x}"),
        format!("mem={}", join(m.memory_mib.iter().map(|mib| format!("{mib}M")).collect())),
        format!("cpus={}", join(m.cpus_per_node.iter().map(|c| c.to_string()).collect())),
        format!("dist={}", dist.join("/")),
    ]
}

/// The counter region of machine `m` (the same computation as the plugin's
/// and the monitor's). It sits at the top of RAM, so it must fit in the last
/// node (the one whose file is the counter channel).
pub fn layout(m: &Machine) -> Result<counters::CounterLayout> {
    let last = m.node_ram(m.nodes - 1);
    let l = counters::CounterLayout::for_machine(RAM_BASE, last.end, m.nodes as u32)
        .ok_or_else(|| anyhow!("machine {} is too small for the numa-sim counter region", m.name))?;
    if l.region_base < last.start {
        bail!(
            "machine {}: the numa-sim counter region ({} MiB) does not fit in the last node ({} MiB)",
            m.name,
            l.region_size >> 20,
            m.memory_mib[m.nodes - 1]
        );
    }
    Ok(l)
}

/// `mem=` for a native kernel: all RAM below the counter region.
pub fn native_mem_arg(m: &Machine) -> Result<String> {
    let l = layout(m)?;
    Ok(format!("mem={}M", (l.region_base - RAM_BASE) >> 20))
}

/// Builds the plugin (release) and returns the shared object.
pub fn build_plugin() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).current_dir(root()).args(["build", "--quiet", "-p", "numa-sim", "--release"]))?;
    Ok(root().join("target/release/libnuma_sim.so"))
}

/// Builds `memloop` and `sharedscan` (static aarch64 Linux binaries
/// without libc); returns memloop's path (sharedscan is beside it).
pub fn build_memloop() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = root().join("target/memloop");
    run(Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "--release", "--target", "aarch64-unknown-none"])
        .args([
            "--manifest-path".as_ref(),
            root().join("bench/numa-sim/memloop/Cargo.toml").as_os_str(),
            "--target-dir".as_ref(),
            dir.as_os_str(),
        ]))?;
    Ok(dir.join("aarch64-unknown-none/release/memloop"))
}

/// `numactl:arm64` and its libraries, unpacked into `.cache/numasim-guest`.
fn guest_packages() -> Result<PathBuf> {
    let dest = cache_dir("numasim-guest")?;
    if dest.join("usr/bin/numactl").is_file() && dest.join("usr/lib/aarch64-linux-gnu/libnuma.so.1").exists() {
        return Ok(dest);
    }
    let debs = cache_dir("debs")?;
    let download = |p: &str| {
        run(apt_get().current_dir(&debs).args(["-o", "APT::Sandbox::User=root", "download"]).arg(format!("{p}:arm64")))
    };
    let tmp = dest.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for p in GUEST_DEBS {
        eprintln!("setup: downloading {p}:arm64 (numa-sim guest tools) ...");
        if download(p).is_err() {
            apt_update()?;
            download(p)?;
        }
        let deb = std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .filter(|x| {
                x.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with(&format!("{p}_")) && n.to_string_lossy().ends_with("_arm64.deb")
                })
            })
            .max_by_key(|x| x.metadata().and_then(|m| m.modified()).ok())
            .ok_or_else(|| anyhow!("apt-get download left no {p}_*_arm64.deb in {}", rel(&debs)))?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// The extra initramfs archive for native numa-sim runs (rebuilt if changed).
pub fn payload() -> Result<PathBuf> {
    let memloop = build_memloop()?;
    let g = guest_packages()?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", rel(p)));
    let mut c = Cpio::default();
    for d in ["lib", "lib/aarch64-linux-gnu", "usr", "usr/bin", "usr/lib", "usr/lib/aarch64-linux-gnu"] {
        c.dir(d);
    }
    c.file("usr/bin/memloop", 0o755, &read(&memloop)?);
    c.file("usr/bin/sharedscan", 0o755, &read(&memloop.with_file_name("sharedscan"))?);
    // `bench isolation`'s well-behaved workloads, memory hog and UDP flood.
    // ... and `bench io`'s direct disk I/O.
    for bin in ["isoload", "memhog", "udpflood", "diskbench"] {
        c.file(&format!("usr/bin/{bin}"), 0o755, &read(&memloop.with_file_name(bin))?);
    }
    c.file("usr/bin/numactl", 0o755, &read(&g.join("usr/bin/numactl"))?);
    for lib in ["libc.so.6", "ld-linux-aarch64.so.1"] {
        c.file(&format!("lib/aarch64-linux-gnu/{lib}"), 0o755, &read(&g.join("lib/aarch64-linux-gnu").join(lib))?);
    }
    c.symlink("lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1");
    // libnuma.so.1 is a symlink in the package: store the file it names.
    let numa = std::fs::canonicalize(g.join("usr/lib/aarch64-linux-gnu/libnuma.so.1"))?;
    c.file("usr/lib/aarch64-linux-gnu/libnuma.so.1", 0o644, &read(&numa)?);
    let path = cache_dir("initramfs")?.join("numasim-payload.cpio");
    write_if_changed(&path, &c.finish())?;
    Ok(path)
}

/// One instrumented run's files. Dropping it removes the shared RAM file.
pub struct Sim {
    /// The file backing the last node's RAM (and holding the counter region).
    pub shm: PathBuf,
    /// `<prefix>.m<node>` back every node's RAM.
    prefix: String,
    /// The JSON report the plugin writes at QEMU exit.
    pub report: PathBuf,
    plugin_arg: String,
    machine: Machine,
    tag: String,
    /// Print a summary of the report when dropped (`run --exec`, whose
    /// QEMU stderr with the plugin's own summary only goes to the log).
    announce: bool,
}

impl Sim {
    /// Builds the plugin and prepares the files for run `tag` on `m` with
    /// user parameters `params` (`k=v,...`, may be empty).
    pub fn new(m: &Machine, params: &str, tag: &str) -> Result<Sim> {
        let user = parse_params(params)?;
        let so = build_plugin()?;
        let last = m.nodes - 1;
        let prefix = format!("/dev/shm/disco-numasim-{tag}-{}", std::process::id());
        for n in 0..m.nodes {
            // Fresh, zeroed (sparse) files: QEMU does not clear an existing one.
            let p = format!("{prefix}.m{n}");
            let f = std::fs::File::create(&p).with_context(|| format!("creating {p}"))?;
            f.set_len(m.memory_mib[n] << 20)?;
        }
        let shm = PathBuf::from(format!("{prefix}.m{last}"));
        let report = cache_dir("numasim")?.join(format!("{tag}.json"));
        let _ = std::fs::remove_file(&report);
        let mut args = vec![so.to_string_lossy().into_owned()];
        args.extend(machine_args(m));
        args.push(format!("shm={}", shm.display()));
        args.push(format!("shm_node={last}"));
        args.push(format!("ram_prefix={prefix}"));
        args.push(format!("out={}", report.display()));
        args.extend(user);
        if args.iter().any(|a| a.contains(',') && !a.ends_with(".so")) {
            bail!("numa-sim arguments may not contain commas: {args:?}");
        }
        Ok(Sim {
            shm,
            prefix,
            report,
            plugin_arg: args.join(","),
            machine: m.clone(),
            tag: tag.into(),
            announce: false,
        })
    }

    /// Rewrites a QEMU command from [`Boot::command`]: every node's RAM
    /// becomes a shared file, the plugin is loaded (its summary goes to
    /// stderr via `-d plugin`), and natively `mem=` keeps Linux below the
    /// counter region and `payload` is appended to the initramfs.
    pub fn wrap(&self, cmd: &Command, native: bool, payload: Option<&Path>) -> Result<Command> {
        let ram = "memory-backend-ram,id=m";
        let mut out = Command::new(cmd.get_program());
        if let Some(d) = cmd.get_current_dir() {
            out.current_dir(d);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => out.env(k, v),
                None => out.env_remove(k),
            };
        }
        let args: Vec<OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
        let mut swapped = 0;
        let mut i = 0;
        while i < args.len() {
            let a = args[i].to_string_lossy();
            let next = args.get(i + 1).map(|n| n.to_string_lossy().into_owned());
            match (a.as_ref(), next) {
                ("-object", Some(n)) if n.starts_with(ram) => {
                    let rest = &n["memory-backend-ram".len()..];
                    let node = rest[",id=m".len()..].split(',').next().unwrap_or_default();
                    out.arg("-object")
                        .arg(format!("memory-backend-file{rest},mem-path={}.m{node},share=on", self.prefix));
                    swapped += 1;
                    i += 2;
                }
                ("-append", Some(n)) if native => {
                    out.arg("-append").arg(format!("{n} {}", native_mem_arg(&self.machine)?));
                    i += 2;
                }
                ("-initrd", Some(n)) if native && payload.is_some() => {
                    let mut data = std::fs::read(&n).with_context(|| format!("reading {n}"))?;
                    data.extend(std::fs::read(payload.expect("checked"))?);
                    let p = cache_dir("initramfs")?.join(format!("{}-numasim.cpio", self.tag));
                    write_if_changed(&p, &data)?;
                    out.arg("-initrd").arg(p);
                    i += 2;
                }
                _ => {
                    out.arg(&args[i]);
                    i += 1;
                }
            }
        }
        if swapped != self.machine.nodes {
            bail!("numa-sim: found {swapped} `-object {ram}N,...` in the QEMU command, want one per node");
        }
        out.args(["-plugin", &self.plugin_arg, "-d", "plugin"]);
        Ok(out)
    }

    /// The plugin's JSON report (present once QEMU exited normally).
    pub fn read_report(&self) -> Result<Json> {
        let text = std::fs::read_to_string(&self.report)
            .with_context(|| format!("no numa-sim report {} (did QEMU exit normally?)", rel(&self.report)))?;
        Json::parse(&text).with_context(|| format!("parsing {}", rel(&self.report)))
    }

    /// The counter region's header and counter total, read from the shared
    /// file the way the monitor reads machine memory.
    pub fn read_region(&self) -> Result<(counters::Header, u64)> {
        let l = layout(&self.machine)?;
        let last_base = self.machine.node_ram(self.machine.nodes - 1).start;
        let data = std::fs::read(&self.shm)?;
        let off = (l.region_base - last_base) as usize;
        let region = data.get(off..off + l.region_size as usize).ok_or_else(|| anyhow!("shared file too short"))?;
        let h = counters::Header::decode(region).ok_or_else(|| anyhow!("short header"))?;
        l.check(&h).map_err(|e| anyhow!("counter region header: {e:?}"))?;
        let hs = counters::HEADER_SIZE as usize;
        let n = l.counter_count() as usize;
        let total =
            region[hs..hs + 4 * n].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64).sum();
        Ok((h, total))
    }

    /// The monitor-code table the monitor published in the counter region
    /// (`numa::code_table`), read from the shared file after the run.
    pub fn read_code_table(&self) -> Result<Vec<code_table::CodeRange>> {
        use std::io::{Read, Seek, SeekFrom};
        let l = layout(&self.machine)?;
        let off = l.region_base - self.machine.node_ram(self.machine.nodes - 1).start;
        let mut page = vec![0u8; counters::QUEUE_OFFSET as usize];
        let mut f = std::fs::File::open(&self.shm)?;
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut page)?;
        let word = |o: usize| page.get(o..o + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        code_table::read(word).ok_or_else(|| anyhow!("the monitor published no code table in the counter region"))
    }
}

/// A few lines from a report: per node local/remote misses, per CPU
/// simulated time, the hottest pages.
pub fn summary(r: &Json) -> String {
    let mut s = String::new();
    let num = |v: &Json, k: &str| v.get(k).and_then(Json::num).unwrap_or(0.0);
    for n in r.get("nodes").map(Json::items).unwrap_or_default() {
        s += &format!(
            "numa-sim: node {}: {:.0} local, {:.0} remote misses ({:.2}% local)\n",
            num(n, "node"),
            num(n, "local_misses"),
            num(n, "remote_misses"),
            num(n, "local_pct")
        );
    }
    for c in r.get("cpus").map(Json::items).unwrap_or_default() {
        s += &format!(
            "numa-sim: cpu {} (node {}): {:.3} ms simulated\n",
            num(c, "cpu"),
            num(c, "node"),
            num(c, "sim_ns") / 1e6
        );
    }
    for p in r.get("top_pages").map(Json::items).unwrap_or_default().iter().take(5) {
        let counts: Vec<String> = p
            .get("counts")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{:.0}", c.num().unwrap_or(0.0)))
            .collect();
        let addr = match p.get("addr") {
            Some(Json::Str(a)) => a.clone(),
            _ => "?".into(),
        };
        s += &format!(
            "numa-sim: hot page {addr} (home node {}): misses per node [{}]\n",
            num(p, "home"),
            counts.join(", ")
        );
    }
    s
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.announce {
            match self.read_report() {
                Ok(r) => eprint!("{}", summary(&r)),
                Err(e) => eprintln!("numa-sim: {e:#}"),
            }
        }
        for n in 0..self.machine.nodes {
            let _ = std::fs::remove_file(format!("{}.m{n}", self.prefix));
        }
    }
}

/// `cargo xtask run --numa-sim[=PARAMS]`: instruments the run's QEMU
/// command. Keep the returned [`Sim`] alive until QEMU has exited.
pub fn for_run(b: &Boot, cmd: Command, params: Option<&str>) -> Result<(Command, Option<Sim>)> {
    let Some(params) = params else {
        return Ok((cmd, None));
    };
    let mut sim = Sim::new(&b.machine, params, &b.tag)?;
    sim.announce = b.exec.is_some();
    let payload = if b.native { Some(payload()?) } else { None };
    let cmd = sim.wrap(&cmd, b.native, payload.as_deref())?;
    eprintln!("numa-sim: report at QEMU exit in {}; counters in {}", rel(&sim.report), sim.shm.display());
    Ok((cmd, Some(sim)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numa2() -> Machine {
        crate::machine::load("numa2").unwrap()
    }

    #[test]
    fn params() {
        assert_eq!(parse_params("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_params("cache=2M, local_ns=100").unwrap(), ["cache=2M", "local_ns=100"]);
        assert!(parse_params("mem=1G").is_err());
        assert!(parse_params("cache").is_err());
        assert!(parse_params("cache=").is_err());
    }

    #[test]
    fn machine_arguments_and_region() {
        let m = numa2();
        assert_eq!(machine_args(&m), ["ram_base=0x40000000", "mem=1024M/1024M", "cpus=2/2", "dist=10:20/20:10"]);
        let l = layout(&m).unwrap();
        assert_eq!((l.region_base, l.region_size), (0xbfa0_0000, 6 << 20));
        assert_eq!(native_mem_arg(&m).unwrap(), "mem=2042M");
    }

    #[test]
    fn unequal_nodes() {
        let m = crate::machine::load("numa-far").unwrap();
        assert_eq!(
            machine_args(&m),
            ["ram_base=0x40000000", "mem=1024M/1024M/1024M", "cpus=2/2/0", "dist=10:20:30/20:10:30/30:30:10"]
        );
        let l = layout(&m).unwrap();
        assert!(l.region_base >= m.node_ram(2).start && l.region_end() == m.node_ram(2).end);
        let m = crate::machine::load("numa-uneven").unwrap();
        assert_eq!(machine_args(&m)[1..3], ["mem=1536M/512M", "cpus=3/1"]);
        // The plugin's node_base (ram_base + the sizes before) is where QEMU puts each node.
        assert_eq!((m.node_ram(0), m.node_ram(1)), (0x4000_0000..0xa000_0000, 0xa000_0000..0xc000_0000));
        let l = layout(&m).unwrap();
        assert_eq!(l.region_end(), m.node_ram(1).end);
        // A last node smaller than the counter region is refused up front.
        let tiny = crate::machine::parse(
            "tiny",
            "t",
            "distances = [[10, 20], [20, 10]]\n[[node]]\ncpus = 1\nmemory-mib = 32768\n[[node]]\ncpus = 1\nmemory-mib = 64\n",
        )
        .unwrap();
        let e = layout(&tiny).unwrap_err().to_string();
        assert!(e.contains("does not fit in the last node (64 MiB)"), "{e}");
    }

    #[test]
    fn wrap_rewrites_the_last_node() {
        let m = numa2();
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(m.qemu_args()).args(["-kernel", "k", "-append", "console=ttyAMA0"]);
        let sim = Sim {
            shm: "/dev/shm/x.m1".into(),
            prefix: "/dev/shm/x".into(),
            report: "/tmp/r.json".into(),
            plugin_arg: "p.so,mem=1024M/1024M".into(),
            machine: m,
            tag: "t".into(),
            announce: false,
        };
        let w = sim.wrap(&cmd, true, None).unwrap();
        let a: Vec<String> = w.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let a = a.join(" ");
        assert!(a.contains("-object memory-backend-file,id=m0,size=1024M,mem-path=/dev/shm/x.m0,share=on "), "{a}");
        assert!(a.contains("-object memory-backend-file,id=m1,size=1024M,mem-path=/dev/shm/x.m1,share=on "), "{a}");
        assert!(a.contains("-append console=ttyAMA0 mem=2042M"), "{a}");
        assert!(a.ends_with("-plugin p.so,mem=1024M/1024M -d plugin"), "{a}");
        std::mem::forget(sim); // no file to remove
    }
}
