use super::*;
use proptest::prelude::*;

fn r(u: &mut Pl011, off: u64) -> u32 {
    u.read(off, 4).unwrap() as u32
}

fn w(u: &mut Pl011, off: u64, v: u32) {
    u.write(off, 4, v.into()).unwrap()
}

/// What Linux's AMBA bus does to find the driver: the low byte of each of
/// the eight ID words, assembled little-endian.
#[test]
fn amba_bus_reads_primecell_ids() {
    let mut u = Pl011::new();
    let (mut pid, mut cid) = (0u32, 0u32);
    for i in 0..4 {
        pid |= (r(&mut u, 0xFE0 + i * 4) & 0xFF) << (i * 8);
        cid |= (r(&mut u, 0xFF0 + i * 4) & 0xFF) << (i * 8);
    }
    assert_eq!(pid & 0x000F_FFFF, 0x0004_1011, "arm,pl011 (AMBA id 0x00041011)");
    assert_eq!(cid, 0xB105_F00D);
}

#[test]
fn reset_state() {
    let mut u = Pl011::new();
    assert_eq!(r(&mut u, UARTFR), FR_RXFE | FR_TXFE);
    assert_eq!(r(&mut u, UARTCR), 0x300);
    assert_eq!(r(&mut u, UARTIFLS), 0x12);
    assert_eq!(r(&mut u, UARTIMSC), 0);
    assert_eq!(r(&mut u, UARTRIS), INT_TX);
    assert_eq!(r(&mut u, UARTMIS), 0);
    assert!(!u.irq_level());
}

#[test]
fn transmit_collects_bytes() {
    let mut u = Pl011::new();
    for &b in b"hi\n" {
        w(&mut u, UARTDR, u32::from(b) | 0xF00);
    }
    u.write(UARTDR, 1, u64::from(b'!')).unwrap();
    u.write(UARTDR, 2, u64::from(b'?')).unwrap();
    assert_eq!(&u.take_tx()[..], b"hi\n!?");
    assert!(u.take_tx().is_empty());
    assert_eq!(r(&mut u, UARTFR) & (FR_TXFF | FR_BUSY), 0);
}

#[test]
fn transmit_buffer_is_bounded() {
    let mut u = Pl011::new();
    for i in 0..100u32 {
        w(&mut u, UARTDR, i);
    }
    let got = u.take_tx();
    assert_eq!(got.len(), TX_BUFFER);
    assert_eq!(got[0], 0);
    assert_eq!(got[TX_BUFFER - 1], (TX_BUFFER - 1) as u8);
}

#[test]
fn tx_interrupt_is_always_asserted() {
    let mut u = Pl011::new();
    w(&mut u, UARTIMSC, INT_TX);
    assert!(u.irq_level());
    assert_eq!(r(&mut u, UARTMIS), INT_TX);
    w(&mut u, UARTICR, 0x7FF);
    assert!(u.irq_level(), "FIFO still below trigger level");
    w(&mut u, UARTIMSC, 0);
    assert!(!u.irq_level());
}

#[test]
fn receive_sets_rx_and_timeout_until_drained() {
    let mut u = Pl011::new();
    w(&mut u, UARTLCR_H, LCR_H_FEN | 0x60);
    w(&mut u, UARTIMSC, INT_RX | INT_RT);
    assert!(!u.irq_level());
    u.push_rx(b'a');
    u.push_rx(b'b');
    assert!(u.irq_level());
    assert_eq!(r(&mut u, UARTMIS), INT_RX | INT_RT);
    assert_eq!(r(&mut u, UARTFR) & FR_RXFE, 0);
    assert_eq!(r(&mut u, UARTDR), u32::from(b'a'));
    assert!(u.irq_level());
    assert_eq!(r(&mut u, UARTDR), u32::from(b'b'));
    assert!(!u.irq_level());
    assert_ne!(r(&mut u, UARTFR) & FR_RXFE, 0);
    assert_eq!(r(&mut u, UARTRIS), INT_TX);
    // An empty FIFO reads as 0 and changes nothing.
    assert_eq!(r(&mut u, UARTDR), 0);
}

#[test]
fn icr_clears_rx_but_timeout_stays_while_data_remains() {
    let mut u = Pl011::new();
    w(&mut u, UARTLCR_H, LCR_H_FEN);
    u.push_rx(b'x');
    w(&mut u, UARTICR, INT_RX | INT_RT);
    assert_eq!(r(&mut u, UARTRIS) & (INT_RX | INT_RT), INT_RT);
    w(&mut u, UARTIMSC, INT_RX);
    assert!(!u.irq_level());
    w(&mut u, UARTIMSC, INT_RT);
    assert!(u.irq_level());
}

#[test]
fn character_mode_holds_one_byte_and_overruns() {
    let mut u = Pl011::new();
    assert!(u.rx_ready());
    u.push_rx(1);
    assert!(!u.rx_ready());
    assert_ne!(r(&mut u, UARTFR) & FR_RXFF, 0);
    u.push_rx(2);
    assert_eq!(r(&mut u, UARTRSR_ECR), RSR_OE);
    assert_ne!(r(&mut u, UARTRIS) & INT_OE, 0);
    assert_eq!(r(&mut u, UARTDR), 1, "error bits read as 0");
    assert_eq!(r(&mut u, UARTDR), 0);
    w(&mut u, UARTRSR_ECR, 0);
    assert_eq!(r(&mut u, UARTRSR_ECR), 0);
    w(&mut u, UARTICR, INT_OE);
    assert_eq!(r(&mut u, UARTRIS) & INT_OE, 0);
}

#[test]
fn fifo_mode_holds_32_bytes() {
    let mut u = Pl011::new();
    w(&mut u, UARTLCR_H, LCR_H_FEN);
    for i in 0..33u8 {
        u.push_rx(i);
    }
    assert_ne!(r(&mut u, UARTFR) & FR_RXFF, 0);
    assert_eq!(r(&mut u, UARTRSR_ECR), RSR_OE);
    for i in 0..32u32 {
        assert_eq!(r(&mut u, UARTDR), i);
    }
    assert_ne!(r(&mut u, UARTFR) & FR_RXFE, 0);
}

#[test]
fn narrow_accesses() {
    let mut u = Pl011::new();
    // Linux uses 16-bit accesses for ARM's PL011.
    u.write(UARTIBRD, 2, 13).unwrap();
    u.write(UARTFBRD, 2, 0xFF).unwrap();
    assert_eq!(u.read(UARTIBRD, 2), Ok(13));
    assert_eq!(u.read(UARTFBRD, 2), Ok(0x3F));
    // Byte lane 1 of CR.
    u.write(UARTCR + 1, 1, 0x0B).unwrap();
    assert_eq!(r(&mut u, UARTCR), 0x0B00);
    assert_eq!(u.read(UARTFR, 1), Ok(u64::from(FR_RXFE | FR_TXFE)));
    assert_eq!(u.read(0xFE8, 1), Ok(0x14));
    // Reading the upper half of DR does not consume data.
    u.push_rx(7);
    assert_eq!(u.read(UARTDR + 2, 2), Ok(0));
    assert_eq!(u.read(UARTDR, 1), Ok(7));
}

#[test]
fn bad_accesses_are_errors() {
    let mut u = Pl011::new();
    assert_eq!(u.read(UARTDR, 8), Err(MmioError::BadWidth));
    assert_eq!(u.read(UARTFR + 1, 2), Err(MmioError::BadWidth));
    assert_eq!(u.read(UARTFR, 3), Err(MmioError::BadWidth));
    assert_eq!(u.read(0x008, 4), Err(MmioError::Unmapped));
    assert_eq!(u.read(0x04C, 4), Err(MmioError::Unmapped));
    assert_eq!(u.read(0x1000, 4), Err(MmioError::Unmapped));
    assert_eq!(u.write(0x800, 4, 0), Err(MmioError::Unmapped));
    assert_eq!(u.write(u64::MAX, 1, 0), Err(MmioError::Unmapped));
    // Read-only registers ignore writes.
    w(&mut u, UARTFR, 0xFFFF);
    assert_eq!(r(&mut u, UARTFR), FR_RXFE | FR_TXFE);
}

/// The register sequence of amba-pl011's probe, startup and first output,
/// with console input arriving in between.
#[test]
fn linux_driver_sequence() {
    let mut u = Pl011::new();
    // pl011_register_port: mask and clear everything.
    w(&mut u, UARTIMSC, 0);
    w(&mut u, UARTICR, 0xFFFF);
    // pl011_hwinit: clear errors and RX interrupts, save IMSC.
    w(&mut u, UARTICR, INT_OE | INT_BE | INT_PE | INT_FE | INT_RT | INT_RX);
    let im = r(&mut u, UARTIMSC);
    assert_eq!(im, 0);
    // pl011_startup: IFLS, CR, then set_termios writes baud and LCR_H.
    w(&mut u, UARTIFLS, 0x12);
    w(&mut u, UARTCR, 0x301);
    w(&mut u, UARTIBRD, 13);
    w(&mut u, UARTFBRD, 1);
    w(&mut u, UARTLCR_H, 0x70);
    u.push_rx(b'q');
    // pl011_enable_interrupts: clear RX, drain, unmask RX and RT.
    w(&mut u, UARTICR, INT_RT | INT_RX);
    while r(&mut u, UARTFR) & FR_RXFE == 0 {
        r(&mut u, UARTDR);
    }
    w(&mut u, UARTIMSC, INT_RT | INT_RX);
    assert!(!u.irq_level());
    // start_tx: write until TXFF (never), no TX interrupt needed.
    for &b in b"login: " {
        assert_eq!(r(&mut u, UARTFR) & FR_TXFF, 0);
        u.write(UARTDR, 2, b.into()).unwrap();
    }
    assert_eq!(&u.take_tx()[..], b"login: ");
    // Input: the interrupt handler reads MIS/RIS and drains.
    u.push_rx(b'r');
    assert!(u.irq_level());
    let status = r(&mut u, UARTRIS) & r(&mut u, UARTIMSC);
    assert_eq!(status, INT_RX | INT_RT);
    w(&mut u, UARTICR, status & !(INT_TX | INT_RT | INT_RX));
    let mut got = alloc::vec::Vec::new();
    while r(&mut u, UARTFR) & FR_RXFE == 0 {
        got.push(r(&mut u, UARTDR) as u8);
    }
    assert_eq!(got, b"r");
    assert!(!u.irq_level());
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, u8),
    Write(u64, u8, u64),
    Push(u8),
    Take,
}

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![0u64..0x50, 0xFC0u64..0x1008, any::<u64>()];
    let size = prop_oneof![Just(1u8), Just(2), Just(4), Just(8), any::<u8>()];
    prop_oneof![
        (offset.clone(), size.clone()).prop_map(|(o, s)| Op::Read(o, s)),
        (offset, size, any::<u64>()).prop_map(|(o, s, v)| Op::Write(o, s, v)),
        any::<u8>().prop_map(Op::Push),
        Just(Op::Take),
    ]
}

proptest! {
    #[test]
    fn random_accesses_never_panic(ops in proptest::collection::vec(op(), 0..200)) {
        let mut u = Pl011::new();
        for op in ops {
            match op {
                Op::Read(o, s) => {
                    if let Ok(v) = u.read(o, s) {
                        prop_assert!(s <= 4 && v < (1u64 << (u32::from(s) * 8)));
                    }
                }
                Op::Write(o, s, v) => {
                    let _ = u.write(o, s, v);
                }
                Op::Push(b) => u.push_rx(b),
                Op::Take => {
                    let _ = u.take_tx();
                }
            }
            let fr = u.read(UARTFR, 4).unwrap() as u32;
            prop_assert_eq!(fr & (FR_TXFF | FR_BUSY), 0);
            prop_assert_ne!(fr & FR_TXFE, 0);
            let mis = u.read(UARTMIS, 4).unwrap();
            prop_assert_eq!(u.irq_level(), mis != 0);
        }
    }
}
