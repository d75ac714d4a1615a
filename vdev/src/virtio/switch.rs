//! The forwarding decision of the monitor's Ethernet switch between VMs:
//! which ports get a frame that port `from` sent. Pure, so it is tested
//! here; the monitor (`io::net`) holds the ports and moves the frames.
//!
//! Every port has one MAC address, fixed by the manifest (no learning: a
//! VM may only ever send from its own address, so the table is complete
//! from the start). A frame
//! - whose source address is not the sending port's is [`Route::Spoofed`]
//!   and goes nowhere, whatever its destination;
//! - to a group address (broadcast, multicast: the I/G bit, bit 0 of the
//!   first byte) goes to every other port ([`Route::Flood`]), as ARP needs;
//! - to another port's address goes there; to the sender's own or to an
//!   address no port has, nowhere ([`Route::Unknown`]).

use super::net::{Mac, ETH_HLEN};

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this one port.
    To(usize),
    /// To every port but the sender.
    Flood,
    /// Nowhere: its source address is not the sender's.
    Spoofed { source: Mac },
    /// Nowhere: no other port has its destination address.
    Unknown,
    /// Nowhere: shorter than an Ethernet header.
    Runt,
}

/// The destination and source addresses of a frame.
pub fn addresses(frame: &[u8]) -> Option<(Mac, Mac)> {
    if frame.len() < ETH_HLEN {
        return None;
    }
    let mut dst = [0; 6];
    let mut src = [0; 6];
    dst.copy_from_slice(&frame[..6]);
    src.copy_from_slice(&frame[6..12]);
    Some((dst, src))
}

/// Is `mac` a group (broadcast or multicast) address?
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// The route of `frame` sent by port `from`; `ports[i]` is port i's
/// address (None: no such port now).
pub fn route(ports: &[Option<Mac>], from: usize, frame: &[u8]) -> Route {
    let Some((dst, src)) = addresses(frame) else { return Route::Runt };
    if ports.get(from).copied().flatten() != Some(src) {
        return Route::Spoofed { source: src };
    }
    if is_group(&dst) {
        return Route::Flood;
    }
    match ports.iter().position(|p| *p == Some(dst)) {
        Some(to) if to != from => Route::To(to),
        _ => Route::Unknown,
    }
}

/// The default address of VM number `index` of a run: `02:d1:5c:00:HH:LL`
/// with the index in the last two bytes; `0x02` makes it a locally
/// administered unicast address.
pub fn default_mac(index: u16) -> Mac {
    let [hi, lo] = index.to_be_bytes();
    [0x02, 0xd1, 0x5c, 0x00, hi, lo]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const C: Mac = [2, 0, 0, 0, 0, 3];
    const BROADCAST: Mac = [0xff; 6];

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::from(dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x06, 1, 2, 3]);
        f
    }

    #[test]
    fn unicast_broadcast_and_spoofing() {
        let ports = [Some(A), Some(B), None, Some(C)];
        assert_eq!(route(&ports, 0, &frame(B, A)), Route::To(1));
        assert_eq!(route(&ports, 3, &frame(A, C)), Route::To(0));
        assert_eq!(route(&ports, 0, &frame(BROADCAST, A)), Route::Flood);
        assert_eq!(route(&ports, 1, &frame([0x33, 0x33, 0, 0, 0, 1], B)), Route::Flood);
        // C pretends to be A: nowhere, not even broadcast.
        assert_eq!(route(&ports, 3, &frame(B, A)), Route::Spoofed { source: A });
        assert_eq!(route(&ports, 3, &frame(BROADCAST, A)), Route::Spoofed { source: A });
        // To itself, to nobody, from a port that is gone.
        assert_eq!(route(&ports, 0, &frame(A, A)), Route::Unknown);
        assert_eq!(route(&ports, 0, &frame([2, 9, 9, 9, 9, 9], A)), Route::Unknown);
        assert_eq!(route(&ports, 2, &frame(B, C)), Route::Spoofed { source: C });
        assert_eq!(route(&ports, 9, &frame(B, C)), Route::Spoofed { source: C });
        assert_eq!(route(&ports, 0, &[0xff; 13]), Route::Runt);
    }

    #[test]
    fn default_macs_are_local_unicast_and_distinct() {
        let macs: Vec<Mac> = (0..300).map(default_mac).collect();
        for (i, m) in macs.iter().enumerate() {
            assert!(!is_group(m) && m[0] & 2 != 0, "{m:x?}");
            assert!(!macs[..i].contains(m));
        }
    }

    proptest! {
        /// Whatever the bytes, a frame leaves only towards another port,
        /// and only if its source is the sender's address.
        #[test]
        fn never_forwards_a_foreign_source(
            macs in proptest::collection::vec(proptest::option::of(any::<[u8; 6]>()), 0..6),
            from in 0usize..7,
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            match route(&macs, from, &bytes) {
                Route::To(to) => {
                    prop_assert!(to != from && macs[to].is_some());
                    prop_assert_eq!(Some(&bytes[6..12]), macs[from].as_ref().map(|m| &m[..]));
                }
                Route::Flood => prop_assert_eq!(Some(&bytes[6..12]), macs[from].as_ref().map(|m| &m[..])),
                Route::Runt => prop_assert!(bytes.len() < ETH_HLEN),
                Route::Spoofed { .. } | Route::Unknown => {}
            }
        }
    }
}
