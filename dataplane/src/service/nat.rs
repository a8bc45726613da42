//! Packet surgery for services: address/port translation with incremental
//! checksums (RFC 1624), the TCP RST a service without endpoints answers
//! with, and translation of ICMP errors that quote a translated flow.
//!
//! Works on the IP header and what follows (`l3`), in place: the plain
//! functions on IPv4, the `*6` ones on IPv6 (no header checksum; the UDP
//! checksum is mandatory, so a UDP datagram without one is refused rather
//! than translated). Every function checks lengths and reports failure
//! instead of panicking.

use std::net::Ipv6Addr;

use vrouter_wire::checksum::{self, udp_zero_to_ffff, update_u16, update_u32, update_u128};
use vrouter_wire::{IpProtocol, Ipv6ExtHeaders};

use crate::conntrack::{CsumDelta, Key, Key6};

#[inline(always)]
fn rd16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline(always)]
fn wr16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn rd32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline(always)]
fn wr32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn rd128(d: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[at..at + 16]);
    a
}

#[inline(always)]
fn wr128(d: &mut [u8], at: usize, v: u128) {
    d[at..at + 16].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites the addresses and ports of an IPv6 TCP or UDP packet whose L4
/// header starts at `l4` to those of `to`. Returns false if the packet is
/// too short, not TCP/UDP, or UDP without a checksum (invalid over IPv6).
#[inline]
pub fn rewrite6(l3: &mut [u8], l4: usize, to: &Key6) -> bool {
    let (csum_at, min) = match to.proto {
        6 => (16, 20),
        17 => (6, 8),
        _ => return false,
    };
    if l3.len() < l4 + min || l4 < 40 {
        return false;
    }
    let c_at = l4 + csum_at;
    let old = rd16(l3, c_at);
    if to.proto == 17 && old == 0 {
        return false;
    }
    let (src, dst) = (rd128(l3, 8), rd128(l3, 24));
    let (sport, dport) = (rd16(l3, l4), rd16(l3, l4 + 2));
    let mut c = update_u128(old, &src, &to.src.to_be_bytes());
    c = update_u128(c, &dst, &to.dst.to_be_bytes());
    c = update_u16(c, sport, to.sport);
    c = update_u16(c, dport, to.dport);
    if to.proto == 17 {
        c = udp_zero_to_ffff(c);
    }
    wr16(l3, c_at, c);
    wr128(l3, 8, to.src);
    wr128(l3, 24, to.dst);
    wr16(l3, l4, to.sport);
    wr16(l3, l4 + 2, to.dport);
    true
}

/// The 20-byte TCP RST answering segment `tcp` (RFC 793 reset generation,
/// ports swapped, checksum left 0), or `None` for a RST (never answered).
fn rst_segment(tcp: &[u8], payload: u32) -> Option<[u8; 20]> {
    let fl = tcp[13];
    if fl & 0x04 != 0 {
        return None;
    }
    let (sport, dport) = (rd16(tcp, 0), rd16(tcp, 2));
    let (seq, ack) = (rd32(tcp, 4), rd32(tcp, 8));
    let mut out = [0u8; 20];
    wr16(&mut out, 0, dport);
    wr16(&mut out, 2, sport);
    if fl & 0x10 != 0 {
        wr32(&mut out, 4, ack);
        out[13] = 0x04;
    } else {
        let len = payload + u32::from(fl & 0x02 != 0) + u32::from(fl & 0x01 != 0);
        wr32(&mut out, 8, seq.wrapping_add(len));
        out[13] = 0x14;
    }
    out[12] = 0x50;
    Some(out)
}

/// Turns a TCP segment (IPv6, TCP header at `l4`) into the RST its sender
/// should get, in place: a 60-byte packet (no extension headers) with the
/// addresses and ports swapped. Returns the new length, or `None` if the
/// segment is too short or is itself a RST.
pub fn tcp_reset6(l3: &mut [u8], l4: usize) -> Option<usize> {
    if l3.len() < l4 + 20 || l4 < 40 || l3.len() < 60 {
        return None;
    }
    let total = (40 + usize::from(rd16(l3, 4))).min(l3.len());
    let tcp = &l3[l4..];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let payload = total.saturating_sub(l4 + doff) as u32;
    let seg = rst_segment(tcp, payload)?;
    let (src, dst) = (rd128(l3, 8), rd128(l3, 24));
    let mut out = [0u8; 60];
    out[0] = 0x60;
    wr16(&mut out, 4, 20);
    out[6] = 6;
    out[7] = 64;
    out[8..24].copy_from_slice(&dst);
    out[24..40].copy_from_slice(&src);
    out[40..].copy_from_slice(&seg);
    let ps = checksum::pseudo_header_v6(&Ipv6Addr::from(dst), &Ipv6Addr::from(src), 6, 20);
    let c = checksum::finish(ps + checksum::sum(&out[40..]));
    wr16(&mut out, 56, c);
    l3[..60].copy_from_slice(&out);
    Some(60)
}

/// The quoted packet of an ICMPv6 error whose ICMPv6 header is at `icmp`:
/// the offset of the quoted IPv6 header and of its L4 header, if it quotes
/// TCP or UDP with its ports.
fn quoted6(l3: &[u8], icmp: usize) -> Option<(usize, usize, u8)> {
    let at = icmp + 8;
    let inner = l3.get(at..)?;
    if inner.len() < 44 || inner[0] >> 4 != 6 {
        return None;
    }
    let e = Ipv6ExtHeaders::walk(IpProtocol(inner[6]), &inner[40..]).ok()?;
    if e.fragment.is_some_and(|f| !f.is_first()) || !matches!(e.protocol.0, 6 | 17) {
        return None;
    }
    let l4 = at + 40 + e.offset;
    (l3.len() >= l4 + 4).then_some((at, l4, e.protocol.0))
}

/// The 5-tuple quoted by an ICMPv6 error (ICMPv6 header at `icmp`).
pub fn icmp6_quoted(l3: &[u8], icmp: usize, zone: u16) -> Option<Key6> {
    let (at, l4, proto) = quoted6(l3, icmp)?;
    Some(Key::new(
        zone,
        proto,
        u128::from_be_bytes(rd128(l3, at + 8)),
        u128::from_be_bytes(rd128(l3, at + 24)),
        rd16(l3, l4),
        rd16(l3, l4 + 2),
    ))
}

/// Rewrites an ICMPv6 error so it quotes `quoted` and goes to `quoted.src`:
/// the outer destination, the quoted addresses and ports, and the ICMPv6
/// checksum (recomputed over the pseudo-header).
pub fn icmp6_translate(l3: &mut [u8], icmp: usize, quoted: &Key6) -> bool {
    let Some((at, l4, _)) = quoted6(l3, icmp) else {
        return false;
    };
    wr128(l3, at + 8, quoted.src);
    wr128(l3, at + 24, quoted.dst);
    wr16(l3, l4, quoted.sport);
    wr16(l3, l4 + 2, quoted.dport);
    wr128(l3, 24, quoted.src);
    let total = (40 + usize::from(rd16(l3, 4))).min(l3.len());
    if total < icmp + 8 {
        return false;
    }
    wr16(l3, icmp + 2, 0);
    let (src, dst) = (Ipv6Addr::from(rd128(l3, 8)), Ipv6Addr::from(rd128(l3, 24)));
    let len = (total - icmp) as u32;
    let ps = checksum::pseudo_header_v6(&src, &dst, 58, len);
    let c = checksum::finish(ps + checksum::sum(&l3[icmp..total]));
    wr16(l3, icmp + 2, c);
    true
}

/// `Σ ~old + Σ new` over the 16-bit halves of `old` and `new` (RFC 1624
/// eqn. 3, several words at once; at most 4 × 0x1fffe, no overflow).
#[inline(always)]
fn delta32(old: u32, new: u32) -> u32 {
    (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff)
}

/// `!fold(!hc + delta)`: one RFC 1624 update for all the changed words
/// summed in `delta` (equal, bit for bit, to updating word by word: both
/// folds are non-zero once any operand is).
#[inline(always)]
fn apply(hc: u16, delta: u32) -> u16 {
    let mut s = u32::from(!hc) + delta;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Rewrites the addresses and ports of an IPv4 TCP or UDP packet (header
/// length `ihl`) to those of `to`. Returns false if the packet is too short.
/// The address change is summed once and applied to both checksums.
#[inline]
pub fn rewrite(l3: &mut [u8], ihl: usize, to: &Key) -> bool {
    let Some(&proto) = l3.get(9) else {
        return false;
    };
    let (csum_at, min) = match proto {
        6 => (16, 20),
        17 => (6, 8),
        _ => return false,
    };
    if ihl < 20 || l3.len() < ihl + min {
        return false;
    }
    let (src, dst) = (rd32(l3, 12), rd32(l3, 16));
    let ports = rd32(l3, ihl);
    let new_ports = u32::from(to.sport) << 16 | u32::from(to.dport);
    let addrs = delta32(src, to.src) + delta32(dst, to.dst);
    wr16(l3, 10, apply(rd16(l3, 10), addrs));
    wr32(l3, 12, to.src);
    wr32(l3, 16, to.dst);
    let c_at = ihl + csum_at;
    let old = rd16(l3, c_at);
    // UDP without a checksum (0) stays without one.
    if proto == 6 || old != 0 {
        let c = apply(old, addrs + delta32(ports, new_ports));
        wr16(l3, c_at, if proto == 17 { udp_zero_to_ffff(c) } else { c });
    }
    wr32(l3, ihl, new_ports);
    true
}

/// `!fold(!hc + d)` on a checksum and a delta both in wire byte order.
#[inline(always)]
fn apply_wire(hc: [u8; 2], d: u16) -> [u8; 2] {
    apply(u16::from_ne_bytes(hc), u32::from(d)).to_ne_bytes()
}

/// [`rewrite`] for a packet whose tuple is the flow key the checksum deltas
/// `d` were computed from (a conntrack hit): each checksum takes one
/// addition. Returns false if the packet is too short or not TCP/UDP.
#[inline(always)]
pub fn rewrite_delta(l3: &mut [u8], ihl: usize, to: &Key, d: CsumDelta) -> bool {
    if ihl < 20 {
        return false;
    }
    let Some((ip, l4)) = l3.split_at_mut_checked(ihl) else {
        return false;
    };
    let Some(ip) = ip.first_chunk_mut::<20>() else {
        return false;
    };
    let ports = (u32::from(to.sport) << 16 | u32::from(to.dport)).to_be_bytes();
    match to.proto {
        6 => {
            let Some(tcp) = l4.first_chunk_mut::<20>() else {
                return false;
            };
            let c = apply_wire([tcp[16], tcp[17]], d.l4);
            tcp[16..18].copy_from_slice(&c);
            tcp[..4].copy_from_slice(&ports);
        }
        17 => {
            let Some(udp) = l4.first_chunk_mut::<8>() else {
                return false;
            };
            // UDP without a checksum (0) stays without one.
            if udp[6..8] != [0, 0] {
                let c = apply_wire([udp[6], udp[7]], d.l4);
                let c = if c == [0, 0] { [0xff, 0xff] } else { c };
                udp[6..8].copy_from_slice(&c);
            }
            udp[..4].copy_from_slice(&ports);
        }
        _ => return false,
    }
    let c = apply_wire([ip[10], ip[11]], d.ip);
    ip[10..12].copy_from_slice(&c);
    ip[12..16].copy_from_slice(&to.src.to_be_bytes());
    ip[16..20].copy_from_slice(&to.dst.to_be_bytes());
    true
}

/// [`rewrite6`] for a packet whose tuple is the flow key the checksum
/// delta `d` was computed from (a conntrack hit). Its L4 half is written out
/// like [`rewrite_delta`]'s on purpose: a shared helper measured slower on
/// this hit path (benches/RESULTS.md §7). Returns false if the
/// packet is too short, not TCP/UDP, or UDP without a checksum.
#[inline(always)]
pub fn rewrite6_delta(l3: &mut [u8], l4: usize, to: &Key6, d: CsumDelta) -> bool {
    if l4 < 40 {
        return false;
    }
    let Some((ip, l4)) = l3.split_at_mut_checked(l4) else {
        return false;
    };
    let Some(ip) = ip.first_chunk_mut::<40>() else {
        return false;
    };
    let ports = (u32::from(to.sport) << 16 | u32::from(to.dport)).to_be_bytes();
    match to.proto {
        6 => {
            let Some(tcp) = l4.first_chunk_mut::<20>() else {
                return false;
            };
            let c = apply_wire([tcp[16], tcp[17]], d.l4);
            tcp[16..18].copy_from_slice(&c);
            tcp[..4].copy_from_slice(&ports);
        }
        17 => {
            let Some(udp) = l4.first_chunk_mut::<8>() else {
                return false;
            };
            if udp[6..8] == [0, 0] {
                return false;
            }
            let c = apply_wire([udp[6], udp[7]], d.l4);
            let c = if c == [0, 0] { [0xff, 0xff] } else { c };
            udp[6..8].copy_from_slice(&c);
            udp[..4].copy_from_slice(&ports);
        }
        _ => return false,
    }
    ip[8..24].copy_from_slice(&to.src.to_be_bytes());
    ip[24..40].copy_from_slice(&to.dst.to_be_bytes());
    true
}

/// Turns a TCP segment (IPv4, header length `ihl`) into the RST its sender
/// should get (RFC 793 reset generation), in place: addresses and ports
/// swapped, 40 bytes long. Returns the new length, or `None` if the segment
/// is too short or is itself a RST (never answered).
pub fn tcp_reset(l3: &mut [u8], ihl: usize) -> Option<usize> {
    if l3.len() < ihl + 20 || ihl < 20 || l3.len() < 40 {
        return None;
    }
    let total = usize::from(rd16(l3, 2)).min(l3.len());
    let tcp = &l3[ihl..];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let payload = total.saturating_sub(ihl + doff) as u32;
    let seg = rst_segment(tcp, payload)?;
    let (src, dst) = (rd32(l3, 12), rd32(l3, 16));
    let mut out = [0u8; 40];
    out[0] = 0x45;
    wr16(&mut out, 2, 40);
    wr16(&mut out, 6, 0x4000);
    out[8] = 64;
    out[9] = 6;
    wr32(&mut out, 12, dst);
    wr32(&mut out, 16, src);
    let c = checksum::checksum(&out[..20]);
    wr16(&mut out, 10, c);
    out[20..].copy_from_slice(&seg);
    let ps = checksum::pseudo_header_v4(dst.into(), src.into(), 6, 20);
    let c = checksum::finish(ps + checksum::sum(&out[20..]));
    wr16(&mut out, 36, c);
    l3[..40].copy_from_slice(&out);
    Some(40)
}

/// The 5-tuple quoted by an ICMP error (IPv4, outer header length `ihl`):
/// the quoted packet's key, if it quotes TCP or UDP with its ports.
pub fn icmp_quoted(l3: &[u8], ihl: usize, zone: u16) -> Option<Key> {
    let inner = l3.get(ihl + 8..)?;
    if inner.len() < 28 || inner[0] >> 4 != 4 {
        return None;
    }
    let iihl = usize::from(inner[0] & 0x0f) * 4;
    let proto = inner[9];
    if !matches!(proto, 6 | 17) || inner.len() < iihl + 4 {
        return None;
    }
    Some(Key::new(
        zone,
        proto,
        rd32(inner, 12),
        rd32(inner, 16),
        rd16(inner, iihl),
        rd16(inner, iihl + 2),
    ))
}

/// Rewrites an ICMP error so it quotes `quoted` and goes to `quoted.src`:
/// the outer destination, the quoted addresses and ports, the quoted IP
/// checksum (incrementally) and the ICMP checksum (recomputed). The quoted
/// L4 checksum is left as is (the quote is usually truncated anyway).
pub fn icmp_translate(l3: &mut [u8], ihl: usize, quoted: &Key) -> bool {
    let Some(inner) = l3.get(ihl + 8..) else {
        return false;
    };
    if inner.len() < 28 {
        return false;
    }
    let iihl = usize::from(inner[0] & 0x0f) * 4;
    if inner.len() < iihl + 4 || iihl < 20 {
        return false;
    }
    let at = ihl + 8;
    let (osrc, odst) = (rd32(l3, at + 12), rd32(l3, at + 16));
    let mut c = rd16(l3, at + 10);
    c = update_u32(c, osrc, quoted.src);
    c = update_u32(c, odst, quoted.dst);
    wr16(l3, at + 10, c);
    wr32(l3, at + 12, quoted.src);
    wr32(l3, at + 16, quoted.dst);
    wr16(l3, at + iihl, quoted.sport);
    wr16(l3, at + iihl + 2, quoted.dport);
    let old_dst = rd32(l3, 16);
    let c = update_u32(rd16(l3, 10), old_dst, quoted.src);
    wr16(l3, 10, c);
    wr32(l3, 16, quoted.src);
    let total = usize::from(rd16(l3, 2)).min(l3.len());
    if total < ihl + 8 {
        return false;
    }
    wr16(l3, ihl + 2, 0);
    let c = checksum::checksum(&l3[ihl..total]);
    wr16(l3, ihl + 2, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn tcp_packet(payload: &[u8], syn: bool) -> Vec<u8> {
        let mut b =
            PacketBuilder::ipv4([198, 18, 1, 2], [198, 19, 0, 10], 64).tcp(40000, 80, 1000, 65535);
        if syn {
            b = b.syn();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn verify(v: &[u8]) -> (Key, bool) {
        let p = SlicedPacket::from_ip(v).unwrap();
        let ip = match p.net.unwrap() {
            etherparse::NetSlice::Ipv4(h) => h,
            _ => panic!("v4"),
        };
        let hdr = ip.header();
        assert_eq!(
            hdr.header_checksum(),
            hdr.to_header().calc_header_checksum(),
            "IP checksum"
        );
        let (src, dst) = (
            u32::from(hdr.source_addr()),
            u32::from(hdr.destination_addr()),
        );
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                let want = t
                    .to_header()
                    .calc_checksum_ipv4(&hdr.to_header(), t.payload())
                    .unwrap();
                (
                    Key::new(0, 6, src, dst, t.source_port(), t.destination_port()),
                    want == t.checksum(),
                )
            }
            TransportSlice::Udp(u) => {
                let want = u
                    .to_header()
                    .calc_checksum_ipv4(&hdr.to_header(), u.payload())
                    .unwrap();
                (
                    Key::new(0, 17, src, dst, u.source_port(), u.destination_port()),
                    want == u.checksum(),
                )
            }
            _ => panic!("l4"),
        }
    }

    #[test]
    fn dnat_and_snat_keep_checksums_valid() {
        for payload in [&b""[..], b"hello", b"odd"] {
            let mut v = tcp_packet(payload, true);
            let to = Key::new(0, 6, 0xc612_0901, 0xc612_0302, 61000, 8080);
            assert!(rewrite(&mut v, 20, &to));
            let (k, ok) = verify(&v);
            assert_eq!(k, to);
            assert!(ok, "TCP checksum after NAT");
        }
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 18, 1, 2], [198, 19, 0, 10], 64)
            .udp(5353, 53)
            .write(&mut v, b"query")
            .unwrap();
        let to = Key::new(0, 17, 0xc612_0102, 0xc612_0302, 5353, 5300);
        assert!(rewrite(&mut v, 20, &to));
        let (k, ok) = verify(&v);
        assert_eq!(k, to);
        assert!(ok, "UDP checksum after NAT");
        assert!(!rewrite(&mut v[..24], 20, &to), "short packet refused");
    }

    /// The one-pass update gives the checksums a full recomputation gives,
    /// for random addresses, ports and payloads (TCP and UDP).
    #[test]
    fn one_pass_update_matches_recomputation() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(7);
        for n in 0..2000 {
            let payload: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.r#gen()).collect();
            let (s, d): ([u8; 4], [u8; 4]) = (rng.r#gen(), rng.r#gen());
            let b = PacketBuilder::ipv4(s, d, 64);
            let mut v = Vec::new();
            let tcp = n % 2 == 0;
            if tcp {
                b.tcp(rng.r#gen(), rng.r#gen(), rng.r#gen(), 1000)
                    .write(&mut v, &payload)
                    .unwrap();
            } else {
                b.udp(rng.r#gen(), rng.r#gen())
                    .write(&mut v, &payload)
                    .unwrap();
            }
            let to = Key::new(
                0,
                if tcp { 6 } else { 17 },
                rng.r#gen(),
                rng.r#gen(),
                rng.r#gen(),
                rng.r#gen(),
            );
            assert!(rewrite(&mut v, 20, &to));
            let (k, ok) = verify(&v);
            assert_eq!(k, to);
            assert!(ok, "checksum after NAT, case {n}");
            if !tcp {
                assert_ne!(
                    u16::from_be_bytes([v[26], v[27]]),
                    0,
                    "UDP 0 sent as 0xffff"
                );
            }
        }
    }

    /// A conntrack hit's rewrite (the flow's precomputed deltas) writes the
    /// same bytes as the full update, both directions, IPv4 and IPv6, TCP
    /// and UDP, edge addresses included (all ones to all zeros).
    #[test]
    fn precomputed_deltas_give_the_full_update() {
        use crate::conntrack::{Flow, flow_flags};
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(9);
        let edge = |rng: &mut SmallRng| -> u128 {
            match rng.gen_range(0..8) {
                0 => 0,
                1 => u128::MAX,
                _ => rng.r#gen(),
            }
        };
        let packet = |v6: bool, tcp: bool, k: (u128, u128, u16, u16), payload: &[u8]| {
            let b = if v6 {
                PacketBuilder::ipv6(k.0.to_be_bytes(), k.1.to_be_bytes(), 64)
            } else {
                PacketBuilder::ipv4((k.0 as u32).to_be_bytes(), (k.1 as u32).to_be_bytes(), 64)
            };
            let mut v = Vec::new();
            if tcp {
                b.tcp(k.2, k.3, 7, 1000).write(&mut v, payload).unwrap();
            } else {
                b.udp(k.2, k.3).write(&mut v, payload).unwrap();
            }
            v
        };
        for n in 0..4000 {
            let (v6, tcp) = (n % 4 >= 2, n % 2 == 0);
            let proto = if tcp { 6 } else { 17 };
            let payload: Vec<u8> = (0..rng.gen_range(0..30)).map(|_| rng.r#gen()).collect();
            let [a, b, c, d] = [(); 4].map(|_| edge(&mut rng));
            let ports: [u16; 4] = rng.r#gen();
            // Both directions of one flow: the client's packet and the
            // backend's reply.
            let dirs = [
                ((a, b, ports[0], ports[1]), (c, d, ports[2], ports[3])),
                ((d, c, ports[3], ports[2]), (b, a, ports[1], ports[0])),
            ];
            if v6 {
                let key = |k: (u128, u128, u16, u16)| Key::new(0, proto, k.0, k.1, k.2, k.3);
                let f = Flow {
                    fwd: key(dirs[0].0),
                    rev: key(dirs[1].0),
                    flags: flow_flags::NAT,
                    ..Flow::<u128>::default()
                };
                let deltas = f.nat_deltas();
                for (dir, &(from, to)) in dirs.iter().enumerate() {
                    let v = packet(true, tcp, from, &payload);
                    let (mut full, mut fast) = (v.clone(), v);
                    assert!(rewrite6(&mut full, 40, &key(to)));
                    assert!(rewrite6_delta(&mut fast, 40, &key(to), deltas[dir]));
                    assert_eq!(fast, full, "IPv6 case {n} direction {dir}");
                }
            } else {
                let key = |k: (u128, u128, u16, u16)| {
                    Key::new(0, proto, k.0 as u32, k.1 as u32, k.2, k.3)
                };
                let f = Flow {
                    fwd: key(dirs[0].0),
                    rev: key(dirs[1].0),
                    flags: flow_flags::NAT,
                    ..Flow::default()
                };
                let deltas = f.nat_deltas();
                for (dir, &(from, to)) in dirs.iter().enumerate() {
                    let mut v = packet(false, tcp, from, &payload);
                    if !tcp && n % 3 == 0 {
                        v[26..28].copy_from_slice(&[0, 0]); // no UDP checksum
                    }
                    let (mut full, mut fast) = (v.clone(), v);
                    assert!(rewrite(&mut full, 20, &key(to)));
                    assert!(rewrite_delta(&mut fast, 20, &key(to), deltas[dir]));
                    assert_eq!(fast, full, "IPv4 case {n} direction {dir}");
                    let (k, ok) = verify(&fast);
                    assert_eq!(k, key(to));
                    assert!(ok || (!tcp && n % 3 == 0), "checksum, case {n}");
                }
            }
        }
        let mut short = tcp_packet(b"", true);
        short.truncate(30);
        let to = Key::new(0, 6, 1, 2, 3, 4);
        assert!(!rewrite_delta(&mut short, 20, &to, CsumDelta::default()));
        assert_eq!(
            short,
            tcp_packet(b"", true)[..30],
            "refused before any write"
        );
    }

    #[test]
    fn reset_answers_a_syn() {
        let mut v = tcp_packet(b"", true);
        let n = tcp_reset(&mut v, 20).unwrap();
        v.truncate(n);
        let (k, ok) = verify(&v);
        assert!(ok);
        assert_eq!(k, Key::new(0, 6, 0xc613_000a, 0xc612_0102, 80, 40000));
        let p = SlicedPacket::from_ip(&v).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        assert!(t.rst() && t.ack());
        assert_eq!(t.acknowledgment_number(), 1001, "SYN counts one");
        let mut again = v.clone();
        assert!(tcp_reset(&mut again, 20).is_none(), "never answer a RST");
    }

    fn v6(host: u16) -> [u8; 16] {
        (0x2001_0db8_0001u128 << 80 | u128::from(host)).to_be_bytes()
    }

    /// Checks an IPv6 TCP/UDP packet's checksum with etherparse; its tuple.
    fn verify6(v: &[u8]) -> (crate::conntrack::Key6, bool) {
        let p = SlicedPacket::from_ip(v).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("v6")
        };
        let hdr = ip.header().to_header();
        let (src, dst) = (
            u128::from_be_bytes(hdr.source),
            u128::from_be_bytes(hdr.destination),
        );
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                let want = t.to_header().calc_checksum_ipv6(&hdr, t.payload()).unwrap();
                (
                    Key::new(0, 6, src, dst, t.source_port(), t.destination_port()),
                    want == t.checksum(),
                )
            }
            TransportSlice::Udp(u) => {
                let want = u.to_header().calc_checksum_ipv6(&hdr, u.payload()).unwrap();
                (
                    Key::new(0, 17, src, dst, u.source_port(), u.destination_port()),
                    want == u.checksum() && u.checksum() != 0,
                )
            }
            _ => panic!("l4"),
        }
    }

    #[test]
    fn ipv6_nat_keeps_checksums_valid() {
        let to = Key::new(
            0,
            6,
            u128::from_be_bytes(v6(2)),
            u128::from_be_bytes(v6(0x99)),
            61000,
            8080,
        );
        for payload in [&b""[..], b"hello", b"odd"] {
            let mut v = Vec::new();
            PacketBuilder::ipv6(v6(2), v6(10), 64)
                .tcp(40000, 80, 1000, 65535)
                .syn()
                .write(&mut v, payload)
                .unwrap();
            assert!(rewrite6(&mut v, 40, &to));
            let (k, ok) = verify6(&v);
            assert_eq!(k, to);
            assert!(ok, "TCP checksum after NAT");
        }
        // UDP, including a datagram whose new checksum computes to 0.
        for sport in [5353u16, 1, 65535, 4242] {
            let mut v = Vec::new();
            PacketBuilder::ipv6(v6(2), v6(10), 64)
                .udp(sport, 53)
                .write(&mut v, b"query")
                .unwrap();
            let to = Key::new(
                0,
                17,
                u128::from_be_bytes(v6(3)),
                u128::from_be_bytes(v6(7)),
                sport ^ 0x5a5a,
                5300,
            );
            assert!(rewrite6(&mut v, 40, &to));
            let (k, ok) = verify6(&v);
            assert_eq!(k, to);
            assert!(ok, "UDP checksum after NAT");
            v[46..48].copy_from_slice(&[0, 0]);
            assert!(!rewrite6(&mut v, 40, &to), "UDP without checksum refused");
        }
        let mut short = vec![0x60; 50];
        assert!(!rewrite6(&mut short, 40, &to), "short packet refused");
    }

    #[test]
    fn ipv6_reset_answers_a_syn() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(v6(2), v6(10), 64)
            .tcp(40000, 80, 1000, 65535)
            .syn()
            .write(&mut v, b"")
            .unwrap();
        let n = tcp_reset6(&mut v, 40).unwrap();
        v.truncate(n);
        let (k, ok) = verify6(&v);
        assert!(ok);
        assert_eq!(
            k,
            Key::new(
                0,
                6,
                u128::from_be_bytes(v6(10)),
                u128::from_be_bytes(v6(2)),
                80,
                40000
            )
        );
        let p = SlicedPacket::from_ip(&v).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        assert!(t.rst() && t.ack());
        assert_eq!(t.acknowledgment_number(), 1001);
        assert!(
            tcp_reset6(&mut v.clone(), 40).is_none(),
            "never answer a RST"
        );
    }

    #[test]
    fn icmpv6_error_is_translated() {
        // Packet too big from the backend's path, quoting client → backend.
        let backend = Key::new(
            0,
            6,
            u128::from_be_bytes(v6(2)),
            u128::from_be_bytes(v6(0x99)),
            40000,
            8080,
        );
        let mut quote = Vec::new();
        PacketBuilder::ipv6(v6(2), v6(0x99), 64)
            .tcp(40000, 8080, 1, 1000)
            .write(&mut quote, b"data")
            .unwrap();
        let mut v = Vec::new();
        PacketBuilder::ipv6(v6(0x50), v6(2), 64)
            .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
            .write(&mut v, &quote)
            .unwrap();
        assert_eq!(icmp6_quoted(&v, 40, 0), Some(backend));
        let orig = Key::new(
            0,
            6,
            u128::from_be_bytes(v6(2)),
            u128::from_be_bytes(v6(10)),
            40000,
            80,
        );
        assert!(icmp6_translate(&mut v, 40, &orig));
        assert_eq!(icmp6_quoted(&v, 40, 0), Some(orig));
        let p = SlicedPacket::from_ip(&v).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), v6(2));
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!()
        };
        let want = icmp
            .icmp_type()
            .calc_checksum(
                ip.header().source(),
                ip.header().destination(),
                icmp.payload(),
            )
            .unwrap();
        assert_eq!(icmp.checksum(), want, "ICMPv6 checksum");
    }

    #[test]
    fn icmp_error_is_translated() {
        // An error about backend 198.18.3.2:8080 → client, quoting the
        // translated packet client → backend.
        let mut quote = tcp_packet(b"", true);
        let to = Key::new(0, 6, 0xc612_0102, 0xc612_0302, 40000, 8080);
        rewrite(&mut quote, 20, &to);
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 18, 3, 1], [198, 18, 1, 2], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400,
                },
            ))
            .write(&mut v, &quote[..28])
            .unwrap();
        let q = icmp_quoted(&v, 20, 0).unwrap();
        assert_eq!(q, to);
        let orig = Key::new(0, 6, 0xc612_0102, 0xc613_000a, 40000, 80);
        assert!(icmp_translate(&mut v, 20, &orig));
        let p = etherparse::Ipv4Slice::from_slice(&v).unwrap();
        assert_eq!(u32::from(p.header().destination_addr()), orig.src);
        assert_eq!(icmp_quoted(&v, 20, 0), Some(orig));
        assert_eq!(checksum::sum(&v[20..]), 0xffff, "ICMP checksum");
        assert_eq!(checksum::sum(&v[..20]), 0xffff, "IP checksum");
        assert_eq!(checksum::sum(&v[28..48]), 0xffff, "quoted IP checksum");
    }
}
