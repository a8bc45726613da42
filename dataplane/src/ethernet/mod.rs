//! `ethernet-input`: the first node. Maps a received frame to its interface
//! (port + VLAN), then sends it to the bridge or to L3 input.
//!
//! Reads `rx_port`. Writes `rx_if`, `domain` (bridge domain or VRF),
//! `l3_off`, `ethertype`, `flags::L2_MULTI` (and `aux` for `vxlan4-input`).
//! Edges: `l2-input` (bridged interfaces; a VLAN tag is removed first so the
//! bridge always sees untagged frames, and `interface-output` tags them for
//! the output interface), `arp-input`, `ip4-input`, `ip6-input` (routed
//! interfaces), `pod-guard` (instead of those, for an interface with a pod
//! bound to it: anti-spoofing), `vxlan4-input` (IPv4 UDP to the address of
//! a VTEP on the receiving interface: the VXLAN fast path, which checks the
//! outer IPv4 header itself), `drop`.
//!
//! Also home of the two helpers every L3 node uses to send a packet:
//! [`set_l2_header`] and [`l3_output`].

use vrouter_wire::{EtherType, MacAddr};

use crate::graph::{Counter, IfaceAcc, NodeId, Queues};
use crate::pipeline::Ctx;
use crate::pkt::{NO_IFACE, Pkt, flags};
use crate::tables::{IfaceMode, Tables};

const ETH: usize = 14;
const VLAN: usize = 4;

/// The first 8 bytes of a frame (at least 14 long) as a big-endian integer.
#[inline(always)]
fn d8(d: &[u8]) -> u64 {
    d.first_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b))
}

#[inline(always)]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// What the fast path needs about the untagged interface of one port,
/// looked up once per run of packets from that port.
#[derive(Clone, Copy)]
struct PortIface {
    port: u16,
    /// The untagged interface (`NO_IFACE` if none or not usable).
    iface: u16,
    /// 0: none, 1: bridged, 2: routed.
    kind: u8,
    /// Bridge domain or VRF.
    domain: u16,
    /// The interface's MAC (routed), as a 48-bit integer.
    mac: u64,
    /// A pod is bound to the interface: frames go through `pod-guard`.
    guard: bool,
    /// The address of an IPv4 VTEP on this (routed) interface: IPv4 UDP to
    /// it goes to `vxlan4-input` first (the VXLAN fast path, see
    /// `vxlan::decap`).
    vtep4: Option<[u8; 4]>,
}

impl PortIface {
    const NONE: PortIface = PortIface {
        port: u16::MAX,
        iface: NO_IFACE,
        kind: 0,
        domain: 0,
        mac: 0,
        guard: false,
        vtep4: None,
    };

    #[inline(never)]
    fn of(t: &Tables, port: u16) -> PortIface {
        let iface = t
            .ports
            .get(usize::from(port))
            .map_or(NO_IFACE, |m| m.untagged);
        let (kind, domain, mac) = match t.iface(iface) {
            Some(f) => match f.mode {
                IfaceMode::Bridged { bd } => (1, bd, 0),
                IfaceMode::Routed { vrf } => (2, vrf, f.mac.to_u64()),
                IfaceMode::Bvi { .. } => (0, 0, 0),
            },
            None => (0, 0, 0),
        };
        PortIface {
            port,
            iface,
            kind,
            domain,
            mac,
            guard: guarded(t, iface),
            vtep4: if kind == 2 {
                t.vxlan.vtep4_on(iface).map(u32::to_be_bytes)
            } else {
                None
            },
        }
    }
}

/// The `ethernet-input` node.
///
/// Fast path: an untagged frame on a port whose untagged interface is
/// bridged or routed (looked up once per run of packets from one port).
/// Everything else (VLAN tags, unknown interfaces) takes [`slow`].
pub fn input(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let mut acc = IfaceAcc::default();
    let mut pc = PortIface::NONE;
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let len = p.buf.len();
        let Some(h) = p.buf.data().first_chunk::<14>() else {
            drop_pkt(p, q, i, Counter::EthRunt);
            continue;
        };
        let ethertype = u16::from_be_bytes([h[12], h[13]]);
        let multi = h[0] & 1 != 0;
        let dst = u64::from_be_bytes([0, 0, h[0], h[1], h[2], h[3], h[4], h[5]]);
        if p.meta.rx_port != pc.port {
            pc = PortIface::of(t, p.meta.rx_port);
        }
        if ethertype == EtherType::VLAN.0 || ethertype == EtherType::QINQ.0 || pc.kind == 0 {
            slow(cx, &mut acc, p, q, i);
            continue;
        }
        p.meta.rx_if = pc.iface;
        acc.add(cx.stats, true, pc.iface, len);
        p.meta.flags |= u16::from(multi) * flags::L2_MULTI;
        p.meta.ethertype = ethertype;
        p.meta.l3_off = ETH as u16;
        p.meta.domain = pc.domain;
        if pc.kind == 1 {
            q.push(
                if pc.guard {
                    NodeId::PodGuard
                } else {
                    NodeId::L2Input
                },
                i,
            );
        } else if !multi && dst != pc.mac {
            drop_pkt(p, q, i, Counter::EthNotForUs);
        } else if pc.guard {
            q.push(NodeId::PodGuard, i);
        } else if ethertype == EtherType::IPV4.0
            && let Some(a) = pc.vtep4
            && to_vtep(p.buf.data(), a)
        {
            p.meta.aux = crate::vxlan::decap::AUX_OUTER_UNCHECKED;
            q.push(NodeId::Vxlan4Input, i);
        } else {
            l3_input(p, q, i);
        }
    }
    acc.flush(cx.stats, true);
}

/// `ethernet-input` for frames the fast path does not take: VLAN tags,
/// ports without a usable untagged interface.
#[inline(never)]
fn slow(cx: &Ctx, acc: &mut IfaceAcc, p: &mut Pkt, q: &mut Queues, i: u16) {
    let t = cx.t;
    let d = p.buf.data();
    if d.len() < ETH {
        drop_pkt(p, q, i, Counter::EthRunt);
        return;
    }
    let mut ethertype = be16(d, 12);
    let mut vid = 0;
    let mut l3_off = ETH;
    if ethertype == EtherType::VLAN.0 {
        if d.len() < ETH + VLAN {
            drop_pkt(p, q, i, Counter::EthBadVlan);
            return;
        }
        vid = be16(d, 14) & 0x0fff;
        ethertype = be16(d, 16);
        l3_off += VLAN;
        if ethertype == EtherType::VLAN.0 || ethertype == EtherType::QINQ.0 {
            drop_pkt(p, q, i, Counter::EthBadVlan);
            return;
        }
    } else if ethertype == EtherType::QINQ.0 {
        drop_pkt(p, q, i, Counter::EthBadVlan);
        return;
    }
    let multi = d[0] & 1 != 0;
    let iface_idx = match t.ports.get(p.meta.rx_port as usize) {
        Some(m) if vid == 0 => m.untagged,
        Some(m) => m.iface(vid),
        None => NO_IFACE,
    };
    let Some(iface) = t.iface(iface_idx) else {
        drop_pkt(p, q, i, Counter::EthUnknownInterface);
        return;
    };
    p.meta.rx_if = iface_idx;
    acc.add(cx.stats, true, iface_idx, p.buf.len());
    if multi {
        p.meta.flags |= flags::L2_MULTI;
    }
    p.meta.ethertype = ethertype;
    match iface.mode {
        IfaceMode::Bridged { bd } => {
            if vid != 0 {
                // Pop the tag: move the MACs forward over it.
                p.buf.data_mut().copy_within(0..12, VLAN);
                let _ = p.buf.advance(VLAN);
            }
            p.meta.l3_off = ETH as u16;
            p.meta.domain = bd;
            if guarded(t, iface_idx) {
                q.push(NodeId::PodGuard, i);
            } else {
                q.push(NodeId::L2Input, i);
            }
        }
        IfaceMode::Routed { vrf } => {
            // Compare as integers: the first 8 bytes, top 6 are the MAC.
            let dst = d8(p.buf.data()) >> 16;
            if !multi && dst != iface.mac.to_u64() {
                drop_pkt(p, q, i, Counter::EthNotForUs);
                return;
            }
            p.meta.l3_off = l3_off as u16;
            p.meta.domain = vrf;
            if guarded(t, iface_idx) {
                q.push(NodeId::PodGuard, i);
            } else {
                l3_input(p, q, i);
            }
        }
        // A BVI has no port; a map pointing at one is a control bug.
        IfaceMode::Bvi { .. } => drop_pkt(p, q, i, Counter::EthUnknownInterface),
    }
}

/// True if IPv4 frame `d` is UDP to address `vtep`.
#[inline(always)]
fn to_vtep(d: &[u8], vtep: [u8; 4]) -> bool {
    d.get(23) == Some(&17) && d.get(30..).and_then(|a| a.first_chunk::<4>()) == Some(&vtep)
}

/// True if a pod is bound to interface `iface` (anti-spoofing applies).
#[inline(always)]
fn guarded(t: &Tables, iface: u16) -> bool {
    t.services.enabled
        && t.services
            .spoof
            .get(usize::from(iface))
            .is_some_and(Option::is_some)
}

/// Drops packet `p` (index `i`) for `reason`.
#[inline(always)]
pub fn drop_pkt(p: &mut Pkt, q: &mut Queues, i: u16, reason: Counter) {
    p.meta.drop = reason as u16;
    q.push(NodeId::Drop, i);
}

/// Sends a packet whose `l3_off`/`ethertype` are set to the L3 input node
/// for its EtherType.
#[inline(always)]
pub fn l3_input(p: &mut Pkt, q: &mut Queues, i: u16) {
    match EtherType(p.meta.ethertype) {
        EtherType::IPV4 => q.push(NodeId::Ip4Input, i),
        EtherType::IPV6 => q.push(NodeId::Ip6Input, i),
        EtherType::ARP => q.push(NodeId::ArpInput, i),
        _ => drop_pkt(p, q, i, Counter::EthUnknownEthertype),
    }
}

/// Gives the packet exactly one untagged Ethernet header in front of its
/// L3 header (`l3_off`) and fills it. Fails only without headroom.
#[inline(always)]
pub fn set_l2_header(p: &mut Pkt, dst: MacAddr, src: MacAddr, ethertype: EtherType) -> bool {
    let off = p.meta.l3_off as usize;
    let ok = if off > ETH {
        p.buf.advance(off - ETH).is_ok()
    } else if off < ETH {
        p.buf.prepend(ETH - off).is_ok()
    } else {
        true
    };
    if !ok {
        return false;
    }
    p.meta.l3_off = ETH as u16;
    let d = p.buf.data_mut();
    d[0..6].copy_from_slice(dst.as_bytes());
    d[6..12].copy_from_slice(src.as_bytes());
    d[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
    true
}

/// Sends a packet with a complete Ethernet header out of L3 interface
/// `iface`: to `interface-output`, or into the bridge domain for a BVI.
#[inline(always)]
pub fn l3_output(cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16, iface: u16) {
    p.meta.tx_if = iface;
    match cx.t.iface(iface).map(|f| f.mode) {
        Some(IfaceMode::Bvi { bd, .. }) => {
            p.meta.domain = bd;
            p.meta.rx_if = iface;
            p.meta.flags |= flags::FROM_BVI;
            if p.buf.data().first().is_some_and(|b| b & 1 != 0) {
                p.meta.flags |= flags::L2_MULTI;
            } else {
                p.meta.flags &= !flags::L2_MULTI;
            }
            q.push(NodeId::L2Input, i);
        }
        Some(_) => q.push(NodeId::InterfaceOutput, i),
        None => drop_pkt(p, q, i, Counter::GraphLost),
    }
}
