//! `vxlan4-encap` / `vxlan6-encap`: prepend outer IPv4 (IPv6)/UDP/VXLAN to
//! an inner Ethernet frame in the buffer's headroom (no copy) and route it in
//! the underlay.
//!
//! Input: frames for a tunnel interface (`tx_if`) from `ip4-rewrite`,
//! `l2-input` or `interface-output`, counted here as sent on the tunnel
//! (per tunnel and vector), with a complete inner Ethernet header at the start of the data
//! (the inner MTU was checked there, or by `ip4-rewrite` for routed
//! packets).
//! The UDP source port is taken from a hash of the inner flow (IP addresses,
//! protocol, ports; MACs for non-IP frames), scaled into the VTEP's source
//! port range (RFC 7348 §5), so the underlay can spread flows while one flow
//! keeps one path. Writes `l3_off` (0), `ethertype`, `domain` (underlay VRF),
//! `flags` (`LOCAL_ORIGIN`: no ICMP error is ever sent about an outer
//! packet). Edges: `ip4-lookup` / `ip6-lookup` (outer next hop, ARP/ND,
//! outer Ethernet header are the underlay's), `drop`; and for IPv4, when the
//! remote VTEP's route is a resolved neighbour on a port (looked up once per
//! vector and tunnel), none: the whole outer header, Ethernet included, is
//! one precomputed template per tunnel copied in one go, checked against the
//! MTU `ip4-rewrite` would apply, and the packet is marked for transmission
//! on the port and counted as sent on the underlay interface, as
//! `interface-output` would (which still runs for a VLAN-tagged underlay
//! interface; ECMP, BVI and unresolved next hops take the lookup path).
//!
//! IPv6 outer headers carry the flow hash in the flow label too, and a
//! computed UDP checksum (the one per-byte cost of the IPv6 encap: a sum
//! over the inner frame).

use vrouter_wire::checksum;

use std::net::IpAddr;

use vrouter_wire::EtherType;

use super::{Dscp, OUTER4, OUTER6, Tunnel};
use crate::ethernet::drop_pkt;
use crate::graph::{Counter, IfaceAcc, NodeId, Queues, WorkerStats};
use crate::ip::{be16, be32, be128, flow_hash};
use crate::pipeline::{Ctx, NodeState};
use crate::pkt::{Disposition, NO_IFACE, Pkt, flags};
use crate::tables::{NextHop, Tables};

const ETH: usize = 14;
/// Tunnels `vxlan4-encap` remembers within one vector.
const TUNNEL_SLOTS: usize = 32;

/// The flow hash and the TOS / traffic class of an inner frame.
#[inline(always)]
pub(crate) fn inner_flow(f: &[u8]) -> (u32, u8) {
    // The common case, IPv4 without options, first or only fragment: fixed
    // offsets in the first 38 bytes (one bounds check), the same hash.
    if let Some(h) = f.first_chunk::<38>()
        && h[12] == 0x08
        && h[13] == 0
        && h[14] == 0x45
        && u16::from_be_bytes([h[20], h[21]]) & 0x1fff == 0
    {
        let src = u32::from_be_bytes([h[26], h[27], h[28], h[29]]);
        let dst = u32::from_be_bytes([h[30], h[31], h[32], h[33]]);
        return (
            flow_hash(u128::from(src), u128::from(dst), h[23], &h[34..38]),
            h[15],
        );
    }
    inner_flow_any(f)
}

/// [`inner_flow`] of any frame.
#[inline(never)]
fn inner_flow_any(f: &[u8]) -> (u32, u8) {
    let et = if f.len() >= 14 { be16(f, 12) } else { 0 };
    match et {
        0x0800 if f.len() >= 34 => {
            let l3 = &f[14..];
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let l4 = if be16(l3, 6) & 0x1fff == 0 {
                l3.get(ihl..).unwrap_or(&[])
            } else {
                &[]
            };
            (
                flow_hash(
                    u128::from(be32(l3, 12)),
                    u128::from(be32(l3, 16)),
                    l3[9],
                    l4,
                ),
                l3[1],
            )
        }
        0x86dd if f.len() >= 54 => {
            let l3 = &f[14..];
            (
                flow_hash(be128(l3, 8), be128(l3, 24), l3[6], &l3[40..]),
                (l3[0] << 4) | (l3[1] >> 4),
            )
        }
        _ => {
            let m = |at: usize| {
                f.get(at..at + 6).map_or(0u128, |b| {
                    b.iter().fold(0u128, |a, &x| a << 8 | u128::from(x))
                })
            };
            (flow_hash(m(0), m(6), 0, &[]), 0)
        }
    }
}

/// The UDP source port for flow hash `hash`: uniform over the range
/// (multiply and shift, no division).
#[inline(always)]
pub fn source_port(min: u16, span: u32, hash: u32) -> u16 {
    min.wrapping_add(((u64::from(hash) * u64::from(span)) >> 32) as u16)
}

/// The tunnel of interface `iface`.
#[inline(always)]
fn tunnel_of(t: &Tables, iface: u16) -> Option<&Tunnel> {
    let k = t.iface(iface)?.tunnel?;
    t.vxlan.tunnels.get(usize::from(k))
}

/// How `vxlan4-encap` sends the packets of one tunnel when the remote
/// VTEP's route is a resolved neighbour on a port (no ECMP, no BVI, no
/// resolution pending): with the outer Ethernet header written here, past
/// the underlay's `ip4-lookup`/`ip4-rewrite`, which would find the same.
#[derive(Clone, Copy)]
struct Direct {
    /// Outer Ethernet + IPv4 + UDP + VXLAN, the configured TTL in place;
    /// total length, TOS (when copied), checksum and ports zero.
    hdr: [u8; ETH + OUTER4],
    /// The IPv4 checksum template's sum.
    csum: u32,
    nh: u32,
    iface: u16,
    mtu: u16,
    /// The underlay interface's port, or `None` when `interface-output`
    /// must still run (a VLAN tag to add): then the packet goes there.
    port: Option<u16>,
}

/// The direct path of `tun`, if its remote VTEP's route allows it.
#[inline(never)]
fn direct4(t: &Tables, st: &mut NodeState, tun: &Tunnel) -> Option<Direct> {
    let IpAddr::V4(remote) = tun.remote else {
        return None;
    };
    let nh = t
        .vrfs
        .get(usize::from(tun.vrf))?
        .fib4
        .lookup(u32::from(remote));
    let NextHop::Rewrite { .. } = t.nexthop(nh)? else {
        return None;
    };
    st.adj4.sync(t);
    let a = st
        .adj4
        .get(t, nh, EtherType::IPV4)
        .copied()
        .filter(|a| !a.bvi)?;
    let f = t.iface(a.iface).filter(|f| f.tunnel.is_none())?;
    let mut hdr = [0u8; ETH + OUTER4];
    hdr[..ETH].copy_from_slice(&a.header);
    hdr[ETH..].copy_from_slice(tun.header.get(..OUTER4)?);
    hdr[ETH + 8] = tun.ttl;
    Some(Direct {
        hdr,
        csum: tun.csum_direct,
        nh: a.id,
        iface: a.iface,
        mtu: a.mtu,
        port: (f.vlan == 0).then_some(f.port),
    })
}

/// A tunnel of this vector: its interface, tunnel and direct path, and
/// the packets and bytes sent on it so far (flushed to the interface's
/// counters when the slot is reused and at the end of the vector).
#[derive(Clone, Copy)]
struct Slot<'t> {
    iface: u16,
    tun: Option<&'t Tunnel>,
    direct: Option<Direct>,
    packets: u64,
    bytes: u64,
}

impl Slot<'_> {
    #[inline(always)]
    fn flush(&self, stats: &WorkerStats) {
        if self.packets > 0 {
            let s = stats.iface(self.iface);
            s.tx_packets.add(self.packets);
            s.tx_bytes.add(self.bytes);
        }
    }
}

/// Fills the variable fields of an outer IPv4/UDP/VXLAN header copied from
/// a template whose sum is `base` (RFC 1071: the checksum is the template's
/// sum plus the fields written here).
#[inline(always)]
fn finish4(h: &mut [u8; OUTER4], base: u32, copied_tos: Option<u8>, total: u16, sport: u16) {
    let tos = copied_tos.unwrap_or(0);
    if copied_tos.is_some() {
        h[1] = tos;
    }
    h[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum::finish(base + u32::from(total) + u32::from(tos));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h[20..22].copy_from_slice(&sport.to_be_bytes());
    h[24..26].copy_from_slice(&(total - 20).to_be_bytes());
}

/// The `vxlan4-encap` node.
pub fn node4(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    // Tunnels (and their direct paths) of this vector, direct-mapped by
    // interface: a vector usually goes to a few remote nodes, interleaved.
    let mut seen = [Slot {
        iface: NO_IFACE,
        tun: None,
        direct: None,
        packets: 0,
        bytes: 0,
    }; TUNNEL_SLOTS];
    let mut acc = IfaceAcc::default();
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let tx_if = p.meta.tx_if;
        let slot = &mut seen[usize::from(tx_if) % TUNNEL_SLOTS];
        if slot.iface != tx_if {
            slot.flush(cx.stats);
            let tun = tunnel_of(t, tx_if).filter(|t| !t.v6);
            let direct = tun.and_then(|tun| direct4(t, st, tun));
            *slot = Slot {
                iface: tx_if,
                tun,
                direct,
                packets: 0,
                bytes: 0,
            };
        }
        let Some(tun) = slot.tun else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        let inner_len = p.buf.len();
        slot.packets += 1;
        slot.bytes += inner_len as u64;
        let total = inner_len + OUTER4;
        if inner_len < 14 || total > usize::from(u16::MAX) {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        }
        let (hash, tos) = inner_flow(p.buf.data());
        let copied_tos = matches!(tun.dscp, Dscp::Copy).then_some(tos);
        let sport = source_port(tun.sport_min, tun.sport_span, hash);
        let total16 = total as u16;
        p.meta.ethertype = 0x0800;
        p.meta.domain = tun.vrf;
        p.meta.flags = (p.meta.flags & flags::TRACED) | flags::LOCAL_ORIGIN;
        match slot.direct.as_ref().filter(|d| total <= usize::from(d.mtu)) {
            Some(d) => {
                let Some(h) = p
                    .buf
                    .prepend(ETH + OUTER4)
                    .ok()
                    .and_then(|h| h.first_chunk_mut::<{ ETH + OUTER4 }>())
                else {
                    drop_pkt(p, q, i, Counter::GraphNoSpace);
                    continue;
                };
                *h = d.hdr;
                if let Some(h) = h.last_chunk_mut::<OUTER4>() {
                    finish4(h, d.csum, copied_tos, total16, sport);
                }
                p.meta.l3_off = ETH as u16;
                p.meta.nh = d.nh;
                p.meta.tx_if = d.iface;
                match d.port {
                    Some(port) => {
                        acc.add(cx.stats, false, d.iface, ETH + total);
                        p.meta.tx_port = port;
                        p.meta.disposition = Disposition::Tx;
                    }
                    None => q.push(NodeId::InterfaceOutput, i),
                }
            }
            None => {
                let Some(h) = p
                    .buf
                    .prepend(OUTER4)
                    .ok()
                    .and_then(|h| h.first_chunk_mut::<OUTER4>())
                else {
                    drop_pkt(p, q, i, Counter::GraphNoSpace);
                    continue;
                };
                if let Some(t4) = tun.header.first_chunk::<OUTER4>() {
                    *h = *t4;
                }
                finish4(h, tun.csum, copied_tos, total16, sport);
                p.meta.l3_off = 0;
                q.push(NodeId::Ip4Lookup, i);
            }
        }
    }
    acc.flush(cx.stats, false);
    for slot in &seen {
        slot.flush(cx.stats);
    }
}

/// The `vxlan6-encap` node.
pub fn node6(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let mut last: (u16, Option<&Tunnel>) = (NO_IFACE, None);
    let mut sent = IfaceAcc::default();
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        if p.meta.tx_if != last.0 {
            last = (p.meta.tx_if, tunnel_of(t, p.meta.tx_if));
        }
        let Some(tun) = last.1.filter(|t| t.v6) else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        let inner_len = p.buf.len();
        sent.add(cx.stats, false, p.meta.tx_if, inner_len);
        let udp_len = inner_len + 16;
        if inner_len < 14 || udp_len > usize::from(u16::MAX) {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        }
        let (hash, tc) = inner_flow(p.buf.data());
        let tc = match tun.dscp {
            Dscp::Copy => tc,
            Dscp::Fixed(_) => (tun.header[0] << 4) | (tun.header[1] >> 4),
        };
        let sport = source_port(tun.sport_min, tun.sport_span, hash);
        let inner_sum = checksum::sum(p.buf.data());
        let Some(h) = p
            .buf
            .prepend(OUTER6)
            .ok()
            .and_then(|h| h.first_chunk_mut::<OUTER6>())
        else {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            continue;
        };
        *h = tun.header;
        let udp_len = udp_len as u16;
        let label = hash & 0x000f_ffff;
        h[0] = 0x60 | (tc >> 4);
        h[1] = (tc << 4) | (label >> 16) as u8;
        h[2..4].copy_from_slice(&(label as u16).to_be_bytes());
        h[4..6].copy_from_slice(&udp_len.to_be_bytes());
        h[40..42].copy_from_slice(&sport.to_be_bytes());
        h[44..46].copy_from_slice(&udp_len.to_be_bytes());
        let c = checksum::finish(tun.csum + 2 * u32::from(udp_len) + u32::from(sport) + inner_sum);
        h[46..48].copy_from_slice(&checksum::udp_zero_to_ffff(c).to_be_bytes());
        p.meta.l3_off = 0;
        p.meta.ethertype = 0x86dd;
        p.meta.domain = tun.vrf;
        p.meta.flags = (p.meta.flags & flags::TRACED) | flags::LOCAL_ORIGIN;
        q.push(NodeId::Ip6Lookup, i);
    }
    sent.flush(cx.stats, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_port_stays_in_range() {
        for h in [0u32, 1, 0x8000_0000, u32::MAX] {
            let p = source_port(49152, 16384, h);
            assert!((49152..=65535).contains(&p), "{p}");
        }
        assert_eq!(source_port(49152, 16384, u32::MAX), 65535);
        assert_eq!(source_port(1000, 1, u32::MAX), 1000);
    }

    #[test]
    fn inner_flow_varies_with_ports_and_is_stable() {
        let frame = |sport: u16| {
            let mut f = vec![0u8; 14 + 20 + 8];
            f[12] = 0x08;
            f[14] = 0x45;
            f[15] = 0xb8;
            f[23] = 17;
            f[26..30].copy_from_slice(&[198, 18, 0, 1]);
            f[30..34].copy_from_slice(&[198, 18, 0, 2]);
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            f[36..38].copy_from_slice(&80u16.to_be_bytes());
            f
        };
        let (h1, tos) = inner_flow(&frame(1000));
        assert_eq!(tos, 0xb8);
        assert_eq!(inner_flow(&frame(1000)).0, h1);
        let ports: std::collections::HashSet<u16> = (1000..1064)
            .map(|s| source_port(49152, 16384, inner_flow(&frame(s)).0))
            .collect();
        assert!(ports.len() > 32, "{} distinct source ports", ports.len());
        // Short or non-IP frames hash without panicking.
        let _ = inner_flow(&[0u8; 3]);
        let _ = inner_flow(&[0u8; 14]);
    }

    /// The fixed-offset IPv4 case hashes exactly as the general parser, for
    /// every protocol, fragment state and option length.
    #[test]
    fn inner_flow_fast_path_agrees_with_the_parser() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for k in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ihl = if k % 7 == 0 { 6 } else { 5 };
            let mut f = vec![0u8; 14 + ihl * 4 + 8 + (k as usize % 5)];
            f[12] = 0x08;
            f[14] = 0x40 | ihl as u8;
            f[15] = x as u8;
            f[20..22]
                .copy_from_slice(&[[0, 0], [0x20, 0], [0x40, 0], [0x00, 0x10]][k as usize % 4]);
            f[23] = [6, 17, 1, 132, 47][(x >> 8) as usize % 5];
            f[26..34].copy_from_slice(&(x >> 3).to_be_bytes());
            let l4 = 14 + ihl * 4;
            f[l4..l4 + 4].copy_from_slice(&((x >> 17) as u32).to_be_bytes());
            assert_eq!(inner_flow(&f), inner_flow_any(&f), "frame {k}: {f:02x?}");
        }
    }
}
