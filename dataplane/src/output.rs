//! `interface-output`: the last node before a port. Tags frames for VLAN
//! sub-interfaces, enforces the L2 MTU of bridged output, and marks the
//! packet for transmission on the interface's port.
//!
//! Reads `tx_if`; writes `tx_port`, `disposition`. Expects a complete,
//! untagged Ethernet header at the start of the packet. Edges: none (the
//! worker transmits), `drop`.

use vrouter_wire::EtherType;

use crate::ethernet::drop_pkt;
use crate::graph::{Counter, IfaceAcc, Queues};
use crate::pipeline::Ctx;
use crate::pkt::{Disposition, Pkt};

/// The `interface-output` node.
pub fn node(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let mut acc = IfaceAcc::default();
    for &i in input {
        let p = &mut pkts[i as usize];
        let Some(f) = cx.t.iface(p.meta.tx_if) else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        if p.buf.len() < 14 {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        }
        if p.buf.len() - 14 > f.mtu as usize {
            drop_pkt(p, q, i, Counter::L2MtuExceeded);
            continue;
        }
        if f.vlan != 0 {
            if p.buf.prepend(4).is_err() {
                drop_pkt(p, q, i, Counter::GraphNoSpace);
                continue;
            }
            let d = p.buf.data_mut();
            d.copy_within(4..16, 0);
            d[12..14].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
            d[14..16].copy_from_slice(&(f.vlan & 0x0fff).to_be_bytes());
        }
        p.meta.tx_port = f.port;
        p.meta.disposition = Disposition::Tx;
        acc.add(cx.stats, false, p.meta.tx_if, p.buf.len());
    }
    acc.flush(cx.stats, false);
}
