//! Host address -> guest physical address, for instruction fetches.
//!
//! Plugin API 4 gives an instruction's *host* address (`qemu_plugin_insn_haddr`)
//! but not its physical address. When every node's RAM is a file
//! (`memory-backend-file`, `{ram_prefix}.m{node}`), QEMU's mappings of those
//! files in `/proc/self/maps` (the plugin runs inside QEMU) turn one into
//! the other: `pa = node_base + file_offset + (haddr - map_start)`.

/// One mapping of a node's RAM file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    /// Guest physical address of `start`.
    pub pa: u64,
}

/// Sorted host spans of guest RAM.
#[derive(Debug, Default)]
pub struct HostMap {
    spans: Vec<Span>,
}

impl HostMap {
    /// Parses `/proc/self/maps` text: every mapping of `{prefix}.m{i}`
    /// becomes a span at `node_base[i] + offset`.
    pub fn parse(maps: &str, prefix: &str, node_base: &[u64]) -> Self {
        let mut spans = Vec::new();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode), Some(path)) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let Some(node) =
                path.strip_prefix(prefix).and_then(|r| r.strip_prefix(".m")).and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(&base) = node_base.get(node) else {
                continue;
            };
            let Some((s, e)) = range.split_once('-') else {
                continue;
            };
            let (Ok(s), Ok(e), Ok(o)) =
                (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16), u64::from_str_radix(offset, 16))
            else {
                continue;
            };
            spans.push(Span { start: s, end: e, pa: base + o });
        }
        spans.sort_by_key(|s| s.start);
        Self { spans }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Guest physical address of host address `h`, if it is guest RAM.
    pub fn pa(&self, h: u64) -> Option<u64> {
        let i = self.spans.partition_point(|s| s.start <= h);
        let s = self.spans.get(i.checked_sub(1)?)?;
        (h < s.end).then(|| s.pa + (h - s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_physical() {
        let maps = "\
7f0000000000-7f0040000000 rw-s 00000000 00:1a 123 /dev/shm/x.m0
7f1000000000-7f1040000000 rw-s 00000000 00:1a 124 /dev/shm/x.m1
7f2000000000-7f2000600000 rw-s 3fa00000 00:1a 124 /dev/shm/x.m1
7f3000000000-7f3000001000 r-xp 00000000 08:01 9 /usr/lib/libc.so.6
7f4000000000-7f4000001000 rw-p 00000000 00:00 0
7f5000000000-7f5000001000 rw-s 00000000 00:1a 125 /dev/shm/x.m10
";
        let m = HostMap::parse(maps, "/dev/shm/x", &[0x4000_0000, 0x8000_0000]);
        assert_eq!(m.pa(0x7f00_0000_1234), Some(0x4000_1234));
        assert_eq!(m.pa(0x7f10_3fff_ffff), Some(0xbfff_ffff));
        assert_eq!(m.pa(0x7f20_0000_0010), Some(0xbfa0_0010));
        assert_eq!(m.pa(0x7f10_4000_0000), None);
        assert_eq!(m.pa(0x7f30_0000_0000), None);
        assert_eq!(m.pa(0x1000), None);
        assert_eq!(m.pa(0x7f50_0000_0000), None);
    }
}
