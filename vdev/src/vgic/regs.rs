//! Register offsets and fields, named as in the GICv3 architecture
//! specification (ARM IHI 0069).

// Distributor (GICD), offsets from the GICD frame base.
pub const GICD_CTLR: u64 = 0x0000;
pub const GICD_TYPER: u64 = 0x0004;
pub const GICD_IIDR: u64 = 0x0008;
pub const GICD_TYPER2: u64 = 0x000C;
pub const GICD_IGROUPR: u64 = 0x0080;
pub const GICD_ISENABLER: u64 = 0x0100;
pub const GICD_ICENABLER: u64 = 0x0180;
pub const GICD_ISPENDR: u64 = 0x0200;
pub const GICD_ICPENDR: u64 = 0x0280;
pub const GICD_ISACTIVER: u64 = 0x0300;
pub const GICD_ICACTIVER: u64 = 0x0380;
pub const GICD_IPRIORITYR: u64 = 0x0400;
pub const GICD_ITARGETSR: u64 = 0x0800;
pub const GICD_ICFGR: u64 = 0x0C00;
pub const GICD_IGRPMODR: u64 = 0x0D00;
pub const GICD_NSACR: u64 = 0x0E00;
pub const GICD_SGIR: u64 = 0x0F00;
pub const GICD_IROUTER: u64 = 0x6000;
pub const GICD_PIDR2: u64 = 0xFFE8;
/// Size of the distributor frame.
pub const GICD_FRAME_SIZE: u64 = 0x10000;

// GICD_CTLR fields (single Security state view, GICD_CTLR.DS == 1).
pub const GICD_CTLR_ENABLE_GRP0: u32 = 1 << 0;
pub const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
pub const GICD_CTLR_ARE: u32 = 1 << 4;
pub const GICD_CTLR_DS: u32 = 1 << 6;
pub const GICD_CTLR_RWP: u32 = 1 << 31;

// GICD_TYPER fields.
pub const GICD_TYPER_ITLINESNUMBER_MASK: u32 = 0x1F;
pub const GICD_TYPER_CPUNUMBER_SHIFT: u32 = 5;
pub const GICD_TYPER_LPIS: u32 = 1 << 17;
pub const GICD_TYPER_IDBITS_SHIFT: u32 = 19;
pub const GICD_TYPER_A3V: u32 = 1 << 24;

// Redistributor RD_base frame, offsets from the frame base.
pub const GICR_CTLR: u64 = 0x0000;
pub const GICR_IIDR: u64 = 0x0004;
pub const GICR_TYPER: u64 = 0x0008;
pub const GICR_WAKER: u64 = 0x0014;
pub const GICR_PROPBASER: u64 = 0x0070;
pub const GICR_PENDBASER: u64 = 0x0078;
pub const GICR_PIDR2: u64 = 0xFFE8;
/// Offset of the SGI_base frame from RD_base.
pub const GICR_SGI_BASE: u64 = 0x10000;

// Redistributor SGI_base frame, offsets from SGI_base.
pub const GICR_IGROUPR0: u64 = 0x0080;
pub const GICR_ISENABLER0: u64 = 0x0100;
pub const GICR_ICENABLER0: u64 = 0x0180;
pub const GICR_ISPENDR0: u64 = 0x0200;
pub const GICR_ICPENDR0: u64 = 0x0280;
pub const GICR_ISACTIVER0: u64 = 0x0300;
pub const GICR_ICACTIVER0: u64 = 0x0380;
pub const GICR_IPRIORITYR0: u64 = 0x0400;
pub const GICR_ICFGR0: u64 = 0x0C00;
pub const GICR_ICFGR1: u64 = 0x0C04;
pub const GICR_IGRPMODR0: u64 = 0x0D00;
pub const GICR_NSACR: u64 = 0x0E00;

// GICR_TYPER fields.
pub const GICR_TYPER_PLPIS: u64 = 1 << 0;
pub const GICR_TYPER_LAST: u64 = 1 << 4;
pub const GICR_TYPER_PROCESSOR_NUMBER_SHIFT: u32 = 8;
pub const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;

// GICR_WAKER fields.
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// GICD_IIDR and GICR_IIDR: Implementer 0x43B (JEP106 code of Arm), a
/// ProductID (0x44) that matches no hardware erratum in Linux's quirk
/// tables, Revision 0.
pub const GIC_IIDR: u32 = (0x44 << 24) | 0x43B;
/// GICD_PIDR2 and GICR_PIDR2: ArchRev 3 (GICv3) in bits[7:4], JEP106
/// identity bits 0xB in bits[3:0].
pub const GIC_PIDR2: u32 = 0x3B;
