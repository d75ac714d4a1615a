//! Stage-2 descriptors (Arm ARM D8.3, "VMSAv8-64 translation table
//! descriptor formats"; stage-2 attributes D8.5.5).
//!
//! A descriptor is a `u64`. Bit 0 says valid; for a valid one at levels
//! 1-2 bit 1 says table (else block), at level 3 bit 1 must be set (page).
//! Stage-2 leaf attributes: MemAttr[5:2], S2AP[7:6] (bit 6 read, bit 7
//! write), SH[9:8], AF[10], XN[54:53]; bits [58:55] are free for software.
//! An invalid descriptor's other bits are ignored by the hardware, which
//! is what sampling uses: it clears bit 0 and sets [`SW_SAMPLED`], keeping
//! the output address and permissions to restore later.

/// Valid.
pub const VALID: u64 = 1 << 0;
/// Table (levels 1-2) or page (level 3).
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// Output address bits [47:12].
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// MemAttr = 0b1111: Normal, outer and inner write-back cacheable.
pub const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// S2AP[0]: reads allowed.
pub const S2AP_READ: u64 = 1 << 6;
/// S2AP[1]: writes allowed.
pub const S2AP_WRITE: u64 = 1 << 7;
/// Inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// Access flag: set, so no access-flag faults.
pub const AF: u64 = 1 << 10;
/// XN[1:0] = 0b10: not executable at EL1 or EL0.
pub const XN_NONE: u64 = 0b10 << 53;
/// Mask of XN[1:0].
pub const XN_MASK: u64 = 0b11 << 53;
/// Software bit: the page was unmapped to sample who touches it; the rest
/// of the descriptor is the mapping to restore.
pub const SW_SAMPLED: u64 = 1 << 55;
/// Software bit: the page is shared read-only (a replica or a shared
/// block-cache frame): a write fault on it is a collapse or a
/// copy-on-write break, not an error.
pub const SW_SHARED: u64 = 1 << 56;
/// Mask of the software bits.
pub const SW_MASK: u64 = 0b1111 << 55;

/// Access permissions of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// Loads.
    pub read: bool,
    /// Stores.
    pub write: bool,
    /// Instruction fetches (EL1 and EL0).
    pub exec: bool,
}

impl Perm {
    /// Read, write and execute: ordinary guest RAM.
    pub const RWX: Perm = Perm { read: true, write: true, exec: true };
    /// Read and execute: shared pages (writes fault).
    pub const RX: Perm = Perm { read: true, write: false, exec: true };

    /// Does this permit an access?
    pub fn allows(self, write: bool, fetch: bool) -> bool {
        if fetch {
            self.exec
        } else if write {
            self.write
        } else {
            self.read
        }
    }
}

/// A stage-2 descriptor value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pte(pub u64);

impl Pte {
    /// The empty (invalid, unused) descriptor.
    pub const EMPTY: Pte = Pte(0);

    /// A level-3 page descriptor mapping normal memory at `pa`.
    pub fn page(pa: u64, perm: Perm) -> Pte {
        let mut bits = (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE | MEMATTR_NORMAL_WB | SH_INNER | AF;
        if perm.read {
            bits |= S2AP_READ;
        }
        if perm.write {
            bits |= S2AP_WRITE;
        }
        if !perm.exec {
            bits |= XN_NONE;
        }
        Pte(bits)
    }

    /// A table descriptor pointing at the next-level table `pa`.
    pub fn table(pa: u64) -> Pte {
        Pte((pa & ADDR_MASK) | VALID | TABLE_OR_PAGE)
    }

    /// Valid (hardware will use it).
    pub fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// A valid table descriptor, at a level above 3.
    pub fn is_table(self, level: u32) -> bool {
        level < crate::LEAF_LEVEL && self.0 & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE
    }

    /// The output address (frame or next table), whatever the valid bit.
    pub fn addr(self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// The frame a valid page maps.
    pub fn frame(self) -> Option<u64> {
        self.is_valid().then_some(self.addr())
    }

    /// The permissions of a valid leaf.
    pub fn perm(self) -> Perm {
        Perm {
            read: self.0 & S2AP_READ != 0,
            write: self.0 & S2AP_WRITE != 0,
            exec: self.0 & XN_MASK == 0,
        }
    }

    /// The same mapping with other permissions (software bits kept).
    pub fn with_perm(self, perm: Perm) -> Pte {
        let kept = self.0 & !(S2AP_READ | S2AP_WRITE | XN_MASK);
        let perm_bits = Pte::page(0, perm).0 & (S2AP_READ | S2AP_WRITE | XN_MASK);
        Pte(kept | perm_bits)
    }

    /// The same descriptor (permissions, attributes, software bits) for
    /// another frame: a moved page, a replica of a master.
    pub fn with_addr(self, pa: u64) -> Pte {
        Pte((self.0 & !ADDR_MASK) | (pa & ADDR_MASK))
    }

    /// Software bits.
    pub fn sw(self) -> u64 {
        self.0 & SW_MASK
    }

    /// The same descriptor with software bits `sw` (within [`SW_MASK`]).
    pub fn with_sw(self, sw: u64) -> Pte {
        Pte((self.0 & !SW_MASK) | (sw & SW_MASK))
    }

    /// The page unmapped for sampling: invalid, remembering the mapping.
    pub fn sampled(self) -> Pte {
        Pte((self.0 & !VALID) | SW_SAMPLED)
    }

    /// Is this a page unmapped for sampling?
    pub fn is_sampled(self) -> bool {
        !self.is_valid() && self.0 & SW_SAMPLED != 0
    }

    /// The mapping a sampled page had.
    pub fn restored(self) -> Pte {
        Pte((self.0 | VALID) & !SW_SAMPLED)
    }
}
