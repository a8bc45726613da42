//! L3: IPv4 and IPv6 forwarding per VRF, ARP and ND, ICMP errors, and
//! neighbour resolution (glean).
//!
//! Data path (nodes): `arp` (`arp-input`), `ip4` (`ip4-input`, `ip4-lookup`,
//! `ip4-rewrite`, `ip4-local`), `ip6` (the same for IPv6, ND included),
//! `icmp` (`icmp4-error`, `icmp6-error`), `glean`. The FIBs come from the
//! `vrouter-fib` crate (`fib`). The control side (routes, connected and local
//! routes, next hops, neighbours) lives in `crate::control`.

pub mod arp;
pub mod fib;
pub mod glean;
pub mod icmp;
pub mod ip4;
pub mod ip6;

use crate::graph::{Counter, NodeId, Queues};
use crate::pkt::Pkt;

/// Sends `p` to an ICMP error node: the packet is dropped for `reason` and,
/// where the rules allow, turned into an ICMP error of `kind`/`code` (with
/// `mtu` for frag-needed / packet-too-big) sent back to its source.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn icmp_error(
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    v6: bool,
    reason: Counter,
    kind: u8,
    code: u8,
    mtu: u32,
) {
    p.meta.drop = reason as u16;
    p.meta.nh = u32::from(kind) << 8 | u32::from(code);
    p.meta.aux = mtu;
    q.push(
        if v6 {
            NodeId::Icmp6Error
        } else {
            NodeId::Icmp4Error
        },
        i,
    );
}

/// Reads a big-endian u16 at `at` (caller checked the length).
#[inline(always)]
pub(crate) fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Reads a big-endian u32 at `at` (caller checked the length).
#[inline(always)]
pub(crate) fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Reads a big-endian u128 at `at` (caller checked the length).
#[inline(always)]
pub(crate) fn be128(d: &[u8], at: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[at..at + 16]);
    u128::from_be_bytes(b)
}

/// A 5-tuple flow hash (ECMP member choice). Ports are used when the L4
/// header is present (`l4` holds at least 4 bytes of it), so one flow always
/// takes one path.
#[inline(always)]
pub(crate) fn flow_hash(src: u128, dst: u128, proto: u8, l4: &[u8]) -> u32 {
    let ports = if l4.len() >= 4 && matches!(proto, 6 | 17 | 132) {
        be32(l4, 0) as u64
    } else {
        0
    };
    let mut h = (src as u64) ^ ((src >> 64) as u64).rotate_left(17);
    h ^= ((dst as u64) ^ ((dst >> 64) as u64).rotate_left(29)).rotate_left(31);
    h ^= ports << 8 | proto as u64;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as u32 ^ h as u32
}
