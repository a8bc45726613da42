//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with weights.
//!
//! Each backend has a permutation of the table's slots derived from its own
//! identity (address and port), so its preferences do not depend on the
//! other backends. Backends take turns claiming their next preferred free
//! slot; a backend of weight `w` claims `w` slots per turn. When one backend
//! leaves, the others keep almost all their slots and only the leaving
//! backend's flows move. Built in the control thread; the data path reads
//! one slot per new flow.

/// Default table size: a prime well above 100 × a typical backend count.
pub const DEFAULT_SIZE: u32 = 16381;

/// A backend's identity for hashing: its address and port.
fn h64(x: u64, seed: u64) -> u64 {
    let mut h = x ^ seed;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// True if `n` is prime (table sizes are checked once per build).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Each backend's preference list as (offset, skip) over `m` slots.
fn permutations(ids: &[u64], m: usize) -> (Vec<usize>, Vec<usize>) {
    ids.iter()
        .map(|&id| {
            (
                (h64(id, 0x6d61_676c_6576_3031) % m as u64) as usize,
                (h64(id, 0x736b_6970_5f5f_3032) % (m as u64 - 1).max(1)) as usize + 1,
            )
        })
        .unzip()
}

/// Builds a table of `size` slots (a prime) over backends identified by
/// `ids` with `weights` (0 = no slots). Each slot holds a backend index;
/// `None` if no backend has a weight.
pub fn build(ids: &[u64], weights: &[u16], size: u32) -> Option<Box<[u16]>> {
    let m = size as usize;
    let n = ids.len().min(weights.len()).min(u16::MAX as usize);
    if m == 0 || (0..n).all(|i| weights[i] == 0) {
        return None;
    }
    let (offset, skip) = permutations(&ids[..n], m);
    // Each backend's next candidate slot, `(offset + k * skip) % m` for
    // its k-th preference, advanced by one addition and at most one
    // subtraction (skip < m): no division in the loop, which a build of
    // ten thousand services would otherwise spend most of its time in.
    let mut cand = offset;
    let mut table = vec![u16::MAX; m];
    let mut filled = 0;
    'outer: loop {
        for i in 0..n {
            let s = skip[i];
            for _ in 0..weights[i] {
                // The backend's next preferred slot that is still free.
                let mut c = cand[i];
                while table[c] != u16::MAX {
                    c += s;
                    if c >= m {
                        c -= m;
                    }
                }
                table[c] = i as u16;
                c += s;
                if c >= m {
                    c -= m;
                }
                cand[i] = c;
                filled += 1;
                if filled == m {
                    break 'outer;
                }
            }
        }
    }
    Some(table.into_boxed_slice())
}

/// The identity Maglev hashes a backend by: an IPv4 address (low bits of
/// `ip`) and port packed as they are, an IPv6 address folded first.
pub fn backend_id(ip: u128, port: u16) -> u64 {
    let folded = if ip >> 32 == 0 {
        ip as u64
    } else {
        h64((ip >> 64) as u64, 0x7636_5f68_6967_6833) ^ ip as u64
    };
    folded << 16 ^ u64::from(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<u64> {
        (0..n)
            .map(|i| backend_id(0xc612_0100 + u128::from(i), 8080))
            .collect()
    }

    /// The textbook build (`(offset + next * skip) % m` per probe), which
    /// `build` must equal slot for slot.
    fn build_reference(ids: &[u64], weights: &[u16], size: u32) -> Option<Box<[u16]>> {
        let m = size as usize;
        let n = ids.len().min(weights.len()).min(u16::MAX as usize);
        if m == 0 || (0..n).all(|i| weights[i] == 0) {
            return None;
        }
        let (offset, skip) = permutations(&ids[..n], m);
        let mut next = vec![0usize; n];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        'outer: loop {
            for i in 0..n {
                for _ in 0..weights[i] {
                    let mut c = (offset[i] + next[i] * skip[i]) % m;
                    while table[c] != u16::MAX {
                        next[i] += 1;
                        c = (offset[i] + next[i] * skip[i]) % m;
                    }
                    table[c] = i as u16;
                    next[i] += 1;
                    filled += 1;
                    if filled == m {
                        break 'outer;
                    }
                }
            }
        }
        Some(table.into_boxed_slice())
    }

    #[test]
    fn equals_the_textbook_build() {
        for (n, size) in [
            (1, 7),
            (3, 7),
            (10, 1021),
            (10, DEFAULT_SIZE),
            (100, 1021),
            (7, 2),
            (250, 65537),
        ] {
            let b = ids(n);
            let mut w: Vec<u16> = (0..n).map(|i| (i % 4) as u16).collect();
            assert_eq!(
                build(&b, &w, size),
                build_reference(&b, &w, size),
                "n {n} size {size} weighted"
            );
            w.fill(1);
            assert_eq!(
                build(&b, &w, size),
                build_reference(&b, &w, size),
                "n {n} size {size}"
            );
        }
    }

    fn owner_of(t: &[u16], ids: &[u64], slot: usize) -> u64 {
        ids[t[slot] as usize]
    }

    #[test]
    fn spreads_evenly_and_by_weight() {
        let b = ids(10);
        let t = build(&b, &[1; 10], DEFAULT_SIZE).unwrap();
        let mut count = [0usize; 10];
        for &s in t.iter() {
            count[s as usize] += 1;
        }
        let fair = DEFAULT_SIZE as usize / 10;
        for c in count {
            assert!(c.abs_diff(fair) <= fair / 20 + 1, "{count:?}");
        }
        let mut w = [1u16; 10];
        w[0] = 3;
        let t = build(&b, &w, DEFAULT_SIZE).unwrap();
        let heavy = t.iter().filter(|&&s| s == 0).count();
        let light = t.iter().filter(|&&s| s == 1).count();
        assert!(
            (heavy as f64 / light as f64 - 3.0).abs() < 0.3,
            "{heavy} {light}"
        );
        assert!(build(&b, &[0; 10], 7).is_none());
    }

    #[test]
    fn removing_a_backend_moves_only_its_flows() {
        let b = ids(10);
        let before = build(&b, &[1; 10], DEFAULT_SIZE).unwrap();
        let mut gone = b.clone();
        let removed = gone.remove(4);
        let after = build(&gone, &[1; 9], DEFAULT_SIZE).unwrap();
        let mut moved_other = 0;
        for slot in 0..DEFAULT_SIZE as usize {
            let was = owner_of(&before, &b, slot);
            let now = owner_of(&after, &gone, slot);
            if was != removed && was != now {
                moved_other += 1;
            }
        }
        // The paper's bound: a few percent of other slots may move.
        assert!(
            moved_other <= DEFAULT_SIZE as usize / 100,
            "{moved_other} slots of remaining backends moved"
        );
    }

    #[test]
    fn adding_a_backend_moves_about_one_nth() {
        let b = ids(10);
        let before = build(&b, &[1; 10], DEFAULT_SIZE).unwrap();
        let more = ids(11);
        let after = build(&more, &[1; 11], DEFAULT_SIZE).unwrap();
        let moved = (0..DEFAULT_SIZE as usize)
            .filter(|&s| owner_of(&before, &b, s) != owner_of(&after, &more, s))
            .count();
        let bound = DEFAULT_SIZE as f64 * (1.0 / 11.0 + 0.02);
        assert!((moved as f64) <= bound, "{moved} moved, bound {bound}");
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(16381) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(16383));
    }
}
