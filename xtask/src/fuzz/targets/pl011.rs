//! The PL011 UART (`vdev::pl011`): guest MMIO accesses of every width and
//! offset mixed with console input and the monitor taking output. Checked
//! against the PL011 TRM and the device's documented model: bytes written
//! to DR come out of `take_tx` in order (up to its buffer), received bytes
//! are read from DR in order with the FIFO depth LCR_H.FEN selects (the
//! rest dropped with the overrun error), FR.RXFE says whether data waits,
//! MIS = RIS & IMSC and the line is high iff MIS is not 0, the PrimeCell
//! ID reads as the TRM says, and 8-byte, misaligned or outside accesses
//! are errors.

use super::Target;
use crate::fuzz::input::Bytes;
use std::collections::VecDeque;
use vdev::mmio::{MmioDevice, MmioError};
use vdev::pl011::*;

pub const TARGET: Target = Target {
    name: "pl011",
    about: "PL011 UART registers, receive FIFO and transmit buffer",
    max_len: 1024,
    dict: &[],
    seeds,
    run,
};

fn seeds() -> Vec<Vec<u8>> {
    // Enable the FIFO, unmask RX, push two bytes, read DR twice, write DR.
    vec![vec![0, 0x2c, 0, 4, 0x10, 0, 0x38, 0, 4, 0x10, 2, b'a', 2, b'b', 1, 0, 0, 4, 1, 0, 0, 4, 0, 0, 0, 1, b'x', 3]]
}

/// What the model must agree with: the RX FIFO, its mode, what was sent.
struct Shadow {
    rx: VecDeque<u8>,
    fifo: bool,
    tx: Vec<u8>,
}

fn run(data: &[u8]) -> u64 {
    let mut b = Bytes::new(data);
    let mut uart = Pl011::new();
    let mut s = Shadow { rx: VecDeque::new(), fifo: false, tx: Vec::new() };
    let mut features = 0u64;
    let mut ops = 0;
    while !b.is_empty() && ops < 256 {
        ops += 1;
        let class = match b.below(4) {
            0 => write(&mut uart, &mut s, &mut b),
            1 => read(&mut uart, &mut s, &mut b),
            2 => {
                let byte = b.u8();
                let room = if s.fifo { 32 } else { 1 };
                if s.rx.len() < room {
                    s.rx.push_back(byte);
                }
                uart.push_rx(byte);
                20
            }
            _ => {
                let out = uart.take_tx();
                assert_eq!(out.as_slice(), &s.tx[..s.tx.len().min(TX_BUFFER)], "transmitted bytes");
                s.tx.clear();
                21
            }
        };
        features |= 1 << class;
        let mis = uart.read(UARTMIS, 4).expect("MIS") as u32;
        let ris = uart.read(UARTRIS, 4).expect("RIS") as u32;
        let imsc = uart.read(UARTIMSC, 4).expect("IMSC") as u32;
        assert_eq!(mis, ris & imsc, "MIS = RIS & IMSC");
        assert_eq!(uart.irq_level(), mis != 0, "line level vs MIS");
        assert_eq!(ris & INT_TX, INT_TX, "TXRIS is always set: the TX FIFO is always empty");
        let fr = uart.read(UARTFR, 4).expect("FR") as u32;
        assert_eq!(fr & FR_RXFE != 0, s.rx.is_empty(), "FR.RXFE with {} bytes waiting", s.rx.len());
        assert_eq!(fr & (FR_TXFE | FR_TXFF | FR_BUSY), FR_TXFE, "FR transmit bits");
    }
    features
}

fn offset_size(b: &mut Bytes) -> (u64, u8) {
    let offset = match b.below(3) {
        0 => u64::from(b.u8() & 0x3f) * 4 % 0x4c,
        1 => u64::from(b.u16()) % 0x1100,
        _ => 0xFE0 + u64::from(b.u8() % 8) * 4,
    };
    (offset, [4, 4, 2, 1, 8, 3][b.below(6)])
}

/// Accesses of 1, 2 or 4 bytes, naturally aligned, at a register.
fn check_shape(r: Result<(), MmioError>, offset: u64, size: u8) -> bool {
    let aligned = matches!(size, 1 | 2 | 4) && offset.is_multiple_of(u64::from(size));
    match r {
        Ok(()) => {
            assert!(aligned && offset < PL011_FRAME_SIZE, "access {offset:#x}/{size} accepted");
            true
        }
        Err(MmioError::BadWidth) => {
            assert!(!aligned, "aligned access {offset:#x}/{size}: BadWidth");
            false
        }
        Err(MmioError::Unmapped) => false,
    }
}

fn write(uart: &mut Pl011, s: &mut Shadow, b: &mut Bytes) -> u32 {
    let (offset, size) = offset_size(b);
    let value = u64::from(b.u32());
    if !check_shape(uart.write(offset, size, value), offset, size) {
        return 1;
    }
    let reg = offset & !3;
    let shift = (offset & 3) * 8;
    let mask = if size == 4 { u32::MAX } else { ((1u32 << (8 * u32::from(size))) - 1) << shift };
    let lane = |v: u64| (v << shift) as u32 & mask;
    match reg {
        UARTDR if shift == 0 => s.tx.push(value as u8),
        UARTLCR_H => {
            let lcr = uart.read(UARTLCR_H, 4).expect("LCR_H") as u32;
            if size == 4 {
                assert_eq!(lcr, value as u32 & 0xFF, "LCR_H reads back");
            }
            // Bytes already held stay: only later arrivals see the new depth.
            s.fifo = lcr & LCR_H_FEN != 0;
        }
        UARTIMSC if size == 4 => {
            assert_eq!(uart.read(UARTIMSC, 4).expect("IMSC") as u32, value as u32 & 0x7FF, "IMSC reads back")
        }
        UARTICR => {
            let ris = uart.read(UARTRIS, 4).expect("RIS") as u32;
            let cleared = lane(value) & (INT_RX | INT_FE | INT_PE | INT_BE | INT_OE);
            assert_eq!(ris & cleared, 0, "ICR did not clear RIS bits {cleared:#x}");
        }
        _ => {}
    }
    2 + (reg / 4) as u32 % 16
}

fn read(uart: &mut Pl011, s: &mut Shadow, b: &mut Bytes) -> u32 {
    let (offset, size) = offset_size(b);
    let r = uart.read(offset, size);
    if !check_shape(r.map(|_| ()), offset, size) {
        return 18;
    }
    let value = r.unwrap_or(0);
    match offset {
        UARTDR => {
            let want = s.rx.pop_front().unwrap_or(0);
            assert_eq!(value & 0xFF, u64::from(want), "DR: received bytes in order");
        }
        0xFE0..=0xFFF => {
            const ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];
            let want = if offset % 4 == 0 { u64::from(ID[((offset - 0xFE0) / 4) as usize]) } else { 0 };
            assert_eq!(value, want, "PrimeCell ID at {offset:#x}");
        }
        _ => {}
    }
    19
}
