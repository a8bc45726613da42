//! The bridge nodes: `l2-input` (learn, then forward) → `l2-flood` when
//! needed → `interface-output`. Known unicast to an untagged port interface
//! or a VXLAN tunnel skips `interface-output`: `l2-input` does its work (the
//! L2 MTU check and, for a port, the transmit counters) and marks the frame
//! for the port or sends it to `vxlan4-encap` / `vxlan6-encap`. `l2-flood`
//! answers ARP requests for known VXLAN overlay endpoints itself
//! (`vxlan::arp`).
//!
//! Learning and forwarding share one node: each frame's source is learned
//! before its destination is looked up, so forwarding sees the table as of
//! the previous frame (VPP splits them into two nodes, which costs a second
//! pass over the vector; we have no feature to insert between them). A first
//! pass prefetches both MAC-table buckets of every frame. Reads
//! `domain` (bridge domain), `rx_if`, `flags`; writes `tx_if`, and for frames
//! that reach the BVI `rx_if`, `domain` (becomes the VRF), `l3_off`,
//! `ethertype`.
//!
//! Decisions accepted: a frame whose destination is behind its own ingress
//! interface is dropped (`l2-same-interface`); flooded frames go to every
//! member but the ingress one and those in its split-horizon group; unknown
//! unicast never goes to the BVI (the BVI's MAC is a static entry, so a frame
//! for it always hits); a source MAC that is a static entry elsewhere is a
//! spoof and is dropped (`l2-static-mac-moved`).

use vrouter_wire::MacAddr;

use super::mactable::Learn;
use crate::ethernet::{drop_pkt, l3_input};
use crate::graph::{ARENA, Counter, IfaceAcc, NodeId, Queues};
use crate::pipeline::{Ctx, Event, NodeState};
use crate::pkt::{Disposition, NO_IFACE, Pkt, flags};
use crate::tables::{BridgeDomain, IfaceMode, Tables};

/// Destination and source MAC of a frame as 48-bit integers (two 8-byte
/// loads). Frames reaching L2 are at least 14 bytes long.
#[inline(always)]
fn macs(d: &[u8]) -> (u64, u64) {
    match (d.get(0..8), d.get(4..12)) {
        (Some(a), Some(b)) => {
            let a = u64::from_be_bytes(a.try_into().unwrap_or([0; 8]));
            let b = u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
            (a >> 16, b & 0xffff_ffff_ffff)
        }
        _ => (0, 0),
    }
}

#[inline(always)]
fn bd<'t>(t: &'t Tables, p: &Pkt) -> Option<&'t BridgeDomain> {
    t.bds.get(p.meta.domain as usize)
}

/// The bridge domain of a packet, remembering the last one (a vector is
/// usually one domain).
#[derive(Clone, Copy)]
struct DomainCache<'t> {
    t: &'t Tables,
    id: u16,
    bd: Option<&'t BridgeDomain>,
}

impl<'t> DomainCache<'t> {
    fn new(t: &'t Tables) -> Self {
        DomainCache {
            t,
            id: u16::MAX,
            bd: None,
        }
    }

    #[inline(always)]
    fn get(&mut self, id: u16) -> Option<&'t BridgeDomain> {
        if id != self.id {
            self.id = id;
            self.bd = self.t.bds.get(id as usize);
        }
        self.bd
    }
}

/// How many frames ahead of the one forwarded `l2-input` prefetches.
const PREFETCH: usize = 12;

/// Per-frame scratch of `l2-input`: both MACs and their bucket indices,
/// computed by the prefetch pass and used by the forwarding pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct L2Key {
    dst: u64,
    src: u64,
    dst_at: u32,
    src_at: u32,
}

/// Where `l2-input` sends known unicast for one destination interface.
#[derive(Clone, Copy)]
enum Out {
    /// An untagged port interface: marked for its port here.
    Port(u16),
    /// A VXLAN tunnel interface: to its encapsulation node.
    Encap(NodeId),
    /// Anything else (a VLAN tag to add, a BVI): `interface-output` or the
    /// BVI.
    Other,
}

/// What forwarding to one destination interface needs, remembered for the
/// next frame (a vector usually goes to a few destinations). For
/// [`Out::Port`] and [`Out::Encap`], `l2-input` does what
/// `interface-output` would (the L2 MTU check; for a port, the transmit
/// counters: the encapsulation nodes count what they get on the tunnel).
#[derive(Clone, Copy)]
struct DestCache {
    iface: u16,
    shg: u8,
    out: Out,
    mtu: u16,
}

impl DestCache {
    const NONE: DestCache = DestCache {
        iface: NO_IFACE,
        shg: 0,
        out: Out::Other,
        mtu: 0,
    };

    #[inline(never)]
    fn of(t: &Tables, iface: u16) -> DestCache {
        let Some(f) = t.iface(iface) else {
            return DestCache {
                iface,
                ..DestCache::NONE
            };
        };
        let out = match (f.tunnel, f.mode) {
            (Some(k), _) => Out::Encap(
                if t.vxlan.tunnels.get(usize::from(k)).is_some_and(|x| x.v6) {
                    NodeId::Vxlan6Encap
                } else {
                    NodeId::Vxlan4Encap
                },
            ),
            (None, IfaceMode::Bridged { .. }) if f.vlan == 0 => Out::Port(f.port),
            _ => Out::Other,
        };
        DestCache {
            iface,
            shg: f.shg,
            out,
            mtu: f.mtu,
        }
    }
}

/// The `l2-input` node: learns each frame's source, then forwards it on its
/// destination.
pub fn input(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let keys = &mut st.l2[..];
    let n = input.len().min(keys.len());
    let mut dc = DomainCache::new(t);
    // Both MACs and buckets of frame k, its buckets brought into the cache:
    // done PREFETCH frames ahead of the frame being forwarded, so the
    // buckets arrive in time without the whole vector's buckets competing
    // for L1.
    for k in 0..n.min(PREFETCH) {
        prep(&mut dc, pkts, input, keys, k);
    }
    // Age stamp of the current domain, computed when the domain changes.
    let mut stamp = (u16::MAX, 0u8);
    // Split-horizon group of the last ingress interface.
    let mut rx = DestCache::NONE;
    // The last destination interface.
    let mut out = DestCache::NONE;
    // Frames sent to ports from here: transmit counters per run of frames
    // to one interface.
    let mut acc = IfaceAcc::default();
    let mut pc = dc;
    let mut dc = DomainCache::new(t);
    for k in 0..n {
        prep(&mut pc, pkts, input, keys, k + PREFETCH);
        let (Some(&i), Some(key)) = (input.get(k), keys.get(k)) else {
            continue;
        };
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let Some(b) = dc.get(p.meta.domain) else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        let L2Key {
            dst,
            src,
            dst_at,
            src_at,
        } = *key;
        if p.meta.flags & flags::FROM_BVI == 0 {
            // Multicast bit is the low bit of the first octet (bit 40 here).
            if src == 0 || src & (1 << 40) != 0 {
                drop_pkt(p, q, i, Counter::L2BadSourceMac);
                continue;
            }
            if b.learning && p.meta.flags & flags::NO_LEARN == 0 {
                if stamp.0 != p.meta.domain {
                    stamp = (p.meta.domain, b.macs.stamp(cx.now_s));
                }
                match b.macs.learn_at(src_at as usize, src, p.meta.rx_if, stamp.1) {
                    Learn::Hit => {}
                    other => {
                        if !learned(cx, p, other, src) {
                            drop_pkt(p, q, i, Counter::L2StaticMove);
                            continue;
                        }
                    }
                }
            }
        }
        if p.meta.flags & flags::L2_MULTI != 0 {
            q.push(NodeId::L2Flood, i);
            continue;
        }
        match b.macs.lookup_at(dst_at as usize, dst) {
            Some(o) if o == p.meta.rx_if => drop_pkt(p, q, i, Counter::L2SameInterface),
            Some(o) => {
                if out.iface != o {
                    out = DestCache::of(t, o);
                }
                if out.shg != 0 {
                    if rx.iface != p.meta.rx_if {
                        rx = DestCache {
                            iface: p.meta.rx_if,
                            shg: shg(t, p.meta.rx_if),
                            ..DestCache::NONE
                        };
                    }
                    if out.shg == rx.shg {
                        drop_pkt(p, q, i, Counter::L2SplitHorizon);
                        continue;
                    }
                }
                let len = p.buf.len();
                match out.out {
                    Out::Port(_) | Out::Encap(_) if len >= 14 => {
                        p.meta.tx_if = o;
                        if len - 14 > usize::from(out.mtu) {
                            drop_pkt(p, q, i, Counter::L2MtuExceeded);
                            continue;
                        }
                        match out.out {
                            Out::Port(port) => {
                                acc.add(cx.stats, false, o, len);
                                p.meta.tx_port = port;
                                p.meta.disposition = Disposition::Tx;
                            }
                            // The encapsulation node counts it on the tunnel.
                            Out::Encap(encap) => q.push(encap, i),
                            Out::Other => {}
                        }
                    }
                    _ if b.bvi == Some(o) => to_bvi(cx, p, q, i, o),
                    _ => {
                        p.meta.tx_if = o;
                        q.push(NodeId::InterfaceOutput, i);
                    }
                }
            }
            None if b.flood_unknown => q.push(NodeId::L2Flood, i),
            None => drop_pkt(p, q, i, Counter::L2UnknownDropped),
        }
    }
    acc.flush(cx.stats, false);
}

/// Fills `keys[k]` with both MACs and buckets of frame `input[k]` and
/// prefetches its buckets (nothing if `k` is past the vector).
#[inline(always)]
fn prep(dc: &mut DomainCache, pkts: &[Pkt], input: &[u16], keys: &mut [L2Key], k: usize) {
    let (Some(&i), Some(key)) = (input.get(k), keys.get_mut(k)) else {
        return;
    };
    let Some(p) = pkts.get(usize::from(i)) else {
        return;
    };
    let (dst, src) = macs(p.buf.data());
    let (mut dst_at, mut src_at) = (0, 0);
    if let Some(b) = dc.get(p.meta.domain) {
        src_at = b.macs.index(src);
        dst_at = b.macs.index(dst);
        b.macs.prefetch_at(src_at);
        b.macs.prefetch_at(dst_at);
    }
    *key = L2Key {
        dst,
        src,
        dst_at: dst_at as u32,
        src_at: src_at as u32,
    };
}

/// Counts and reports what learning did other than refresh a known entry;
/// false if the frame must be dropped (its source is a static entry of
/// another interface).
#[inline(never)]
fn learned(cx: &Ctx, p: &Pkt, what: Learn, src: u64) -> bool {
    match what {
        Learn::Hit => {}
        Learn::Learned => {
            cx.stats.count(Counter::L2Learned, 1);
            cx.event(Event::MacLearned {
                bd: p.meta.domain,
                mac: MacAddr::from_u64(src),
                iface: p.meta.rx_if,
            });
        }
        Learn::Moved { from } => {
            cx.stats.count(Counter::L2StationMove, 1);
            cx.event(Event::MacMoved {
                bd: p.meta.domain,
                mac: MacAddr::from_u64(src),
                from,
                to: p.meta.rx_if,
            });
        }
        Learn::StaticConflict { .. } => return false,
        Learn::Limit => cx.stats.count(Counter::L2MacLimit, 1),
        Learn::Full => cx.stats.count(Counter::L2TableFull, 1),
    }
    true
}

/// Hands a bridged frame to the domain's BVI: it becomes an L3 packet
/// received on the BVI, in the BVI's VRF.
#[inline(always)]
fn to_bvi(cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16, bvi: u16) {
    let Some(IfaceMode::Bvi { vrf, .. }) = cx.t.iface(bvi).map(|f| f.mode) else {
        drop_pkt(p, q, i, Counter::GraphLost);
        return;
    };
    let d = p.buf.data();
    p.meta.ethertype = u16::from_be_bytes([d[12], d[13]]);
    p.meta.l3_off = 14;
    p.meta.rx_if = bvi;
    p.meta.domain = vrf;
    p.meta.flags &= !flags::FROM_BVI;
    let st = cx.stats.iface(bvi);
    st.rx_packets.add(1);
    st.rx_bytes.add(p.buf.len() as u64);
    l3_input(p, q, i);
}

#[inline(always)]
fn shg(t: &Tables, iface: u16) -> u8 {
    t.iface(iface).map_or(0, |f| f.shg)
}

/// The `l2-flood` node: one copy per eligible member, the original to the last.
pub fn flood(cx: &mut Ctx, pkts: &mut Vec<Pkt>, input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let (meta, b) = {
            let p = &pkts[i as usize];
            match bd(t, p) {
                Some(b) => (p.meta, b),
                None => {
                    drop_pkt(&mut pkts[i as usize], q, i, Counter::GraphLost);
                    continue;
                }
            }
        };
        if !t.vxlan.vnis.is_empty()
            && meta.flags & flags::L2_MULTI != 0
            && shg(t, meta.rx_if) != crate::vxlan::TUNNEL_SHG
            && let Some(mac) =
                crate::vxlan::arp::known_target(t, meta.domain, pkts[i as usize].buf.data())
        {
            let p = &mut pkts[i as usize];
            crate::vxlan::arp::reply(p.buf.data_mut(), mac);
            p.meta.flags &= !flags::L2_MULTI;
            cx.stats.count(Counter::VxlanArpSuppressed, 1);
            send(cx, b.bvi, p, q, i, meta.rx_if);
            continue;
        }
        let rx_shg = shg(t, meta.rx_if);
        let multi = meta.flags & flags::L2_MULTI != 0;
        let eligible = |m: u16| {
            m != meta.rx_if && (rx_shg == 0 || shg(t, m) != rx_shg) && (b.bvi != Some(m) || multi)
        };
        let Some(last) = b.members.iter().rev().copied().find(|&m| eligible(m)) else {
            drop_pkt(&mut pkts[i as usize], q, i, Counter::L2FloodEmpty);
            continue;
        };
        cx.stats.count(Counter::L2Flooded, 1);
        for &m in b.members.iter().filter(|&&m| eligible(m) && m != last) {
            if pkts.len() >= ARENA {
                cx.stats.count(Counter::L2FloodNoBuffer, 1);
                continue;
            }
            let Some(buf) = cx.pool.copy(&pkts[i as usize].buf) else {
                cx.stats.count(Counter::L2FloodNoBuffer, 1);
                continue;
            };
            cx.stats.count(Counter::L2FloodCopies, 1);
            let j = pkts.len() as u16;
            pkts.push(Pkt { buf, meta });
            send(cx, b.bvi, &mut pkts[j as usize], q, j, m);
        }
        send(cx, b.bvi, &mut pkts[i as usize], q, i, last);
    }
}

#[inline(always)]
fn send(cx: &Ctx, bvi: Option<u16>, p: &mut Pkt, q: &mut Queues, i: u16, m: u16) {
    if bvi == Some(m) {
        to_bvi(cx, p, q, i, m);
    } else {
        p.meta.tx_if = m;
        q.push(NodeId::InterfaceOutput, i);
    }
}
