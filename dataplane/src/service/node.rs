//! The `ip4-conntrack` node: anti-spoofing, connection tracking, service
//! load balancing (DNAT, SNAT, reverse NAT) and NetworkPolicy, between
//! `ip4-input` and `ip4-lookup`. `ip4-input` sends packets here only while
//! the snapshot has a service, a policy or a pod binding.
//!
//! Per vector: (1) parse each packet's 5-tuple, check the source of pod
//! ports (MAC and IPv4 of the bound endpoint, else `spoofed-source`),
//! hash the key and prefetch its conntrack buckets; (2) prefetch the flows
//! the buckets point at; (3) look every key up.
//! A hit advances the flow's state and applies its NAT. A miss is a new
//! connection: a VIP (or a NodePort on one of our addresses) picks a backend
//! (ClientIP affinity, else Maglev over the 5-tuple), the policy classifier
//! decides, and a flow is created — refused when the table is full
//! (`ct-table-full`) or the pod is at its quota (`ct-pod-quota`). Traffic
//! that involves no service and no isolated pod passes untracked. A service
//! without backends answers TCP with a RST and UDP with ICMP port
//! unreachable (`svc-no-endpoints`), like kube-proxy's REJECT.
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
//! RST, `flags` (`LOCAL_ORIGIN`). Edges: `ip4-lookup`, `icmp4-error`,
//! `drop`.

use crate::conntrack::{ConnTrack, Dir, Flow, InsertError, Key, NO_OWNER, flow_flags};
use crate::graph::{ARENA, Counter, NodeId, Queues};
use crate::ip::icmp_error;
use crate::ip::ip4::icmp4;
use crate::pipeline::Ctx;
use crate::pkt::{Pkt, flags};
use crate::policy::Verdict;
use crate::service::{Service, ServiceTables, nat, vip_key};

/// ClientIP affinity entries per worker (direct-mapped; a collision
/// replaces the older client's entry).
pub const AFFINITY_SLOTS: usize = 1 << 14;

#[derive(Debug, Clone, Copy, Default)]
struct Affinity {
    svc: u32,
    client: u32,
    backend: u32,
    port: u16,
    expires: u32,
}

/// Per-worker state of the node.
pub struct CtState {
    pub ct: ConnTrack,
    keys: Box<[Key; ARENA]>,
    hashes: Box<[u64; ARENA]>,
    /// Per input position: L4 header offset and TCP flags; 0 offset = skip.
    l4: Box<[(u16, u8); ARENA]>,
    affinity: Box<[Affinity]>,
}

impl CtState {
    /// State around a conntrack table.
    pub fn new(ct: ConnTrack) -> CtState {
        CtState {
            ct,
            keys: Box::new([Key::default(); ARENA]),
            hashes: Box::new([0; ARENA]),
            l4: Box::new([(0, 0); ARENA]),
            affinity: vec![Affinity::default(); AFFINITY_SLOTS].into_boxed_slice(),
        }
    }
}

impl Default for CtState {
    fn default() -> Self {
        CtState::new(ConnTrack::new(
            4096,
            0,
            crate::conntrack::Timeouts::default(),
        ))
    }
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

/// What parsing found.
enum Parsed {
    /// Tracked candidate: key, L4 offset, TCP flags.
    Flow(Key, usize, u8),
    /// An ICMP error (quotes another packet).
    IcmpError,
    /// A fragment.
    Fragment,
    /// A protocol that is not tracked (passes).
    Other,
    Bad,
}

#[inline(always)]
fn parse(l3: &[u8], zone: u16) -> Parsed {
    let ihl = usize::from(l3.first().map_or(0, |b| b & 0x0f)) * 4;
    if ihl < 20 || l3.len() < ihl {
        return Parsed::Bad;
    }
    if rd16(l3, 6) & 0x3fff != 0 {
        return Parsed::Fragment;
    }
    let (proto, src, dst) = (l3[9], rd32(l3, 12), rd32(l3, 16));
    let l4 = &l3[ihl..];
    match proto {
        6 if l4.len() >= 20 => Parsed::Flow(
            Key::new(zone, 6, src, dst, rd16(l4, 0), rd16(l4, 2)),
            ihl,
            l4[13],
        ),
        17 if l4.len() >= 8 => Parsed::Flow(
            Key::new(zone, 17, src, dst, rd16(l4, 0), rd16(l4, 2)),
            ihl,
            0,
        ),
        1 if l4.len() >= 8 => match l4[0] {
            8 => Parsed::Flow(Key::new(zone, 1, src, dst, rd16(l4, 4), 0), ihl, 0),
            0 => Parsed::Flow(Key::new(zone, 1, src, dst, 0, rd16(l4, 4)), ihl, 0),
            3 | 11 | 12 => Parsed::IcmpError,
            _ => Parsed::Other,
        },
        6 | 17 | 1 => Parsed::Bad,
        _ => Parsed::Other,
    }
}

#[inline(always)]
fn spoofed(s: &ServiceTables, p: &Pkt, src: u32) -> bool {
    if p.meta.flags & flags::LOCAL_ORIGIN != 0 {
        return false;
    }
    let Some(Some(allowed)) = s.spoof.get(usize::from(p.meta.rx_if)) else {
        return false;
    };
    let mac = p.buf.data().get(6..12).unwrap_or(&[]);
    !allowed
        .iter()
        .any(|(m, ip)| *ip == src && m.octets().as_slice() == mac)
}

/// The `ip4-conntrack` node.
pub fn node(cx: &mut Ctx, st: &mut CtState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t: &crate::tables::Tables = cx.t;
    let svc = &*t.services;
    let now_s = cx.now_s;
    let before = st.ct.len();
    let mut created = 0u64;
    // Pass 1: parse, anti-spoofing, hash and prefetch.
    for (k, &i) in input.iter().enumerate() {
        st.l4[k] = (0, 0);
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let zone = p.meta.domain;
        let l3 = p.l3();
        let src = rd32(l3, 12);
        if spoofed(svc, p, src) {
            crate::ethernet::drop_pkt(p, q, i, Counter::SpoofedSource);
            continue;
        }
        match parse(l3, zone) {
            Parsed::Flow(key, l4, tf) => {
                let h = key.hash();
                st.ct.prefetch(h);
                st.keys[k] = key;
                st.hashes[k] = h;
                st.l4[k] = (l4 as u16, tf);
            }
            Parsed::Fragment => {
                let dst = rd32(l3, 16);
                if svc.vip_addrs.contains(&dst)
                    || svc.policy.isolated(src)
                    || svc.policy.isolated(dst)
                {
                    crate::ethernet::drop_pkt(p, q, i, Counter::CtFragment);
                } else {
                    q.push(NodeId::Ip4Lookup, i);
                }
            }
            Parsed::IcmpError => icmp_related(svc, &mut st.ct, p, q, i, now_s),
            // Not tracked: each packet is classified (only port-less rules
            // match), both ways.
            Parsed::Other => {
                let (dst, proto) = (rd32(l3, 16), l3.get(9).copied().unwrap_or(0));
                match svc.policy.allow(src, dst, proto, 0) {
                    Verdict::DenyEgress | Verdict::DenyIngress => {
                        crate::ethernet::drop_pkt(p, q, i, Counter::PolicyDenied)
                    }
                    _ => q.push(NodeId::Ip4Lookup, i),
                }
            }
            Parsed::Bad => crate::ethernet::drop_pkt(p, q, i, Counter::CtMalformed),
        }
    }
    // Pass 2: the flows the buckets point at (the second cache miss).
    for (k, &(l4, _)) in st.l4.iter().enumerate().take(input.len()) {
        if l4 != 0 {
            st.ct.prefetch_flows(st.hashes[k]);
        }
    }
    // Pass 3: look up; hits translate, misses are new connections.
    for (k, &i) in input.iter().enumerate() {
        let (l4, tf) = st.l4[k];
        if l4 == 0 {
            continue;
        }
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let key = st.keys[k];
        let timeouts = st.ct.timeouts;
        if let Some((id, dir)) = st.ct.lookup(&key, st.hashes[k], now_s) {
            let Some(f) = st.ct.flow_mut(id) else {
                continue;
            };
            f.update(dir, tf, now_s, &timeouts);
            if f.flags & flow_flags::NAT != 0 {
                let to = match dir {
                    Dir::Fwd => f.rev.reverse(),
                    Dir::Rev => f.fwd.reverse(),
                };
                if !nat::rewrite(p.l3_mut(), usize::from(l4), &to) {
                    crate::ethernet::drop_pkt(p, q, i, Counter::CtMalformed);
                    continue;
                }
            }
            q.push(NodeId::Ip4Lookup, i);
            continue;
        }
        match new_flow(cx, svc, st, p, &key, usize::from(l4), tf) {
            Ok(c) => {
                created += c;
                q.push(NodeId::Ip4Lookup, i);
            }
            Err(Miss::Drop(c)) => crate::ethernet::drop_pkt(p, q, i, c),
            Err(Miss::Reject) => reject(cx, p, q, i, &key, usize::from(l4)),
        }
    }
    st.ct.sweep(now_s, 64);
    let removed = (before as u64 + created).saturating_sub(st.ct.len() as u64);
    if created > 0 {
        cx.stats.count(Counter::CtFlowCreated, created);
    }
    if removed > 0 {
        cx.stats.count(Counter::CtFlowRemoved, removed);
    }
}

enum Miss {
    Drop(Counter),
    Reject,
}

/// A service flow's destination and, with SNAT, its new source.
fn pick_backend(
    cx: &Ctx,
    s: &Service,
    aff: &mut [Affinity],
    key: &Key,
    node_port: bool,
) -> Option<(u32, u16, bool)> {
    let local = node_port && s.local_only;
    let chosen = |h: u32| s.pick(h, local).map(|b| (b.ip, b.port, b.local));
    if s.affinity_s == 0 {
        let h = crate::ip::flow_hash(
            u128::from(key.src),
            u128::from(key.dst),
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
    let slot = (crate::ip::flow_hash(u128::from(key.src), u128::from(s.id), 0, &[]) as usize)
        % aff.len().max(1);
    let e = aff.get_mut(slot)?;
    if e.svc == s.id && e.client == key.src && e.expires > cx.now_s {
        let (ip, port) = (e.backend, e.port);
        if let Some(b) = s
            .backends
            .iter()
            .find(|b| b.ip == ip && b.port == port && (!local || b.local))
        {
            e.expires = cx.now_s.saturating_add(s.affinity_s);
            return Some((b.ip, b.port, b.local));
        }
    }
    let h = crate::ip::flow_hash(u128::from(key.src), 0, 0, &[]);
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
fn new_flow(
    cx: &Ctx,
    svc: &ServiceTables,
    st: &mut CtState,
    p: &mut Pkt,
    key: &Key,
    l4: usize,
    tf: u8,
) -> Result<u64, Miss> {
    let now_s = cx.now_s;
    let mut service = None;
    if key.proto != 1 {
        service = svc
            .vips
            .get(&vip_key(key.dst, key.dport, key.proto))
            .map(|s| (s, false));
        if service.is_none()
            && !svc.node_ports.is_empty()
            && let Some(s) = svc.node_ports.get(&vip_key(0, key.dport, key.proto))
            && cx
                .t
                .ifaces
                .iter()
                .any(|f| f.has_ip4(std::net::Ipv4Addr::from(key.dst)))
        {
            service = Some((s, true));
        }
    }
    let mut to = *key;
    let mut nat = false;
    if let Some((s, node_port)) = service {
        let Some((ip, port, local)) = pick_backend(cx, s, &mut st.affinity, key, node_port) else {
            return Err(Miss::Reject);
        };
        to.dst = ip;
        to.dport = port;
        nat = true;
        let snat = if node_port && !local && !s.local_only {
            Some(key.dst)
        } else if ip == key.src {
            // Hairpin: the pod would see a packet from itself.
            cx.t.iface(p.meta.rx_if)
                .and_then(|f| f.src_ip4_for(std::net::Ipv4Addr::from(key.src)))
                .map(u32::from)
                .or(Some(key.dst))
        } else {
            None
        };
        if let Some(a) = snat {
            to.src = a;
            to.sport = snat_port(&st.ct, &to, svc.settings.snat_ports, now_s)
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
        state: Flow::initial_state(key.proto, tf),
        flags: if nat { flow_flags::NAT } else { 0 },
        // Only pod ports (bound endpoints) have a quota: an uplink carries
        // many clients.
        owner: match svc.spoof.get(usize::from(p.meta.rx_if)) {
            Some(Some(_)) => p.meta.rx_if,
            _ => NO_OWNER,
        },
    };
    flow.update(Dir::Fwd, tf, now_s, &st.ct.timeouts);
    match st.ct.insert(flow, now_s) {
        Ok(_) => {}
        Err(InsertError::Quota) => return Err(Miss::Drop(Counter::CtPodQuota)),
        Err(InsertError::Full | InsertError::Exists) => {
            return Err(Miss::Drop(Counter::CtTableFull));
        }
    }
    if nat && !nat::rewrite(p.l3_mut(), l4, &to) {
        return Err(Miss::Drop(Counter::CtMalformed));
    }
    Ok(1)
}

/// A source port for SNAT to `to.src` whose reply key is not tracked.
fn snat_port(ct: &ConnTrack, to: &Key, range: (u16, u16), now_s: u32) -> Option<u16> {
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

/// REJECT for a service without endpoints: TCP RST, else ICMP port
/// unreachable (through `icmp4-error`).
fn reject(cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16, key: &Key, l4: usize) {
    if key.proto == 6 {
        match nat::tcp_reset(p.l3_mut(), l4) {
            Some(n) => {
                let end = usize::from(p.meta.l3_off) + n;
                p.buf.truncate(end);
                p.meta.flags |= flags::LOCAL_ORIGIN;
                cx.stats.count(Counter::SvcRejectSent, 1);
                q.push(NodeId::Ip4Lookup, i);
            }
            None => crate::ethernet::drop_pkt(p, q, i, Counter::SvcNoEndpoints),
        }
    } else {
        icmp_error(
            p,
            q,
            i,
            false,
            Counter::SvcNoEndpoints,
            icmp4::DEST_UNREACHABLE,
            icmp4::PORT_UNREACHABLE,
            0,
        );
    }
}

/// An ICMP error: translated if it quotes a NATed flow, passed if it quotes
/// a tracked one, dropped if it goes to an isolated pod and quotes nothing
/// tracked.
fn icmp_related(
    svc: &ServiceTables,
    ct: &mut ConnTrack,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    now_s: u32,
) {
    let l3 = p.l3();
    let ihl = usize::from(l3[0] & 0x0f) * 4;
    let dst = rd32(l3, 16);
    let hit = nat::icmp_quoted(l3, ihl, p.meta.domain).and_then(|quoted| {
        let back = quoted.reverse();
        let (id, dir) = ct.lookup(&back, back.hash(), now_s)?;
        ct.flow(id).map(|f| (*f, dir))
    });
    match hit {
        Some((f, dir)) => {
            if f.flags & flow_flags::NAT != 0 {
                let orig = if dir == Dir::Rev { f.fwd } else { f.rev };
                if !nat::icmp_translate(p.l3_mut(), ihl, &orig) {
                    crate::ethernet::drop_pkt(p, q, i, Counter::CtMalformed);
                    return;
                }
            }
            q.push(NodeId::Ip4Lookup, i);
        }
        None if svc.policy.isolated(dst) => {
            crate::ethernet::drop_pkt(p, q, i, Counter::CtIcmpUnrelated)
        }
        None => q.push(NodeId::Ip4Lookup, i),
    }
}
