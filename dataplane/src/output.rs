//! `interface-output`: the last node before a port. Tags frames for VLAN
//! sub-interfaces, enforces the L2 MTU of bridged output, and marks the
//! packet for transmission on the interface's port.
//!
//! Reads `tx_if`; writes `tx_port`, `disposition`. Expects a complete,
//! untagged Ethernet header at the start of the packet. Edges: none (the
//! worker transmits), `vxlan4-encap` / `vxlan6-encap` (a tunnel interface:
//! inner MTU checked here; the encapsulation node counts it as sent on the
//! tunnel), `drop`. `l2-input` (known
//! unicast to an untagged port or a tunnel) and `ip4-rewrite` (a tunnel)
//! do this node's work themselves and skip it.

use vrouter_wire::EtherType;

use crate::ethernet::drop_pkt;
use crate::graph::{Counter, NodeId, Queues, WorkerStats};
use crate::pipeline::Ctx;
use crate::pkt::{Disposition, NO_IFACE, Pkt};
use crate::tables::Tables;

/// What sending on one interface needs, looked up once per run of packets
/// to that interface.
#[derive(Clone, Copy)]
struct OutIface {
    iface: u16,
    valid: bool,
    port: u16,
    vlan: u16,
    mtu: u16,
    /// The encapsulation node of a tunnel interface.
    tunnel: Option<NodeId>,
}

impl OutIface {
    #[inline(always)]
    fn of(t: &Tables, iface: u16) -> OutIface {
        match t.iface(iface) {
            Some(f) => OutIface {
                iface,
                valid: true,
                port: f.port,
                vlan: f.vlan,
                mtu: f.mtu,
                tunnel: f.tunnel.map(|k| {
                    if t.vxlan.tunnels.get(usize::from(k)).is_some_and(|x| x.v6) {
                        NodeId::Vxlan6Encap
                    } else {
                        NodeId::Vxlan4Encap
                    }
                }),
            },
            None => OutIface {
                iface,
                valid: false,
                port: 0,
                vlan: 0,
                mtu: 0,
                tunnel: None,
            },
        }
    }
}

/// The `interface-output` node.
pub fn node(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let Some(&first) = input.first() else {
        return;
    };
    let first = pkts
        .get(usize::from(first))
        .map_or(NO_IFACE, |p| p.meta.tx_if);
    let mut out = OutIface::of(cx.t, first);
    // Packets and bytes sent on `out` so far (counted when it changes).
    let (mut packets, mut bytes) = (0u64, 0u64);
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        if p.meta.tx_if != out.iface {
            count_tx(cx.stats, out.iface, packets, bytes);
            (packets, bytes) = (0, 0);
            out = OutIface::of(cx.t, p.meta.tx_if);
        }
        let len = p.buf.len();
        if !out.valid || len < 14 {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        }
        if len - 14 > usize::from(out.mtu) {
            drop_pkt(p, q, i, Counter::L2MtuExceeded);
            continue;
        }
        if let Some(encap) = out.tunnel {
            q.push(encap, i);
            continue;
        }
        if out.vlan != 0 && !tag(p, out.vlan) {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            continue;
        }
        p.meta.tx_port = out.port;
        p.meta.disposition = Disposition::Tx;
        packets += 1;
        bytes += p.buf.len() as u64;
    }
    count_tx(cx.stats, out.iface, packets, bytes);
}

#[inline(always)]
fn count_tx(stats: &WorkerStats, iface: u16, packets: u64, bytes: u64) {
    if packets > 0 {
        let s = stats.iface(iface);
        s.tx_packets.add(packets);
        s.tx_bytes.add(bytes);
    }
}

/// Inserts an 802.1Q tag for `vlan` after the MACs; false without headroom.
#[inline(never)]
fn tag(p: &mut Pkt, vlan: u16) -> bool {
    if p.buf.prepend(4).is_err() {
        return false;
    }
    let d = p.buf.data_mut();
    d.copy_within(4..16, 0);
    d[12..14].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
    d[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
    true
}
