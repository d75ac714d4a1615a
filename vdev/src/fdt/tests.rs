use super::*;
use ::fdt::Fdt;

const MEMORY: [(u64, u64); 2] = [(0x4000_0000, 0x2000_0000), (0x1_0000_0000, 0x1000_0000)];
const MPIDRS: [u64; 2] = [0x8000_0000, 0x8000_0101];

fn config() -> GuestFdtConfig<'static> {
    GuestFdtConfig {
        memory: &MEMORY,
        vcpu_mpidrs: &MPIDRS,
        bootargs: "console=ttyAMA0 rdinit=/init",
        initrd: Some((0x4800_0000, 0x4812_3456)),
        gicd_base: 0x0800_0000,
        gicr_base: 0x080A_0000,
        uart_base: 0x0900_0000,
        uart_spi: 1,
        virtio: &[],
    }
}

fn cells(value: &[u8]) -> Vec<u32> {
    value.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn u32s(fdt: &Fdt, path: &str, prop: &str) -> Vec<u32> {
    let node = fdt.find_node(path).unwrap_or_else(|| panic!("no node {path}"));
    cells(node.property(prop).unwrap_or_else(|| panic!("no {path}:{prop}")).value)
}

fn string_list<'a>(fdt: &'a Fdt, path: &str, prop: &str) -> Vec<&'a str> {
    let value = fdt.find_node(path).unwrap().property(prop).unwrap().value;
    value.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| core::str::from_utf8(s).unwrap()).collect()
}

#[test]
fn root_chosen_and_memory() {
    let blob = build_guest_fdt(&config()).unwrap();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.root().compatible().first(), "linux,dummy-virt");
    assert_eq!(u32s(&fdt, "/", "#address-cells"), [2]);
    assert_eq!(u32s(&fdt, "/", "#size-cells"), [2]);
    assert_eq!(u32s(&fdt, "/", "interrupt-parent"), [GIC_PHANDLE]);

    let chosen = fdt.chosen();
    assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 rdinit=/init"));
    assert_eq!(chosen.stdout().unwrap().name, "pl011@9000000");
    assert_eq!(fdt.find_node("/chosen").unwrap().property("stdout-path").unwrap().as_str(), Some("/pl011@9000000"));
    assert_eq!(u32s(&fdt, "/chosen", "linux,initrd-start"), [0, 0x4800_0000]);
    assert_eq!(u32s(&fdt, "/chosen", "linux,initrd-end"), [0, 0x4812_3456]);
    assert_eq!(fdt.aliases().unwrap().resolve("serial0"), Some("/pl011@9000000"));

    let regions: Vec<_> = fdt.memory().regions().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)).collect();
    assert_eq!(regions, [MEMORY[0]]);
    let mems: Vec<_> = fdt.all_nodes().filter(|n| n.name.starts_with("memory@")).collect();
    assert_eq!(mems.len(), 2);
    assert_eq!(mems[1].name, "memory@100000000");
    assert_eq!(cells(mems[1].property("reg").unwrap().value), [1, 0, 0, 0x1000_0000]);
    for node in fdt.all_nodes() {
        assert!(node.property("numa-node-id").is_none(), "{} has numa-node-id", node.name);
        assert!(node.name != "distance-map");
    }
}

#[test]
fn no_initrd_means_no_initrd_properties() {
    let cfg = GuestFdtConfig { initrd: None, ..config() };
    let blob = build_guest_fdt(&cfg).unwrap();
    let fdt = Fdt::new(&blob).unwrap();
    assert!(fdt.find_node("/chosen").unwrap().property("linux,initrd-start").is_none());
}

#[test]
fn cpus_and_psci() {
    let blob = build_guest_fdt(&config()).unwrap();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(u32s(&fdt, "/cpus", "#address-cells"), [1]);
    assert_eq!(u32s(&fdt, "/cpus", "#size-cells"), [0]);
    let ids: Vec<_> = fdt.cpus().map(|c| c.ids().first()).collect();
    assert_eq!(ids, [0x0, 0x101]);
    for path in ["/cpus/cpu@0", "/cpus/cpu@101"] {
        let node = fdt.find_node(path).unwrap();
        assert_eq!(node.property("device_type").unwrap().as_str(), Some("cpu"));
        assert_eq!(node.compatible().unwrap().first(), "arm,arm-v8");
        assert_eq!(node.property("enable-method").unwrap().as_str(), Some("psci"));
    }
    assert_eq!(string_list(&fdt, "/psci", "compatible"), ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
    assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
    assert_eq!(blob[28..32], [0, 0, 0, 0], "boot_cpuid_phys");
}

#[test]
fn cpus_with_aff3_use_two_cells() {
    let mpidrs = [0x1_0000_0000, 0x1_0000_0001];
    let cfg = GuestFdtConfig { vcpu_mpidrs: &mpidrs, ..config() };
    let blob = build_guest_fdt(&cfg).unwrap();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(u32s(&fdt, "/cpus", "#address-cells"), [2]);
    assert_eq!(u32s(&fdt, "/cpus/cpu@100000001", "reg"), [1, 1]);
}

#[test]
fn gic_timer_clock_and_uart() {
    let blob = build_guest_fdt(&config()).unwrap();
    let fdt = Fdt::new(&blob).unwrap();

    let gic = fdt.find_node("/intc@8000000").unwrap();
    assert_eq!(gic.compatible().unwrap().first(), "arm,gic-v3");
    assert!(gic.property("interrupt-controller").is_some());
    assert_eq!(gic.property("ranges").unwrap().value.len(), 0);
    assert_eq!(u32s(&fdt, "/intc@8000000", "#interrupt-cells"), [3]);
    assert_eq!(u32s(&fdt, "/intc@8000000", "phandle"), [GIC_PHANDLE]);
    assert_eq!(u32s(&fdt, "/intc@8000000", "reg"), [0, 0x0800_0000, 0, 0x10000, 0, 0x080A_0000, 0, 0x40000]);
    assert_eq!(u32s(&fdt, "/intc@8000000", "interrupts"), [1, 9, 4]);
    assert_eq!(fdt.find_phandle(GIC_PHANDLE).unwrap().name, "intc@8000000");

    let timer = fdt.find_node("/timer").unwrap();
    assert_eq!(timer.compatible().unwrap().first(), "arm,armv8-timer");
    assert!(timer.property("always-on").is_some());
    assert_eq!(u32s(&fdt, "/timer", "interrupts"), [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);

    let clk = fdt.find_phandle(APB_PCLK_PHANDLE).unwrap();
    assert_eq!(clk.name, "apb-pclk");
    assert_eq!(clk.compatible().unwrap().first(), "fixed-clock");
    assert_eq!(u32s(&fdt, "/apb-pclk", "clock-frequency"), [24_000_000]);
    assert_eq!(u32s(&fdt, "/apb-pclk", "#clock-cells"), [0]);

    let uart = fdt.find_node("/pl011@9000000").unwrap();
    assert_eq!(string_list(&fdt, "/pl011@9000000", "compatible"), ["arm,pl011", "arm,primecell"]);
    let reg: Vec<_> = uart.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
    assert_eq!(reg, [(0x0900_0000, Some(0x1000))]);
    assert_eq!(u32s(&fdt, "/pl011@9000000", "interrupts"), [0, 1, 4]);
    // interrupt-parent is inherited from the root.
    assert!(uart.property("interrupt-parent").is_none());
    assert_eq!(fdt.find_phandle(u32s(&fdt, "/", "interrupt-parent")[0]).unwrap().name, "intc@8000000");
    assert_eq!(u32s(&fdt, "/pl011@9000000", "clocks"), [APB_PCLK_PHANDLE, APB_PCLK_PHANDLE]);
    assert_eq!(string_list(&fdt, "/pl011@9000000", "clock-names"), ["uartclk", "apb_pclk"]);
}

#[test]
fn virtio_mmio_nodes() {
    let devs = [VirtioMmioNode { base: 0x0a00_0000, spi: 16 }, VirtioMmioNode { base: 0x0a00_0200, spi: 17 }];
    let cfg = GuestFdtConfig { virtio: &devs, ..config() };
    let blob = build_guest_fdt(&cfg).unwrap();
    let fdt = Fdt::new(&blob).unwrap();
    let names: Vec<_> = fdt.all_nodes().filter(|n| n.name.starts_with("virtio_mmio@")).map(|n| n.name).collect();
    assert_eq!(names, ["virtio_mmio@a000000", "virtio_mmio@a000200"]);
    for (dev, path) in devs.iter().zip(["/virtio_mmio@a000000", "/virtio_mmio@a000200"]) {
        let node = fdt.find_node(path).unwrap();
        assert_eq!(node.compatible().unwrap().first(), "virtio,mmio");
        let reg: Vec<_> = node.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(dev.base, Some(0x200))]);
        assert_eq!(u32s(&fdt, path, "interrupts"), [0, dev.spi, 1]);
        assert_eq!(node.property("dma-coherent").unwrap().value.len(), 0);
        assert!(node.property("interrupt-parent").is_none(), "inherited from the root");
    }
    // None by default.
    let blob = build_guest_fdt(&config()).unwrap();
    assert!(Fdt::new(&blob).unwrap().all_nodes().all(|n| !n.name.starts_with("virtio")));
}

#[test]
fn bad_strings_are_errors() {
    let cfg = GuestFdtConfig { bootargs: "a\0b", ..config() };
    assert_eq!(build_guest_fdt(&cfg), Err(Error::InvalidString));
}

/// Writes the blob where `dtc` can decompile it (for eyeballing against
/// QEMU's `-machine dumpdtb`): `cargo test -p vdev -- --ignored dump`.
#[test]
#[ignore]
fn dump_dtb() {
    extern crate std;
    let blob = build_guest_fdt(&config()).unwrap();
    std::fs::write(std::env::temp_dir().join("vdev-guest.dtb"), blob).unwrap();
}
