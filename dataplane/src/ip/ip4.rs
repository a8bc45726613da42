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
use vrouter_wire::{EtherType, Ipv4Packet, MacAddr};

use super::{be16, be32, flow_hash, icmp_error};
use crate::ethernet::{drop_pkt, l3_output, set_l2_header};
use crate::graph::{Counter, NodeId, Queues};
use crate::pipeline::{Ctx, NodeState};
use crate::pkt::{Pkt, flags};
use crate::tables::{IfaceMode, NextHop, Tables};

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

/// One's-complement sum of a 20-byte header, as five 32-bit words (2^32 is
/// 1 modulo 2^16 - 1, so 32-bit words fold to the same 16-bit sum). A valid
/// header sums to 0xffff.
#[inline(always)]
fn sum20(h: &[u8; 20]) -> u32 {
    let w = |k: usize| u64::from(u32::from_be_bytes([h[k], h[k + 1], h[k + 2], h[k + 3]]));
    let s = w(0) + w(4) + w(8) + w(12) + w(16);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u32
}

/// Header checks with the exact reason, for what the fast path does not
/// take (options, a wrong version or IHL, short frames).
fn check_slow(l3: &[u8]) -> Result<usize, Counter> {
    if l3.len() < 20 {
        return Err(Counter::Ip4Truncated);
    }
    if l3[0] >> 4 != 4 {
        return Err(Counter::Ip4BadVersion);
    }
    let ihl = (l3[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        return Err(Counter::Ip4BadIhl);
    }
    let total = be16(l3, 2) as usize;
    if ihl > l3.len() || total > l3.len() {
        return Err(Counter::Ip4Truncated);
    }
    if total < ihl {
        return Err(Counter::Ip4BadLength);
    }
    if checksum::sum(&l3[..ihl]) != 0xffff {
        return Err(Counter::Ip4BadChecksum);
    }
    Ok(total)
}

/// The `ip4-input` node.
pub fn input(_cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        // Fast path: a 20-byte header (no options).
        let checked = match l3.first_chunk::<20>() {
            Some(h) if h[0] == 0x45 => {
                let total = u16::from_be_bytes([h[2], h[3]]) as usize;
                if total > l3.len() {
                    Err(Counter::Ip4Truncated)
                } else if total < 20 {
                    Err(Counter::Ip4BadLength)
                } else if sum20(h) != 0xffff {
                    Err(Counter::Ip4BadChecksum)
                } else {
                    Ok(total)
                }
            }
            _ => check_slow(l3),
        };
        let total = match checked {
            Ok(t) => t,
            Err(c) => {
                drop_pkt(p, q, i, c);
                continue;
            }
        };
        let (src, dst) = (be32(l3, 12), be32(l3, 16));
        if is_martian_src(src) {
            drop_pkt(p, q, i, Counter::Ip4BadSource);
            continue;
        }
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

/// What rewriting towards one next hop needs, resolved once per run of
/// packets with the same next hop.
#[derive(Clone, Copy)]
pub(crate) struct Adjacency {
    pub id: u32,
    pub iface: u16,
    pub mtu: u16,
    /// Output through a BVI (into a bridge domain) rather than a port.
    pub bvi: bool,
    /// The Ethernet header to write: destination, source, EtherType.
    pub header: [u8; 14],
}

impl Adjacency {
    /// The adjacency of next hop `id`, if it is a resolved neighbour.
    #[inline]
    pub(crate) fn of(t: &Tables, id: u32, ethertype: EtherType) -> Option<Adjacency> {
        let &NextHop::Rewrite { iface, mac } = t.nexthop(id)? else {
            return None;
        };
        let f = t.iface(iface)?;
        let mut header = [0u8; 14];
        header[0..6].copy_from_slice(mac.as_bytes());
        header[6..12].copy_from_slice(f.mac.as_bytes());
        header[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
        Some(Adjacency {
            id,
            iface,
            mtu: f.mtu,
            bvi: matches!(f.mode, IfaceMode::Bvi { .. }),
            header,
        })
    }

    /// Writes the Ethernet header in front of the L3 header and sends the
    /// packet to its output node.
    #[inline(always)]
    pub(crate) fn send(&self, cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16) {
        if p.meta.l3_off == 14 {
            if let Some(h) = p.buf.data_mut().first_chunk_mut::<14>() {
                *h = self.header;
            }
        } else {
            let (dst, src) = (
                MacAddr::from_slice(&self.header[0..6]).unwrap_or(MacAddr::ZERO),
                MacAddr::from_slice(&self.header[6..12]).unwrap_or(MacAddr::ZERO),
            );
            let et = EtherType(u16::from_be_bytes([self.header[12], self.header[13]]));
            if !set_l2_header(p, dst, src, et) {
                drop_pkt(p, q, i, Counter::GraphNoSpace);
                return;
            }
        }
        if self.bvi {
            l3_output(cx, p, q, i, self.iface);
        } else {
            p.meta.tx_if = self.iface;
            q.push(NodeId::InterfaceOutput, i);
        }
    }
}

/// The `ip4-rewrite` node.
pub fn rewrite(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let mut adj: Option<Adjacency> = None;
    for &i in input {
        let p = &mut pkts[i as usize];
        let a = match adj {
            Some(a) if a.id == p.meta.nh => a,
            _ => match Adjacency::of(t, p.meta.nh, EtherType::IPV4) {
                Some(a) => {
                    adj = Some(a);
                    a
                }
                None => {
                    drop_pkt(p, q, i, Counter::Ip4BadNextHop);
                    continue;
                }
            },
        };
        let l3 = p.l3_mut();
        if l3.len() < 20 {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        }
        if be16(l3, 2) > a.mtu {
            if be16(l3, 6) & 0x4000 != 0 {
                icmp_error(
                    p,
                    q,
                    i,
                    false,
                    Counter::Ip4MtuExceeded,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::FRAG_NEEDED,
                    u32::from(a.mtu),
                );
            } else {
                drop_pkt(p, q, i, Counter::Ip4FragmentNeeded);
            }
            continue;
        }
        Ipv4Packet::new_unchecked(l3).decrement_ttl();
        a.send(cx, p, q, i);
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
