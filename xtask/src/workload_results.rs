//! What the workloads of `bench/workloads/` must print, computed on the
//! host from the same rules: the references that the tests
//! (`tests::workloads`) and the figures (`figures::collect`) check a
//! run's checksum against.

use std::collections::BTreeMap;

/// `RESULT k=v k=v ...` (the last such line).
pub fn result_fields(lines: &[String]) -> Option<BTreeMap<String, String>> {
    let l = lines.iter().rev().find_map(|l| l.strip_prefix("RESULT "))?;
    Some(l.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
}

/// What `vvp memsim.vvp +cycles=N` prints (its `cycle` and `done` lines):
/// the rules of `bench/workloads/engineering/memsim.v`, step by step.
pub fn memsim_lines(cycles: u32) -> String {
    const ABITS: u32 = 18;
    let mask = (1u32 << ABITS) - 1;
    let mut mem: Vec<u32> = (0..1u32 << ABITS).map(|i| i.wrapping_mul(0x9E37_79B1)).collect();
    let (mut lfsr, mut acc) = (0xACE1_2468u32, 0u32);
    let report = cycles / 8;
    let mut s = String::new();
    for cycle in 1..=cycles {
        let bit = ((lfsr >> 31) ^ (lfsr >> 21) ^ (lfsr >> 1) ^ lfsr) & 1;
        lfsr = (lfsr << 1) | bit;
        let a = ((lfsr & mask) ^ (lfsr >> (32 - ABITS))) as usize;
        mem[a] = mem[a].wrapping_add(lfsr ^ acc);
        acc = acc.rotate_left(5) ^ mem[a];
        if report > 0 && cycle % report == 0 {
            s += &format!("cycle {cycle} acc {acc:08x} lfsr {lfsr:08x}\n");
        }
        if cycle == cycles {
            s += &format!("done cycles {cycle} acc {acc:08x}\n");
        }
    }
    s
}

/// What `bench/workloads/database.sh` prints for its query set with `n`
/// line items (`psql -At -F'|'`): the tables' row formulas and each
/// query, computed directly.
pub fn database_results(n: i64) -> String {
    let (nc, no, np) = (n / 60, n / 4, n / 30);
    let segment = |c: i64| (c * 7) % 5;
    let nation = |c: i64| c % 25;
    let o_cust = |o: i64| (o * 13) % nc + 1;
    let o_date = |o: i64| (o * 37) % 2400;
    struct Line {
        id: i64,
        order: i64,
        part: i64,
        qty: i64,
        price: i64,
        disc: i64,
        ship: i64,
        flag: char,
    }
    let lines: Vec<Line> = (1..=n)
        .map(|i| {
            let order = (i - 1) / 4 + 1;
            Line {
                id: i,
                order,
                part: (i * 7919) % np + 1,
                qty: i % 50 + 1,
                price: (i * 31) % 100_000 + 100,
                disc: i % 11,
                ship: o_date(order) + i % 121,
                flag: (b'A' + (i % 3) as u8) as char,
            }
        })
        .collect();
    assert!(lines.iter().all(|l| l.order <= no));
    let rev = |l: &Line| l.price * (100 - l.disc);
    let mut s = String::new();
    // Q1
    let mut q1: BTreeMap<char, (i64, i64, i64, i64)> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.ship <= 2300) {
        let e = q1.entry(l.flag).or_default();
        *e = (e.0 + 1, e.1 + l.qty, e.2 + l.price, e.3 + rev(l));
    }
    for (f, (c, q, p, r)) in q1 {
        s += &format!("q1|{f}|{c}|{q}|{p}|{r}\n");
    }
    // Q3
    let mut q3: BTreeMap<i64, i64> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.ship > 1200 && o_date(l.order) < 1200 && segment(o_cust(l.order)) == 1) {
        *q3.entry(l.order).or_default() += rev(l);
    }
    let mut q3: Vec<(i64, i64)> = q3.into_iter().collect();
    q3.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (o, r) in q3.into_iter().take(10) {
        s += &format!("q3|{o}|{r}|{}\n", o_date(o));
    }
    // Q5
    let mut q5: BTreeMap<i64, i64> = BTreeMap::new();
    for l in lines.iter().filter(|l| (365..730).contains(&o_date(l.order))) {
        *q5.entry(nation(o_cust(l.order))).or_default() += rev(l);
    }
    let mut q5: Vec<(i64, i64)> = q5.into_iter().collect();
    q5.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (nat, r) in q5 {
        s += &format!("q5|{nat}|{r}\n");
    }
    // Q6
    let q6: i64 = lines
        .iter()
        .filter(|l| (365..730).contains(&l.ship) && (5..=7).contains(&l.disc) && l.qty < 24)
        .map(|l| l.price * l.disc)
        .sum();
    s += &format!("q6|{q6}\n");
    // Q14-like
    let mut q14: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.part % 50 + 1 < 10) {
        let e = q14.entry(l.part % 10).or_default();
        *e = (e.0 + 1, e.1 + l.qty);
    }
    for (t, (c, q)) in q14 {
        s += &format!("q14|{t}|{c}|{q}\n");
    }
    // top 5 by price
    let mut top: Vec<&Line> = lines.iter().collect();
    top.sort_by(|a, b| b.price.cmp(&a.price).then(a.id.cmp(&b.id)));
    for l in top.into_iter().take(5) {
        s += &format!("top|{}|{}\n", l.id, l.price);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memsim_reference() {
        let s = memsim_lines(16);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 9, "{s}");
        assert!(lines[0].starts_with("cycle 2 acc "));
        assert!(lines[8].starts_with("done cycles 16 acc "));
        // Cycle 1 by hand: the new bit is bit31 ^ bit21 ^ bit1 ^ bit0 of
        // 0xACE12468 = 1 ^ 1 ^ 0 ^ 0; a = low 18 bits ^ top 18 bits.
        let lfsr = 0xACE1_2468u32 << 1;
        let a = (lfsr & 0x3ffff) ^ (lfsr >> 14);
        let acc = (a.wrapping_mul(0x9E37_79B1)).wrapping_add(lfsr);
        assert_eq!(memsim_lines(1), format!("done cycles 1 acc {acc:08x}\n"));
    }

    #[test]
    fn database_reference_shape() {
        let s = database_results(600);
        assert_eq!(s.lines().filter(|l| l.starts_with("q1|")).count(), 3);
        assert_eq!(s.lines().filter(|l| l.starts_with("top|")).count(), 5);
        assert!(s.lines().any(|l| l.starts_with("q6|")));
        // Line items 1..600: the dearest is l_id with (31 i) % 100000 largest.
        let best = (1..=600i64).max_by_key(|i| ((i * 31) % 100_000, -i)).unwrap();
        assert!(s.contains(&format!("top|{best}|{}\n", (best * 31) % 100_000 + 100)), "{s}");
    }
}
