//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Partial sums are `u32` values holding an unfolded one's-complement sum of
//! big-endian 16-bit words. [`sum`] returns a value already folded to 16 bits and
//! the pseudo-header sums stay below 2^21, so callers may add a few thousand of
//! them with plain `+` before calling [`fold`] (or [`finish`] for the final,
//! complemented checksum). Only the last piece of a message may have an odd length.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a partial sum to 16 bits with end-around carry (not complemented).
#[inline]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Folds a partial sum and complements it: the value to store in a checksum field.
#[inline]
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

#[inline]
fn add_carry(acc: u64, v: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(v);
    s + u64::from(carry)
}

/// One's-complement sum of `data` as big-endian 16-bit words, a trailing odd byte
/// padded with zero; the result is folded to at most 0xFFFF (returned as `u32` so
/// partial sums can be added). A region holding a correct checksum sums to 0xFFFF.
///
/// Sums eight bytes at a time into a `u64` with end-around carry: since
/// 2^16 ≡ 1 (mod 2^16 - 1), the four 16-bit words of a big-endian `u64` and the
/// carry out of bit 63 all have weight 1 in one's-complement arithmetic.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    #[inline(always)]
    fn word(b: &[u8], i: usize) -> u64 {
        let w = &b[i..i + 8];
        u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
    }
    // Two accumulators over 32-byte blocks halve the carry dependency chain.
    let (mut a0, mut a1) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        a0 = add_carry(a0, word(b, 0));
        a1 = add_carry(a1, word(b, 8));
        a0 = add_carry(a0, word(b, 16));
        a1 = add_carry(a1, word(b, 24));
    }
    let mut acc = add_carry(a0, a1);
    let mut words = blocks.remainder().chunks_exact(8);
    for b in &mut words {
        acc = add_carry(acc, word(b, 0));
    }
    // At most 7 bytes left. Each piece starts at an even offset, so it keeps its
    // 16-bit word alignment; an odd final byte is the high byte of its word.
    let mut r = words.remainder();
    let mut tail: u64 = 0;
    if let [a, b, c, d, rest @ ..] = r {
        tail += u64::from(u32::from_be_bytes([*a, *b, *c, *d]));
        r = rest;
    }
    if let [a, b, rest @ ..] = r {
        tail += u64::from(u16::from_be_bytes([*a, *b]));
        r = rest;
    }
    if let [a] = r {
        tail += u64::from(*a) << 8;
    }
    acc = add_carry(acc, tail);
    // Fold 64 -> 32 -> 16 bits with end-around carry.
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    u32::from(fold(s as u32))
}

/// The complemented checksum of `data` alone.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 768 / RFC 793): addresses, protocol
/// and upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.to_bits();
    let d = dst.to_bits();
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len)
}

#[inline]
fn sum_v6(a: &Ipv6Addr) -> u32 {
    a.segments().iter().map(|&w| u32::from(w)).sum()
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): addresses, 32-bit
/// upper-layer length and next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u32 {
    sum_v6(src) + sum_v6(dst) + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

// Incremental update, RFC 1624 eqn. 3:  HC' = ~(~HC + ~m + m')
//
// RFC 1141 used HC' = HC + m + ~m' (eqn. 2), which yields 0xFFFF where a full
// recomputation yields 0x0000 (RFC 1624 §4 example). Eqn. 3 computes in the
// complemented domain: with C the sum of the unchanged words, ~HC ≡ C + m and
// ~m ≡ -m (mod 2^16 - 1), so ~HC + ~m + m' ≡ C + m'. Its end-around-carry fold is
// non-zero as soon as any operand is non-zero, exactly like the fold of a full
// recomputation over a message with any non-zero word (an IPv4 header always has
// one: the version), so the result equals the recomputed checksum bit for bit,
// including the 0x0000 case. Nothing has to be special-cased here; protocols that
// reserve 0 (UDP over IPv4) map it to 0xFFFF themselves, see [`udp_zero_to_ffff`].

/// RFC 1624 update of checksum `hc` after a 16-bit word changed from `old` to `new`.
#[inline]
pub const fn update_u16(hc: u16, old: u16, new: u16) -> u16 {
    !fold(!hc as u32 + !old as u32 + new as u32)
}

/// RFC 1624 update of checksum `hc` after an aligned 32-bit field changed.
#[inline]
pub const fn update_u32(hc: u16, old: u32, new: u32) -> u16 {
    let s = !hc as u32 + (!(old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    !fold(s)
}

/// RFC 1624 update of checksum `hc` after an aligned 16-byte field (an IPv6
/// address) changed.
#[inline]
pub fn update_u128(hc: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut s = u32::from(!hc);
    for i in 0..8 {
        let o = u16::from_be_bytes([old[2 * i], old[2 * i + 1]]);
        let n = u16::from_be_bytes([new[2 * i], new[2 * i + 1]]);
        s += u32::from(!o) + u32::from(n);
    }
    !fold(s)
}

/// UDP over IPv4 sends a computed checksum of 0 as 0xFFFF (0 means "none").
#[inline]
pub const fn udp_zero_to_ffff(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straightforward RFC 1071 reference: 16-bit words into a u64, fold at the end.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            s += u64::from(data[i]) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // Classic example header, checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn odd_lengths_and_edges() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0xff; 64]), 0xffff);
        for n in 0..80 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(fold(sum(&d)), naive_sum(&d), "len {n}");
        }
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: other words sum to 0xCD7A, m = 0x5555 -> m' = 0x3285.
        let hc = !fold(0xcd7a + 0x5555);
        assert_eq!(hc, 0xdd2f);
        assert_eq!(update_u16(hc, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        assert_eq!(v4, 0xc0a8 + 0x0001 + 0x0a00 + 0x0002 + 17 + 12);
        let a: Ipv6Addr = "fe80::1".parse().unwrap();
        let b: Ipv6Addr = "ff02::2".parse().unwrap();
        assert_eq!(
            pseudo_header_v6(&a, &b, 58, 0x1_0002),
            0xfe80 + 1 + 0xff02 + 2 + 1 + 2 + 58
        );
    }

    /// A 20-byte header-like block with a non-zero first word.
    fn header() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 20).prop_map(|mut v| {
            v[0] = 0x45;
            v
        })
    }

    fn recompute(h: &mut [u8], at: usize) -> u16 {
        h[at] = 0;
        h[at + 1] = 0;
        checksum(h)
    }

    proptest! {
        #[test]
        fn fast_sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(fold(sum(&data)), naive_sum(&data));
        }

        #[test]
        fn split_sums_add_up(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..300,
        ) {
            let cut = (cut.min(data.len())) & !1;
            prop_assert_eq!(fold(sum(&data[..cut]) + sum(&data[cut..])), naive_sum(&data));
        }

        #[test]
        fn update_u16_matches_recompute(
            mut h in header(),
            word in 1usize..10,
            new in any::<u16>(),
        ) {
            // Checksum lives at bytes 10..12 (word 5); change any other word.
            let word = if word == 5 { 4 } else { word };
            let hc = recompute(&mut h, 10);
            let at = 2 * word;
            let old = u16::from_be_bytes([h[at], h[at + 1]]);
            h[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update_u16(hc, old, new), recompute(&mut h, 10));
        }

        #[test]
        fn update_u32_matches_recompute(
            mut h in header(),
            which in 0usize..2,
            new in any::<u32>(),
        ) {
            let at = 12 + 4 * which;
            let hc = recompute(&mut h, 10);
            let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            h[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update_u32(hc, old, new), recompute(&mut h, 10));
        }

        #[test]
        fn update_u128_matches_recompute(
            mut h in proptest::collection::vec(any::<u8>(), 40),
            new in any::<[u8; 16]>(),
        ) {
            h[0] = 0x60;
            let hc = recompute(&mut h, 2);
            let mut old = [0u8; 16];
            old.copy_from_slice(&h[8..24]);
            h[8..24].copy_from_slice(&new);
            prop_assert_eq!(update_u128(hc, &old, &new), recompute(&mut h, 2));
        }
    }
}
