//! `arp-input`: answers ARP requests for the router's addresses and learns
//! neighbours from ARP; also builds the ARP requests `glean` sends.
//!
//! Reads `rx_if`, `l3_off`. Learning is reported to the control thread as an
//! `Event::Neighbor`, which owns the neighbour table; a sender is reported
//! only if it is in one of the interface's subnets and the packet is a reply
//! or a request for one of our addresses (as Linux does), so ARP traffic
//! between other hosts cannot fill the table. Edges: `interface-output` or
//! `l2-input` (replies on a BVI, via `l3_output`), `drop`.

use std::net::{IpAddr, Ipv4Addr};

use vrouter_wire::{ArpOperation, ArpPacket, EtherType, MacAddr};

use crate::ethernet::{drop_pkt, l3_output, set_l2_header};
use crate::graph::{Counter, Queues};
use crate::pipeline::{Ctx, Event};
use crate::pkt::{Pkt, flags};
use crate::tables::Iface;

const ARP_LEN: usize = 28;

/// The `arp-input` node.
pub fn input(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let p = &mut pkts[i as usize];
        let l3 = p.l3();
        if l3.len() < ARP_LEN {
            drop_pkt(p, q, i, Counter::ArpMalformed);
            continue;
        }
        let arp = ArpPacket::new_unchecked(l3);
        if arp.hardware_type() != 1
            || arp.protocol_type() != EtherType::IPV4
            || arp.hardware_len() != 6
            || arp.protocol_len() != 4
        {
            drop_pkt(p, q, i, Counter::ArpMalformed);
            continue;
        }
        let Some(f) = t.iface(p.meta.rx_if) else {
            drop_pkt(p, q, i, Counter::GraphLost);
            continue;
        };
        let (op, sha, spa, tpa) = (
            arp.operation(),
            arp.sender_hardware_addr(),
            arp.sender_protocol_addr(),
            arp.target_protocol_addr(),
        );
        if !sha.is_unicast() || sha.is_zero() {
            drop_pkt(p, q, i, Counter::ArpMalformed);
            continue;
        }
        let ours = f.has_ip4(tpa);
        let is_reply = op == ArpOperation::Reply.to_u16();
        if !spa.is_unspecified() && (ours || is_reply) && f.ip4.iter().any(|n| n.contains(spa)) {
            cx.stats.count(Counter::ArpLearned, 1);
            cx.event(Event::Neighbor {
                iface: p.meta.rx_if,
                ip: IpAddr::V4(spa),
                mac: sha,
            });
        }
        if op == ArpOperation::Request.to_u16() {
            if !ours {
                drop_pkt(p, q, i, Counter::ArpNotForUs);
                continue;
            }
            let mac = f.mac;
            let mut arp = ArpPacket::new_unchecked(p.l3_mut());
            arp.set_operation(ArpOperation::Reply.to_u16());
            arp.set_target_hardware_addr(sha);
            arp.set_target_protocol_addr(spa);
            arp.set_sender_hardware_addr(mac);
            arp.set_sender_protocol_addr(tpa);
            let end = p.meta.l3_off as usize + ARP_LEN;
            p.buf.truncate(end);
            if !set_l2_header(p, sha, mac, EtherType::ARP) {
                drop_pkt(p, q, i, Counter::GraphNoSpace);
                continue;
            }
            p.meta.flags |= flags::LOCAL_ORIGIN;
            cx.stats.count(Counter::ArpReplySent, 1);
            let rx_if = p.meta.rx_if;
            l3_output(cx, p, q, i, rx_if);
        } else if is_reply {
            drop_pkt(p, q, i, Counter::ArpConsumed);
        } else {
            drop_pkt(p, q, i, Counter::ArpMalformed);
        }
    }
}

/// Writes a broadcast ARP request for `target` from interface `f` into `p`
/// (an empty buffer). Returns false if `f` has no IPv4 address.
pub fn build_request(p: &mut Pkt, f: &Iface, target: Ipv4Addr) -> bool {
    let Some(spa) = f.src_ip4_for(target) else {
        return false;
    };
    if p.buf.append(14 + ARP_LEN).is_err() {
        return false;
    }
    p.meta.l3_off = 14;
    let mut arp = ArpPacket::new_unchecked(p.l3_mut());
    arp.set_hardware_type(1);
    arp.set_protocol_type(EtherType::IPV4);
    arp.set_hardware_len(6);
    arp.set_protocol_len(4);
    arp.set_operation(ArpOperation::Request.to_u16());
    arp.set_sender_hardware_addr(f.mac);
    arp.set_sender_protocol_addr(spa);
    arp.set_target_hardware_addr(MacAddr::ZERO);
    arp.set_target_protocol_addr(target);
    set_l2_header(p, MacAddr::BROADCAST, f.mac, EtherType::ARP)
}
