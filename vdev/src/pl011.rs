//! ARM PrimeCell PL011 UART, as Linux's `amba-pl011` driver uses it.
//!
//! Transmission is infinitely fast: the TX FIFO is always empty (FR.TXFE=1,
//! FR.TXFF=0, FR.BUSY=0) and the transmit interrupt (TXRIS) is always
//! asserted, since the FIFO is always at or below its trigger level. Bytes
//! written to DR are collected for the monitor, which takes them with
//! [`Pl011::take_tx`].
//!
//! Receive: the monitor pushes console input with [`Pl011::push_rx`] into a
//! 32-entry FIFO (1 entry when LCR_H.FEN=0); a byte arriving at a full FIFO
//! is dropped and sets the overrun error (RSR.OE, RIS.OERIS). RXRIS is set
//! when a byte arrives and cleared by ICR or by reading DR until the FIFO is
//! empty. RTRIS (receive timeout) is asserted while the FIFO holds data, as
//! the real timeout would fire 32 bit periods after the last arrival.
//!
//! Not modelled: baud rates (stored only), loopback (CR.LBE), DMA (DMACR is
//! stored only), modem status lines (read as 0), break/framing/parity errors.
//!
//! Accesses of 1, 2 or 4 bytes, naturally aligned, are accepted on every
//! register (Linux uses 16-bit accesses for ARM's PL011, earlycon 8 or 32);
//! 8-byte accesses return [`MmioError::BadWidth`]; offsets that are not a
//! register return [`MmioError::Unmapped`].

mod rx_fifo;

use crate::mmio::{lane32, MmioDevice, MmioError};
use arrayvec::ArrayVec;
use rx_fifo::{RxFifo, FIFO_DEPTH};

/// Size of the PL011 register frame.
pub const PL011_FRAME_SIZE: u64 = 0x1000;

/// How many transmitted bytes [`Pl011`] buffers between two
/// [`Pl011::take_tx`] calls; later bytes are dropped until the next call.
pub const TX_BUFFER: usize = 64;

// Register offsets (PL011 TRM, table 3-1).
pub const UARTDR: u64 = 0x000;
pub const UARTRSR_ECR: u64 = 0x004;
pub const UARTFR: u64 = 0x018;
pub const UARTILPR: u64 = 0x020;
pub const UARTIBRD: u64 = 0x024;
pub const UARTFBRD: u64 = 0x028;
pub const UARTLCR_H: u64 = 0x02C;
pub const UARTCR: u64 = 0x030;
pub const UARTIFLS: u64 = 0x034;
pub const UARTIMSC: u64 = 0x038;
pub const UARTRIS: u64 = 0x03C;
pub const UARTMIS: u64 = 0x040;
pub const UARTICR: u64 = 0x044;
pub const UARTDMACR: u64 = 0x048;
/// UARTPeriphID0..3 at 0xFE0..0xFEC, UARTPCellID0..3 at 0xFF0..0xFFC.
pub const UARTPERIPHID0: u64 = 0xFE0;

/// PeriphID0..3 then PCellID0..3: part 0x011, designer ARM (0x41),
/// revision r1p5, PrimeCell cell ID 0xB105F00D.
const PRIMECELL_ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

// UARTFR bits.
pub const FR_BUSY: u32 = 1 << 3;
pub const FR_RXFE: u32 = 1 << 4;
pub const FR_TXFF: u32 = 1 << 5;
pub const FR_RXFF: u32 = 1 << 6;
pub const FR_TXFE: u32 = 1 << 7;

// UARTRSR bits.
pub const RSR_OE: u32 = 1 << 3;

// UARTLCR_H bits.
pub const LCR_H_FEN: u32 = 1 << 4;

// Interrupt bits, shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR.
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
pub const INT_FE: u32 = 1 << 7;
pub const INT_PE: u32 = 1 << 8;
pub const INT_BE: u32 = 1 << 9;
pub const INT_OE: u32 = 1 << 10;
/// All implemented interrupt bits (modem status bits 0..3 included).
const INT_ALL: u32 = 0x7FF;
/// Interrupt bits that latch until cleared through UARTICR.
const INT_LATCHED: u32 = INT_RX | INT_FE | INT_PE | INT_BE | INT_OE;

/// Reset values (PL011 TRM): CR has TXE and RXE set, IFLS selects 1/2 full.
const CR_RESET: u32 = 0x300;
const IFLS_RESET: u32 = 0x12;

/// A PL011 UART's register state.
#[derive(Debug, Clone)]
pub struct Pl011 {
    rx: RxFifo,
    tx: ArrayVec<u8, TX_BUFFER>,
    /// Latched interrupt status bits (subset of [`INT_LATCHED`]).
    ris_latched: u32,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART in its reset state.
    pub fn new() -> Self {
        Self {
            rx: RxFifo::new(),
            tx: ArrayVec::new(),
            ris_latched: 0,
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Input from the console for this guest. Goes into the RX FIFO (32
    /// deep in FIFO mode, 1 otherwise); on overflow the byte is dropped and
    /// the overrun error is raised (RSR.OE and RIS.OERIS).
    pub fn push_rx(&mut self, byte: u8) {
        if self.rx.push(byte, self.rx_capacity()) {
            self.ris_latched |= INT_RX;
        } else {
            self.rsr |= RSR_OE;
            self.ris_latched |= INT_OE;
        }
    }

    /// Bytes the guest wrote to DR since the last call, oldest first (the
    /// monitor prints them). At most [`TX_BUFFER`] bytes are kept between
    /// calls; the monitor should call this after every guest write to the
    /// UART (each DR write is one trap, so nothing is then ever dropped).
    pub fn take_tx(&mut self) -> ArrayVec<u8, TX_BUFFER> {
        core::mem::take(&mut self.tx)
    }

    /// The level of the UART's interrupt line: (RIS & IMSC) != 0.
    pub fn irq_level(&self) -> bool {
        self.mis() != 0
    }

    /// Whether the guest could take more input now (the RX FIFO has room).
    pub fn rx_ready(&self) -> bool {
        self.rx.len() < self.rx_capacity()
    }

    fn rx_capacity(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    fn ris(&self) -> u32 {
        let mut ris = self.ris_latched | INT_TX;
        if !self.rx.is_empty() {
            ris |= INT_RT;
        }
        ris
    }

    fn mis(&self) -> u32 {
        self.ris() & self.imsc
    }

    fn fr(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx.is_empty() {
            fr |= FR_RXFE;
        }
        if self.rx.len() >= self.rx_capacity() {
            fr |= FR_RXFF;
        }
        fr
    }

    fn read_dr(&mut self) -> u32 {
        let byte = self.rx.pop().unwrap_or(0);
        if self.rx.is_empty() {
            self.ris_latched &= !INT_RX;
        }
        u32::from(byte)
    }

    /// Reads the 32-bit register at `reg`; `pop` says whether a DR read
    /// consumes a byte (only when the access covers the data byte).
    fn read_reg(&mut self, reg: u64, pop: bool) -> Result<u32, MmioError> {
        Ok(match reg {
            UARTDR => {
                if pop {
                    self.read_dr()
                } else {
                    0
                }
            }
            UARTRSR_ECR => self.rsr,
            UARTFR => self.fr(),
            UARTILPR => self.ilpr,
            UARTIBRD => self.ibrd,
            UARTFBRD => self.fbrd,
            UARTLCR_H => self.lcr_h,
            UARTCR => self.cr,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.ris(),
            UARTMIS => self.mis(),
            UARTICR => 0,
            UARTDMACR => self.dmacr,
            0xFE0..=0xFFC => PRIMECELL_ID[((reg - UARTPERIPHID0) / 4) as usize].into(),
            _ => return Err(MmioError::Unmapped),
        })
    }

    /// Writes `value` (already shifted into its lane) under `mask`.
    fn write_reg(&mut self, reg: u64, mask: u32, value: u32) -> Result<(), MmioError> {
        let merge = |old: u32, width_mask: u32| ((old & !mask) | (value & mask)) & width_mask;
        match reg {
            UARTDR => {
                if mask & 0xFF != 0 {
                    // Full buffer: dropped, see `take_tx`.
                    let _ = self.tx.try_push(value as u8);
                }
            }
            UARTRSR_ECR => self.rsr = 0,
            UARTFR | UARTRIS | UARTMIS | 0xFE0..=0xFFC => {
                log::debug!("pl011: write to read-only register {reg:#x} ignored");
            }
            UARTILPR => self.ilpr = merge(self.ilpr, 0xFF),
            UARTIBRD => self.ibrd = merge(self.ibrd, 0xFFFF),
            UARTFBRD => self.fbrd = merge(self.fbrd, 0x3F),
            UARTLCR_H => self.lcr_h = merge(self.lcr_h, 0xFF),
            UARTCR => self.cr = merge(self.cr, 0xFFFF),
            UARTIFLS => self.ifls = merge(self.ifls, 0x3F),
            UARTIMSC => self.imsc = merge(self.imsc, INT_ALL),
            UARTICR => self.ris_latched &= !(value & mask & INT_LATCHED),
            UARTDMACR => self.dmacr = merge(self.dmacr, 0x7),
            _ => return Err(MmioError::Unmapped),
        }
        Ok(())
    }
}

impl MmioDevice for Pl011 {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if offset >= PL011_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        let lane = lane32(offset, size)?;
        let value = self.read_reg(lane.reg, lane.mask & 0xFF != 0)?;
        Ok(u64::from((value & lane.mask) >> lane.shift))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        if offset >= PL011_FRAME_SIZE {
            return Err(MmioError::Unmapped);
        }
        let lane = lane32(offset, size)?;
        self.write_reg(lane.reg, lane.mask, (value as u32) << lane.shift)
    }
}

#[cfg(test)]
mod tests;
