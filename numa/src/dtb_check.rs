//! Structural check of a flattened device tree before `fdt` walks it.
//!
//! `fdt` 0.1.5 checks only the magic and the total size, then slices and
//! `unwrap`s its way through the blob, so a truncated or corrupted tree
//! panics inside it. The monitor parses the host tree at EL2, where a panic
//! is the end of the machine, so every offset, length, token, name and
//! nesting level that `fdt` later trusts is checked here first. NOP tokens
//! are refused: `fdt` mis-walks them inside a node, and QEMU never emits
//! them.

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;
/// `fdt` keeps the parent chain in a 64-entry array indexed from 1.
const MAX_DEPTH: usize = 63;

/// Checks `dtb` before `fdt` may parse it; the message names the first
/// thing found wrong.
pub fn check(dtb: &[u8]) -> Result<(), &'static str> {
    if dtb.len() < HEADER_LEN {
        return Err("shorter than an FDT header");
    }
    // In bounds: every header word is below HEADER_LEN.
    let word = |off: usize| be32(dtb, off).unwrap_or(0);
    if word(0) != MAGIC {
        return Err("bad FDT magic");
    }
    let total = word(4) as usize;
    if total < HEADER_LEN || total > dtb.len() {
        return Err("total size does not match the buffer");
    }
    let blob = &dtb[..total];
    let structs = block(blob, word(8), word(36)).ok_or("structure block out of bounds")?;
    let strings = block(blob, word(12), word(32)).ok_or("strings block out of bounds")?;
    check_structure(structs, strings)
}

/// Walks the token stream: one root, properties before children, every
/// node closed, then `FDT_END`.
fn check_structure(s: &[u8], strings: &[u8]) -> Result<(), &'static str> {
    let mut pos = 0;
    let mut depth = 0usize;
    // Whether the innermost open node has started listing children.
    let mut in_children = false;
    loop {
        let token = be32(s, pos).ok_or("structure block ends inside the tree")?;
        pos += 4;
        match token {
            BEGIN_NODE => {
                let name = cstr(s, pos).ok_or("node name not a terminated UTF-8 string")?;
                pos = align4(pos + name + 1);
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err("nodes nested too deep");
                }
                in_children = false;
            }
            PROP => {
                if depth == 0 || in_children {
                    return Err("property outside a node's property list");
                }
                let len = be32(s, pos).ok_or("truncated property")? as usize;
                let name_off = be32(s, pos + 4).ok_or("truncated property")? as usize;
                pos += 8;
                if s.len() - pos < len {
                    return Err("property value runs past the structure block");
                }
                cstr(strings, name_off).ok_or("property name not a terminated UTF-8 string")?;
                pos = align4(pos + len);
            }
            END_NODE => {
                depth = depth.checked_sub(1).ok_or("unbalanced end of node")?;
                in_children = true;
            }
            _ => return Err("unexpected structure token"),
        }
        if depth == 0 {
            // The root just closed: only FDT_END may follow.
            return match be32(s, pos) {
                Some(END) => Ok(()),
                _ => Err("missing FDT_END after the root node"),
            };
        }
    }
}

fn block(blob: &[u8], off: u32, len: u32) -> Option<&[u8]> {
    let start = off as usize;
    blob.get(start..start.checked_add(len as usize)?)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Length of the NUL-terminated UTF-8 string at `off`, without the NUL.
fn cstr(b: &[u8], off: usize) -> Option<usize> {
    let rest = b.get(off..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&rest[..len]).ok()?;
    Some(len)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        let child = w.begin_node("child@0").unwrap();
        w.property_string("status", "okay").unwrap();
        w.end_node(child).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn put(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn struct_off(b: &[u8]) -> usize {
        be32(b, 8).unwrap() as usize
    }

    #[test]
    fn accepts_a_written_tree() {
        assert_eq!(check(&tree()), Ok(()));
    }

    #[test]
    fn rejects_bad_headers() {
        let good = tree();
        assert_eq!(check(&good[..20]), Err("shorter than an FDT header"));
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(check(&b), Err("bad FDT magic"));
        assert_eq!(check(&good[..good.len() - 1]), Err("total size does not match the buffer"));
        let mut b = good.clone();
        put(&mut b, 36, 0xffff_fff0);
        assert_eq!(check(&b), Err("structure block out of bounds"));
        let mut b = good.clone();
        put(&mut b, 12, u32::MAX);
        assert_eq!(check(&b), Err("strings block out of bounds"));
    }

    #[test]
    fn rejects_bad_structure() {
        let good = tree();
        let so = struct_off(&good);
        // First token replaced by a NOP.
        let mut b = good.clone();
        put(&mut b, so, 4);
        assert_eq!(check(&b), Err("unexpected structure token"));
        // First token replaced by END_NODE.
        let mut b = good.clone();
        put(&mut b, so, END_NODE);
        assert_eq!(check(&b), Err("unbalanced end of node"));
        // The first property's name offset pointed past the strings block.
        let mut b = good.clone();
        put(&mut b, so + 8 + 8, 0x7fff_0000);
        assert_eq!(check(&b), Err("property name not a terminated UTF-8 string"));
        // The first property's length made huge.
        let mut b = good.clone();
        put(&mut b, so + 8 + 4, 0x7fff_0000);
        assert_eq!(check(&b), Err("property value runs past the structure block"));
    }

    #[test]
    fn rejects_a_structure_block_cut_short() {
        let mut b = tree();
        let len = be32(&b, 36).unwrap();
        put(&mut b, 36, len - 8);
        assert_eq!(check(&b), Err("structure block ends inside the tree"));
    }
}
