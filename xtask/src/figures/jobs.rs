//! A figure's runs as independent shell command lines (issue 15, item 4).
//!
//! Every run of a figure is one [`Spec`]: one QEMU boot (natively or under
//! the monitor) of a workload under the ccNUMA plugin, written as
//! `cargo xtask bench fig-run --out DIR/ID ...`. `--jobs FILE` writes those
//! lines for GNU parallel or a Slurm array; the default writes the same file
//! and runs its lines here, parsed back with the same parser, so what runs
//! here is exactly what the file says. `--collect DIR` then reads each run's
//! output directory (`run.rs`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};

/// The subcommand that runs one job.
pub const RUN_CMD: &str = "cargo xtask bench fig-run";

/// One run of a figure: what `cargo xtask bench fig-run` takes.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct Spec {
    /// The run's name within its figure (file-name safe).
    #[arg(long)]
    pub id: String,
    /// The figure it belongs to (fig5, fig6, fig8).
    #[arg(long)]
    pub fig: String,
    /// Its output directory (created; console.txt, numasim.json, run.json).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "numa2")]
    pub machine: String,
    /// A workload of bench/workloads/ (engineering, raytrace, database, pmake).
    #[arg(long)]
    pub workload: String,
    #[arg(long, default_value = "small")]
    pub size: String,
    /// VMs running the workload at once under the monitor (fig7: 8 x 1 vCPU).
    #[arg(long, default_value_t = 1)]
    pub vms: u32,
    /// vCPUs of each VM (natively: the CPUs Linux may use, `maxcpus=`).
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    /// Memory of each VM in MiB (natively: `mem=`, see the method).
    #[arg(long, default_value_t = 1024)]
    pub memory: u64,
    /// Boot the Debian kernel directly on the machine instead of the monitor.
    #[arg(long)]
    pub native: bool,
    /// Natively: kernel.numa_balancing (0 or 1).
    #[arg(long, default_value_t = 0)]
    pub numa_balancing: u8,
    /// Under the monitor: first-touch, migrate or replicate.
    #[arg(long, default_value = "first-touch")]
    pub placement: String,
    /// Under the monitor: placement policy parameters, as for `run --placement-params`.
    #[arg(long, default_value = "")]
    pub placement_params: String,
    /// numa-sim parameters (k=v,...), as for `run --numa-sim=`; `off`: no plugin (under the monitor only).
    #[arg(long, default_value = "")]
    pub numa_sim: String,
    /// Under the monitor: every VM's `share_group` (a name, or `none`); empty: none written (the monitor's default).
    #[arg(long, default_value = "")]
    pub share: String,
    /// Under the monitor: the manifest asks for the sharing census (`census = true`).
    #[arg(long)]
    pub census: bool,
    /// The root disk's mode: `base` (read-only, shared by nothing) or `cow` (copy-on-write over the base image).
    #[arg(long, default_value = "base")]
    pub disk: String,
    /// Seconds VM 0 sleeps after its workload (after a `DISCO-HOLD status=N` line; the others twice as long), so that all are alive at once.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// The workload script's environment, `VAR=VALUE` words (fig7: `PART={i}/{n}`, `STREAMS=8`); `{i}` and `{n}` become the VM's index and the run's VM count.
    #[arg(long, default_value = "")]
    pub env: String,
}

#[derive(Parser, Debug)]
#[command(name = "fig-run")]
struct Line {
    #[command(flatten)]
    spec: Spec,
}

/// Quotes a word for sh (our values never hold a single quote).
fn quote(w: &str) -> Result<String> {
    if w.contains('\'') {
        bail!("job argument {w:?} contains a single quote");
    }
    let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c));
    Ok(if plain { w.to_string() } else { format!("'{w}'") })
}

/// Splits what [`quote`] wrote back into words.
fn split(line: &str) -> Result<Vec<String>> {
    let (mut words, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => (cur.push(c), any = true).1,
        }
    }
    if quoted {
        bail!("unbalanced quote in job line {line:?}");
    }
    if any {
        words.push(cur);
    }
    Ok(words)
}

impl Spec {
    /// One VM of `workload` under the monitor with first-touch placement,
    /// the read-only base root and the given plugin parameters: what every
    /// figure's run starts from before its mode changes it.
    pub fn new(fig: &str, id: String, dir: &Path, machine: &str, workload: &str, size: &str, numa_sim: &str) -> Spec {
        Spec {
            out: dir.join(&id),
            id,
            fig: fig.into(),
            machine: machine.into(),
            workload: workload.into(),
            size: size.into(),
            vms: 1,
            vcpus: 2,
            memory: 1024,
            native: false,
            numa_balancing: 0,
            placement: "first-touch".into(),
            placement_params: String::new(),
            numa_sim: numa_sim.into(),
            share: String::new(),
            census: false,
            disk: "base".into(),
            hold: 0,
            env: String::new(),
        }
    }

    /// The job's shell command line.
    pub fn to_line(&self) -> Result<String> {
        let pairs = [
            ("--fig", self.fig.clone()),
            ("--id", self.id.clone()),
            ("--out", self.out.display().to_string()),
            ("--machine", self.machine.clone()),
            ("--workload", self.workload.clone()),
            ("--size", self.size.clone()),
            ("--vms", self.vms.to_string()),
            ("--vcpus", self.vcpus.to_string()),
            ("--memory", self.memory.to_string()),
        ];
        let mut w: Vec<String> = pairs.into_iter().flat_map(|(k, v)| [k.to_string(), v]).collect();
        if self.native {
            w.extend(["--native".into(), "--numa-balancing".into(), self.numa_balancing.to_string()]);
        } else {
            w.extend(["--placement".into(), self.placement.clone()]);
            w.extend(["--placement-params".into(), self.placement_params.clone()]);
        }
        // (Natively the placement, under the monitor numa_balancing, is unused.)
        w.extend(["--numa-sim".into(), self.numa_sim.clone()]);
        // Written only when not the default, so older figures' lines stay as they were.
        if !self.share.is_empty() {
            w.extend(["--share".into(), self.share.clone()]);
        }
        if self.census {
            w.push("--census".into());
        }
        if self.disk != "base" {
            w.extend(["--disk".into(), self.disk.clone()]);
        }
        if self.hold != 0 {
            w.extend(["--hold".into(), self.hold.to_string()]);
        }
        if !self.env.is_empty() {
            w.extend(["--env".into(), self.env.clone()]);
        }
        let words: Result<Vec<String>> = w.iter().map(|x| quote(x)).collect();
        Ok(format!("{RUN_CMD} {}", words?.join(" ")))
    }

    /// A line [`Spec::to_line`] wrote.
    pub fn parse_line(line: &str) -> Result<Spec> {
        let rest = line.trim().strip_prefix(RUN_CMD).with_context(|| format!("not a `{RUN_CMD}` line: {line:?}"))?;
        let words = split(rest)?;
        let l = Line::try_parse_from(std::iter::once("fig-run".to_string()).chain(words))
            .map_err(|e| anyhow::anyhow!("job line {line:?}: {e}"))?;
        Ok(l.spec)
    }
}

/// Writes the job file: a comment header, then one line per run.
pub fn write(path: &Path, fig: &str, specs: &[Spec]) -> Result<()> {
    let mut text = format!(
        "# {fig}: {} independent runs, one QEMU boot each (run from the repository root, in any order or in\n\
         # parallel); then `cargo xtask bench {fig} --collect DIR` with DIR holding their --out directories.\n",
        specs.len()
    );
    for s in specs {
        text.push_str(&s.to_line()?);
        text.push('\n');
    }
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The runs of a job file (comments and blank lines skipped).
pub fn read(path: &Path) -> Result<Vec<Spec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(Spec::parse_line).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec(id: &str) -> Spec {
        Spec {
            id: id.into(),
            fig: "fig8".into(),
            out: PathBuf::from(format!("target/x y/{id}")),
            machine: "numa2".into(),
            workload: "engineering".into(),
            size: "small".into(),
            vms: 1,
            vcpus: 4,
            memory: 1024,
            native: false,
            numa_balancing: 0,
            placement: "migrate".into(),
            placement_params: "interval=2000".into(),
            numa_sim: String::new(),
            share: String::new(),
            census: false,
            disk: "base".into(),
            hold: 0,
            env: String::new(),
        }
    }

    #[test]
    fn lines_round_trip() {
        let mut n = spec("n");
        (n.native, n.numa_balancing, n.numa_sim) = (true, 1, "remote_ns=300,cache=2M".into());
        // The defaults: not written for native runs.
        (n.placement, n.placement_params) = ("first-touch".into(), String::new());
        let mut f6 = spec("f6");
        (f6.share, f6.census, f6.disk, f6.hold, f6.numa_sim) = ("fig6".into(), true, "cow".into(), 90, "off".into());
        let mut f7 = spec("f7");
        (f7.vms, f7.env) = (8, "PART={i}/{n} NPROC=1".into());
        for s in [spec("a"), n, f6, f7] {
            let line = s.to_line().unwrap();
            assert!(line.starts_with("cargo xtask bench fig-run --fig fig8 --id "), "{line}");
            assert_eq!(Spec::parse_line(&line).unwrap(), s, "{line}");
        }
        // A line written before the sharing fields parses with their defaults.
        let old = "cargo xtask bench fig-run --fig fig8 --id o --out d --workload engineering --numa-sim ''";
        let o = Spec::parse_line(old).unwrap();
        assert_eq!((o.share.as_str(), o.census, o.disk.as_str(), o.hold), ("", false, "base", 0));
        assert!(Spec::parse_line("cargo xtask bench fig-run --id x").is_err());
        assert!(Spec::parse_line("echo hi").is_err());
        assert_eq!(split("a 'b c' '' d").unwrap(), ["a", "b c", "", "d"]);
    }
}
