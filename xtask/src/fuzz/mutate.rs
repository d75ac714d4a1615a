//! Mutations of fuzz inputs, libFuzzer-style: bit flips, interesting
//! values, inserted, deleted and copied chunks, dictionary tokens and
//! splices with another corpus entry.

use super::rng::Rng;

/// Values that sit at boundaries: sizes, sign bits, all ones.
const INTERESTING: [u64; 14] =
    [0, 1, 2, 4, 8, 0x10, 0x7f, 0x80, 0xff, 0x100, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX];

/// One to eight mutations of `base` (`other`: a second corpus entry for
/// splicing; `dict`: the target's tokens), at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, base: &[u8], other: &[u8], dict: &[&[u8]], max_len: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(8) {
        one(rng, &mut v, other, dict);
    }
    v.truncate(max_len);
    v
}

fn one(rng: &mut Rng, v: &mut Vec<u8>, other: &[u8], dict: &[&[u8]]) {
    let len = v.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            v[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            v[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            let value = INTERESTING[rng.below(INTERESTING.len())].wrapping_add(rng.below(3) as u64).wrapping_sub(1);
            let at = rng.below(len);
            for (k, b) in value.to_le_bytes().iter().take(width).enumerate() {
                if let Some(slot) = v.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            v.splice(at..at, chunk);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            v.drain(at..at + n);
        }
        5 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let chunk = v[from..from + n].to_vec();
            let at = rng.below(len + 1);
            v.splice(at..at, chunk);
        }
        6 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            v.splice(at..at, token.iter().copied());
        }
        7 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            v.truncate(cut);
            v.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = rng.below(len + 1);
            v.insert(at, rng.next() as u8);
        }
    }
}
