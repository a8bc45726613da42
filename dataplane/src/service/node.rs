//! The `ip4-conntrack` and `ip6-conntrack` nodes: connection tracking,
//! service load balancing (DNAT, SNAT, reverse NAT) and NetworkPolicy,
//! between `ipN-input` and `ipN-lookup`. `ipN-input` sends packets here only
//! while the snapshot has a service, a policy or a pod binding. One generic
//! body serves both families ([`Family`]); each worker has one flow table
//! per family. Anti-spoofing happened before, in `pod-guard`.
//!
//! Per vector, a staged lookup (as DPDK's `rte_hash_lookup_bulk`): (1)
//! parse each packet's 5-tuple (IPv6: through its extension headers), hash
//! the key and prefetch its primary bucket; (2) compare each bucket's tags
//! and prefetch the flow they point at; (3) verify each key against that
//! flow. Packets that are not tracked candidates (fragments, ICMP errors,
//! other protocols) are dealt with in (1), out of line. A hit advances the
//! flow's state and applies its NAT with the checksum deltas the flow
//! keeps (one addition per checksum). A miss is a new
//! connection: a VIP (or a NodePort on one of our addresses) picks a backend
//! (ClientIP affinity, else Maglev over the 5-tuple), the policy classifier
//! decides, and a flow is created — refused when the table is full
//! (`ct-table-full`) or the pod is at its quota (`ct-pod-quota`). Traffic
//! that involves no service and no isolated pod passes untracked. A service
//! without backends answers TCP with a RST and UDP with ICMP port
//! unreachable (`svc-no-endpoints`; ICMPv6 port unreachable over IPv6),
//! like kube-proxy's REJECT. ICMPv6 neighbour discovery and MLD pass
//! untracked and unclassified (link-local control traffic, never to a VIP).
//!
//! SNAT: a NodePort flow to a remote backend (not `local`) takes the node
//! address the client used as source; a pod reaching itself through a
//! service (hairpin) takes the address of its gateway interface. The SNAT
//! port is the first of 8 hash-chosen ports in `snat-ports` whose reply key
//! is free.
//!
//! Fragments: vrouterd does not reassemble; a fragment to a VIP or to or
//! from an isolated pod is dropped (`ct-fragment`), others pass untracked.
//! ICMP errors: one that quotes a tracked flow is translated back (outer
//! destination and quoted header) when the flow is NATed, and passed as
//! related otherwise; one to an isolated pod quoting no flow is dropped
//! (`ct-icmp-unrelated`).
//!
//! Reads `rx_if`, `domain`, `l3_off`; writes the packet (NAT) and, for a
//! RST, `flags` (`LOCAL_ORIGIN`). Edges: `ipN-lookup`, `icmpN-error`,
//! `drop`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use vrouter_wire::{IpProtocol, Ipv6ExtHeaders};

use crate::conntrack::{
    ConnTrack, CsumDelta, Dir, Flow, HINT_SEARCH, Hint, InsertError, Key, NO_OWNER, flow_flags,
};
use crate::graph::{ARENA, Counter, NodeId, Queues};
use crate::ip::icmp::icmp6;
use crate::ip::icmp_error;
use crate::ip::ip4::icmp4;
use crate::pipeline::Ctx;
use crate::pkt::{Pkt, flags};
use crate::policy::{PolicyAddr, Verdict};
use crate::service::{Fast, Service, ServiceTables, nat, vip_key, vip_key6};
use crate::tables::Tables;

/// ClientIP affinity entries per worker and family (direct-mapped; a
/// collision replaces the older client's entry).
pub const AFFINITY_SLOTS: usize = 1 << 14;

#[derive(Debug, Clone, Copy, Default)]
struct Affinity<A> {
    svc: u32,
    port: u16,
    expires: u32,
    client: A,
    backend: A,
}

/// One tracked candidate of a vector, from parse to lookup.
#[derive(Debug, Clone, Copy, Default)]
struct Slot<A> {
    key: Key<A>,
    h: u64,
    hint: Hint,
    /// The packet's index in the arena.
    i: u16,
    /// L4 header offset from L3.
    l4: u16,
    /// TCP flags (0 for other protocols).
    tf: u8,
}

/// Per-worker state of one family's node.
pub struct CtState<A = u32> {
    pub ct: ConnTrack<A>,
    slots: Box<[Slot<A>]>,
    affinity: Box<[Affinity<A>]>,
}

impl<A: Family> CtState<A> {
    /// State around a conntrack table.
    pub fn new(ct: ConnTrack<A>) -> CtState<A> {
        CtState {
            ct,
            slots: vec![Slot::default(); ARENA].into_boxed_slice(),
            affinity: vec![Affinity::default(); AFFINITY_SLOTS].into_boxed_slice(),
        }
    }
}

impl<A: Family> Default for CtState<A> {
    fn default() -> Self {
        CtState::new(ConnTrack::new(
            4096,
            0,
            crate::conntrack::Timeouts::default(),
        ))
    }
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

#[inline(always)]
fn rd16(d: &[u8], at: usize) -> u16 {
    d.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

#[inline(always)]
fn rd32(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline(always)]
fn rd128(d: &[u8], at: usize) -> u128 {
    d.get(at..at + 16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u128::from_be_bytes)
}

/// What parsing found.
pub enum Parsed<A> {
    /// Tracked candidate: key, L4 offset, TCP flags.
    Flow(Key<A>, usize, u8),
    /// Anything else (dealt with out of line).
    Not(Untracked),
}

/// A packet that is not a tracked candidate.
#[derive(Debug, Clone, Copy)]
pub enum Untracked {
    /// An ICMP error (quotes another packet); the ICMP header's offset.
    IcmpError(usize),
    /// A fragment.
    Fragment,
    /// A protocol that is not tracked (classified per packet).
    Other(u8),
    /// Neighbour discovery / MLD: passes untracked and unclassified.
    Control,
    Bad,
}

/// What differs between the IPv4 and the IPv6 node.
pub trait Family: PolicyAddr {
    /// The lookup node that follows.
    const LOOKUP: NodeId;
    const V6: bool;
    /// ICMP destination unreachable / port unreachable of the family.
    const UNREACH: (u8, u8);
    /// Parses the packet at L3.
    fn parse(l3: &[u8], zone: u16) -> Parsed<Self>;
    /// Source and destination addresses (the caller checked the length).
    fn addrs(l3: &[u8]) -> (Self, Self);
    fn vip(svc: &ServiceTables, dst: Self, port: u16, proto: u8) -> Option<&Arc<Service>>;
    fn node_ports(svc: &ServiceTables) -> &HashMap<u64, Arc<Service>, Fast>;
    fn is_vip_addr(svc: &ServiceTables, a: Self) -> bool;
    /// True if `a` is an address of one of our interfaces.
    fn ours(t: &Tables, a: Self) -> bool;
    /// The address of `rx_if` in `client`'s subnet (hairpin SNAT).
    fn gateway(t: &Tables, rx_if: u16, client: Self) -> Option<Self>;
    fn rewrite(l3: &mut [u8], l4: usize, to: &Key<Self>) -> bool;
    /// `rewrite` of a conntrack hit, with the flow's checksum deltas.
    fn rewrite_delta(l3: &mut [u8], l4: usize, to: &Key<Self>, d: CsumDelta) -> bool;
    fn tcp_reset(l3: &mut [u8], l4: usize) -> Option<usize>;
    fn icmp_quoted(l3: &[u8], icmp: usize, zone: u16) -> Option<Key<Self>>;
    fn icmp_translate(l3: &mut [u8], icmp: usize, quoted: &Key<Self>) -> bool;
}

impl Family for u32 {
    const LOOKUP: NodeId = NodeId::Ip4Lookup;
    const V6: bool = false;
    const UNREACH: (u8, u8) = (icmp4::DEST_UNREACHABLE, icmp4::PORT_UNREACHABLE);

    #[inline(always)]
    fn parse(l3: &[u8], zone: u16) -> Parsed<u32> {
        let Some(h) = l3.first_chunk::<20>() else {
            return Parsed::Not(Untracked::Bad);
        };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let Some(l4) = l3.get(ihl..).filter(|_| ihl >= 20) else {
            return Parsed::Not(Untracked::Bad);
        };
        if be16(h[6], h[7]) & 0x3fff != 0 {
            return Parsed::Not(Untracked::Fragment);
        }
        let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        match h[9] {
            6 => match l4.first_chunk::<20>() {
                Some(t) => {
                    let (sp, dp) = (be16(t[0], t[1]), be16(t[2], t[3]));
                    Parsed::Flow(Key::new(zone, 6, src, dst, sp, dp), ihl, t[13])
                }
                None => Parsed::Not(Untracked::Bad),
            },
            17 => match l4.first_chunk::<8>() {
                Some(u) => {
                    let (sp, dp) = (be16(u[0], u[1]), be16(u[2], u[3]));
                    Parsed::Flow(Key::new(zone, 17, src, dst, sp, dp), ihl, 0)
                }
                None => Parsed::Not(Untracked::Bad),
            },
            1 => match l4.first_chunk::<8>() {
                Some(c) => {
                    let id = be16(c[4], c[5]);
                    match c[0] {
                        8 => Parsed::Flow(Key::new(zone, 1, src, dst, id, 0), ihl, 0),
                        0 => Parsed::Flow(Key::new(zone, 1, src, dst, 0, id), ihl, 0),
                        3 | 11 | 12 => Parsed::Not(Untracked::IcmpError(ihl)),
                        _ => Parsed::Not(Untracked::Other(1)),
                    }
                }
                None => Parsed::Not(Untracked::Bad),
            },
            p => Parsed::Not(Untracked::Other(p)),
        }
    }
    #[inline(always)]
    fn addrs(l3: &[u8]) -> (u32, u32) {
        (rd32(l3, 12), rd32(l3, 16))
    }
    #[inline(always)]
    fn vip(svc: &ServiceTables, dst: u32, port: u16, proto: u8) -> Option<&Arc<Service>> {
        svc.vips.get(&vip_key(dst, port, proto))
    }
    fn node_ports(svc: &ServiceTables) -> &HashMap<u64, Arc<Service>, Fast> {
        &svc.node_ports
    }
    fn is_vip_addr(svc: &ServiceTables, a: u32) -> bool {
        svc.vip_addrs.contains(&a)
    }
    fn ours(t: &Tables, a: u32) -> bool {
        t.ifaces.iter().any(|f| f.has_ip4(Ipv4Addr::from(a)))
    }
    fn gateway(t: &Tables, rx_if: u16, client: u32) -> Option<u32> {
        t.iface(rx_if)
            .and_then(|f| f.src_ip4_for(Ipv4Addr::from(client)))
            .map(u32::from)
    }
    #[inline(always)]
    fn rewrite(l3: &mut [u8], l4: usize, to: &Key<u32>) -> bool {
        nat::rewrite(l3, l4, to)
    }
    #[inline(always)]
    fn rewrite_delta(l3: &mut [u8], l4: usize, to: &Key<u32>, d: CsumDelta) -> bool {
        nat::rewrite_delta(l3, l4, to, d)
    }
    fn tcp_reset(l3: &mut [u8], l4: usize) -> Option<usize> {
        nat::tcp_reset(l3, l4)
    }
    fn icmp_quoted(l3: &[u8], icmp: usize, zone: u16) -> Option<Key<u32>> {
        nat::icmp_quoted(l3, icmp, zone)
    }
    fn icmp_translate(l3: &mut [u8], icmp: usize, quoted: &Key<u32>) -> bool {
        nat::icmp_translate(l3, icmp, quoted)
    }
}

impl Family for u128 {
    const LOOKUP: NodeId = NodeId::Ip6Lookup;
    const V6: bool = true;
    const UNREACH: (u8, u8) = (icmp6::DEST_UNREACHABLE, icmp6::PORT_UNREACHABLE);

    #[inline(always)]
    fn parse(l3: &[u8], zone: u16) -> Parsed<u128> {
        if l3.len() < 40 {
            return Parsed::Not(Untracked::Bad);
        }
        let (src, dst) = (rd128(l3, 8), rd128(l3, 24));
        let (proto, off) = if matches!(l3[6], 6 | 17 | 58) {
            (l3[6], 40)
        } else {
            match Ipv6ExtHeaders::walk(IpProtocol(l3[6]), &l3[40..]) {
                Ok(e) if e.fragment.is_some() => return Parsed::Not(Untracked::Fragment),
                Ok(e) => (e.protocol.0, 40 + e.offset),
                Err(_) => return Parsed::Not(Untracked::Bad),
            }
        };
        let l4 = l3.get(off..).unwrap_or(&[]);
        match proto {
            6 if l4.len() >= 20 => Parsed::Flow(
                Key::new(zone, 6, src, dst, rd16(l4, 0), rd16(l4, 2)),
                off,
                l4[13],
            ),
            17 if l4.len() >= 8 => Parsed::Flow(
                Key::new(zone, 17, src, dst, rd16(l4, 0), rd16(l4, 2)),
                off,
                0,
            ),
            58 if l4.len() >= 8 => match l4[0] {
                128 => Parsed::Flow(Key::new(zone, 58, src, dst, rd16(l4, 4), 0), off, 0),
                129 => Parsed::Flow(Key::new(zone, 58, src, dst, 0, rd16(l4, 4)), off, 0),
                1..=4 => Parsed::Not(Untracked::IcmpError(off)),
                130..=143 => Parsed::Not(Untracked::Control),
                _ => Parsed::Not(Untracked::Other(58)),
            },
            6 | 17 | 58 => Parsed::Not(Untracked::Bad),
            p => Parsed::Not(Untracked::Other(p)),
        }
    }
    #[inline(always)]
    fn addrs(l3: &[u8]) -> (u128, u128) {
        (rd128(l3, 8), rd128(l3, 24))
    }
    #[inline(always)]
    fn vip(svc: &ServiceTables, dst: u128, port: u16, proto: u8) -> Option<&Arc<Service>> {
        if svc.vips6.is_empty() {
            return None;
        }
        svc.vips6.get(&vip_key6(dst, port, proto))
    }
    fn node_ports(svc: &ServiceTables) -> &HashMap<u64, Arc<Service>, Fast> {
        &svc.node_ports6
    }
    fn is_vip_addr(svc: &ServiceTables, a: u128) -> bool {
        svc.vip_addrs6.contains(&a)
    }
    fn ours(t: &Tables, a: u128) -> bool {
        t.ifaces.iter().any(|f| f.has_ip6(Ipv6Addr::from(a)))
    }
    fn gateway(t: &Tables, rx_if: u16, client: u128) -> Option<u128> {
        t.iface(rx_if)
            .and_then(|f| f.src_ip6_for(Ipv6Addr::from(client)))
            .map(u128::from)
    }
    #[inline(always)]
    fn rewrite(l3: &mut [u8], l4: usize, to: &Key<u128>) -> bool {
        nat::rewrite6(l3, l4, to)
    }
    #[inline(always)]
    fn rewrite_delta(l3: &mut [u8], l4: usize, to: &Key<u128>, d: CsumDelta) -> bool {
        nat::rewrite6_delta(l3, l4, to, d)
    }
    fn tcp_reset(l3: &mut [u8], l4: usize) -> Option<usize> {
        nat::tcp_reset6(l3, l4)
    }
    fn icmp_quoted(l3: &[u8], icmp: usize, zone: u16) -> Option<Key<u128>> {
        nat::icmp6_quoted(l3, icmp, zone)
    }
    fn icmp_translate(l3: &mut [u8], icmp: usize, quoted: &Key<u128>) -> bool {
        nat::icmp6_translate(l3, icmp, quoted)
    }
}

/// The `ip4-conntrack` node.
pub fn node(cx: &mut Ctx, st: &mut CtState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    node_af(cx, st, pkts, input, q)
}

/// The `ip6-conntrack` node.
pub fn node6(
    cx: &mut Ctx,
    st: &mut CtState<u128>,
    pkts: &mut [Pkt],
    input: &[u16],
    q: &mut Queues,
) {
    node_af(cx, st, pkts, input, q)
}

#[inline(always)]
fn node_af<F: Family>(
    cx: &mut Ctx,
    st: &mut CtState<F>,
    pkts: &mut [Pkt],
    input: &[u16],
    q: &mut Queues,
) {
    let t: &crate::tables::Tables = cx.t;
    let svc = &*t.services;
    let now_s = cx.now_s;
    let CtState {
        ct,
        slots,
        affinity,
    } = st;
    let before = ct.len();
    let mut created = 0u64;
    // Stage 1: parse, hash and prefetch the primary bucket; the tracked
    // candidates go to `slots`, the rest is handled here.
    let mut n = 0;
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        match F::parse(p.l3(), p.meta.domain) {
            Parsed::Flow(key, l4, tf) => {
                let h = key.hash();
                ct.prefetch(h);
                if let Some(s) = slots.get_mut(n) {
                    *s = Slot {
                        key,
                        h,
                        hint: HINT_SEARCH,
                        i,
                        l4: l4 as u16,
                        tf,
                    };
                    n += 1;
                } else {
                    // Never: `slots` holds a whole arena.
                    q.push(F::LOOKUP, i);
                }
            }
            Parsed::Not(what) => untracked(svc, ct, p, q, i, what, now_s),
        }
    }
    let slots = slots.get_mut(..n).unwrap_or_default();
    // Stage 2: the buckets' tags; prefetch the flows they point at.
    for s in slots.iter_mut() {
        s.hint = ct.hint(s.h);
    }
    // Stage 3: verify and update; hits translate, misses are new
    // connections. A hint is stale once the table changed.
    let generation = ct.generation();
    let timeouts = ct.timeouts;
    for s in slots.iter() {
        let Some(p) = pkts.get_mut(usize::from(s.i)) else {
            continue;
        };
        let hint = if ct.generation() == generation {
            s.hint
        } else {
            HINT_SEARCH
        };
        if let Some((id, dir)) = ct.lookup_hinted(&s.key, s.h, hint, now_s) {
            let Some(f) = ct.flow_mut(id) else {
                continue;
            };
            f.update(dir, s.tf, now_s, &timeouts);
            if f.flags & flow_flags::NAT != 0 {
                let to = f.key(dir.other()).reverse();
                if !F::rewrite_delta(p.l3_mut(), usize::from(s.l4), &to, f.csum[dir as usize]) {
                    crate::ethernet::drop_pkt(p, q, s.i, Counter::CtMalformed);
                    continue;
                }
            }
            q.push(F::LOOKUP, s.i);
            continue;
        }
        match new_flow(cx, svc, ct, affinity, p, &s.key, usize::from(s.l4), s.tf) {
            Ok(c) => {
                created += c;
                q.push(F::LOOKUP, s.i);
            }
            Err(Miss::Drop(c)) => crate::ethernet::drop_pkt(p, q, s.i, c),
            Err(Miss::Reject) => reject::<F>(cx, p, q, s.i, &s.key, usize::from(s.l4)),
        }
    }
    ct.sweep(now_s, 64);
    let removed = (before as u64 + created).saturating_sub(ct.len() as u64);
    if created > 0 {
        cx.stats.count(Counter::CtFlowCreated, created);
    }
    if removed > 0 {
        cx.stats.count(Counter::CtFlowRemoved, removed);
    }
}

/// A packet that is not a tracked candidate: fragments, ICMP errors,
/// untracked protocols, neighbour discovery, malformed.
#[inline(never)]
fn untracked<F: Family>(
    svc: &ServiceTables,
    ct: &mut ConnTrack<F>,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    what: Untracked,
    now_s: u32,
) {
    let l3 = p.l3();
    match what {
        Untracked::Control => q.push(F::LOOKUP, i),
        Untracked::Fragment => {
            let (src, dst) = F::addrs(l3);
            if F::is_vip_addr(svc, dst) || svc.policy.isolated(src) || svc.policy.isolated(dst) {
                crate::ethernet::drop_pkt(p, q, i, Counter::CtFragment);
            } else {
                q.push(F::LOOKUP, i);
            }
        }
        Untracked::IcmpError(icmp) => icmp_related(svc, ct, p, q, i, icmp, now_s),
        // Not tracked: each packet is classified (only port-less rules
        // match), both ways.
        Untracked::Other(proto) => {
            let (src, dst) = F::addrs(l3);
            match svc.policy.allow(src, dst, proto, 0) {
                Verdict::DenyEgress | Verdict::DenyIngress => {
                    crate::ethernet::drop_pkt(p, q, i, Counter::PolicyDenied)
                }
                _ => q.push(F::LOOKUP, i),
            }
        }
        Untracked::Bad => crate::ethernet::drop_pkt(p, q, i, Counter::CtMalformed),
    }
}

enum Miss {
    Drop(Counter),
    Reject,
}

/// A service flow's destination and, with SNAT, its new source.
fn pick_backend<F: Family>(
    cx: &Ctx,
    s: &Service,
    aff: &mut [Affinity<F>],
    key: &Key<F>,
    node_port: bool,
) -> Option<(F, u16, bool)> {
    let local = node_port && s.local_only;
    let chosen = |h: u32| {
        s.pick(h, local)
            .map(|b| (F::from_u128(b.ip), b.port, b.local))
    };
    if s.affinity_s == 0 {
        let h = crate::ip::flow_hash(
            key.src.to_u128(),
            key.dst.to_u128(),
            key.proto,
            &[
                (key.sport >> 8) as u8,
                key.sport as u8,
                (key.dport >> 8) as u8,
                key.dport as u8,
            ],
        );
        return chosen(h);
    }
    let slot = (crate::ip::flow_hash(key.src.to_u128(), u128::from(s.id), 0, &[]) as usize)
        % aff.len().max(1);
    let e = aff.get_mut(slot)?;
    if e.svc == s.id && e.client == key.src && e.expires > cx.now_s {
        let (ip, port) = (e.backend.to_u128(), e.port);
        if let Some(b) = s
            .backends
            .iter()
            .find(|b| b.ip == ip && b.port == port && (!local || b.local))
        {
            e.expires = cx.now_s.saturating_add(s.affinity_s);
            return Some((F::from_u128(b.ip), b.port, b.local));
        }
    }
    let h = crate::ip::flow_hash(key.src.to_u128(), 0, 0, &[]);
    let b = chosen(h)?;
    *e = Affinity {
        svc: s.id,
        client: key.src,
        backend: b.0,
        port: b.1,
        expires: cx.now_s.saturating_add(s.affinity_s),
    };
    Some(b)
}

/// A connection's first packet: service choice, policy, flow creation.
/// Returns the number of flows created (0 = passes untracked).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn new_flow<F: Family>(
    cx: &Ctx,
    svc: &ServiceTables,
    ct: &mut ConnTrack<F>,
    affinity: &mut [Affinity<F>],
    p: &mut Pkt,
    key: &Key<F>,
    l4: usize,
    tf: u8,
) -> Result<u64, Miss> {
    let now_s = cx.now_s;
    let mut service = None;
    if matches!(key.proto, 6 | 17) {
        service = F::vip(svc, key.dst, key.dport, key.proto).map(|s| (s, false));
        let node_ports = F::node_ports(svc);
        if service.is_none()
            && !node_ports.is_empty()
            && let Some(s) = node_ports.get(&vip_key(0, key.dport, key.proto))
            && F::ours(cx.t, key.dst)
        {
            service = Some((s, true));
        }
    }
    let mut to = *key;
    let mut nat = false;
    if let Some((s, node_port)) = service {
        let Some((ip, port, local)) = pick_backend(cx, s, affinity, key, node_port) else {
            return Err(Miss::Reject);
        };
        to.dst = ip;
        to.dport = port;
        nat = true;
        let snat = if node_port && !local && !s.local_only {
            Some(key.dst)
        } else if ip == key.src {
            // Hairpin: the pod would see a packet from itself.
            F::gateway(cx.t, p.meta.rx_if, key.src).or(Some(key.dst))
        } else {
            None
        };
        if let Some(a) = snat {
            to.src = a;
            to.sport = snat_port(ct, &to, svc.settings.snat_ports, now_s)
                .ok_or(Miss::Drop(Counter::CtTableFull))?;
        }
    }
    let verdict = svc.policy.allow(key.src, to.dst, key.proto, to.dport);
    match verdict {
        Verdict::DenyEgress | Verdict::DenyIngress => {
            return Err(Miss::Drop(Counter::PolicyDenied));
        }
        Verdict::NotIsolated if !nat => return Ok(0),
        _ => {}
    }
    let mut flow = Flow {
        fwd: *key,
        rev: to.reverse(),
        expires: 0,
        state: crate::conntrack::initial_state(key.proto, tf),
        flags: if nat { flow_flags::NAT } else { 0 },
        // Only pod ports (bound endpoints) have a quota: an uplink carries
        // many clients.
        owner: match svc.spoof.get(usize::from(p.meta.rx_if)) {
            Some(Some(_)) => p.meta.rx_if,
            _ => NO_OWNER,
        },
        ..Flow::default()
    };
    flow.update(Dir::Fwd, tf, now_s, &ct.timeouts);
    match ct.insert(flow, now_s) {
        Ok(_) => {}
        Err(InsertError::Quota) => return Err(Miss::Drop(Counter::CtPodQuota)),
        Err(InsertError::Full | InsertError::Exists) => {
            return Err(Miss::Drop(Counter::CtTableFull));
        }
    }
    if nat && !F::rewrite(p.l3_mut(), l4, &to) {
        return Err(Miss::Drop(Counter::CtMalformed));
    }
    Ok(1)
}

/// A source port for SNAT to `to.src` whose reply key is not tracked.
fn snat_port<F: Family>(
    ct: &ConnTrack<F>,
    to: &Key<F>,
    range: (u16, u16),
    now_s: u32,
) -> Option<u16> {
    let (lo, hi) = (range.0.min(range.1), range.0.max(range.1));
    let span = u32::from(hi - lo) + 1;
    let h = to.hash();
    for k in 0..8u64 {
        let port = lo + ((h.rotate_left(8 * k as u32) as u32) % span) as u16;
        let cand = Key { sport: port, ..*to };
        if !ct.contains(&cand.reverse(), now_s) {
            return Some(port);
        }
    }
    None
}

/// REJECT for a service without endpoints: TCP RST, else ICMP(v6) port
/// unreachable (through `icmpN-error`).
fn reject<F: Family>(cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16, key: &Key<F>, l4: usize) {
    if key.proto == 6 {
        match F::tcp_reset(p.l3_mut(), l4) {
            Some(n) => {
                let end = usize::from(p.meta.l3_off) + n;
                p.buf.truncate(end);
                p.meta.flags |= flags::LOCAL_ORIGIN;
                cx.stats.count(Counter::SvcRejectSent, 1);
                q.push(F::LOOKUP, i);
            }
            None => crate::ethernet::drop_pkt(p, q, i, Counter::SvcNoEndpoints),
        }
    } else {
        icmp_error(
            p,
            q,
            i,
            F::V6,
            Counter::SvcNoEndpoints,
            F::UNREACH.0,
            F::UNREACH.1,
            0,
        );
    }
}

/// An ICMP error (header at `icmp`): translated if it quotes a NATed flow,
/// passed if it quotes a tracked one, dropped if it goes to an isolated pod
/// and quotes nothing tracked.
fn icmp_related<F: Family>(
    svc: &ServiceTables,
    ct: &mut ConnTrack<F>,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    icmp: usize,
    now_s: u32,
) {
    let l3 = p.l3();
    let dst = F::addrs(l3).1;
    let hit = F::icmp_quoted(l3, icmp, p.meta.domain).and_then(|quoted| {
        let back = quoted.reverse();
        let (id, dir) = ct.lookup(&back, back.hash(), now_s)?;
        ct.flow(id).map(|f| (*f, dir))
    });
    match hit {
        Some((f, dir)) => {
            if f.flags & flow_flags::NAT != 0 {
                let orig = if dir == Dir::Rev { f.fwd } else { f.rev };
                if !F::icmp_translate(p.l3_mut(), icmp, &orig) {
                    crate::ethernet::drop_pkt(p, q, i, Counter::CtMalformed);
                    return;
                }
            }
            q.push(F::LOOKUP, i);
        }
        None if svc.policy.isolated(dst) => {
            crate::ethernet::drop_pkt(p, q, i, Counter::CtIcmpUnrelated)
        }
        None => q.push(F::LOOKUP, i),
    }
}
