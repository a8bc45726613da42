//! IPv4 nodes: `ip4-input` → `ip4-lookup` → `ip4-rewrite`, and `ip4-local`
//! for packets addressed to the router.
//!
//! `ip4-input` validates the header (version, IHL, total length, checksum,
//! source) and trims Ethernet padding. Reads/writes `l3_off`.
//! `ip4-lookup` looks the whole vector up in the VRF's FIB at once (the FIB
//! prefetches), then follows the next hop: local, glean (resolve), rewrite,
//! ECMP (member by flow hash), drop or ICMP unreachable; it checks TTL for
//! forwarded packets. Reads `domain` (VRF); writes `nh`, `tx_if`, `addr`.
//! `ip4-rewrite` decrements TTL with an incremental checksum update
//! (RFC 1624), checks the egress MTU (DF → ICMP frag-needed; vrouterd does
//! not fragment) and writes the Ethernet header. Reads `nh`.
//! `ip4-local` answers echo requests and UDP (port unreachable); it does not
//! reassemble, so fragments addressed to the router are dropped.

use std::net::{IpAddr, Ipv4Addr};

use vrouter_wire::checksum;
use vrouter_wire::{EtherType, Ipv4Packet};

use super::{be16, be32, flow_hash, icmp_error};
use crate::ethernet::{drop_pkt, l3_output, set_l2_header};
use crate::graph::{Counter, NodeId, Queues};
use crate::pipeline::{Ctx, NodeState};
use crate::pkt::{Pkt, flags};
use crate::tables::{NextHop, Tables};

const ICMP: u8 = 1;
const UDP: u8 = 17;

/// ICMP types and codes the router sends.
pub mod icmp4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const NET_UNREACHABLE: u8 = 0;
    pub const PORT_UNREACHABLE: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
}

#[inline(always)]
fn is_martian_src(a: u32) -> bool {
    a >> 28 == 0xe || a == u32::MAX || a >> 24 == 127
}

/// The `ip4-input` node.
pub fn input(_cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        if l3.len() < 20 {
            drop_pkt(p, q, i, Counter::Ip4Truncated);
            continue;
        }
        if l3[0] >> 4 != 4 {
            drop_pkt(p, q, i, Counter::Ip4BadVersion);
            continue;
        }
        let ihl = (l3[0] & 0x0f) as usize * 4;
        if ihl < 20 {
            drop_pkt(p, q, i, Counter::Ip4BadIhl);
            continue;
        }
        let total = be16(l3, 2) as usize;
        if ihl > l3.len() || total > l3.len() {
            drop_pkt(p, q, i, Counter::Ip4Truncated);
            continue;
        }
        if total < ihl {
            drop_pkt(p, q, i, Counter::Ip4BadLength);
            continue;
        }
        if checksum::sum(&l3[..ihl]) != 0xffff {
            drop_pkt(p, q, i, Counter::Ip4BadChecksum);
            continue;
        }
        if is_martian_src(be32(l3, 12)) {
            drop_pkt(p, q, i, Counter::Ip4BadSource);
            continue;
        }
        let dst = be32(l3, 16);
        let l3_off = p.meta.l3_off as usize;
        p.buf.truncate(l3_off + total);
        if dst >> 28 == 0xe || dst == u32::MAX {
            q.push(NodeId::Ip4Local, i);
        } else {
            q.push(NodeId::Ip4Lookup, i);
        }
    }
}

/// Where a forwarded packet goes after its next hop is known.
pub(crate) enum Step {
    Rewrite(u32),
    Glean { iface: u16, addr: Option<IpAddr> },
    Local,
    Drop(Counter),
    Unreachable,
}

/// Follows next hop `id` (and an ECMP group, by `hash`).
#[inline(always)]
pub(crate) fn follow(
    t: &Tables,
    id: u32,
    hash: impl FnOnce() -> u32,
    bad: Counter,
    blackhole: Counter,
) -> Step {
    let nh = match t.nexthop(id) {
        Some(NextHop::Ecmp { base, len }) if *len > 0 => {
            let k = hash() % u32::from(*len);
            let member = t
                .ecmp
                .get((*base + k) as usize)
                .copied()
                .unwrap_or(u32::MAX);
            match t.nexthop(member) {
                Some(nh @ (NextHop::Rewrite { .. } | NextHop::Resolve { .. })) => {
                    return step_of(member, nh, bad, blackhole);
                }
                _ => return Step::Drop(bad),
            }
        }
        Some(nh) => nh,
        None => return Step::Drop(bad),
    };
    step_of(id, nh, bad, blackhole)
}

#[inline(always)]
fn step_of(id: u32, nh: &NextHop, bad: Counter, blackhole: Counter) -> Step {
    match *nh {
        NextHop::Rewrite { .. } => Step::Rewrite(id),
        NextHop::Resolve { iface, addr } => Step::Glean {
            iface,
            addr: Some(addr),
        },
        NextHop::Glean { iface } => Step::Glean { iface, addr: None },
        NextHop::Local { .. } => Step::Local,
        NextHop::Drop => Step::Drop(blackhole),
        NextHop::Unreachable => Step::Unreachable,
        NextHop::Ecmp { .. } => Step::Drop(bad),
    }
}

/// The `ip4-lookup` node.
pub fn lookup(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let n = input.len();
    let Some(first) = input.first() else { return };
    let vrf_id = pkts[*first as usize].meta.domain;
    let mut one_vrf = true;
    for (k, &i) in input.iter().enumerate() {
        let p = &pkts[i as usize];
        one_vrf &= p.meta.domain == vrf_id;
        st.keys4[k] = p.l3().get(16..20).map_or(0, |d| be32(d, 0));
    }
    match t.vrfs.get(vrf_id as usize) {
        Some(v) if one_vrf => v.fib4.lookup_batch(&st.keys4[..n], &mut st.nhs[..n]),
        _ => {
            for (k, &i) in input.iter().enumerate() {
                let vrf = t.vrfs.get(pkts[i as usize].meta.domain as usize);
                st.nhs[k] = vrf.map_or(0, |v| v.fib4.lookup(st.keys4[k]));
            }
        }
    }
    for (k, &i) in input.iter().enumerate() {
        let p = &mut pkts[i as usize];
        let dst = st.keys4[k];
        let step = follow(
            t,
            st.nhs[k],
            || {
                let l3 = p.l3();
                let ihl = (l3[0] & 0x0f) as usize * 4;
                let l4 = if be16(l3, 6) & 0x1fff == 0 {
                    l3.get(ihl..).unwrap_or(&[])
                } else {
                    &[]
                };
                flow_hash(be32(l3, 12) as u128, dst as u128, l3[9], l4)
            },
            Counter::Ip4BadNextHop,
            Counter::Ip4Blackhole,
        );
        match step {
            Step::Local => q.push(NodeId::Ip4Local, i),
            Step::Drop(c) => drop_pkt(p, q, i, c),
            Step::Unreachable => icmp_error(
                p,
                q,
                i,
                false,
                Counter::Ip4NoRoute,
                icmp4::DEST_UNREACHABLE,
                icmp4::NET_UNREACHABLE,
                0,
            ),
            _ if p.l3()[8] <= 1 => icmp_error(
                p,
                q,
                i,
                false,
                Counter::Ip4TtlExpired,
                icmp4::TIME_EXCEEDED,
                0,
                0,
            ),
            Step::Rewrite(id) => {
                p.meta.nh = id;
                q.push(NodeId::Ip4Rewrite, i);
            }
            Step::Glean { iface, addr } => {
                let target = match addr {
                    Some(IpAddr::V4(a)) => a,
                    _ => Ipv4Addr::from(dst),
                };
                p.meta.tx_if = iface;
                p.meta.addr = [0; 16];
                p.meta.addr[..4].copy_from_slice(&target.octets());
                q.push(NodeId::Glean, i);
            }
        }
    }
}

/// The `ip4-rewrite` node.
pub fn rewrite(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let p = &mut pkts[i as usize];
        let Some(&NextHop::Rewrite { iface, mac }) = t.nexthop(p.meta.nh) else {
            drop_pkt(p, q, i, Counter::Ip4BadNextHop);
            continue;
        };
        let Some(f) = t.iface(iface) else {
            drop_pkt(p, q, i, Counter::Ip4BadNextHop);
            continue;
        };
        let l3 = p.l3();
        let total = be16(l3, 2);
        if total > f.mtu {
            if be16(l3, 6) & 0x4000 != 0 {
                icmp_error(
                    p,
                    q,
                    i,
                    false,
                    Counter::Ip4MtuExceeded,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::FRAG_NEEDED,
                    u32::from(f.mtu),
                );
            } else {
                drop_pkt(p, q, i, Counter::Ip4FragmentNeeded);
            }
            continue;
        }
        Ipv4Packet::new_unchecked(p.l3_mut()).decrement_ttl();
        if !set_l2_header(p, mac, f.mac, EtherType::IPV4) {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            continue;
        }
        l3_output(cx, p, q, i, iface);
    }
}

/// The `ip4-local` node.
pub fn local(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        let dst = be32(l3, 16);
        let ihl = (l3[0] & 0x0f) as usize * 4;
        if dst >> 28 == 0xe || dst == u32::MAX {
            // Multicast and broadcast to the router: nothing here serves them.
            drop_pkt(p, q, i, Counter::Ip4LocalUnknown);
            continue;
        }
        if be16(l3, 6) & 0x3fff != 0 {
            drop_pkt(p, q, i, Counter::Ip4LocalFragment);
            continue;
        }
        match l3[9] {
            ICMP => {
                let icmp = &l3[ihl..];
                if icmp.len() < 8 || checksum::sum(icmp) != 0xffff {
                    drop_pkt(p, q, i, Counter::Icmp4Malformed);
                    continue;
                }
                if icmp[0] != icmp4::ECHO_REQUEST || icmp[1] != 0 {
                    drop_pkt(p, q, i, Counter::Icmp4Ignored);
                    continue;
                }
                echo_reply(p, ihl);
                cx.stats.count(Counter::Ip4EchoReply, 1);
                q.push(NodeId::Ip4Lookup, i);
            }
            UDP => icmp_error(
                p,
                q,
                i,
                false,
                Counter::Udp4PortUnreachable,
                icmp4::DEST_UNREACHABLE,
                icmp4::PORT_UNREACHABLE,
                0,
            ),
            _ => drop_pkt(p, q, i, Counter::Ip4LocalUnknown),
        }
    }
}

/// Turns an echo request into its reply in place.
fn echo_reply(p: &mut Pkt, ihl: usize) {
    let l3 = p.l3_mut();
    let mut ip = Ipv4Packet::new_unchecked(&mut *l3);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(64);
    ip.fill_checksum();
    let icmp = &mut l3[ihl..];
    let old = be16(icmp, 0);
    icmp[0] = icmp4::ECHO_REPLY;
    let c = checksum::update_u16(be16(icmp, 2), old, be16(icmp, 0));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p.meta.flags |= flags::LOCAL_ORIGIN;
}
