//! `vxlan4-input` / `vxlan6-input`: decapsulate VXLAN over IPv4 / IPv6
//! received for a local VTEP and hand the inner frame to the bound bridge
//! domain or VRF.
//!
//! Input: packets `ip4-input` / `ip6-local` found addressed to the address
//! and UDP port of a VTEP of their VRF (`meta.aux` = the VTEP), IP header
//! validated and not a fragment. Checks, each with its counter: UDP length and the I flag
//! (`vxlan-bad-header`), a non-zero UDP checksum (`vxlan-bad-udp-checksum`),
//! the VNI is one of the VTEP's (`vxlan-unknown-vni`), the outer source is
//! one of that VNI's remote VTEPs (`vxlan-unknown-vtep`), the inner frame is
//! untagged (`vxlan-inner-vlan`); for an L3 VNI the inner destination MAC is
//! ours or multicast (`vxlan-not-for-us`). Writes `rx_if` (the tunnel
//! interface: per-tunnel receive counters), `domain`, `l3_off`,
//! `ethertype`, `flags` (only `L2_MULTI` of the inner frame survives).
//! Edges: `l2-input` (L2 VNI: the bridge learns inner MAC → tunnel),
//! `ip4-input` / `ip6-input` / `arp-input` (L3 VNI), `drop`.

use vrouter_wire::checksum;

use super::VniKind;
use crate::ethernet::{drop_pkt, l3_input};
use crate::graph::{Counter, NodeId, Queues, WorkerStats};
use crate::ip::{be16, be32, be128};
use crate::pipeline::Ctx;
use crate::pkt::{NO_IFACE, Pkt, flags};

/// Outer UDP + VXLAN header length.
const UDP_VXLAN: usize = 16;
/// Tunnels whose receive counters a vector accumulates at once.
const RX_SLOTS: usize = 32;

/// Per-vector state: receive counters per tunnel interface (flushed when a
/// slot is needed by another tunnel, and at the end: packets of a vector
/// come from many remote VTEPs, interleaved), and the last VNI looked up.
struct Run<'t> {
    rx: [(u16, u64, u64); RX_SLOTS],
    vni: (u16, u32, Option<&'t super::Vni>),
}

impl<'t> Run<'t> {
    fn new() -> Self {
        Run {
            rx: [(NO_IFACE, 0, 0); RX_SLOTS],
            vni: (u16::MAX, u32::MAX, None),
        }
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

/// The `vxlan4-input` node.
pub fn node(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let vx = &*cx.t.vxlan;
    let mut run = Run::new();
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
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
            if !multi && dst_mac != b.mac.to_u64() {
                drop_pkt(p, q, i, Counter::VxlanNotForUs);
                return;
            }
            p.meta.domain = vrf;
            l3_input(p, q, i);
        }
    }
}
