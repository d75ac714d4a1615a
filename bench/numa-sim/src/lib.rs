//! numa-sim: a ccNUMA cost model for QEMU system emulation (TCG plugin).
//!
//! QEMU's NUMA is topology only: every access costs the same. This plugin
//! gives each vCPU a private cache (1 MiB, 64 B lines, 8-way LRU by default),
//! charges each miss a latency from the distance between the CPU's node and
//! the line's home node (300 ns local, 900 ns at distance 20 by default), and
//! a base cost per instruction, giving every CPU a *simulated time*. Like the
//! FLASH machine under Disco it counts misses per (4 KiB page, requesting
//! node) in a counter region of machine memory whose layout is
//! `numa::counters` (shared with the monitor through the file that backs the
//! last node's RAM). At exit it writes a JSON report and prints a summary.
//!
//! Guest markers: a `HINT #0x7a` instruction (a NOP on real hardware)
//! snapshots all CPUs as the start of a region of interest and `HINT #0x7b`
//! ends it; the report has the per-CPU deltas of every such interval.
//! Charge markers: `HINT #0x7c` / `HINT #0x7d` bracket work on one CPU
//! (the monitor's page mover) whose simulated cost the report sums up
//! (`charged`): what a migrated page costs, in the model's own time.
//!
//! Fast-plugin practice: raw `extern "C"` callbacks, per-vCPU state indexed by
//! `vcpu_index` and touched only by that vCPU's thread, instruction counts by
//! an inline scoreboard add per TB, node classification by address range, and
//! a one-line filter (an access to the same virtual line as the CPU's
//! previous access is a hit in an LRU cache, so the physical address lookup
//! is skipped). Not modelled: instruction fetches, coherence invalidations,
//! write-backs, prefetching (see `cache.rs`).
//!
//! Per-VM time (`vm_time.rs`): a register-reading callback on the
//! monitor's `msr vttbr_el2, xN` tells which VM each CPU runs; a region
//! of interest opened inside a VM also reports that VM's own simulated
//! time (run and waited) between the markers.
//!
//! Instruction fetches (`ifetch`, on when every node's RAM is a file named
//! by `ram_prefix`): each executed TB looks up the cache lines its code
//! occupies, found at translation time from the instructions' host
//! addresses (`hostmap.rs`); one callback per TB execution. Misses on the
//! monitor's own code (the ranges it publishes, `monitor_code.rs`) are
//! also counted per CPU as local or remote (`monitor_ifetch` in the report).

pub mod cache;
pub mod config;
pub mod el;
pub mod hostmap;
pub mod monitor_code;
pub mod region;
pub mod regs;
pub mod report;
pub mod roi;
pub mod vm_time;

pub use numa::counters;

use cache::Cache;
use config::Config;
use hostmap::HostMap;
use monitor_code::MonitorCode;
use qemu_plugin_sys::*;
use region::Region;
use report::{Charged, CpuStats, Report};
use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use vm_time::{VmClock, VmTimes};

/// Most nodes a machine may have (the counter region's limit).
pub const MAX_NODES: usize = counters::MAX_COUNTED_NODES;
/// `HINT #0x7a` / `HINT #0x7b`: begin / end of a region of interest.
pub const ROI_BEGIN_INSN: u32 = 0xd503_201f | (0x7a << 5);
pub const ROI_END_INSN: u32 = 0xd503_201f | (0x7b << 5);
/// `HINT #0x7c` / `HINT #0x7d`: begin / end of charged work on one CPU.
pub const CHARGE_BEGIN_INSN: u32 = 0xd503_201f | (0x7c << 5);
pub const CHARGE_END_INSN: u32 = 0xd503_201f | (0x7d << 5);

/// Marker kinds, as callback user data.
const MARK_ROI_BEGIN: usize = 1;
const MARK_ROI_END: usize = 2;
const MARK_CHARGE_BEGIN: usize = 3;
const MARK_CHARGE_END: usize = 4;

/// Per-vCPU state. The `Cell`/`UnsafeCell` fields are touched only by the
/// vCPU's own thread; the atomics are read by anyone (snapshots, report).
#[repr(align(128))]
struct Cpu {
    node: u32,
    last_vline: Cell<u64>,
    unpolled: Cell<u64>,
    /// Inside charged work (the monitor's page mover): its misses cost time
    /// but do not count toward a page's hotness, or every copy would make
    /// the old frame look hot.
    charging: Cell<bool>,
    cache: UnsafeCell<Cache>,
    accesses: AtomicU64,
    misses: [AtomicU64; MAX_NODES],
    stall_ps: AtomicU64,
    imisses: AtomicU64,
    /// The exception level of the block running now (`el.rs`), and the
    /// per-level instructions and miss latency.
    level: Cell<u8>,
    el_insns: [AtomicU64; el::LEVELS],
    el_stall_ps: [AtomicU64; el::LEVELS],
    /// The open charged interval's start, and the finished ones' sum.
    charge: Mutex<Charge>,
}

/// Charged work of one CPU.
#[derive(Default)]
struct Charge {
    open: Option<CpuStats>,
    total: Charged,
}

// SAFETY: see the struct comment: a vCPU index is run by one thread at a time.
unsafe impl Sync for Cpu {}

struct Sim {
    cfg: Config,
    line_shift: u32,
    ram_base: u64,
    ram_size: u64,
    /// End address of each node's RAM, in order.
    node_end: Vec<u64>,
    /// Latency in ps, `[cpu node][home node]`.
    lat: [[u64; MAX_NODES]; MAX_NODES],
    cpus: Vec<Cpu>,
    insns: qemu_plugin_u64,
    region: Region,
    /// Host -> guest physical for code, built at the first translation.
    hostmap: OnceLock<HostMap>,
    /// Open region-of-interest snapshots and finished intervals.
    roi: Mutex<roi::Regions>,
    /// Which VM each CPU runs, and per-VM simulated time.
    vms: Mutex<VmClock>,
    /// The monitor's instruction-fetch misses, local and remote.
    monitor: MonitorCode,
}

// SAFETY: the scoreboard handle is only used through QEMU's thread-safe API.
unsafe impl Sync for Sim {}
unsafe impl Send for Sim {}

static SIM: OnceLock<Sim> = OnceLock::new();

impl Sim {
    /// Runs one access through `cpu`'s cache; true on a miss.
    #[inline]
    fn access(&self, cpu: &Cpu, pa: u64) -> bool {
        if pa.wrapping_sub(self.ram_base) >= self.ram_size {
            return false; // device or outside RAM
        }
        let mut home = 0;
        while pa >= self.node_end[home] {
            home += 1;
        }
        // SAFETY: only this vCPU's thread reaches its own cache.
        let hit = unsafe { (*cpu.cache.get()).access(pa >> self.line_shift) };
        cpu.accesses.store(cpu.accesses.load(Relaxed) + 1, Relaxed);
        if hit {
            return false;
        }
        let m = &cpu.misses[home];
        m.store(m.load(Relaxed) + 1, Relaxed);
        let lat = self.lat[cpu.node as usize][home];
        cpu.stall_ps.store(cpu.stall_ps.load(Relaxed) + lat, Relaxed);
        let e = &cpu.el_stall_ps[cpu.level.get() as usize];
        e.store(e.load(Relaxed) + lat, Relaxed);
        if !cpu.charging.get() {
            self.region.count(pa >> 12, cpu.node, home != cpu.node as usize);
        }
        let u = cpu.unpolled.get() + 1;
        if u > region::POLL_MASK {
            self.region.poll(u);
            cpu.unpolled.set(0);
        } else {
            cpu.unpolled.set(u);
        }
        true
    }

    /// An instruction-fetch miss of `vcpu` at `pa`: counted as the
    /// monitor's when `pa` is its code (`monitor_code.rs`).
    fn monitor_fetch_miss(&self, vcpu: usize, cpu: &Cpu, pa: u64) {
        let home = self.node_end.iter().position(|&e| pa < e).unwrap_or(0);
        self.monitor.on_miss(&self.region, vcpu, pa, home == cpu.node as usize);
    }

    fn snapshot(&self) -> Vec<CpuStats> {
        (0..self.cpus.len()).map(|i| self.cpu_stats(i)).collect()
    }

    /// CPU `i`'s simulated clock, ps (any thread may read it: a racy but
    /// monotonic snapshot).
    fn cpu_sim_ps(&self, i: usize) -> u64 {
        let Some(c) = self.cpus.get(i) else { return 0 };
        // SAFETY: reading a scoreboard entry through QEMU's API.
        let insns = unsafe { qemu_plugin_u64_get(self.insns, i as c_uint) };
        insns * self.cfg.insn_ps + c.stall_ps.load(Relaxed)
    }

    /// The VM `vcpu` runs now, with its times so far.
    fn vm_now(&self, vcpu: usize) -> Option<(u16, VmTimes)> {
        let k = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        let id = k.current(vcpu)?;
        Some((id, k.times(id, |c| self.cpu_sim_ps(c))))
    }

    fn cpu_stats(&self, i: usize) -> CpuStats {
        let c = &self.cpus[i];
        CpuStats {
            node: c.node,
            // SAFETY: reading a scoreboard entry through QEMU's API.
            insns: unsafe { qemu_plugin_u64_get(self.insns, i as c_uint) },
            accesses: c.accesses.load(Relaxed),
            misses: c.misses[..self.cfg.nodes()].iter().map(|m| m.load(Relaxed)).collect(),
            stall_ps: c.stall_ps.load(Relaxed),
            imisses: c.imisses.load(Relaxed),
            el_insns: std::array::from_fn(|i| c.el_insns[i].load(Relaxed)),
            el_stall_ps: std::array::from_fn(|i| c.el_stall_ps[i].load(Relaxed)),
        }
    }

    /// The charged work of every CPU, summed.
    fn charged(&self) -> Charged {
        let mut sum = Charged::default();
        for c in &self.cpus {
            if let Ok(g) = c.charge.lock() {
                sum.add(&g.total);
            }
        }
        sum
    }

    fn config_json(&self) -> String {
        let c = &self.cfg;
        format!(
            "{{\"ram_base\":\"{:#x}\",\"node_mem\":{:?},\"node_cpus\":{:?},\"dist\":{:?},\"cache\":{},\"assoc\":{},\"line\":{},\"local_ns\":{},\"remote_ns\":{},\"insn_ns\":{},\"filter\":{},\"ifetch\":{}}}",
            c.ram_base, c.node_mem, c.node_cpus, c.dist, c.cache_size, c.assoc, c.line,
            c.local_ps as f64 / 1000.0, c.remote_ps as f64 / 1000.0, c.insn_ps as f64 / 1000.0, c.filter, c.ifetch
        )
    }
}

fn outs(s: &str) {
    if let Ok(c) = CString::new(s) {
        // SAFETY: NUL-terminated string, copied by QEMU.
        unsafe { qemu_plugin_outs(c.as_ptr()) };
    }
}

/// QEMU's memory-access callback.
///
/// # Safety
/// Called by QEMU only, with `info` valid for the duration of the call.
unsafe extern "C" fn mem_cb(vcpu: c_uint, info: qemu_plugin_meminfo_t, vaddr: u64, _: *mut c_void) {
    let Some(sim) = SIM.get() else { return };
    let Some(cpu) = sim.cpus.get(vcpu as usize) else {
        return;
    };
    let vline = vaddr >> sim.line_shift;
    if sim.cfg.filter {
        if cpu.last_vline.get() == vline {
            return;
        }
        cpu.last_vline.set(vline);
    }
    // SAFETY: `info` is valid for the duration of this callback.
    let hw = unsafe { qemu_plugin_get_hwaddr(info, vaddr) };
    if hw.is_null() {
        return;
    }
    // SAFETY: `hw` was just returned by QEMU for this access.
    let pa = unsafe { qemu_plugin_hwaddr_phys_addr(hw) };
    sim.access(cpu, pa);
}

/// Instruction fetch of one TB segment: `userdata` is an [`el::Run`]; a
/// block's first run also sets the CPU's exception level and counts the
/// block's instructions there.
///
/// # Safety
/// Called by QEMU only, for a TB this plugin instrumented (`userdata` as
/// [`instrument_ifetch`] encoded it).
unsafe extern "C" fn ifetch_cb(vcpu: c_uint, userdata: *mut c_void) {
    let Some(sim) = SIM.get() else { return };
    let Some(cpu) = sim.cpus.get(vcpu as usize) else {
        return;
    };
    let run = el::Run::decode(userdata as u64);
    let first = run.first_line;
    if let Some((n, upper)) = run.block {
        let in_monitor = sim.monitor.contains(&sim.region, first << sim.line_shift);
        let level = el::level(in_monitor, if upper { u64::MAX } else { 0 });
        cpu.level.set(level as u8);
        let c = &cpu.el_insns[level];
        c.store(c.load(Relaxed) + n, Relaxed);
    }
    for line in first..=first + run.extra_lines {
        if sim.access(cpu, line << sim.line_shift) {
            cpu.imisses.store(cpu.imisses.load(Relaxed) + 1, Relaxed);
            sim.monitor_fetch_miss(vcpu as usize, cpu, line << sim.line_shift);
        }
    }
}

/// Registers the instruction-fetch callbacks of a TB: its code's physical
/// lines, in runs of consecutive lines (a TB may span two pages); the
/// first run carries the block's size and address half (`el.rs`).
///
/// # Safety
/// `tb` must be the TB being translated.
unsafe fn instrument_ifetch(sim: &Sim, tb: *mut qemu_plugin_tb, n: usize) {
    let map = sim.hostmap.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let bases: Vec<u64> = (0..sim.cfg.nodes()).map(|i| sim.cfg.node_base(i)).collect();
        let m = HostMap::parse(&maps, sim.cfg.ram_prefix.as_deref().unwrap_or(""), &bases);
        if m.is_empty() {
            outs("numa-sim: no RAM file mappings found: instruction fetches not modelled\n");
        }
        m
    });
    let mut runs: Vec<(u64, u64)> = Vec::new(); // (first line, last line)
    for i in 0..n {
        // SAFETY: valid during translation (caller's contract).
        let (h, size) = unsafe {
            let insn = qemu_plugin_tb_get_insn(tb, i);
            (qemu_plugin_insn_haddr(insn) as u64, qemu_plugin_insn_size(insn) as u64)
        };
        let Some(pa) = (h != 0).then(|| map.pa(h)).flatten() else {
            continue;
        };
        let (a, b) = (pa >> sim.line_shift, (pa + size.max(1) - 1) >> sim.line_shift);
        match runs.last_mut() {
            Some(r) if a >= r.0 && a <= r.1 + 1 && b - r.0 < 64 => r.1 = r.1.max(b),
            _ => runs.push((a, b)),
        }
    }
    // SAFETY: valid during translation (caller's contract).
    let upper = unsafe { qemu_plugin_tb_vaddr(tb) } >> 63 == 1;
    for (k, (a, b)) in runs.into_iter().enumerate() {
        let run = el::Run { first_line: a, extra_lines: b - a, block: (k == 0).then_some((n as u64, upper)) };
        // SAFETY: registering a plain callback on the TB being translated.
        unsafe {
            qemu_plugin_register_vcpu_tb_exec_cb(
                tb,
                Some(ifetch_cb),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                run.encode() as *mut c_void,
            );
        }
    }
}

/// A region-of-interest or charge marker executed on `vcpu`.
///
/// # Safety
/// Called by QEMU only; `userdata` is one of the `MARK_*` kinds.
unsafe extern "C" fn marker_cb(vcpu: c_uint, userdata: *mut c_void) {
    let Some(sim) = SIM.get() else { return };
    let kind = userdata as usize;
    if kind == MARK_CHARGE_BEGIN || kind == MARK_CHARGE_END {
        let Some(cpu) = sim.cpus.get(vcpu as usize) else { return };
        let now = sim.cpu_stats(vcpu as usize);
        let mut g = cpu.charge.lock().unwrap_or_else(|e| e.into_inner());
        cpu.charging.set(kind == MARK_CHARGE_BEGIN);
        if kind == MARK_CHARGE_BEGIN {
            g.open = Some(now);
        } else if let Some(before) = g.open.take() {
            g.total.add_interval(&now.since(&before), sim.cfg.insn_ps);
        }
        return;
    }
    let snap = sim.snapshot();
    let vm = sim.vm_now(vcpu as usize);
    let mut g = sim.roi.lock().unwrap_or_else(|e| e.into_inner());
    if kind == MARK_ROI_BEGIN {
        g.begin(vcpu, snap, vm);
    } else {
        g.end(vcpu, snap, vm);
    }
}

/// The monitor's `msr vttbr_el2, xN` on `vcpu`: `userdata` is N.
///
/// # Safety
/// Called by QEMU only, registered with `QEMU_PLUGIN_CB_R_REGS`.
unsafe extern "C" fn vttbr_cb(vcpu: c_uint, userdata: *mut c_void) {
    let Some(sim) = SIM.get() else { return };
    // SAFETY: this callback was registered with register read access.
    let Some(v) = (unsafe { regs::read_x(userdata as u32) }) else { return };
    let mut k = sim.vms.lock().unwrap_or_else(|e| e.into_inner());
    k.switch(vcpu as usize, vm_time::vmid(v), |c| sim.cpu_sim_ps(c));
}

/// # Safety
/// Called by QEMU only, in the new vCPU's context.
unsafe extern "C" fn vcpu_init_cb(_id: qemu_plugin_id_t, _vcpu: c_uint) {
    // SAFETY: we are in a vCPU's context.
    unsafe { regs::init() };
}

/// # Safety
/// Called by QEMU only, with `tb` valid while the TB is translated.
unsafe extern "C" fn tb_trans_cb(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
    let Some(sim) = SIM.get() else { return };
    // SAFETY: `tb` and its instructions are valid during translation.
    unsafe {
        let n = qemu_plugin_tb_n_insns(tb);
        qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
            tb,
            qemu_plugin_op::QEMU_PLUGIN_INLINE_ADD_U64,
            sim.insns,
            n as u64,
        );
        if sim.cfg.ifetch {
            instrument_ifetch(sim, tb, n);
        }
        for i in 0..n {
            let insn = qemu_plugin_tb_get_insn(tb, i);
            qemu_plugin_register_vcpu_mem_cb(
                insn,
                Some(mem_cb),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_RW,
                std::ptr::null_mut(),
            );
            if qemu_plugin_insn_size(insn) == 4 {
                let mut w = [0u8; 4];
                qemu_plugin_insn_data(insn, w.as_mut_ptr().cast(), 4);
                if let Some(rt) = vm_time::msr_vttbr_rt(u32::from_le_bytes(w)).filter(|_| regs::available()) {
                    qemu_plugin_register_vcpu_insn_exec_cb(
                        insn,
                        Some(vttbr_cb),
                        qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                        rt as usize as *mut c_void,
                    );
                }
                let kind = match u32::from_le_bytes(w) {
                    ROI_BEGIN_INSN => MARK_ROI_BEGIN,
                    ROI_END_INSN => MARK_ROI_END,
                    CHARGE_BEGIN_INSN => MARK_CHARGE_BEGIN,
                    CHARGE_END_INSN => MARK_CHARGE_END,
                    _ => 0,
                };
                if kind != 0 {
                    qemu_plugin_register_vcpu_insn_exec_cb(
                        insn,
                        Some(marker_cb),
                        qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                        kind as *mut c_void,
                    );
                }
            }
        }
    }
}

/// # Safety
/// Called by QEMU only (a TB flush).
unsafe extern "C" fn flush_cb(_id: qemu_plugin_id_t) {
    if let Some(sim) = SIM.get() {
        sim.region.poll(0);
    }
}

/// # Safety
/// Called by QEMU only, once, at exit.
unsafe extern "C" fn exit_cb(_id: qemu_plugin_id_t, _: *mut c_void) {
    let Some(sim) = SIM.get() else { return };
    let cpus = sim.snapshot();
    let rois = sim.roi.lock().map(|g| g.finished().to_vec()).unwrap_or_default();
    let vms = sim.vms.lock().map(|k| k.all(|c| sim.cpu_sim_ps(c))).unwrap_or_default();
    let l = sim.region.layout;
    let top = report::top_pages(sim.region.counters(), sim.cfg.nodes(), l.first_pfn, sim.cfg.top, |pfn| {
        sim.node_end.iter().position(|&e| pfn << 12 < e).unwrap_or(0)
    });
    let r = Report {
        config_json: sim.config_json(),
        nodes: sim.cfg.nodes(),
        insn_ps: sim.cfg.insn_ps,
        cpus: &cpus,
        rois: &rois,
        vms: &vms,
        charged: sim.charged(),
        top: &top,
        region_base: l.region_base,
        region_size: l.region_size,
        shared_file: sim.cfg.shm.as_deref(),
        monitor_ranges: sim.monitor.ranges(),
        monitor_ifetch: &sim.monitor.fetches(cpus.iter().map(|c| c.node)),
    };
    outs(&r.summary());
    if let Some(path) = &sim.cfg.out {
        if let Err(e) = std::fs::write(path, r.json()) {
            outs(&format!("numa-sim: cannot write {path}: {e}\n"));
        }
    }
}

fn setup(argc: c_int, argv: *const *const c_char, max_vcpus: usize) -> Result<Sim, String> {
    let args: Vec<String> = (0..argc as usize)
        // SAFETY: QEMU passes argc valid NUL-terminated strings.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy().into_owned())
        .collect();
    let cfg = Config::parse(args.iter().map(|s| s.as_str()))?;
    let nodes = cfg.nodes();
    let layout = counters::CounterLayout::for_machine(cfg.ram_base, cfg.ram_end(), nodes as u32)
        .ok_or("machine too small for the counter region")?;
    let shm_off =
        layout.region_base.checked_sub(cfg.node_base(cfg.shm_node)).ok_or("counter region is not in shm_node's RAM")?;
    let region = Region::open(layout, cfg.shm.as_deref(), shm_off, cfg.line)?;
    let mut lat = [[0; MAX_NODES]; MAX_NODES];
    for (i, row) in lat.iter_mut().enumerate().take(nodes) {
        for (j, l) in row.iter_mut().enumerate().take(nodes) {
            *l = cfg.latency_ps(i, j);
        }
    }
    let cpu_nodes = cfg.cpu_nodes();
    let sets = (cfg.cache_size / cfg.line as u64 / cfg.assoc as u64) as usize;
    let cpus = (0..max_vcpus.max(cpu_nodes.len()))
        .map(|i| Cpu {
            node: cpu_nodes.get(i).copied().unwrap_or(0),
            last_vline: Cell::new(u64::MAX),
            unpolled: Cell::new(0),
            charging: Cell::new(false),
            cache: UnsafeCell::new(Cache::new(sets, cfg.assoc as usize)),
            accesses: AtomicU64::new(0),
            misses: Default::default(),
            stall_ps: AtomicU64::new(0),
            imisses: AtomicU64::new(0),
            level: Cell::new(0),
            el_insns: Default::default(),
            el_stall_ps: Default::default(),
            charge: Mutex::default(),
        })
        .collect();
    // SAFETY: a scoreboard of one u64 per vCPU, never freed.
    let insns = unsafe { qemu_plugin_u64 { score: qemu_plugin_scoreboard_new(8), offset: 0 } };
    Ok(Sim {
        line_shift: cfg.line.trailing_zeros(),
        ram_base: cfg.ram_base,
        ram_size: cfg.ram_end() - cfg.ram_base,
        node_end: (1..=nodes).map(|i| cfg.node_base(i)).collect(),
        lat,
        cpus,
        insns,
        region,
        hostmap: OnceLock::new(),
        roi: Mutex::new(roi::Regions::default()),
        vms: Mutex::new(VmClock::new(max_vcpus.max(cpu_nodes.len()))),
        monitor: MonitorCode::new(max_vcpus.max(cpu_nodes.len())),
        cfg,
    })
}

#[no_mangle]
pub static qemu_plugin_version: c_int = QEMU_PLUGIN_VERSION as c_int;

/// # Safety
/// Called by QEMU once, with a valid `info` and `argc` argument strings.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: qemu_plugin_id_t,
    info: *const qemu_info_t,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: `info` is valid during install.
    let info = unsafe { &*info };
    if !info.system_emulation {
        outs("numa-sim: needs system emulation\n");
        return -1;
    }
    // SAFETY: system_emulation is set, so the `system` member is the live one.
    let max_vcpus = unsafe { info.__bindgen_anon_1.system.max_vcpus }.max(1) as usize;
    let sim = match setup(argc, argv, max_vcpus) {
        Ok(s) => s,
        Err(e) => {
            outs(&format!("numa-sim: {e}\n"));
            return -1;
        }
    };
    if SIM.set(sim).is_err() {
        return -1;
    }
    // SAFETY: registering plain extern "C" callbacks with our plugin id.
    unsafe {
        qemu_plugin_register_vcpu_init_cb(id, Some(vcpu_init_cb));
        qemu_plugin_register_vcpu_tb_trans_cb(id, Some(tb_trans_cb));
        qemu_plugin_register_flush_cb(id, Some(flush_cb));
        qemu_plugin_register_atexit_cb(id, Some(exit_cb), std::ptr::null_mut());
    }
    0
}
