//! IPv6 nodes: `ip6-input` → `ip6-lookup` → `ip6-rewrite`, and `ip6-local`
//! (echo, neighbour discovery, UDP port unreachable, UDP to a VTEP →
//! `vxlan6-input`) for the router's own addresses and for multicast.
//!
//! Same shape and metadata as the IPv4 nodes. Differences: no header
//! checksum; a link-local destination is never forwarded (only delivered if
//! it is ours), nor is a packet with a link-local source; a packet larger
//! than the egress MTU always gets ICMPv6 packet-too-big (routers never
//! fragment IPv6). Extension headers are walked only where the router needs
//! the upper layer (local delivery, the ECMP hash, ICMP error rules), with a
//! bound on their number. ND messages must arrive with hop limit 255.

use std::net::{IpAddr, Ipv6Addr};

use vrouter_wire::{EtherType, IpProtocol, Ipv6ExtHeaders, MacAddr, solicited_node_multicast};

use super::icmp::{fill_icmp6_checksum, icmp6};
use super::ip4::{Step, follow};
use super::{be16, be128, flow_hash, icmp_error};
use crate::ethernet::{drop_pkt, l3_output, set_l2_header};
use crate::graph::{Counter, NodeId, Queues};
use crate::pipeline::{Ctx, Event, NodeState};
use crate::pkt::{Pkt, flags};
use crate::tables::{Iface, NextHop};

const HDR: usize = 40;
const UDP: u8 = 17;
const ICMP6: u8 = 58;
const ND_OPT_SLLA: u8 = 1;
const ND_OPT_TLLA: u8 = 2;

#[inline(always)]
fn is_link_local(a: u128) -> bool {
    a >> 118 == 0x3fa
}

#[inline(always)]
fn is_multicast(a: u128) -> bool {
    a >> 120 == 0xff
}

/// The `ip6-input` node.
pub fn input(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        if l3.len() < HDR {
            drop_pkt(p, q, i, Counter::Ip6Truncated);
            continue;
        }
        if l3[0] >> 4 != 6 {
            drop_pkt(p, q, i, Counter::Ip6BadVersion);
            continue;
        }
        let total = HDR + be16(l3, 4) as usize;
        if total > l3.len() {
            drop_pkt(p, q, i, Counter::Ip6Truncated);
            continue;
        }
        let src = be128(l3, 8);
        let dst = be128(l3, 24);
        if is_multicast(src) || src == 1 {
            drop_pkt(p, q, i, Counter::Ip6BadSource);
            continue;
        }
        let end = p.meta.l3_off as usize + total;
        p.buf.truncate(end);
        if is_multicast(dst) {
            q.push(NodeId::Ip6Local, i);
        } else if is_link_local(dst) {
            // Link-local scope: ours or nobody's.
            if cx
                .t
                .iface(p.meta.rx_if)
                .is_some_and(|f| f.has_ip6(Ipv6Addr::from(dst)))
            {
                q.push(NodeId::Ip6Local, i);
            } else {
                drop_pkt(p, q, i, Counter::Ip6NoRoute);
            }
        } else if cx.t.services.enabled {
            q.push(NodeId::Ip6Conntrack, i);
        } else {
            q.push(NodeId::Ip6Lookup, i);
        }
    }
}

/// The source address bytes of a fixed IPv6 header.
#[inline(always)]
fn src_of(h: &[u8; HDR]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (d, s) in a.iter_mut().zip(&h[8..24]) {
        *d = *s;
    }
    a
}

/// The `ip6-lookup` node.
pub fn lookup(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let n = input.len();
    let Some(first) = input.first() else { return };
    let vrf_id = pkts[*first as usize].meta.domain;
    let mut one_vrf = true;
    for (k, &i) in input.iter().enumerate() {
        let p = &pkts[i as usize];
        one_vrf &= p.meta.domain == vrf_id;
        st.keys6[k] = be128(p.l3(), 24);
    }
    match t.vrfs.get(vrf_id as usize) {
        Some(v) if one_vrf => v.fib6.lookup_batch(&st.keys6[..n], &mut st.nhs[..n]),
        _ => {
            for (k, &i) in input.iter().enumerate() {
                let vrf = t.vrfs.get(pkts[i as usize].meta.domain as usize);
                st.nhs[k] = vrf.map_or(0, |v| v.fib6.lookup(st.keys6[k]));
            }
        }
    }
    let nexthops: &[NextHop] = &t.nexthops;
    for (k, &i) in input.iter().enumerate() {
        let (Some(&dst), Some(&id)) = (st.keys6.get(k), st.nhs.get(k)) else {
            continue;
        };
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        // Fast path: a resolved neighbour, a source that is not link-local
        // and a hop limit that allows forwarding.
        if let Some(NextHop::Rewrite { .. }) = nexthops.get(id as usize)
            && let Some(h) = p.l3().first_chunk::<HDR>()
            && h[7] > 1
            && !is_link_local(u128::from_be_bytes(src_of(h)))
        {
            p.meta.nh = id;
            q.push(NodeId::Ip6Rewrite, i);
            continue;
        }
        let step = follow(
            t,
            id,
            || {
                let l3 = p.l3();
                let (proto, l4) = match Ipv6ExtHeaders::walk(IpProtocol(l3[6]), &l3[HDR..]) {
                    Ok(e) if e.fragment.is_none_or(|f| f.is_first()) => {
                        (e.protocol.0, l3.get(HDR + e.offset..).unwrap_or(&[]))
                    }
                    _ => (l3[6], &[][..]),
                };
                flow_hash(be128(l3, 8), dst, proto, l4)
            },
            Counter::Ip6BadNextHop,
            Counter::Ip6Blackhole,
        );
        match step {
            Step::Local => q.push(NodeId::Ip6Local, i),
            Step::Drop(c) => drop_pkt(p, q, i, c),
            Step::Unreachable => icmp_error(
                p,
                q,
                i,
                true,
                Counter::Ip6NoRoute,
                icmp6::DEST_UNREACHABLE,
                icmp6::NO_ROUTE,
                0,
            ),
            _ if is_link_local(be128(p.l3(), 8)) => drop_pkt(p, q, i, Counter::Ip6BadSource),
            _ if p.l3()[7] <= 1 => icmp_error(
                p,
                q,
                i,
                true,
                Counter::Ip6HopLimitExpired,
                icmp6::TIME_EXCEEDED,
                0,
                0,
            ),
            Step::Rewrite(id) => {
                p.meta.nh = id;
                q.push(NodeId::Ip6Rewrite, i);
            }
            Step::Glean { iface, addr } => {
                let target = match addr {
                    Some(IpAddr::V6(a)) => a.octets(),
                    _ => dst.to_be_bytes(),
                };
                p.meta.tx_if = iface;
                p.meta.addr = target;
                q.push(NodeId::Glean, i);
            }
        }
    }
}

/// The `ip6-rewrite` node.
pub fn rewrite(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let cache = &mut st.adj6;
    cache.sync(t);
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let Some(a) = cache.get(t, p.meta.nh, EtherType::IPV6) else {
            drop_pkt(p, q, i, Counter::Ip6BadNextHop);
            continue;
        };
        let l3 = p.l3_mut();
        if l3.len() < HDR {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        }
        if l3.len() > a.mtu as usize {
            icmp_error(
                p,
                q,
                i,
                true,
                Counter::Ip6MtuExceeded,
                icmp6::PACKET_TOO_BIG,
                0,
                u32::from(a.mtu),
            );
            continue;
        }
        l3[7] -= 1;
        a.send(cx, p, q, i);
    }
}

/// Finds a link-layer address option of `kind` in ND options.
/// `None` if absent; `Err` if the options are malformed.
fn nd_lladdr(mut opts: &[u8], kind: u8) -> Result<Option<MacAddr>, ()> {
    let mut found = None;
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(());
        }
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            return Err(());
        }
        if opts[0] == kind && len >= 8 {
            found = MacAddr::from_slice(&opts[2..8]);
        }
        opts = &opts[len..];
    }
    Ok(found)
}

/// The VTEP of VRF `domain` a UDP packet (header at `l4_off`) to the
/// router is for.
#[inline(always)]
fn vxlan_vtep(cx: &Ctx, l3: &[u8], l4_off: usize, domain: u16) -> Option<u16> {
    let vx = &cx.t.vxlan;
    if vx.vteps.is_empty() || l3.len() < l4_off + 4 || l4_off > usize::from(u16::MAX) {
        return None;
    }
    let v = vx.vtep_for6(be128(l3, 24), be16(l3, l4_off + 2))?;
    (vx.vteps.get(usize::from(v))?.vrf == domain).then_some(v)
}

/// The `ip6-local` node.
pub fn local(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        let src = Ipv6Addr::from(be128(l3, 8));
        let dst = Ipv6Addr::from(be128(l3, 24));
        let hop_limit = l3[7];
        let ext = match Ipv6ExtHeaders::walk(IpProtocol(l3[6]), &l3[HDR..]) {
            Ok(e) => e,
            Err(_) => {
                drop_pkt(p, q, i, Counter::Ip6BadExtHeader);
                continue;
            }
        };
        if ext.fragment.is_some() {
            drop_pkt(p, q, i, Counter::Ip6LocalUnknown);
            continue;
        }
        let l4_off = HDR + ext.offset;
        match ext.protocol.0 {
            ICMP6 => {
                let icmp = &l3[l4_off..];
                let sum =
                    vrouter_wire::checksum::pseudo_header_v6(&src, &dst, ICMP6, icmp.len() as u32)
                        + vrouter_wire::checksum::sum(icmp);
                if icmp.len() < 8 || vrouter_wire::checksum::fold(sum) != 0xffff {
                    drop_pkt(p, q, i, Counter::Icmp6Malformed);
                    continue;
                }
                match icmp[0] {
                    icmp6::ECHO_REQUEST if !dst.is_multicast() && ext.offset == 0 => {
                        echo_reply(p);
                        cx.stats.count(Counter::Ip6EchoReply, 1);
                        q.push(NodeId::Ip6Lookup, i);
                    }
                    icmp6::NEIGHBOR_SOLICIT => solicit(cx, p, q, i, src, hop_limit, l4_off),
                    icmp6::NEIGHBOR_ADVERT => {
                        if hop_limit != 255 || icmp.len() < 24 {
                            drop_pkt(p, q, i, Counter::NdMalformed);
                            continue;
                        }
                        let target = Ipv6Addr::from(be128(icmp, 8));
                        let mac = match nd_lladdr(&icmp[24..], ND_OPT_TLLA) {
                            Ok(Some(m)) => m,
                            Ok(None) => {
                                MacAddr::from_slice(&p.buf.data()[6..12]).unwrap_or(MacAddr::ZERO)
                            }
                            Err(()) => {
                                drop_pkt(p, q, i, Counter::NdMalformed);
                                continue;
                            }
                        };
                        let known_subnet = t.iface(p.meta.rx_if).is_some_and(|f| {
                            target.is_unicast_link_local()
                                || f.ip6.iter().any(|n| n.contains(target))
                        });
                        if known_subnet && mac.is_unicast() && !mac.is_zero() {
                            cx.stats.count(Counter::NdLearned, 1);
                            cx.event(Event::Neighbor {
                                iface: p.meta.rx_if,
                                ip: IpAddr::V6(target),
                                mac,
                            });
                        }
                        drop_pkt(p, q, i, Counter::NdConsumed);
                    }
                    _ => drop_pkt(p, q, i, Counter::Icmp6Ignored),
                }
            }
            UDP if let Some(v) = vxlan_vtep(cx, l3, l4_off, p.meta.domain) => {
                p.meta.aux = u32::from(v) | ((l4_off as u32) << 16);
                q.push(NodeId::Vxlan6Input, i);
            }
            UDP if !dst.is_multicast() => icmp_error(
                p,
                q,
                i,
                true,
                Counter::Udp6PortUnreachable,
                icmp6::DEST_UNREACHABLE,
                icmp6::PORT_UNREACHABLE,
                0,
            ),
            _ => drop_pkt(p, q, i, Counter::Ip6LocalUnknown),
        }
    }
}

fn echo_reply(p: &mut Pkt) {
    let l3 = p.l3_mut();
    let mut a = [0u8; 16];
    a.copy_from_slice(&l3[8..24]);
    l3.copy_within(24..40, 8);
    l3[24..40].copy_from_slice(&a);
    l3[7] = 64;
    let icmp = &mut l3[HDR..];
    let old = be16(icmp, 0);
    icmp[0] = icmp6::ECHO_REPLY;
    // Swapping the addresses leaves the pseudo-header sum unchanged.
    let c = vrouter_wire::checksum::update_u16(be16(icmp, 2), old, be16(icmp, 0));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p.meta.flags |= flags::LOCAL_ORIGIN;
}

/// Answers a neighbour solicitation for one of our addresses with an
/// advertisement, and learns the solicitor from its source link-layer option.
fn solicit(
    cx: &mut Ctx,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    src: Ipv6Addr,
    hop_limit: u8,
    l4_off: usize,
) {
    let Some(f) = cx.t.iface(p.meta.rx_if) else {
        drop_pkt(p, q, i, Counter::GraphLost);
        return;
    };
    let icmp = &p.l3()[l4_off..];
    if hop_limit != 255 || icmp.len() < 24 || icmp[1] != 0 {
        drop_pkt(p, q, i, Counter::NdMalformed);
        return;
    }
    let target = Ipv6Addr::from(be128(icmp, 8));
    let slla = match nd_lladdr(&icmp[24..], ND_OPT_SLLA) {
        Ok(m) => m,
        Err(()) => {
            drop_pkt(p, q, i, Counter::NdMalformed);
            return;
        }
    };
    if !f.has_ip6(target) {
        drop_pkt(p, q, i, Counter::NdNotForUs);
        return;
    }
    if let Some(mac) = slla.filter(|m| m.is_unicast() && !m.is_zero())
        && !src.is_unspecified()
    {
        cx.stats.count(Counter::NdLearned, 1);
        cx.event(Event::Neighbor {
            iface: p.meta.rx_if,
            ip: IpAddr::V6(src),
            mac,
        });
    }
    // Reply to the solicitor, or to all nodes for a DAD probe (RFC 4861 7.2.4).
    let eth_src = MacAddr::from_slice(&p.buf.data()[6..12]).unwrap_or(MacAddr::ZERO);
    let (dst, dst_mac, solicited) = if src.is_unspecified() {
        let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        (all, MacAddr::from_ipv6_multicast(all), false)
    } else {
        (src, slla.unwrap_or(eth_src), true)
    };
    let mac = f.mac;
    let rx_if = p.meta.rx_if;
    if !write_advert(p, target, dst, mac, solicited)
        || !set_l2_header(p, dst_mac, mac, EtherType::IPV6)
    {
        drop_pkt(p, q, i, Counter::GraphNoSpace);
        return;
    }
    p.meta.flags |= flags::LOCAL_ORIGIN;
    cx.stats.count(Counter::NdAdvertSent, 1);
    l3_output(cx, p, q, i, rx_if);
}

/// Replaces the packet's L3 part with a neighbour advertisement.
fn write_advert(
    p: &mut Pkt,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    mac: MacAddr,
    solicited: bool,
) -> bool {
    const LEN: usize = HDR + 32;
    let l3_off = p.meta.l3_off as usize;
    p.buf.truncate(l3_off);
    if p.buf.append(LEN).is_err() {
        return false;
    }
    let l3 = p.l3_mut();
    l3.fill(0);
    l3[0] = 0x60;
    l3[4..6].copy_from_slice(&32u16.to_be_bytes());
    l3[6] = ICMP6;
    l3[7] = 255;
    l3[8..24].copy_from_slice(&target.octets());
    l3[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut l3[HDR..];
    icmp[0] = icmp6::NEIGHBOR_ADVERT;
    // Router, Solicited (unicast replies only), Override.
    icmp[4] = 0x80 | if solicited { 0x40 } else { 0 } | 0x20;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = ND_OPT_TLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(mac.as_bytes());
    fill_icmp6_checksum(&target, &dst, icmp);
    true
}

/// Writes a neighbour solicitation for `target` from interface `f` into `p`
/// (an empty buffer). Returns false if `f` has no IPv6 address.
pub fn build_solicit(p: &mut Pkt, f: &Iface, target: Ipv6Addr) -> bool {
    let Some(src) = f.src_ip6_for(target) else {
        return false;
    };
    let group = solicited_node_multicast(target);
    if p.buf.append(14 + HDR + 32).is_err() {
        return false;
    }
    p.meta.l3_off = 14;
    p.meta.ethertype = EtherType::IPV6.0;
    let l3 = p.l3_mut();
    l3.fill(0);
    l3[0] = 0x60;
    l3[4..6].copy_from_slice(&32u16.to_be_bytes());
    l3[6] = ICMP6;
    l3[7] = 255;
    l3[8..24].copy_from_slice(&src.octets());
    l3[24..40].copy_from_slice(&group.octets());
    let icmp = &mut l3[HDR..];
    icmp[0] = icmp6::NEIGHBOR_SOLICIT;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = ND_OPT_SLLA;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(f.mac.as_bytes());
    fill_icmp6_checksum(&src, &group, icmp);
    set_l2_header(
        p,
        MacAddr::from_ipv6_multicast(group),
        f.mac,
        EtherType::IPV6,
    )
}
