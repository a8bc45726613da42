//! `vxlan4-input` / `vxlan6-input`: decapsulate VXLAN over IPv4 / IPv6
//! received for a local VTEP and hand the inner frame to the bound bridge
//! domain or VRF.
//!
//! Input: packets `ip4-input` / `ip6-local` found addressed to the address
//! and UDP port of a VTEP of their VRF (`meta.aux` = the VTEP), IP header
//! validated and not a fragment. `vxlan4-input` also takes, straight from
//! `ethernet-input`, every IPv4 UDP frame to the address of an IPv4 VTEP
//! received on the VTEP's own (routed, unguarded) interface (`meta.aux` =
//! [`AUX_OUTER_UNCHECKED`]): the fast path. It checks the outer header itself, in one pass, exactly as
//! `ip4-input` would (version 4 without options, total length, header
//! checksum, source, not a fragment, a VTEP's address and port in the
//! packet's VRF) and sends anything else, untouched, to `ip4-input`: the
//! trade-off is a detour of a few instructions for other UDP to the VTEP's
//! address, against skipping `ip4-input` for all VXLAN. Checks, each with its
//! counter: UDP length and the I flag
//! (`vxlan-bad-header`), a non-zero UDP checksum (`vxlan-bad-udp-checksum`),
//! the VNI is one of the VTEP's (`vxlan-unknown-vni`), the outer source is
//! one of that VNI's remote VTEPs (`vxlan-unknown-vtep`), the inner frame is
//! untagged (`vxlan-inner-vlan`); for an L3 VNI the inner destination MAC is
//! ours or multicast (`vxlan-not-for-us`). Writes `rx_if` (the tunnel
//! interface: per-tunnel receive counters), `domain`, `l3_off`,
//! `ethertype`, `flags` (only `L2_MULTI` of the inner frame survives).
//! A frame of the fast path with a zero UDP checksum (what Linux sends)
//! goes through all of these checks at once, on a few 64-bit words of its
//! first 64 bytes (`fast4`); any frame that fails one of them is handled
//! again by the general code, which names the reason.
//! Edges: `l2-input` (L2 VNI: the bridge learns inner MAC → tunnel),
//! `ip4-input` / `ip6-input` / `arp-input` (L3 VNI), `drop`.

use vrouter_wire::checksum;

use super::VniKind;
use crate::ethernet::{drop_pkt, l3_input};
use crate::graph::{Counter, NodeId, Queues, WorkerStats};
use crate::ip::ip4::{is_martian_src, sum20};
use crate::ip::{be16, be32, be128};
use crate::pipeline::Ctx;
use crate::pkt::{NO_IFACE, Pkt, flags};

/// Outer UDP + VXLAN header length.
const UDP_VXLAN: usize = 16;
/// Tunnels whose receive counters a vector accumulates at once.
const RX_SLOTS: usize = 32;

/// `meta.aux` of a frame `ethernet-input` sends here before any IPv4 check.
pub const AUX_OUTER_UNCHECKED: u32 = u32::MAX;

/// Per-vector state: receive counters per tunnel interface (flushed when a
/// slot is needed by another tunnel, and at the end: packets of a vector
/// come from many remote VTEPs, interleaved), the last VNI looked up, and
/// the last (outer destination, UDP port, VRF) → VTEP of the fast path.
struct Run<'t> {
    rx: [(u16, u64, u64); RX_SLOTS],
    vni: (u16, u32, Option<&'t super::Vni>),
    vtep: (u32, u16, u16, Option<u16>),
}

impl<'t> Run<'t> {
    fn new() -> Self {
        Run {
            rx: [(NO_IFACE, 0, 0); RX_SLOTS],
            vni: (u16::MAX, u32::MAX, None),
            vtep: (0, 0, u16::MAX, None),
        }
    }

    #[inline(always)]
    fn vtep(&mut self, vx: &super::VxlanTables, dst: u32, port: u16, vrf: u16) -> Option<u16> {
        if (dst, port, vrf) != (self.vtep.0, self.vtep.1, self.vtep.2) {
            self.vtep = (dst, port, vrf, vx.vtep4_in(dst, port, vrf));
        }
        self.vtep.3
    }

    #[inline(always)]
    fn count(&mut self, stats: &WorkerStats, iface: u16, bytes: usize) {
        let slot = &mut self.rx[usize::from(iface) % RX_SLOTS];
        if slot.0 != iface {
            flush(stats, *slot);
            *slot = (iface, 0, 0);
        }
        slot.1 += 1;
        slot.2 += bytes as u64;
    }

    #[inline(always)]
    fn vni(&mut self, vx: &'t super::VxlanTables, vtep: u16, vni: u32) -> Option<&'t super::Vni> {
        if (vtep, vni) != (self.vni.0, self.vni.1) {
            self.vni = (vtep, vni, vx.vni(vtep, vni));
        }
        self.vni.2
    }

    fn finish(self, stats: &WorkerStats) {
        for slot in self.rx {
            flush(stats, slot);
        }
    }
}

#[inline(always)]
fn flush(stats: &WorkerStats, (iface, packets, bytes): (u16, u64, u64)) {
    if packets > 0 {
        let s = stats.iface(iface);
        s.rx_packets.add(packets);
        s.rx_bytes.add(bytes);
    }
}

/// The fast path's outer IPv4 checks (those of `ip4-input`, then the
/// VTEP): the VTEP, with the frame trimmed to the IP total length, or
/// `None` for `ip4-input` to handle (and count) as usual.
#[inline(always)]
fn outer4(vx: &super::VxlanTables, run: &mut Run<'_>, p: &mut Pkt) -> Option<u16> {
    let l3_off = usize::from(p.meta.l3_off);
    let l3 = p.buf.data().get(l3_off..)?;
    let h = l3.first_chunk::<24>()?;
    // Version 4 without options, UDP, neither MF nor a fragment offset.
    if h[0] != 0x45 || h[9] != 17 || h[6] & 0x3f != 0 || h[7] != 0 {
        return None;
    }
    let total = usize::from(be16(h, 2));
    let src = be32(h, 12);
    if total > l3.len()
        || total < 20 + UDP_VXLAN + 14
        || is_martian_src(src)
        || h.first_chunk::<20>().map_or(0, sum20) != 0xffff
    {
        return None;
    }
    let v = run.vtep(vx, be32(h, 16), be16(h, 22), p.meta.domain)?;
    p.buf.truncate(l3_off + total);
    Some(v)
}

/// Offsets in a frame of the fast path: untagged Ethernet, outer IPv4
/// without options, UDP, VXLAN, the inner Ethernet header.
const F_IP: usize = 14;
const F_UDP: usize = F_IP + 20;
const F_VXLAN: usize = F_UDP + 8;
const F_INNER: usize = F_VXLAN + 8;

/// The big-endian 64-bit word at `at` of a frame's first 64 bytes (`at` is
/// a constant at every call, so the bounds check folds away).
#[inline(always)]
fn w64(h: &[u8; 64], at: usize) -> u64 {
    h.get(at..)
        .and_then(|s| s.first_chunk::<8>())
        .map_or(0, |b| u64::from_be_bytes(*b))
}

/// `vxlan4-input`'s common case, for a frame straight from
/// `ethernet-input` (untagged, `l3_off` 14): every check of the general path
/// done on a few 64-bit words of the first 64 bytes (outer IPv4 without
/// options, not a fragment, UDP, lengths that agree, header checksum,
/// source; VTEP address and port in the packet's VRF; UDP checksum 0; the I
/// flag; a VNI of the VTEP; a remote VTEP of that VNI; an untagged inner
/// frame, for our MAC on an L3 VNI), then the hand-off. Returns false
/// having changed nothing when any check fails: the general path then
/// handles the frame and counts the exact reason.
#[inline(always)]
fn fast4<'t>(
    cx: &Ctx,
    vx: &'t super::VxlanTables,
    run: &mut Run<'t>,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
) -> bool {
    if p.meta.l3_off != F_IP as u16 {
        return false;
    }
    let d = p.buf.data();
    let len = d.len();
    let Some(h) = d.first_chunk::<64>() else {
        return false;
    };
    // Version/IHL, TOS, total length, ID, flags/fragment offset.
    let a = w64(h, F_IP);
    // TTL, protocol, checksum, source.
    let b = w64(h, F_IP + 8);
    // Destination, UDP source and destination ports.
    let c = w64(h, F_IP + 16);
    // UDP length and checksum, VXLAN flags and reserved bits.
    let e = w64(h, F_UDP + 4);
    let total = usize::from((a >> 32) as u16);
    let src = b as u32;
    // Version 4 without options, neither MF nor a fragment offset; UDP;
    // the IP and UDP lengths agree with the frame; a zero UDP checksum
    // (a non-zero one is verified by the general path); the I flag.
    if a & 0xff00_0000_0000_3fff != 0x4500_0000_0000_0000
        || (b >> 48) as u8 != 17
        || total + F_IP > len
        || total < 20 + UDP_VXLAN + 14
        || usize::from((e >> 48) as u16) + 20 != total
        || (e >> 32) as u16 != 0
        || (e >> 24) as u8 & vrouter_wire::vxlan::FLAG_I == 0
        || is_martian_src(src)
        || h[F_IP..].first_chunk::<20>().map_or(0, sum20) != 0xffff
    {
        return false;
    }
    let Some(vtep) = run.vtep(vx, (c >> 32) as u32, c as u16, p.meta.domain) else {
        return false;
    };
    let vni = (w64(h, F_VXLAN) >> 8) as u32 & 0x00ff_ffff;
    let Some(bound) = run.vni(vx, vtep, vni) else {
        return false;
    };
    let Some(tunnel) = bound.remote(u128::from(src)) else {
        return false;
    };
    let inner = w64(h, F_INNER);
    let ethertype = u16::from_be_bytes([h[F_INNER + 12], h[F_INNER + 13]]);
    let multi = inner & (1 << 56) != 0;
    if ethertype == 0x8100
        || ethertype == 0x88a8
        || (matches!(bound.kind, VniKind::Routed { .. })
            && !multi
            && inner >> 16 != bound.mac.to_u64())
    {
        return false;
    }
    if p.buf.advance(F_INNER).is_err() {
        return false;
    }
    p.buf.truncate(total + F_IP - F_INNER);
    p.meta.aux = u32::from(vtep);
    run.count(cx.stats, tunnel, p.buf.len());
    hand_off(p, q, i, bound, tunnel, ethertype, multi);
    true
}

/// The `vxlan4-input` node.
pub fn node(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let vx = &*cx.t.vxlan;
    let mut run = Run::new();
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        if p.meta.aux == AUX_OUTER_UNCHECKED {
            if fast4(cx, vx, &mut run, p, q, i) {
                continue;
            }
            match outer4(vx, &mut run, p) {
                Some(v) => p.meta.aux = u32::from(v),
                None => {
                    p.meta.aux = 0;
                    q.push(NodeId::Ip4Input, i);
                    continue;
                }
            }
        }
        let l3 = p.l3();
        let ihl = usize::from(l3.first().map_or(0, |b| b & 0x0f)) * 4;
        let Some(u) = l3.get(ihl..).filter(|u| u.len() >= UDP_VXLAN + 14) else {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        };
        if usize::from(be16(u, 4)) != u.len() || u[8] & vrouter_wire::vxlan::FLAG_I == 0 {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        }
        let (src, dst) = (be32(l3, 12), be32(l3, 16));
        if be16(u, 6) != 0 {
            let s = checksum::pseudo_header_v4(src.into(), dst.into(), 17, u.len() as u16)
                + checksum::sum(u);
            if checksum::fold(s) != 0xffff {
                drop_pkt(p, q, i, Counter::VxlanBadChecksum);
                continue;
            }
        }
        let vni = be32(u, 12) >> 8;
        let skip = usize::from(p.meta.l3_off) + ihl + UDP_VXLAN;
        deliver(cx, vx, &mut run, p, q, i, vni, u128::from(src), skip);
    }
    run.finish(cx.stats);
}

/// The `vxlan6-input` node. `meta.aux` holds the VTEP (low 16 bits) and
/// the UDP header's offset from the IPv6 header (high 16 bits, after any
/// extension headers). A zero UDP checksum is accepted (RFC 6935 allows it
/// for tunnels; vrouterd itself always sends one over IPv6), a non-zero one
/// is verified.
pub fn node6(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let vx = &*cx.t.vxlan;
    let mut run = Run::new();
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let l4_off = (p.meta.aux >> 16) as usize;
        let l3 = p.l3();
        let Some(u) = l3
            .get(l4_off..)
            .filter(|u| l4_off >= 40 && u.len() >= UDP_VXLAN + 14)
        else {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        };
        if usize::from(be16(u, 4)) != u.len() || u[8] & vrouter_wire::vxlan::FLAG_I == 0 {
            drop_pkt(p, q, i, Counter::VxlanBadHeader);
            continue;
        }
        let (src, dst) = (be128(l3, 8), be128(l3, 24));
        if be16(u, 6) != 0 {
            let s = checksum::pseudo_header_v6(&src.into(), &dst.into(), 17, u.len() as u32)
                + checksum::sum(u);
            if checksum::fold(s) != 0xffff {
                drop_pkt(p, q, i, Counter::VxlanBadChecksum);
                continue;
            }
        }
        let vni = be32(u, 12) >> 8;
        let skip = usize::from(p.meta.l3_off) + l4_off + UDP_VXLAN;
        p.meta.aux &= 0xffff;
        deliver(cx, vx, &mut run, p, q, i, vni, src, skip);
    }
    run.finish(cx.stats);
}

/// The checks and hand-off both families share: VNI of the VTEP
/// (`meta.aux`), remote VTEP `src` ([`super::addr_key`]), then strips
/// `skip` bytes (everything before the inner frame).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn deliver<'t>(
    cx: &Ctx,
    vx: &'t super::VxlanTables,
    run: &mut Run<'t>,
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    vni: u32,
    src: u128,
    skip: usize,
) {
    let Some(b) = run.vni(vx, p.meta.aux as u16, vni) else {
        drop_pkt(p, q, i, Counter::VxlanUnknownVni);
        return;
    };
    let Some(tunnel) = b.remote(src) else {
        drop_pkt(p, q, i, Counter::VxlanUnknownVtep);
        return;
    };
    if p.buf.advance(skip).is_err() {
        drop_pkt(p, q, i, Counter::VxlanBadHeader);
        return;
    }
    let d = p.buf.data();
    let Some(h) = d.first_chunk::<14>() else {
        drop_pkt(p, q, i, Counter::VxlanBadHeader);
        return;
    };
    let ethertype = u16::from_be_bytes([h[12], h[13]]);
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        drop_pkt(p, q, i, Counter::VxlanInnerVlan);
        return;
    }
    let multi = h[0] & 1 != 0;
    let dst_mac = u64::from_be_bytes([0, 0, h[0], h[1], h[2], h[3], h[4], h[5]]);
    run.count(cx.stats, tunnel, d.len());
    if matches!(b.kind, VniKind::Routed { .. }) && !multi && dst_mac != b.mac.to_u64() {
        p.meta.rx_if = tunnel;
        drop_pkt(p, q, i, Counter::VxlanNotForUs);
        return;
    }
    hand_off(p, q, i, b, tunnel, ethertype, multi);
}

/// Hands an accepted inner frame (the packet's data now) of VNI `b`,
/// received (and counted) on tunnel interface `tunnel`, to its bridge
/// domain or VRF.
#[inline(always)]
fn hand_off(
    p: &mut Pkt,
    q: &mut Queues,
    i: u16,
    b: &super::Vni,
    tunnel: u16,
    ethertype: u16,
    multi: bool,
) {
    p.meta.rx_if = tunnel;
    p.meta.l3_off = 14;
    p.meta.ethertype = ethertype;
    p.meta.flags = (p.meta.flags & flags::TRACED) | (u16::from(multi) * flags::L2_MULTI);
    match b.kind {
        VniKind::Bridge { bd } => {
            p.meta.domain = bd;
            q.push(NodeId::L2Input, i);
        }
        VniKind::Routed { vrf } => {
            p.meta.domain = vrf;
            l3_input(p, q, i);
        }
    }
}
