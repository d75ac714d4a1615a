//! `[[vm.net]]` tables of a VM manifest: the VM's virtio-net device on the
//! monitor's switch between the run's VMs, its MAC address and the IPv4
//! address the guest's init gives `eth0`.

use anyhow::Result;
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNet {
    mac: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
}

/// Network devices one VM may have (the monitor's device table has one slot).
pub const MAX_NETS: usize = 1;

/// One `[[vm.net]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    pub mac: [u8; 6],
    /// `a.b.c.d/len`, if the init configures `eth0`.
    pub ip: Option<String>,
}

/// The default MAC of VM number `index` of the manifest: `02:d1:5c:00:HH:LL`
/// (locally administered, unicast; the monitor's `vdev::virtio::switch::default_mac`).
pub fn default_mac(index: usize) -> [u8; 6] {
    let [hi, lo] = (index as u16).to_be_bytes();
    [0x02, 0xd1, 0x5c, 0x00, hi, lo]
}

pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// `xx:xx:xx:xx:xx:xx`.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `a.b.c.d/len` with len 1..=32; the address is neither the network's nor
/// its broadcast address (for len <= 30).
fn valid_cidr(text: &str) -> Result<(), String> {
    let (addr, len) =
        text.split_once('/').ok_or("expected an address with a prefix length, such as \"10.0.0.1/24\"")?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
    let len: u32 = len.parse().ok().filter(|l| (1..=32).contains(l)).ok_or("the prefix length must be 1..=32")?;
    let host_mask = if len == 32 { 0 } else { u32::MAX >> len };
    let host = u32::from(ip) & host_mask;
    if len <= 30 && (host == 0 || host == host_mask) {
        return Err(format!("{ip} is the network's or its broadcast address"));
    }
    Ok(())
}

/// The kernel argument that tells the guest's init the address of `eth0`:
/// `disco.ip=10.0.0.1/24` (None without an address).
pub fn ip_arg(net: Option<&NetSpec>) -> Option<String> {
    net.and_then(|n| n.ip.as_ref()).map(|ip| format!("disco.ip={ip}"))
}

/// Checks one `[[vm.net]]` of VM `vm`, number `index` of the manifest;
/// `others` are the VMs' devices before it (MACs and addresses are unique).
pub(super) fn net(
    n: &RawNet,
    at: Range<usize>,
    vm: &str,
    index: usize,
    others: &[(&str, &NetSpec)],
    err: &impl Fn(Range<usize>, &str, &str, String) -> anyhow::Error,
) -> Result<NetSpec> {
    let mac = match &n.mac {
        None => default_mac(index),
        Some(m) => {
            let text = m.get_ref();
            let mac = parse_mac(text).ok_or_else(|| {
                err(m.span(), vm, "mac", format!("`{text}` is not a MAC such as \"02:00:00:00:00:01\""))
            })?;
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return Err(err(
                    m.span(),
                    vm,
                    "mac",
                    format!("`{text}` is a group or zero address, not a unicast one"),
                ));
            }
            mac
        }
    };
    if let Some((other, _)) = others.iter().find(|(_, o)| o.mac == mac) {
        let span = n.mac.as_ref().map_or(at.clone(), |m| m.span());
        return Err(err(span, vm, "mac", format!("{} is also vm `{other}`'s MAC", mac_text(&mac))));
    }
    let ip = match &n.ip {
        None => None,
        Some(ip) => {
            let text = ip.get_ref();
            valid_cidr(text).map_err(|e| err(ip.span(), vm, "ip", format!("`{text}`: {e}")))?;
            let addr = text.split('/').next();
            if let Some((other, _)) =
                others.iter().find(|(_, o)| o.ip.as_deref().and_then(|i| i.split('/').next()) == addr)
            {
                return Err(err(ip.span(), vm, "ip", format!("`{text}`: the address is also vm `{other}`'s")));
            }
            Some(text.clone())
        }
    };
    Ok(NetSpec { mac, ip })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const TWO: &str = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\n[[vm.net]]\nip = \"10.0.0.1/24\"\n\n\
                       [[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"64M\"\n[[vm.net]]\n";

    fn parse(text: &str) -> Result<super::super::Manifest> {
        super::super::parse("m.toml", text, &crate::machine::load("numa2").unwrap(), Path::new("."))
    }

    #[test]
    fn manifest_nets() {
        let m = parse(TWO).unwrap();
        let nets: Vec<_> = m.vms.iter().map(|v| v.net.clone().unwrap()).collect();
        assert_eq!(nets[0], NetSpec { mac: default_mac(0), ip: Some("10.0.0.1/24".into()) });
        assert_eq!(nets[1], NetSpec { mac: default_mac(1), ip: None });
        assert_eq!(ip_arg(Some(&nets[0])).as_deref(), Some("disco.ip=10.0.0.1/24"));
        let m = parse(&TWO.replace("[[vm.net]]\nip = \"10.0.0.1/24\"\n", "")).unwrap();
        assert_eq!(m.vms[0].net, None);
        let err = |text: String| format!("{:#}", parse(&text).unwrap_err());
        let e = err(format!("{TWO}mac = \"01:00:00:00:00:01\"\n"));
        assert!(e.starts_with("m.toml:13: vm `b`: field `mac`:") && e.contains("group"), "{e}");
        let e = err(format!("{TWO}mac = \"{}\"\n", mac_text(&default_mac(0))));
        assert!(e.starts_with("m.toml:13: vm `b`: field `mac`:") && e.contains("vm `a`'s MAC"), "{e}");
        let e = err(format!("{TWO}ip = \"10.0.0.1/16\"\n"));
        assert!(e.starts_with("m.toml:13: vm `b`: field `ip`:") && e.contains("also vm `a`'s"), "{e}");
        let e = err(format!("{TWO}ip = \"10.0.0.300/24\"\n"));
        assert!(e.starts_with("m.toml:13: vm `b`: field `ip`:"), "{e}");
        let e = err(format!("{TWO}[[vm.net]]\n"));
        assert!(e.starts_with("m.toml:13: vm `b`: field `net`: 2 network devices"), "{e}");
        let e = err(format!("{TWO}speed = 10\n"));
        assert!(e.starts_with("m.toml:13:") && e.contains("unknown field `speed`"), "{e}");
    }

    #[test]
    fn shipped_net_manifest_loads() {
        let path = crate::util::root().join("qemu-configs/vms/net.toml");
        let m = super::super::load(&path, &crate::machine::load("numa2").unwrap()).unwrap();
        let ips: Vec<_> = m.vms.iter().map(|v| v.net.as_ref().and_then(|n| n.ip.clone())).collect();
        assert_eq!(ips, [Some("10.0.0.1/24".into()), Some("10.0.0.2/24".into())]);
    }

    #[test]
    fn macs_and_addresses() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 0xa, 0xff, 0, 1]));
        for bad in ["02:00:0a:ff:00", "02:00:0a:ff:00:1", "02:00:0a:ff:00:0g", "02-00-0a-ff-00-01"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(mac_text(&default_mac(258)), "02:d1:5c:00:01:02");
        assert!(valid_cidr("10.0.0.1/24").is_ok());
        assert!(valid_cidr("10.0.0.1/32").is_ok());
        for bad in ["10.0.0.1", "10.0.0.0/24", "10.0.0.255/24", "10.0.0.1/33", "10.0.0/24", "10.0.0.1/0"] {
            assert!(valid_cidr(bad).is_err(), "{bad}");
        }
    }
}
