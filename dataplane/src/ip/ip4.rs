//! IPv4 nodes: `ip4-input` → `ip4-lookup` → `ip4-rewrite`, and `ip4-local`
//! for packets addressed to the router.
//!
//! `ip4-input` validates the header (version, IHL, total length, checksum,
//! source) and trims Ethernet padding; VXLAN to a local VTEP of the
//! packet's VRF goes straight to `vxlan4-input` (skipping the lookup that
//! would only find the local route). Reads/writes `l3_off`.
//! `ip4-lookup` looks the whole vector up in the VRF's FIB at once (the FIB
//! prefetches), then follows the next hop: local, glean (resolve), rewrite,
//! ECMP (member by flow hash), drop or ICMP unreachable; it checks TTL for
//! forwarded packets. Reads `domain` (VRF); writes `nh`, `tx_if`, `addr`.
//! `ip4-rewrite` decrements TTL with an incremental checksum update
//! (RFC 1624), checks the egress MTU (DF → ICMP frag-needed; vrouterd does
//! not fragment) and writes the Ethernet header. Reads `nh`. A packet for a
//! VXLAN tunnel interface goes straight to `vxlan4-encap`/`vxlan6-encap`,
//! skipping `interface-output`.
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
pub(crate) fn is_martian_src(a: u32) -> bool {
    a >> 28 == 0xe || a == u32::MAX || a >> 24 == 127
}

/// One's-complement sum of a 20-byte header, folded to 16 bits. The words
/// are added in native byte order: a one's-complement sum is the same in
/// either order up to a byte swap (RFC 1071), and a valid header sums to
/// 0xffff, which a byte swap leaves alone. Two and a half 64-bit words,
/// folded (2^32 and 2^16 are 1 modulo 2^16 - 1).
#[inline(always)]
pub(crate) fn sum20(h: &[u8; 20]) -> u32 {
    let w = |k: usize| {
        u64::from_ne_bytes([
            h[k],
            h[k + 1],
            h[k + 2],
            h[k + 3],
            h[k + 4],
            h[k + 5],
            h[k + 6],
            h[k + 7],
        ])
    };
    let c = u64::from(u32::from_ne_bytes([h[16], h[17], h[18], h[19]]));
    let f = |x: u64| (x & 0xffff_ffff) + (x >> 32);
    let s = f(w(0)) + f(w(8)) + c;
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

/// Header checks of the fast path: a 20-byte header (no options) whose
/// total length fits the frame. `None` sends the packet to [`check_slow`].
#[inline(always)]
fn check_fast(h: &[u8; 20], len: usize) -> Option<Result<usize, Counter>> {
    if h[0] != 0x45 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    Some(if total > len {
        Err(Counter::Ip4Truncated)
    } else if total < 20 {
        Err(Counter::Ip4BadLength)
    } else if sum20(h) != 0xffff {
        Err(Counter::Ip4BadChecksum)
    } else {
        Ok(total)
    })
}

/// The `ip4-input` node.
pub fn input(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let vx = &*cx.t.vxlan;
    // The IPv4 VTEP addresses: the first compared directly (one compare
    // per packet), any others through the list.
    let (vtep1, more_vteps) = match vx.vtep4.as_slice() {
        [] => (None, false),
        [v] => (Some(v.0), false),
        [v, ..] => (Some(v.0), true),
    };
    let next = if cx.t.services.enabled {
        NodeId::Ip4Conntrack
    } else {
        NodeId::Ip4Lookup
    };
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let l3_off = usize::from(p.meta.l3_off);
        let l3 = p.buf.data().get(l3_off..).unwrap_or(&[]);
        let (checked, src, dst) = match l3.first_chunk::<20>() {
            Some(h) => {
                let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
                let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
                match check_fast(h, l3.len()) {
                    Some(c) => (c, src, dst),
                    None => (check_slow(l3), src, dst),
                }
            }
            None => (check_slow(l3), 0, 0),
        };
        let total = match checked {
            Ok(t) => t,
            Err(c) => {
                drop_pkt(p, q, i, c);
                continue;
            }
        };
        if is_martian_src(src) {
            drop_pkt(p, q, i, Counter::Ip4BadSource);
            continue;
        }
        p.buf.truncate(l3_off + total);
        if (vtep1 == Some(dst) || (more_vteps && vx.is_vtep4(dst)))
            && let Some(v) = vxlan_direct(vx, p)
        {
            p.meta.aux = u32::from(v);
            q.push(NodeId::Vxlan4Input, i);
            continue;
        }
        if dst >> 28 == 0xe || dst == u32::MAX {
            q.push(NodeId::Ip4Local, i);
        } else {
            q.push(next, i);
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
    let n = input.len().min(crate::graph::ARENA);
    let input = &input[..n];
    let Some(first) = input.first() else { return };
    let vrf_id = pkts.get(usize::from(*first)).map_or(0, |p| p.meta.domain);
    let mut one_vrf = true;
    // One read of each header: the destination (the key) and whether the
    // TTL allows forwarding (the fast path below then needs no header).
    let (keys, fwd) = (&mut st.keys4[..n], &mut st.ttl_ok[..n]);
    for ((&i, key), ok) in input.iter().zip(keys.iter_mut()).zip(fwd.iter_mut()) {
        let Some(p) = pkts.get(usize::from(i)) else {
            continue;
        };
        one_vrf &= p.meta.domain == vrf_id;
        let (k, o) = p.l3().first_chunk::<20>().map_or((0, false), |h| {
            (u32::from_be_bytes([h[16], h[17], h[18], h[19]]), h[8] > 1)
        });
        *key = k;
        *ok = o;
    }
    let (keys, nhs) = (&st.keys4[..n], &mut st.nhs[..n]);
    match t.vrfs.get(vrf_id as usize) {
        Some(v) if one_vrf => v.fib4.lookup_batch(keys, nhs),
        _ => {
            for ((&i, &key), nh) in input.iter().zip(keys).zip(nhs.iter_mut()) {
                let vrf = pkts
                    .get(usize::from(i))
                    .and_then(|p| t.vrfs.get(p.meta.domain as usize));
                *nh = vrf.map_or(0, |v| v.fib4.lookup(key));
            }
        }
    }
    let nexthops: &[NextHop] = &t.nexthops;
    let (keys, nhs, fwd) = (&st.keys4[..n], &st.nhs[..n], &st.ttl_ok[..n]);
    for (((&i, &dst), &id), &ttl_ok) in input.iter().zip(keys).zip(nhs).zip(fwd) {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        // Fast path: a resolved neighbour and a TTL that allows forwarding.
        if ttl_ok && let Some(NextHop::Rewrite { .. }) = nexthops.get(id as usize) {
            p.meta.nh = id;
            q.push(NodeId::Ip4Rewrite, i);
            continue;
        }
        let step = follow(
            t,
            id,
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

/// What rewriting towards one next hop needs, resolved once per next hop
/// and kept in the worker's [`AdjCache`].
#[derive(Clone, Copy)]
pub(crate) struct Adjacency {
    pub id: u32,
    pub iface: u16,
    pub mtu: u16,
    /// Output through a BVI (into a bridge domain) rather than a port.
    pub bvi: bool,
    /// Output on a VXLAN tunnel interface: its encapsulation node.
    pub encap: Option<NodeId>,
    /// The Ethernet header to write: destination, source, EtherType.
    pub header: [u8; 14],
}

impl Adjacency {
    /// An entry that matches no next hop.
    const EMPTY: Adjacency = Adjacency {
        id: u32::MAX,
        iface: 0,
        mtu: 0,
        bvi: false,
        encap: None,
        header: [0; 14],
    };

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
            encap: f.tunnel.map(|k| {
                if t.vxlan.tunnels.get(usize::from(k)).is_some_and(|x| x.v6) {
                    NodeId::Vxlan6Encap
                } else {
                    NodeId::Vxlan4Encap
                }
            }),
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
        } else if !self.set_header(p) {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            return;
        }
        if self.bvi {
            l3_output(cx, p, q, i, self.iface);
        } else {
            p.meta.tx_if = self.iface;
            q.push(NodeId::InterfaceOutput, i);
        }
    }

    /// The header for a packet whose L3 header is not at offset 14.
    #[inline(never)]
    fn set_header(&self, p: &mut Pkt) -> bool {
        let (dst, src) = (
            MacAddr::from_slice(&self.header[0..6]).unwrap_or(MacAddr::ZERO),
            MacAddr::from_slice(&self.header[6..12]).unwrap_or(MacAddr::ZERO),
        );
        let et = EtherType(u16::from_be_bytes([self.header[12], self.header[13]]));
        set_l2_header(p, dst, src, et)
    }
}

/// Slots of an [`AdjCache`] (direct-mapped by next-hop id).
const ADJ_SLOTS: usize = 256;

/// A worker's adjacencies of recently used next hops, for one table
/// snapshot: emptied whenever the snapshot changes (next hops and
/// interfaces only change with a new snapshot), so an entry is never stale.
pub struct AdjCache {
    /// The snapshot the entries belong to (address and generation).
    tables: (usize, u64),
    slots: Box<[Adjacency; ADJ_SLOTS]>,
}

impl Default for AdjCache {
    fn default() -> Self {
        AdjCache {
            tables: (0, u64::MAX),
            slots: Box::new([Adjacency::EMPTY; ADJ_SLOTS]),
        }
    }
}

impl AdjCache {
    /// Empties the cache if `t` is not the snapshot it was filled from.
    #[inline(always)]
    pub(crate) fn sync(&mut self, t: &Tables) {
        let tag = (std::ptr::from_ref(t) as usize, t.generation);
        if tag != self.tables {
            self.tables = tag;
            self.slots.fill(Adjacency::EMPTY);
        }
    }

    /// The adjacency of next hop `id` (`None` if it is not a resolved
    /// neighbour). Call [`AdjCache::sync`] first.
    #[inline(always)]
    pub(crate) fn get(&mut self, t: &Tables, id: u32, ethertype: EtherType) -> Option<&Adjacency> {
        let slot = self.slots.get_mut(id as usize % ADJ_SLOTS)?;
        if slot.id != id {
            *slot = Self::fill(t, id, ethertype)?;
        }
        Some(slot)
    }

    #[inline(never)]
    fn fill(t: &Tables, id: u32, ethertype: EtherType) -> Option<Adjacency> {
        Adjacency::of(t, id, ethertype)
    }
}

/// The `ip4-rewrite` node.
pub fn rewrite(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let cache = &mut st.adj4;
    cache.sync(t);
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let Some(adj) = cache.get(t, p.meta.nh, EtherType::IPV4) else {
            drop_pkt(p, q, i, Counter::Ip4BadNextHop);
            continue;
        };
        let l3_off = usize::from(p.meta.l3_off);
        let Some(h) = p
            .buf
            .data_mut()
            .get_mut(l3_off..)
            .and_then(|l3| l3.first_chunk_mut::<20>())
        else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        if u16::from_be_bytes([h[2], h[3]]) > adj.mtu {
            if h[6] & 0x40 != 0 {
                icmp_error(
                    p,
                    q,
                    i,
                    false,
                    Counter::Ip4MtuExceeded,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::FRAG_NEEDED,
                    u32::from(adj.mtu),
                );
            } else {
                drop_pkt(p, q, i, Counter::Ip4FragmentNeeded);
            }
            continue;
        }
        decrement_ttl(h);
        // A tunnel interface: straight to its encapsulation node (which
        // counts it as sent on the tunnel), with `interface-output`'s L2
        // MTU check on the frame length.
        if let Some(encap) = adj.encap
            && l3_off == 14
            && p.buf.len() <= usize::from(adj.mtu) + 14
            && let Some(h) = p.buf.data_mut().first_chunk_mut::<14>()
        {
            *h = adj.header;
            p.meta.tx_if = adj.iface;
            q.push(encap, i);
            continue;
        }
        adj.send(cx, p, q, i);
    }
}

/// Decrements the TTL (unless 0) and updates the header checksum
/// incrementally (RFC 1624), as `Ipv4Packet::decrement_ttl`.
#[inline(always)]
fn decrement_ttl(h: &mut [u8; 20]) {
    let ttl = h[8];
    if ttl == 0 {
        return;
    }
    h[8] = ttl - 1;
    // `checksum::update_u16(hc, old, new)` is !fold(!hc + !old + new); with
    // new = old - 0x0100 (the TTL is the high byte of its word), !old + new
    // is always 0xfeff, so the same result needs no header word but the
    // checksum.
    let hc = u16::from_be_bytes([h[10], h[11]]);
    let c = !checksum::fold(u32::from(!hc) + 0xfeff);
    [h[10], h[11]] = c.to_be_bytes();
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

/// VXLAN to a VTEP of the packet's VRF (unfragmented UDP to its address
/// and port), which `ip4-input` hands straight to `vxlan4-input`: the
/// lookup would only find the local route. The VTEP, if so. The caller has
/// checked that the destination is a VTEP's address.
#[inline(always)]
fn vxlan_direct(vx: &crate::vxlan::VxlanTables, p: &Pkt) -> Option<u16> {
    let l3 = p.l3();
    if l3.len() < 24 || l3[9] != UDP || be16(l3, 6) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(l3[0] & 0x0f) * 4;
    if l3.len() < ihl + 4 {
        return None;
    }
    vx.vtep4_in(be32(l3, 16), be16(l3, ihl + 2), p.meta.domain)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrement_ttl_matches_the_rfc1624_update() {
        for hc in 0..=u16::MAX {
            for (ttl, proto) in [(1u8, 17u8), (2, 6), (64, 1), (255, 0), (128, 255)] {
                let mut h = [0u8; 20];
                h[8] = ttl;
                h[9] = proto;
                h[10..12].copy_from_slice(&hc.to_be_bytes());
                decrement_ttl(&mut h);
                let want = checksum::update_u16(
                    hc,
                    u16::from_be_bytes([ttl, proto]),
                    u16::from_be_bytes([ttl - 1, proto]),
                );
                assert_eq!(h[8], ttl - 1);
                assert_eq!(
                    u16::from_be_bytes([h[10], h[11]]),
                    want,
                    "hc {hc:#x} ttl {ttl}"
                );
            }
        }
        let mut h = [0u8; 20];
        h[10] = 0x12;
        decrement_ttl(&mut h);
        assert_eq!((h[8], h[10], h[11]), (0, 0x12, 0), "TTL 0 is left alone");
    }

    #[test]
    fn sum20_agrees_with_the_wire_checksum() {
        // A deterministic spread of headers: valid ones (checksum filled) and
        // corrupted ones, including all-ones words that stress the carries.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in 0..20_000u32 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if n % 7 == 0 { 0xff } else { x as u8 };
            }
            h[0] = 0x45;
            if n % 2 == 0 {
                h[10..12].fill(0);
                let c = checksum::finish(checksum::sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let wire = checksum::sum(&h);
            assert_eq!(
                sum20(&h) == 0xffff,
                checksum::fold(wire) == 0xffff,
                "header {h:02x?}"
            );
        }
    }
}
