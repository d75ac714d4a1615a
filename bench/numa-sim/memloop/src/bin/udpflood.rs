//! udpflood A B C D PORT BYTES
//!
//! The network half of `cargo xtask bench isolation`'s storm: sends UDP
//! datagrams of BYTES (at most 1472: one Ethernet frame each) to
//! A.B.C.D:PORT as fast as it can, forever, on an unconnected socket (so a
//! receiver without a listener, which answers with ICMP port unreachable,
//! does not stop it). Prints `udpflood: sent N` every 65536 datagrams.
//! busybox's `nc` has no UDP mode in this guest, hence a program of our own.

#![no_std]
#![no_main]

#[path = "../sys.rs"]
#[allow(dead_code)]
mod sys;

use sys::{arg, exit, put, put_num, syscall6, write};

const SYS_SOCKET: usize = 198;
const SYS_SENDTO: usize = 206;

#[no_mangle]
extern "C" fn program_main(sp: *const usize) -> ! {
    let ip: [Option<usize>; 4] = core::array::from_fn(|i| arg(sp, 1 + i));
    let (Some(port), Some(bytes)) = (arg(sp, 5), arg(sp, 6)) else {
        write(b"usage: udpflood A B C D PORT BYTES\n");
        exit(2);
    };
    if ip.iter().any(|o| !o.is_some_and(|b| b < 256)) || port > 65535 || bytes > 1472 {
        write(b"udpflood: bad address, port or size\n");
        exit(2);
    }
    // SAFETY: socket(AF_INET, SOCK_DGRAM, 0).
    let fd = unsafe { syscall6(SYS_SOCKET, [2, 2, 0, 0, 0, 0]) };
    if fd < 0 {
        write(b"udpflood: socket failed\n");
        exit(1);
    }
    // struct sockaddr_in: family, port (big-endian), address, zero padding.
    let mut sa = [0u8; 16];
    sa[0] = 2;
    sa[2..4].copy_from_slice(&(port as u16).to_be_bytes());
    for (i, b) in ip.iter().enumerate() {
        sa[4 + i] = b.unwrap_or(0) as u8;
    }
    let buf = [0x5au8; 1472];
    let mut sent = 0u64;
    loop {
        // SAFETY: a valid buffer and sockaddr_in of their lengths.
        let r =
            unsafe { syscall6(SYS_SENDTO, [fd as usize, buf.as_ptr() as usize, bytes, 0, sa.as_ptr() as usize, 16]) };
        if r >= 0 {
            sent += 1;
            if sent % 65536 == 0 {
                let mut out = [0u8; 48];
                let mut at = 0;
                put(&mut out, &mut at, b"udpflood: sent ");
                put_num(&mut out, &mut at, sent);
                put(&mut out, &mut at, b"\n");
                write(&out[..at]);
            }
        }
    }
}
